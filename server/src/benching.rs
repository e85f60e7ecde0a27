//! Entry points for the benches (`benches/`): the server's own delivery path, without
//! the shard and sockets around it. Not part of the server's API.

use std::future::Future;
use std::task::{Context, Waker};

use bytes::Bytes;
use palaver_protocol::{Codec, Message, RoomId, UserId};

use crate::io::outbound::Outbound;
use crate::io::wire::Wire;
use crate::mesh::Delivery;
use crate::shard::fanout::{Sub, Subscribers};

/// One room's subscribers on one shard, each with its own outbound queue, as
/// `subscribe_conn` leaves them: live at the room's newest seq.
#[derive(Debug)]
pub struct Fanout {
    subscribers: Subscribers,
    queues: Vec<Outbound>,
    taken: Vec<Bytes>,
}

impl Fanout {
    /// `sockets` live subscribers of `room` (at `last_seq`), framed alternately as
    /// WebSocket JSON and WebSocket rkyv, each queue holding at most `queue_bytes`.
    pub fn new(room: &RoomId, last_seq: u64, sockets: usize, queue_bytes: usize) -> Self {
        let mut subscribers = Subscribers::default();
        let mut queues = Vec::with_capacity(sockets);
        for conn in 0..sockets {
            let codec = if conn % 2 == 0 { Codec::Json } else { Codec::Rkyv };
            let outbound = Outbound::new(queue_bytes);
            queues.push(outbound.clone());
            let sub = Sub {
                conn: conn as u64,
                wire: Wire::WebSocket(codec, None),
                outbound,
                user: UserId::parse(&format!("u_reader{conn}")).unwrap_or_else(|_| unreachable!()),
                cursor: last_seq,
                live: true,
                blocked: Default::default(),
            };
            subscribers.subscribe(room, last_seq, sub);
        }
        Fanout { subscribers, queues, taken: Vec::new() }
    }

    /// What the shard does with a durable message: a [`Delivery`] (its frames encoded by
    /// the first socket of each wire form) queued to every live subscriber. Returns how
    /// many sockets queued it.
    pub fn deliver(&mut self, message: Message) -> u64 {
        let delivery = Delivery::of(message);
        let mut behind = Vec::new();
        self.subscribers.deliver(&delivery, &mut behind)
    }

    /// Takes everything queued, as each socket's writer does on its turn.
    pub fn drain(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        for queue in &self.queues {
            let mut take = std::pin::pin!(queue.take_frames(&mut self.taken));
            // Frames are queued, so the take is ready at once.
            let _ = take.as_mut().poll(&mut cx);
        }
        self.taken.clear();
    }

    /// Bytes queued over every socket.
    pub fn queued_bytes(&self) -> usize {
        self.queues.iter().map(Outbound::queued_bytes).sum()
    }
}

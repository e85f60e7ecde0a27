//! The subscriber role: delivering rooms' events to this shard's sockets.
//!
//! Each subscription has a cursor (the last seq the socket was given). A live
//! subscription takes each delivered frame — the very buffer the owner encoded — when it
//! is the next seq. A subscription behind the newest seq this shard has seen (a join
//! with `since`, or one that raced a delivery) catches up from storage in pages, paced
//! by its socket's queue, and turns live once it reaches that seq. Every delivered
//! message is already durable, so storage always has what a cursor is missing.

use rustc_hash::FxHashMap;
use std::rc::Rc;

use palaver_protocol::{Event, RoomId, ServerFrame, UserId};

use super::Shard;
use crate::io::lane::{Lane, RoomKey};
use crate::io::outbound::{Outbound, Pushed};
use crate::io::wire::Wire;
use crate::mesh::{ConnId, Delivery, Ephemeral, Reply, ShardMsg, Subscribe};

/// Replay page size when catching up from storage.
const CATCH_UP_PAGE: usize = 256;

/// Whom a socket's user blocked (shared with the connection).
pub type Blocked = Rc<std::cell::RefCell<rustc_hash::FxHashSet<UserId>>>;

/// One socket's subscription to a room.
#[derive(Debug)]
pub struct Sub {
    /// The connection.
    pub conn: ConnId,
    /// Its framing.
    pub wire: Wire,
    /// Its outbound queue.
    pub outbound: Outbound,
    /// Its user.
    pub user: UserId,
    /// The last seq given to the socket.
    pub cursor: u64,
    /// False while catching up from storage.
    pub live: bool,
    /// Whom the socket's user blocked.
    pub blocked: Blocked,
}

impl Sub {
    fn blocks(&self, sender: &UserId) -> bool {
        let blocked = self.blocked.borrow();
        !blocked.is_empty() && blocked.contains(sender)
    }
}

#[derive(Debug, Default)]
struct LocalRoom {
    /// The newest seq delivered to this shard (or reported by a join).
    seen_seq: u64,
    subs: Vec<Sub>,
    /// Joins sent to the owner and not answered yet: keep the owner's subscription.
    pending_joins: u32,
}

/// Local subscriptions of this shard, by room.
#[derive(Debug, Default)]
pub struct Subscribers {
    rooms: FxHashMap<RoomId, LocalRoom>,
}

impl Subscribers {
    /// A join for `room` is on its way to the owner.
    pub fn join_pending(&mut self, room: &RoomId) {
        self.rooms.entry(room.clone()).or_default().pending_joins += 1;
    }

    /// Subscribes `sub` to `room`, whose newest durable seq is `last_seq`, replacing the
    /// connection's earlier subscription: live if its cursor is at the newest seq this
    /// shard has seen (else it is to catch up, and false is returned).
    pub fn subscribe(&mut self, room: &RoomId, last_seq: u64, mut sub: Sub) -> bool {
        let local = self.rooms.entry(room.clone()).or_default();
        local.seen_seq = local.seen_seq.max(last_seq);
        // A re-join restarts the subscription at the requested position.
        local.subs.retain(|s| s.conn != sub.conn);
        sub.live = sub.cursor >= local.seen_seq;
        let live = sub.live;
        local.subs.push(sub);
        live
    }

    /// Gives `delivery` to every live subscriber of its room whose cursor it follows
    /// (the very frame the first recipient of its wire form encoded); a subscriber it
    /// does not follow stops being live and its connection goes into `behind` (to catch
    /// up from storage). Returns how many sockets queued it.
    pub fn deliver(&mut self, delivery: &Delivery, behind: &mut Vec<ConnId>) -> u64 {
        let Some(message) = delivery.message() else { return 0 };
        let Some(local) = self.rooms.get_mut(&message.room) else { return 0 };
        let seq = message.seq;
        local.seen_seq = local.seen_seq.max(seq);
        let mut delivered = 0u64;
        for sub in &mut local.subs {
            if !sub.live || seq <= sub.cursor {
                continue;
            }
            if seq != sub.cursor + 1 {
                sub.live = false;
                behind.push(sub.conn);
                continue;
            }
            sub.cursor = seq;
            let Some(frame) = delivery.frame(sub.wire, sub.blocks(&message.sender)) else { continue };
            match sub.outbound.push(frame.clone(), delivery.frames.lane()) {
                Pushed::Queued => delivered += 1,
                // Counted once, when the socket ends (`socket::end_session`).
                Pushed::Overflow | Pushed::Closed => {}
            }
        }
        delivered
    }
}

/// Fans a delivery out to the local subscribers of its room.
pub fn deliver(shard: &Rc<Shard>, delivery: &Delivery) {
    let mut behind = Vec::new();
    {
        let delivered = shard.subscribers.borrow_mut().deliver(delivery, &mut behind);
        shard.shared.metrics.deliveries.fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
        if delivered > 0 {
            shard.shared.metrics.observe_delivery(shard.id, delivery.durable_at.elapsed());
        }
    }
    let Some(message) = delivery.message() else { return };
    for conn in behind {
        monoio::spawn(catch_up(shard.clone(), message.room.clone(), conn));
    }
}

/// Fans an ephemeral event out to the live local subscribers of its room (except the
/// skipped user's own sockets). No cursor moves: it is not part of the room's history.
pub fn deliver_ephemeral(shard: &Rc<Shard>, event: &Ephemeral) {
    let subscribers = shard.subscribers.borrow();
    let Some(local) = subscribers.rooms.get(&event.room) else { return };
    for sub in local.subs.iter().filter(|s| s.live && event.skip.as_ref() != Some(&s.user)) {
        if let Some(frame) = event.frames.frame(sub.wire) {
            sub.outbound.push(frame.clone(), event.frames.lane());
        }
    }
}

/// An answer from a room's owner for a local connection.
pub fn on_reply(shard: &Rc<Shard>, reply: Reply) {
    if let Some(room) = &reply.was_join {
        let mut subscribers = shard.subscribers.borrow_mut();
        if let Some(local) = subscribers.rooms.get_mut(room) {
            local.pending_joins = local.pending_joins.saturating_sub(1);
        }
    }
    let conn = shard.conns.get(reply.conn);
    if let Some(conn) = &conn {
        conn.answer(reply.re, reply.body);
    } else if let Some(waiter) = shard.route_waiters.borrow_mut().remove(&reply.conn) {
        let _ = waiter.send(reply.body);
    }
    match (conn, reply.subscribe, reply.unsubscribe) {
        (Some(conn), Some(subscribe), _) => subscribe_conn(shard, &conn, subscribe),
        (Some(conn), None, Some(room)) => {
            conn.rooms.borrow_mut().remove(&room);
            remove_subs(shard, &room, |sub| sub.conn == conn.id);
        }
        (None, _, _) | (Some(_), None, None) => {}
    }
    if let Some(room) = reply.was_join {
        release_if_unused(shard, &room);
    }
}

fn subscribe_conn(shard: &Rc<Shard>, conn: &Rc<super::Conn>, subscribe: Subscribe) {
    let Some(user) = conn.user() else { return };
    let Subscribe { room, cursor, last_seq } = subscribe;
    let sub = Sub {
        conn: conn.id,
        wire: conn.wire,
        outbound: conn.outbound.clone(),
        user,
        cursor,
        live: false,
        blocked: conn.blocked.clone(),
    };
    let caught_up = shard.subscribers.borrow_mut().subscribe(&room, last_seq, sub);
    conn.rooms.borrow_mut().insert(room.clone());
    if !caught_up {
        monoio::spawn(catch_up(shard.clone(), room, conn.id));
    }
}

/// Replays a subscription's missing messages from storage, page by page, pacing itself
/// on the socket's queue, until it reaches the newest seq this shard has seen.
async fn catch_up(shard: Rc<Shard>, room: RoomId, conn: ConnId) {
    // Replay fills a socket's queue to half its limit, then waits for it to drain to a
    // quarter, so a replay never trips the slow-consumer limit by itself.
    let limit = shard.shared.config.outbound_queue_bytes;
    let (high_water, low_water) = (limit / 2, limit / 4);
    let lane = Lane::Room(RoomKey::of(&room));
    loop {
        let outbound = {
            let mut subscribers = shard.subscribers.borrow_mut();
            let Some(local) = subscribers.rooms.get_mut(&room) else { return };
            let seen = local.seen_seq;
            let Some(sub) = local.subs.iter_mut().find(|s| s.conn == conn) else { return };
            if sub.live {
                return;
            }
            if sub.cursor >= seen {
                sub.live = true;
                return;
            }
            let page = match shard.shared.store.messages_between(&room, sub.cursor + 1, seen, CATCH_UP_PAGE) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!("catch-up read failed for {room}: {e}");
                    sub.outbound.close(crate::ws::CloseCode::InternalError, "storage read failed");
                    return;
                }
            };
            if page.first().map(|m| m.seq) != Some(sub.cursor + 1) {
                // Retention removed the messages below the room's history floor: the
                // cursor resumes there (the join's `history_from` told the client).
                match shard.shared.store.history_floor(&room) {
                    Ok(floor) if sub.cursor + 1 < floor => {
                        sub.cursor = (floor - 1).min(seen);
                        continue;
                    }
                    _ => {}
                }
                tracing::error!(room = %room, from = sub.cursor + 1, "stored log is missing messages");
                sub.outbound.close(crate::ws::CloseCode::InternalError, "history gap");
                return;
            }
            for message in page {
                let seq = message.seq;
                if seq != sub.cursor + 1 {
                    tracing::error!(room = %room, seq, "stored log is missing messages");
                    sub.outbound.close(crate::ws::CloseCode::InternalError, "history gap");
                    return;
                }
                let mut message = message;
                message.blocked = sub.blocks(&message.sender);
                let frame = ServerFrame::Event(Event::Message(message));
                let Ok(frame) = sub.wire.encode(&frame) else { return };
                let queued = sub.outbound.queued_bytes();
                if queued > 0 && queued + frame.len() > high_water {
                    break; // The rest of this page is read again after the queue drains.
                }
                if sub.outbound.push(frame, lane) != Pushed::Queued {
                    return;
                }
                sub.cursor = seq;
            }
            sub.outbound.clone()
        };
        if !outbound.drained_below(low_water).await {
            return;
        }
    }
}

/// `user` left `room` (or was removed): their sockets here stop receiving it.
pub fn member_gone(shard: &Rc<Shard>, room: &RoomId, user: &UserId) {
    for conn in shard.conns.of_user(user) {
        if let Some(conn) = shard.conns.get(conn) {
            conn.rooms.borrow_mut().remove(room);
        }
    }
    remove_subs(shard, room, |sub| &sub.user == user);
}

/// `room` was deleted: every local subscription to it ends.
pub fn room_gone(shard: &Rc<Shard>, room: &RoomId) {
    let subs = shard.subscribers.borrow_mut().rooms.remove(room);
    for sub in subs.map(|l| l.subs).unwrap_or_default() {
        if let Some(conn) = shard.conns.get(sub.conn) {
            conn.rooms.borrow_mut().remove(room);
        }
    }
}

/// Removes a closed connection's subscriptions.
pub fn unsubscribe_all(shard: &Rc<Shard>, conn: &super::Conn) {
    let rooms: Vec<RoomId> = conn.rooms.borrow_mut().drain().collect();
    for room in rooms {
        remove_subs(shard, &room, |sub| sub.conn == conn.id);
    }
}

fn remove_subs(shard: &Rc<Shard>, room: &RoomId, matches: impl Fn(&Sub) -> bool) {
    {
        let mut subscribers = shard.subscribers.borrow_mut();
        let Some(local) = subscribers.rooms.get_mut(room) else { return };
        local.subs.retain(|s| !matches(s));
    }
    release_if_unused(shard, room);
}

/// Tells the owner when this shard no longer needs a room's events.
fn release_if_unused(shard: &Rc<Shard>, room: &RoomId) {
    let mut subscribers = shard.subscribers.borrow_mut();
    let unused = subscribers.rooms.get(room).is_some_and(|l| l.subs.is_empty() && l.pending_joins == 0);
    if unused {
        subscribers.rooms.remove(room);
        let owner = shard.mesh().owner(room);
        shard.mesh().send(owner, ShardMsg::Unsubscribe { room: room.clone(), shard: shard.id });
    }
}

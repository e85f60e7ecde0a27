//! Event streams: each [`Events`] has its own bounded queue, filled by the driver.
//!
//! Overflow policy: the driver never waits for a stream. When a stream's queue is full,
//! its oldest event is dropped to make room, and the stream yields
//! [`ClientEvent::Lagged`] with the number dropped before its next event. Other streams,
//! and the client itself (positions, outbox, receipts), are unaffected.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use palaver_protocol::Message;

use crate::core::ClientEvent;

/// Events a stream holds by default before it starts dropping its oldest.
pub const DEFAULT_EVENT_BUFFER: usize = 4096;

#[derive(Debug)]
struct Queue {
    events: VecDeque<ClientEvent>,
    capacity: usize,
    /// Events dropped since the stream last yielded `Lagged`.
    missed: u64,
    waker: Option<Waker>,
    /// The driver stopped: nothing more will come.
    ended: bool,
    /// The stream was dropped: stop queueing for it.
    abandoned: bool,
}

type Shared = Arc<Mutex<Queue>>;

fn lock(queue: &Shared) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The driver's end of one stream.
#[derive(Debug)]
pub(crate) struct EventSink {
    queue: Shared,
}

/// A new stream holding at most `capacity` events (at least 1).
pub(crate) fn stream(capacity: usize) -> (EventSink, Events) {
    let queue = Arc::new(Mutex::new(Queue {
        events: VecDeque::new(),
        capacity: capacity.max(1),
        missed: 0,
        waker: None,
        ended: false,
        abandoned: false,
    }));
    (EventSink { queue: queue.clone() }, Events { queue })
}

impl EventSink {
    /// Queues `event`, dropping the oldest if the queue is full. `false` once the stream
    /// was dropped (forget this sink).
    pub(crate) fn push(&self, event: &ClientEvent) -> bool {
        let mut queue = lock(&self.queue);
        if queue.abandoned {
            return false;
        }
        if queue.events.len() >= queue.capacity {
            queue.events.pop_front();
            queue.missed += 1;
        }
        queue.events.push_back(event.clone());
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
        true
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        let mut queue = lock(&self.queue);
        queue.ended = true;
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }
}

/// A stream of a [`Client`](crate::Client)'s events: messages of joined rooms (each seq
/// once, in order), the other server events, and connection changes. Ends (`None`) once
/// the client is closed and the queued events are read. Also a [`Stream`].
///
/// Each stream has its own queue of at most
/// [`ClientOptions::event_buffer`](crate::ClientOptions::event_buffer) events. A stream
/// that is not read fast enough never slows the client or other streams: its oldest events
/// are dropped, and it yields [`ClientEvent::Lagged`] with their number first.
#[derive(Debug)]
pub struct Events {
    queue: Shared,
}

impl Events {
    /// The next event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        futures_util::StreamExt::next(self).await
    }

    /// The next `message` event, skipping the others; `None` once closed.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let ClientEvent::Message(m) = self.next().await? {
                return Some(m);
            }
        }
    }

    /// The next event if one is queued now, without waiting.
    pub fn try_next(&mut self) -> Option<ClientEvent> {
        let mut queue = lock(&self.queue);
        take(&mut queue)
    }
}

fn take(queue: &mut Queue) -> Option<ClientEvent> {
    if queue.missed > 0 {
        let missed = std::mem::take(&mut queue.missed);
        return Some(ClientEvent::Lagged { missed });
    }
    queue.events.pop_front()
}

impl Stream for Events {
    type Item = ClientEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        let mut queue = lock(&self.queue);
        if let Some(event) = take(&mut queue) {
            return Poll::Ready(Some(event));
        }
        if queue.ended {
            return Poll::Ready(None);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let mut queue = lock(&self.queue);
        queue.abandoned = true;
        queue.events.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn lagged_or_seq(event: ClientEvent) -> (bool, u64) {
        match event {
            ClientEvent::Lagged { missed } => (true, missed),
            ClientEvent::RoomReset { last_seq, .. } => (false, last_seq),
            other => panic!("{other:?}"),
        }
    }

    fn numbered(n: u64) -> ClientEvent {
        ClientEvent::RoomReset { room: palaver_protocol::RoomId::parse("r_1").unwrap(), last_seq: n }
    }

    #[test]
    fn a_full_stream_drops_its_oldest_and_says_how_many() {
        let (sink, mut events) = stream(3);
        for n in 1..=5 {
            assert!(sink.push(&numbered(n)));
        }
        let seen: Vec<(bool, u64)> = std::iter::from_fn(|| events.try_next()).map(lagged_or_seq).collect();
        assert_eq!(seen, [(true, 2), (false, 3), (false, 4), (false, 5)]);
        sink.push(&numbered(6));
        assert_eq!(events.try_next().map(lagged_or_seq), Some((false, 6)));
    }

    #[test]
    fn the_stream_ends_after_its_queue_once_the_driver_stops() {
        let (sink, mut events) = stream(8);
        sink.push(&numbered(1));
        drop(sink);
        let next = futures_util::FutureExt::now_or_never(events.next()).unwrap();
        assert_eq!(next.map(lagged_or_seq), Some((false, 1)));
        assert_eq!(futures_util::FutureExt::now_or_never(events.next()), Some(None));
    }

    #[test]
    fn a_dropped_stream_is_forgotten() {
        let (sink, events) = stream(8);
        drop(events);
        assert!(!sink.push(&numbered(1)));
    }
}

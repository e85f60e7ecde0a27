//! The outbound queue's vocabulary: HTTP deliveries to other services (webhooks, Web
//! Push), queued durably on the node that decided the event and sent from there, retried
//! on the schedule of their kind. Plain data: the queue is storage's, the sending the server's.

use palaver_protocol::RoomId;
use serde::{Deserialize, Serialize};

/// What an outbound delivery is (each kind has its own destinations and rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    /// A signed webhook delivery; the destination is the registration's id.
    Webhook,
    /// A stored message whose pushes are still to be chosen (`push::FanOut` in the body):
    /// the sender expands it, off the shard cores, into one [`OutboundKind::Push`] per
    /// subscription. The destination is [`crate::push::FAN_OUT_DESTINATION`].
    PushFanOut,
    /// One Web Push (`push::PushJob` in the body); the destination is the subscription's
    /// endpoint.
    Push,
}

/// One delivery waiting to be sent (or sent again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundDelivery {
    /// What kind of delivery.
    pub kind: OutboundKind,
    /// Where it goes (for a webhook: its registration's id).
    pub destination: String,
    /// Its id, the same on every attempt (a webhook's `webhook-id`, `msg_…`).
    pub id: String,
    /// The room whose event it tells of, if one's (its writes are that room's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    /// The body, as sent.
    pub body: String,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// When to try next, ms since the Unix epoch.
    pub next_at_ms: u64,
    /// When it was queued, ms since the Unix epoch.
    pub created_ms: u64,
}

impl OutboundDelivery {
    /// The same delivery after a failed attempt at `now_ms`, to be tried again after
    /// `retry` (`None`: given up).
    pub fn failed(&self, now_ms: u64, retry: impl Fn(u32) -> Option<u64>) -> Option<OutboundDelivery> {
        let attempts = self.attempts.saturating_add(1);
        let wait = retry(attempts)?;
        Some(OutboundDelivery { attempts, next_at_ms: now_ms.saturating_add(wait), ..self.clone() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_failed_delivery_waits_its_schedule_then_is_given_up() {
        let delivery = OutboundDelivery {
            kind: OutboundKind::Webhook,
            destination: "wh_1".into(),
            id: "msg_1".into(),
            room: None,
            body: "{}".into(),
            attempts: 0,
            next_at_ms: 0,
            created_ms: 0,
        };
        let retry = |failed| crate::webhooks::retry_after_ms(failed, 0);
        let again = delivery.failed(1_000, retry).unwrap();
        assert_eq!((again.attempts, again.next_at_ms, again.id.as_str()), (1, 6_000, "msg_1"));
        let last = OutboundDelivery { attempts: 7, ..delivery };
        assert_eq!(last.failed(1_000, retry), None);
    }
}

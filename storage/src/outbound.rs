//! Webhook registrations (`webhook`, replicated like every account write) and this
//! node's outbound deliveries (`outbound`, never replicated: the node that decided an
//! event queues its deliveries in the same batch as the event, and sends them).

use fjall::PersistMode;
use palaver_core::admin::AuditEntry;
use palaver_core::outbound::OutboundDelivery;
use palaver_core::records::Write;
use palaver_core::webhooks::WebhookRecord;

use crate::error::StorageError;
use crate::keys;
use crate::store::{Store, decode_json, encode_json};

/// A delivery's key: its destination, then its id.
pub(crate) fn key(delivery: &OutboundDelivery) -> Vec<u8> {
    keys::pair(&delivery.destination, &delivery.id)
}

impl Store {
    /// Every webhook registration, by id.
    pub fn webhooks(&self) -> Result<Vec<WebhookRecord>, StorageError> {
        let e = self.engine()?;
        e.webhook.iter().map(|guard| decode_json("webhook", &guard.value()?)).collect()
    }

    /// A webhook registration by its id.
    pub fn webhook(&self, webhook_id: &str) -> Result<Option<WebhookRecord>, StorageError> {
        let e = self.engine()?;
        e.webhook.get(webhook_id)?.map(|v| decode_json("webhook", &v)).transpose()
    }

    /// Stores a registration (new or changed) with its audit entry (an operator's or an
    /// admin's change), in one write.
    pub fn put_webhook(
        &self,
        hook: WebhookRecord,
        audit: Option<(String, AuditEntry)>,
    ) -> Result<(), StorageError> {
        let mut writes = vec![Write::PutWebhook(hook)];
        writes.extend(audit.map(|(id, entry)| Write::AppendAudit { id, entry }));
        self.account_write(&writes)
    }

    /// Removes a registration with its audit entry, in one write. Its queued deliveries
    /// are dropped by the sender when it finds no registration.
    pub fn remove_webhook(
        &self,
        webhook_id: &str,
        audit: Option<(String, AuditEntry)>,
    ) -> Result<(), StorageError> {
        let mut writes = vec![Write::RemoveWebhook { webhook_id: webhook_id.to_owned() }];
        writes.extend(audit.map(|(id, entry)| Write::AppendAudit { id, entry }));
        self.account_write(&writes)
    }

    /// Every delivery queued on this node, by destination.
    pub fn outbound_pending(&self) -> Result<Vec<OutboundDelivery>, StorageError> {
        let e = self.engine()?;
        e.outbound.iter().map(|guard| decode_json("outbound", &guard.value()?)).collect()
    }

    /// Stores a delivery again after a failed attempt (its attempts and next time).
    /// Not synced: a crash that loses it only sends the delivery sooner.
    pub fn outbound_retry(&self, delivery: &OutboundDelivery) -> Result<(), StorageError> {
        let e = self.engine()?;
        let mut batch = self.side_batch(&e)?.durability(Some(PersistMode::Buffer));
        batch.insert(&e.outbound, key(delivery), encode_json(delivery)?);
        batch.commit().map_err(|e| self.poison_on(e))
    }

    /// Replaces a delivery by the ones it expands into (a push fan-out by its pushes), in
    /// one synced batch: a crash leaves either the fan-out or every push.
    pub fn outbound_expand(
        &self,
        expanded: &OutboundDelivery,
        into: &[OutboundDelivery],
    ) -> Result<(), StorageError> {
        let e = self.engine()?;
        let mut batch = self.side_batch(&e)?;
        for delivery in into {
            batch.insert(&e.outbound, key(delivery), encode_json(delivery)?);
        }
        batch.remove(&e.outbound, key(expanded));
        batch.commit().map_err(|e| self.poison_on(e))
    }

    /// Whether any user has a push subscription (so a message may be pushed at all).
    pub fn any_push_subscription(&self) -> Result<bool, StorageError> {
        let e = self.engine()?;
        Ok(e.user_push_subscription.iter().next().is_some())
    }

    /// Removes a delivery (sent, given up, or dropped). Not synced: a crash that loses
    /// the removal sends the delivery again, with the same id (at least once).
    pub fn outbound_done(&self, delivery: &OutboundDelivery) -> Result<(), StorageError> {
        let e = self.engine()?;
        let mut batch = self.side_batch(&e)?.durability(Some(PersistMode::Buffer));
        batch.remove(&e.outbound, key(delivery));
        batch.commit().map_err(|e| self.poison_on(e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use palaver_core::outbound::OutboundKind;

    use super::*;
    use crate::Durability;

    fn delivery(id: &str) -> OutboundDelivery {
        OutboundDelivery {
            kind: OutboundKind::Webhook,
            destination: "wh_1".into(),
            id: id.into(),
            room: None,
            body: "{}".into(),
            attempts: 0,
            next_at_ms: 0,
            created_ms: 0,
        }
    }

    #[test]
    fn queued_deliveries_survive_a_reopen_until_done() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), Durability::Fsync).unwrap();
            store
                .apply(&[Write::PutOutbound(delivery("msg_a")), Write::PutOutbound(delivery("msg_b"))])
                .unwrap();
            let mut again = delivery("msg_a");
            again.attempts = 1;
            store.outbound_retry(&again).unwrap();
            store.outbound_done(&delivery("msg_b")).unwrap();
            store.flush_memtables().unwrap();
        }
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        let pending = store.outbound_pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].id.as_str(), pending[0].attempts), ("msg_a", 1));
    }
}

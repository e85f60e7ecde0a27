//! What every part of the server knows of webhooks: the registrations (read from the
//! replicated `webhook` records, at most [`RELOAD_MS`] old, at once after a change made
//! here), the deliveries an event's writes call for, and each endpoint's failure state on
//! this node. Shards call [`Webhooks::deliveries_for`] with the writes they decided; the
//! sender thread reads the queue and reports back here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use palaver_core::outbound::{OutboundDelivery, OutboundKind};
use palaver_core::records::Write;
use palaver_core::webhooks::{Event, EventKind, WebhookRecord, events_of};
use palaver_storage::Store;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::metrics::Metrics;

/// How long a node goes on with registrations another node changed.
pub const RELOAD_MS: u64 = 1_000;
/// The largest body a delivery may have; an event whose body is larger is not queued
/// (and counted as dropped).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// An endpoint's recent deliveries, as this node saw them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// What went wrong last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_ms: Option<u64>,
    /// When the last delivery was accepted, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<u64>,
    /// Deliveries dropped because the endpoint's queue was full.
    pub dropped: u64,
    /// Deliveries given up after their last retry.
    pub given_up: u64,
    /// Deliveries waiting on this node now.
    pub pending: usize,
}

struct Loaded {
    hooks: Arc<Vec<WebhookRecord>>,
}

/// Webhook registrations and delivery state, shared by shards, routes and the sender.
pub struct Webhooks {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    loaded: Mutex<Loaded>,
    /// When the registrations are next read again, ms since the Unix epoch (0: now).
    reload_at: AtomicU64,
    /// Whether any registration is enabled (so an event with none to go to costs nothing).
    any_enabled: AtomicBool,
    /// Whether any enabled registration hears `notification` events.
    any_notification: AtomicBool,
    health: Mutex<HashMap<String, Health>>,
    wake: flume::Sender<()>,
    woken: flume::Receiver<()>,
}

impl Webhooks {
    /// Webhooks over `store`.
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Webhooks {
        let (wake, woken) = flume::bounded(1);
        Webhooks {
            store,
            metrics,
            loaded: Mutex::new(Loaded { hooks: Arc::new(Vec::new()) }),
            reload_at: AtomicU64::new(0),
            any_enabled: AtomicBool::new(false),
            any_notification: AtomicBool::new(false),
            health: Mutex::new(HashMap::new()),
            wake,
            woken,
        }
    }

    /// The registrations now (read again if they are [`RELOAD_MS`] old).
    pub fn registrations(&self, now_ms: u64) -> Arc<Vec<WebhookRecord>> {
        if now_ms >= self.reload_at.load(Ordering::Acquire) {
            match self.store.webhooks() {
                Ok(hooks) => {
                    self.any_enabled.store(hooks.iter().any(|h| h.enabled), Ordering::Release);
                    let notification =
                        hooks.iter().any(|h| h.enabled && h.events.contains(&EventKind::Notification));
                    self.any_notification.store(notification, Ordering::Release);
                    if let Ok(mut loaded) = self.loaded.lock() {
                        loaded.hooks = Arc::new(hooks);
                    }
                    self.reload_at.store(now_ms + RELOAD_MS, Ordering::Release);
                }
                Err(e) => tracing::warn!("could not read webhook registrations: {e}"),
            }
        }
        self.loaded.lock().map(|loaded| loaded.hooks.clone()).unwrap_or_default()
    }

    /// A registration changed here: read them again at the next event.
    pub fn changed(&self) {
        self.reload_at.store(0, Ordering::Release);
    }

    /// The outbound deliveries `writes` call for at `now_ms` (to be written with them).
    pub fn deliveries_for(&self, writes: &[Write], now_ms: u64) -> Vec<Write> {
        if now_ms < self.reload_at.load(Ordering::Acquire) && !self.any_enabled.load(Ordering::Acquire) {
            return Vec::new();
        }
        let hooks = self.registrations(now_ms);
        if !hooks.iter().any(|h| h.enabled) {
            return Vec::new();
        }
        let mut deliveries = Vec::new();
        for event in events_of(writes, now_ms) {
            let wanted: Vec<&WebhookRecord> = hooks.iter().filter(|h| h.wants(&event)).collect();
            if wanted.is_empty() {
                continue;
            }
            let body = body_of(&event);
            if body.len() > MAX_BODY_BYTES {
                Metrics::inc(&self.metrics.webhook_dropped);
                continue;
            }
            let id = delivery_id(&event);
            for hook in wanted {
                Metrics::inc(&self.metrics.webhook_queued);
                deliveries.push(Write::PutOutbound(OutboundDelivery {
                    kind: OutboundKind::Webhook,
                    destination: hook.webhook_id.clone(),
                    id: id.clone(),
                    room: writes.iter().find_map(Write::room).cloned(),
                    body: body.clone(),
                    attempts: 0,
                    next_at_ms: now_ms,
                    created_ms: now_ms,
                }));
            }
        }
        deliveries
    }

    /// Whether some enabled registration hears `notification` events at `now_ms` (read
    /// like [`Webhooks::deliveries_for`]: no store read while the registrations are fresh).
    pub fn hears_notifications(&self, now_ms: u64) -> bool {
        if now_ms < self.reload_at.load(Ordering::Acquire) {
            return self.any_notification.load(Ordering::Acquire);
        }
        self.registrations(now_ms);
        self.any_notification.load(Ordering::Acquire)
    }

    /// Tells the sender there is something new to send.
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// What the sender waits on.
    pub(crate) fn woken(&self) -> flume::Receiver<()> {
        self.woken.clone()
    }

    /// An endpoint's failure state on this node.
    pub fn health(&self, webhook_id: &str) -> Health {
        self.health.lock().ok().and_then(|h| h.get(webhook_id).cloned()).unwrap_or_default()
    }

    /// Changes an endpoint's failure state.
    pub(crate) fn update_health(&self, webhook_id: &str, change: impl FnOnce(&mut Health)) {
        if let Ok(mut health) = self.health.lock() {
            change(health.entry(webhook_id.to_owned()).or_default());
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }
}

/// A delivery's body: `{"type", "timestamp" (ms since the Unix epoch), "data"}`.
pub fn body_of(event: &Event<'_>) -> String {
    let mut data = json!({ "room": event.room });
    if let Some(message) = event.message {
        data["message"] = json!(message);
    }
    if let Some(user) = event.user {
        data["user"] = json!(user);
    }
    if let Some(report) = event.report {
        data["report"] = json!(report);
    }
    json!({ "type": event.kind.name(), "timestamp": event.at, "data": data }).to_string()
}

/// An event's delivery id (`webhook-id`): `msg_` and 32 hex digits of the SHA-256 of what
/// makes the event itself, so every attempt, on every endpoint, carries the same id.
pub fn delivery_id(event: &Event<'_>) -> String {
    let digest = Sha256::digest(event.identity.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

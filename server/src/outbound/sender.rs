//! The sender: one thread of its own (a current-thread tokio runtime), never a shard,
//! that sends this node's outbound queue: webhook deliveries, push fan-outs (expanded
//! here into pushes) and pushes. It reads the queue when woken (a group commit
//! queued something) and every [`SCAN_INTERVAL`], and keeps each endpoint's deliveries in
//! an in-memory queue of at most `--webhook-queue`, oldest first, one request in flight
//! per endpoint: a slow or dead endpoint holds up only its own queue, and a full queue
//! drops the newest deliveries (counted, and shown in the endpoint's failure state). A
//! delivery leaves the durable queue once its endpoint answered 2xx, or after its last
//! retry; a crash before that sends it again after the restart, with the same
//! `webhook-id`. Pushes are queued per push-service endpoint the same way.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palaver_core::outbound::{OutboundDelivery, OutboundKind};
use palaver_core::webhooks::{parse_target, retry_after_ms};

use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::webhooks::Webhooks;
use crate::webhooks::http_post::{self, Post};
use crate::webhooks::signing::{self, Secret};

/// How often the queue is read when nothing wakes the sender.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The least time between two reads of the queue. Wakes come with group commits, which
/// can be hundreds a second under load, and each read decodes every queued delivery: one
/// read every few milliseconds takes in whatever those commits queued.
pub const SCAN_GAP: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Queues {
    /// Each endpoint's deliveries, oldest first.
    by_endpoint: HashMap<String, VecDeque<OutboundDelivery>>,
    /// Every delivery held in a queue (`destination`, `id`).
    held: HashSet<(String, String)>,
    /// Endpoints whose queue a task is sending.
    sending: HashSet<String>,
    /// Destinations that are webhook registrations (whose failure state is kept).
    webhooks: HashSet<String>,
}

/// Starts the sender thread.
pub fn start(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("palaver-outbound".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!("outbound sender: no runtime: {e}");
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, run(shared));
    })
}

async fn run(shared: Arc<Shared>) {
    let tls = Rc::new(http_post::tls_connector());
    let queues = Rc::new(RefCell::new(Queues::default()));
    let woken = shared.webhooks.woken();
    loop {
        // A subscription replicated from another node turns pushing on here (one made
        // here does at once). Never off while running: a read racing a new subscription
        // could lose it, and with none left a fan-out only finds nobody to push.
        if shared.vapid.is_some()
            && !shared.push_subscriptions_exist.load(Ordering::Acquire)
            && shared.store.any_push_subscription().unwrap_or(true)
        {
            shared.push_subscriptions_exist.store(true, Ordering::Release);
        }
        scan(&shared, &queues, &tls);
        tokio::time::sleep(SCAN_GAP).await;
        tokio::select! {
            _ = woken.recv_async() => {}
            () = tokio::time::sleep(SCAN_INTERVAL) => {}
        }
    }
}

/// Takes what the durable queue holds that no endpoint queue does yet.
fn scan(shared: &Arc<Shared>, queues: &Rc<RefCell<Queues>>, tls: &Rc<tokio_rustls::TlsConnector>) {
    let webhooks = &shared.webhooks;
    let mut pending = match webhooks.store().outbound_pending() {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!("webhook sender: could not read the outbound queue: {e}");
            return;
        }
    };
    // Oldest first (the queue is keyed by id, not by time).
    pending.sort_by_key(|delivery| delivery.created_ms);
    let mut to_start = Vec::new();
    {
        let mut q = queues.borrow_mut();
        for delivery in pending {
            let key = (delivery.destination.clone(), delivery.id.clone());
            if q.held.contains(&key) {
                continue;
            }
            let queue = q.by_endpoint.entry(delivery.destination.clone()).or_default();
            // Fan-outs are one queue of cheap local work, never dropped.
            if queue.len() >= shared.config.webhooks.queue && delivery.kind != OutboundKind::PushFanOut {
                match delivery.kind {
                    OutboundKind::Webhook => {
                        Metrics::inc(&shared.metrics.webhook_dropped);
                        webhooks.update_health(&delivery.destination, |h| {
                            h.dropped += 1;
                            h.last_error = Some("queue full: delivery dropped".into());
                            h.last_error_ms = Some(now_ms());
                        });
                    }
                    OutboundKind::Push | OutboundKind::PushFanOut => {
                        Metrics::inc(&shared.metrics.push_dropped)
                    }
                }
                if let Err(e) = shared.store.outbound_done(&delivery) {
                    tracing::warn!("outbound sender: could not drop a delivery: {e}");
                }
                continue;
            }
            let webhook = delivery.kind == OutboundKind::Webhook;
            queue.push_back(delivery);
            q.held.insert(key.clone());
            if webhook {
                q.webhooks.insert(key.0.clone());
            }
            if q.sending.insert(key.0.clone()) {
                to_start.push(key.0);
            }
        }
        for (endpoint, queue) in &q.by_endpoint {
            if q.webhooks.contains(endpoint) {
                let pending = queue.len();
                webhooks.update_health(endpoint, |h| h.pending = pending);
            }
        }
    }
    for endpoint in to_start {
        tokio::task::spawn_local(send_queue(endpoint, shared.clone(), queues.clone(), tls.clone()));
    }
}

/// Sends one endpoint's queue until it is empty.
async fn send_queue(
    endpoint: String,
    shared: Arc<Shared>,
    queues: Rc<RefCell<Queues>>,
    tls: Rc<tokio_rustls::TlsConnector>,
) {
    let webhooks = &shared.webhooks;
    let metrics = &shared.metrics;
    loop {
        let next = queues.borrow().by_endpoint.get(&endpoint).and_then(|q| q.front().cloned());
        let Some(delivery) = next else {
            let mut q = queues.borrow_mut();
            q.sending.remove(&endpoint);
            q.by_endpoint.remove(&endpoint);
            q.webhooks.remove(&endpoint);
            return;
        };
        let wait = delivery.next_at_ms.saturating_sub(now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let webhook = delivery.kind == OutboundKind::Webhook;
        let outcome = match delivery.kind {
            OutboundKind::Webhook => attempt_webhook(&shared, &tls, &delivery).await,
            OutboundKind::PushFanOut => expand_fan_out(&shared, &delivery),
            OutboundKind::Push => super::push::attempt(&shared, &tls, &delivery).await,
        };
        let now = now_ms();
        let settled = match outcome {
            Attempt::Delivered => {
                match delivery.kind {
                    OutboundKind::Webhook => Metrics::inc(&metrics.webhook_delivered),
                    OutboundKind::Push => Metrics::inc(&metrics.push_delivered),
                    OutboundKind::PushFanOut => {}
                }
                if webhook {
                    webhooks.update_health(&endpoint, |h| {
                        h.consecutive_failures = 0;
                        h.last_success_ms = Some(now);
                    });
                }
                true
            }
            Attempt::Gone => true,
            Attempt::Dropped(error) => {
                Metrics::inc(&metrics.push_dropped);
                tracing::debug!(endpoint = %endpoint, id = %delivery.id, "push dropped: {error}");
                true
            }
            Attempt::Failed(error) => {
                let jitter = rand::random::<u32>() % 1_000;
                let again = delivery.failed(now, |failed| retry_after_ms(failed, jitter));
                retry_or_give_up(&shared, &queues, &endpoint, &delivery, error, again)
            }
            Attempt::RetryIn { error, ms } => {
                let again = delivery.failed(now, |_| Some(ms));
                retry_or_give_up(&shared, &queues, &endpoint, &delivery, error, again)
            }
        };
        if settled {
            if let Err(e) = shared.store.outbound_done(&delivery) {
                tracing::warn!("outbound sender: could not remove a delivery: {e}");
            }
            let mut q = queues.borrow_mut();
            let webhook_queue = q.webhooks.contains(&endpoint);
            if let Some(queue) = q.by_endpoint.get_mut(&endpoint) {
                queue.pop_front();
                let pending = queue.len();
                if webhook_queue {
                    webhooks.update_health(&endpoint, |h| h.pending = pending);
                }
            }
            q.held.remove(&(delivery.destination.clone(), delivery.id.clone()));
        }
    }
}

/// After a failed attempt: stores the delivery `again` (its next try) and keeps it at the
/// front of its queue, or, when its schedule is over (`None`), gives it up. Returns
/// whether the delivery is settled.
fn retry_or_give_up(
    shared: &Shared,
    queues: &RefCell<Queues>,
    endpoint: &str,
    delivery: &OutboundDelivery,
    error: String,
    again: Option<OutboundDelivery>,
) -> bool {
    let metrics = &shared.metrics;
    let now = now_ms();
    let given_up = again.is_none();
    tracing::debug!(endpoint = %endpoint, id = %delivery.id, "delivery failed: {error}");
    match delivery.kind {
        OutboundKind::Webhook => {
            Metrics::inc(&metrics.webhook_failed_attempts);
            shared.webhooks.update_health(endpoint, |h| {
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                h.last_error = Some(error);
                h.last_error_ms = Some(now);
                h.given_up += u64::from(given_up);
            });
        }
        OutboundKind::Push | OutboundKind::PushFanOut => Metrics::inc(&metrics.push_failed_attempts),
    }
    match again {
        Some(again) => {
            if let Err(e) = shared.store.outbound_retry(&again) {
                tracing::warn!("outbound sender: could not record a retry: {e}");
            }
            if let Some(front) = queues.borrow_mut().by_endpoint.get_mut(endpoint).and_then(|q| q.front_mut())
            {
                *front = again;
            }
            false
        }
        None => {
            match delivery.kind {
                OutboundKind::Webhook => Metrics::inc(&metrics.webhook_given_up),
                OutboundKind::Push | OutboundKind::PushFanOut => Metrics::inc(&metrics.push_dropped),
            }
            true
        }
    }
}

/// What one attempt at a delivery came to.
pub enum Attempt {
    /// Sent (a 2xx answer), or a fan-out expanded.
    Delivered,
    /// Its destination is gone (a removed or disabled registration, an expired push
    /// subscription): the delivery goes too.
    Gone,
    /// Failed; tried again on the webhook schedule. In words.
    Failed(String),
    /// Failed; tried again after `ms` (the push service's answer, read by the push rules).
    RetryIn {
        /// What went wrong.
        error: String,
        /// The wait.
        ms: u64,
    },
    /// Will never succeed as sent: dropped. In words.
    Dropped(String),
}

/// Replaces a fan-out by its pushes, in one write (a failure to read or write tries it
/// again later).
fn expand_fan_out(shared: &Shared, delivery: &OutboundDelivery) -> Attempt {
    let pushes = match super::push::expand(shared, delivery, now_ms()) {
        Ok(pushes) => pushes,
        Err(error) => return Attempt::Failed(error),
    };
    Metrics::inc(&shared.metrics.push_fan_outs);
    match shared.store.outbound_expand(delivery, &pushes) {
        Ok(()) => {
            if !pushes.is_empty() {
                shared.webhooks.wake();
            }
            Attempt::Delivered
        }
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

async fn attempt_webhook(
    shared: &Shared,
    tls: &tokio_rustls::TlsConnector,
    delivery: &OutboundDelivery,
) -> Attempt {
    let webhooks: &Webhooks = &shared.webhooks;
    let config = &shared.config.webhooks;
    let now = now_ms();
    let hooks = webhooks.registrations(now);
    let Some(hook) = hooks.iter().find(|h| h.webhook_id == delivery.destination) else {
        return Attempt::Gone;
    };
    if !hook.enabled {
        return Attempt::Gone;
    }
    let target = match parse_target(&hook.url, hook.registrant, &config.allow) {
        Ok(target) => target,
        Err(refused) => return Attempt::Failed(refused.to_string()),
    };
    let secrets: Vec<Secret> = hook.signing_secrets(now).filter_map(|s| Secret::parse(s).ok()).collect();
    let headers = signing::headers(&delivery.id, now / 1_000, delivery.body.as_bytes(), &secrets);
    let post = Post {
        target: &target,
        registrant: hook.registrant,
        allowed: &config.allow,
        headers: &headers,
        content_type: "application/json",
        body: delivery.body.as_bytes(),
        timeout: config.timeout,
    };
    match http_post::post(&post, tls).await {
        Ok(answer) if (200..300).contains(&answer.status) => Attempt::Delivered,
        Ok(answer) => Attempt::Failed(format!("answered HTTP {}", answer.status)),
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

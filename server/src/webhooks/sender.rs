//! The sender: one thread of its own (a current-thread tokio runtime), never a shard,
//! that sends this node's outbound queue. It reads the queue when woken (a group commit
//! queued something) and every [`SCAN_INTERVAL`], and keeps each endpoint's deliveries in
//! an in-memory queue of at most `--webhook-queue`, oldest first, one request in flight
//! per endpoint: a slow or dead endpoint holds up only its own queue, and a full queue
//! drops the newest deliveries (counted, and shown in the endpoint's failure state). A
//! delivery leaves the durable queue once its endpoint answered 2xx, or after its last
//! retry; a crash before that sends it again after the restart, with the same
//! `webhook-id`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use palaver_core::outbound::OutboundDelivery;
use palaver_core::webhooks::{parse_target, retry_after_ms};

use super::http_post::{self, Post};
use super::registrations::Webhooks;
use super::signing::{self, Secret};
use crate::clock::now_ms;
use crate::config::WebhookConfig;
use crate::metrics::Metrics;

/// How often the queue is read when nothing wakes the sender.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queues {
    /// Each endpoint's deliveries, oldest first.
    by_endpoint: HashMap<String, VecDeque<OutboundDelivery>>,
    /// Every delivery held in a queue (`destination`, `id`).
    held: HashSet<(String, String)>,
    /// Endpoints whose queue a task is sending.
    sending: HashSet<String>,
}

/// Starts the sender thread.
pub fn start(webhooks: Arc<Webhooks>, config: WebhookConfig) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("palaver-webhooks".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!("webhook sender: no runtime: {e}");
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, run(webhooks, Rc::new(config)));
    })
}

async fn run(webhooks: Arc<Webhooks>, config: Rc<WebhookConfig>) {
    let tls = Rc::new(http_post::tls_connector());
    let queues = Rc::new(RefCell::new(Queues::default()));
    let woken = webhooks.woken();
    loop {
        scan(&webhooks, &config, &queues, &tls);
        tokio::select! {
            _ = woken.recv_async() => {}
            () = tokio::time::sleep(SCAN_INTERVAL) => {}
        }
    }
}

/// Takes what the durable queue holds that no endpoint queue does yet.
fn scan(
    webhooks: &Arc<Webhooks>,
    config: &Rc<WebhookConfig>,
    queues: &Rc<RefCell<Queues>>,
    tls: &Rc<tokio_rustls::TlsConnector>,
) {
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
            if queue.len() >= config.queue {
                Metrics::inc(&webhooks.metrics().webhook_dropped);
                webhooks.update_health(&delivery.destination, |h| {
                    h.dropped += 1;
                    h.last_error = Some("queue full: delivery dropped".into());
                    h.last_error_ms = Some(now_ms());
                });
                if let Err(e) = webhooks.store().outbound_done(&delivery) {
                    tracing::warn!("webhook sender: could not drop a delivery: {e}");
                }
                continue;
            }
            queue.push_back(delivery);
            q.held.insert(key.clone());
            if q.sending.insert(key.0.clone()) {
                to_start.push(key.0);
            }
        }
        for (endpoint, queue) in &q.by_endpoint {
            let pending = queue.len();
            webhooks.update_health(endpoint, |h| h.pending = pending);
        }
    }
    for endpoint in to_start {
        tokio::task::spawn_local(send_queue(
            endpoint,
            webhooks.clone(),
            config.clone(),
            queues.clone(),
            tls.clone(),
        ));
    }
}

/// Sends one endpoint's queue until it is empty.
async fn send_queue(
    endpoint: String,
    webhooks: Arc<Webhooks>,
    config: Rc<WebhookConfig>,
    queues: Rc<RefCell<Queues>>,
    tls: Rc<tokio_rustls::TlsConnector>,
) {
    loop {
        let next = queues.borrow().by_endpoint.get(&endpoint).and_then(|q| q.front().cloned());
        let Some(delivery) = next else {
            let mut q = queues.borrow_mut();
            q.sending.remove(&endpoint);
            q.by_endpoint.remove(&endpoint);
            return;
        };
        let wait = delivery.next_at_ms.saturating_sub(now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let outcome = attempt(&webhooks, &config, &tls, &delivery).await;
        let now = now_ms();
        let metrics = webhooks.metrics();
        let settled = match outcome {
            Attempt::Delivered => {
                Metrics::inc(&metrics.webhook_delivered);
                webhooks.update_health(&endpoint, |h| {
                    h.consecutive_failures = 0;
                    h.last_success_ms = Some(now);
                });
                true
            }
            Attempt::Gone => true,
            Attempt::Failed(error) => {
                Metrics::inc(&metrics.webhook_failed_attempts);
                tracing::debug!(webhook = %endpoint, id = %delivery.id, "delivery failed: {error}");
                let jitter = rand::random::<u32>() % 1_000;
                let again = delivery.failed(now, |failed| retry_after_ms(failed, jitter));
                let given_up = again.is_none();
                webhooks.update_health(&endpoint, |h| {
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                    h.last_error = Some(error);
                    h.last_error_ms = Some(now);
                    h.given_up += u64::from(given_up);
                });
                match again {
                    Some(again) => {
                        if let Err(e) = webhooks.store().outbound_retry(&again) {
                            tracing::warn!("webhook sender: could not record a retry: {e}");
                        }
                        if let Some(front) =
                            queues.borrow_mut().by_endpoint.get_mut(&endpoint).and_then(|q| q.front_mut())
                        {
                            *front = again;
                        }
                        false
                    }
                    None => {
                        Metrics::inc(&metrics.webhook_given_up);
                        true
                    }
                }
            }
        };
        if settled {
            if let Err(e) = webhooks.store().outbound_done(&delivery) {
                tracing::warn!("webhook sender: could not remove a delivery: {e}");
            }
            let mut q = queues.borrow_mut();
            if let Some(queue) = q.by_endpoint.get_mut(&endpoint) {
                queue.pop_front();
                let pending = queue.len();
                webhooks.update_health(&endpoint, |h| h.pending = pending);
            }
            q.held.remove(&(delivery.destination.clone(), delivery.id.clone()));
        }
    }
}

enum Attempt {
    /// The endpoint answered 2xx.
    Delivered,
    /// The registration is gone or disabled: the delivery goes too.
    Gone,
    /// Anything else, in words.
    Failed(String),
}

async fn attempt(
    webhooks: &Webhooks,
    config: &WebhookConfig,
    tls: &tokio_rustls::TlsConnector,
    delivery: &OutboundDelivery,
) -> Attempt {
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
        body: delivery.body.as_bytes(),
        timeout: config.timeout,
    };
    match http_post::post(&post, tls).await {
        Ok(status) if (200..300).contains(&status) => Attempt::Delivered,
        Ok(status) => Attempt::Failed(format!("answered HTTP {status}")),
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

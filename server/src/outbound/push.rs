//! Web Push in the sender thread: a fan-out entry (a stored message whose pushes are
//! still to be chosen) is expanded here, off the shard cores, into one durable push per
//! subscription (and one `notification` webhook delivery per recipient for each
//! operator's webhook that hears them), chosen by `palaver_core::push::push_recipients` from what the store and
//! the presence table say now; each push is then encrypted, signed and posted to its push
//! service, whose answer `palaver_core::push::outcome` reads.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palaver_core::outbound::OutboundDelivery;
use palaver_core::push::{
    FanOut, PushJob, PushMessage, PushOutcome, PushedMessage, TTL_SECS, notification_delivery, outcome,
    payload, push_delivery, push_recipients,
};
use palaver_core::webhooks::{Event, EventKind, Registrant, WebhookRecord, parse_target};
use palaver_protocol::{MessageKind, RoomKind, UserId};

use super::Attempt;
use crate::clock::now_ms;
use crate::mesh::{Origin, PeopleOp, ShardMsg};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::web_push::encryption::SubscriptionKeys;
use crate::web_push::request::{PushParts, push_request};
use crate::webhooks::http_post::{self, Post};

/// The connection id of nobody: a request the sender makes of a user's home shard, whose
/// answer no one waits for (connection ids count up from zero and never reach it).
const NO_CONNECTION: u64 = u64::MAX;

/// The pushes `fan_out` calls for at `now`: one per subscription of each member the
/// message is pushed to. `Err` when the store could not be read (tried again later).
pub fn expand(
    shared: &Shared,
    fan_out: &OutboundDelivery,
    now: u64,
) -> Result<Vec<OutboundDelivery>, String> {
    let Ok(FanOut { room, seq }) = serde_json::from_str::<FanOut>(&fan_out.body) else {
        return Ok(Vec::new());
    };
    let store = &shared.store;
    let err = |e: palaver_storage::StorageError| e.to_string();
    let Some(message) = store.message(&room, seq).map_err(err)? else { return Ok(Vec::new()) };
    let Some(record) = store.room(&room).map_err(err)? else { return Ok(Vec::new()) };
    if record.deleted || !palaver_core::push::pushable(&message) {
        return Ok(Vec::new());
    }
    let members = store.members(&room).map_err(err)?;
    let direct = record.kind == RoomKind::Direct;
    let text = (message.kind != MessageKind::Encrypted).then_some(message.text.as_str());
    let pushed = PushedMessage {
        room: &room,
        direct,
        sender: &message.sender,
        mentions: &message.mentions,
        mention_all: message.mention_all,
        text,
    };
    // A read that fails makes the whole fan-out fail (and be tried again), rather than
    // push someone whose settings or blocks could not be read.
    let failed = std::cell::RefCell::new(None);
    let recipients = push_recipients(
        members.iter().map(|(user, _)| user),
        &pushed,
        |user| {
            store.notifications(user).unwrap_or_else(|e| {
                failed.replace(Some(e.to_string()));
                palaver_protocol::NotificationSettings::default()
            })
        },
        |user| shared.presence.connected_anywhere(user),
        |user| {
            store.is_blocked(user, &message.sender).unwrap_or_else(|e| {
                failed.replace(Some(e.to_string()));
                true
            })
        },
        now,
    );
    if let Some(error) = failed.into_inner() {
        return Err(error);
    }
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let sender_name = if message.sender.is_system() {
        palaver_core::push::SYSTEM_SENDER_NAME.to_owned()
    } else {
        match store.profile(&message.sender).map_err(err)?.display_name {
            Some(name) => name,
            None => store.user(&message.sender).map_err(err)?.map(|u| u.username).unwrap_or_default(),
        }
    };
    let facts = PushMessage {
        room: &room,
        room_name: (!direct).then_some(record.name.as_str()),
        seq,
        sender: &message.sender,
        sender_name: &sender_name,
        text,
    };
    // Operators' webhooks that hear `notification` events from this room.
    let hooks = shared.webhooks.registrations(now);
    let sinks: Vec<&WebhookRecord> = hooks
        .iter()
        .filter(|hook| {
            let event = Event {
                kind: EventKind::Notification,
                room: &room,
                at: now,
                message: None,
                user: None,
                report: None,
                identity: String::new(),
            };
            hook.registrant == Registrant::Operator && hook.wants(&event)
        })
        .collect();
    let mut pushes = Vec::new();
    for (user, verdict) in recipients {
        let subscriptions =
            if shared.vapid.is_some() { store.push_subscriptions(&user).map_err(err)? } else { Vec::new() };
        if subscriptions.is_empty() && sinks.is_empty() {
            continue;
        }
        let body = payload(&facts, verdict.mention, shared.config.push.previews);
        for hook in &sinks {
            Metrics::inc(&shared.metrics.webhook_queued);
            pushes.push(notification_delivery(&hook.webhook_id, &facts, &user, &body, now));
        }
        for subscription in &subscriptions {
            shared.metrics.push_queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            pushes.push(push_delivery(&facts, direct, &user, subscription, verdict, body.clone(), now));
        }
    }
    Ok(pushes)
}

/// Sends one push and says what its push service's answer means.
pub async fn attempt(
    shared: &Shared,
    tls: &tokio_rustls::TlsConnector,
    delivery: &OutboundDelivery,
) -> Attempt {
    let Some(vapid) = &shared.vapid else { return Attempt::Gone };
    let Ok(job) = serde_json::from_str::<PushJob>(&delivery.body) else { return Attempt::Gone };
    let keys = match (URL_SAFE_NO_PAD.decode(&job.p256dh), URL_SAFE_NO_PAD.decode(&job.auth)) {
        (Ok(p256dh), Ok(auth)) => SubscriptionKeys::new(&p256dh, &auth),
        _ => Err(crate::web_push::WebPushError::BadPublicKey),
    };
    // A key the browser could never have made: the subscription is useless.
    let Ok(keys) = keys else { return expired(shared, &job.user, &delivery.destination) };
    let allowed = &shared.config.push.allow_networks;
    let Ok(target) = parse_target(&delivery.destination, Registrant::Operator, allowed) else {
        return expired(shared, &job.user, &delivery.destination);
    };
    let parts = PushParts {
        payload: job.payload.as_bytes(),
        topic: &job.topic,
        urgency: &job.urgency,
        ttl_secs: TTL_SECS,
    };
    let now = now_ms();
    let request = match push_request(
        &delivery.destination,
        &keys,
        parts,
        vapid,
        &shared.config.push.subject,
        now / 1_000,
    ) {
        Ok(request) => request,
        Err(e) => return Attempt::Dropped(e.to_string()),
    };
    // The client writes the body's type and length itself.
    let headers: Vec<(&'static str, String)> = request
        .headers
        .into_iter()
        .filter(|(name, _)| *name != "content-type" && *name != "content-length")
        .collect();
    let post = Post {
        target: &target,
        // Reached only at addresses a restricted registrant may reach, or the operator's
        // push networks: the check is made again at connect time.
        registrant: Registrant::Restricted,
        allowed,
        headers: &headers,
        content_type: "application/octet-stream",
        body: &request.body,
        timeout: shared.config.webhooks.timeout,
    };
    let jitter = rand::random::<u32>() % 1_000;
    match http_post::post(&post, tls).await {
        Ok(http_post::Answer { status, retry_after_secs }) => {
            match outcome(status, delivery.attempts + 1, retry_after_secs, jitter) {
                PushOutcome::Delivered => Attempt::Delivered,
                PushOutcome::Expired => expired(shared, &job.user, &delivery.destination),
                PushOutcome::RetryAfter(ms) => {
                    Attempt::RetryIn { error: format!("answered HTTP {status}"), ms }
                }
                PushOutcome::Dropped => Attempt::Dropped(format!("answered HTTP {status}")),
            }
        }
        Err(e) => match palaver_core::webhooks::retry_after_ms(delivery.attempts + 1, jitter) {
            Some(ms) => Attempt::RetryIn { error: e.to_string(), ms },
            None => Attempt::Dropped(e.to_string()),
        },
    }
}

/// The push service says the subscription is gone: the user's home shard removes it, as
/// `push.unsubscribe` would (a replicated write; no one waits for the answer).
fn expired(shared: &Shared, user: &UserId, endpoint: &str) -> Attempt {
    Metrics::inc(&shared.metrics.push_expired);
    let home = shared.mesh.home(user);
    let origin = Origin { shard: home, conn: NO_CONNECTION, re: 0, user: user.clone() };
    shared.mesh.send(
        home,
        ShardMsg::People { origin, action: PeopleOp::PushUnsubscribe { endpoint: endpoint.to_owned() } },
    );
    Attempt::Gone
}

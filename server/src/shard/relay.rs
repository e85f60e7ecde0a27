//! The hub role in a cluster. On every node, `shard_for(room)` is the room's hub: on
//! the owning node it holds the room (`owner.rs`); on the others it forwards commands
//! to the owner and relays what the owner's node sends back (answers, events, and the
//! room's messages as this node's replica applies them) to the local shards that have
//! subscribers, so each node receives and encodes every event once however many of its
//! sockets want it.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use palaver_protocol::{ErrorCode, Message, RoomId};

use super::owner::{answer, error};
use super::{Shard, State};
use crate::cluster::Route;
use crate::mesh::{Delivery, Origin, RemoteRoomEvent, Reply, RoomAction, ShardMsg};
use rustc_hash::FxHashMap;

/// How long a command waits for its room to settle on a node before it is refused
/// `unavailable` (a handover takes about two seconds).
const PARK_LIMIT: Duration = Duration::from_secs(5);

/// What the hub role keeps on a shard (owned by its inbox task).
#[derive(Debug, Default)]
pub struct Relay {
    /// Rooms owned by another node, with the local shards subscribed to them.
    relayed: FxHashMap<RoomId, BTreeSet<usize>>,
    /// Commands waiting for their room's ownership to settle.
    parked: Vec<Parked>,
}

/// A command waiting for its room's ownership to settle.
#[derive(Debug)]
pub struct Parked {
    since: Instant,
    origin: Origin,
    action: RoomAction,
}

/// Decides where a command goes in a cluster. Returns it back when this shard serves it
/// itself (always, outside a cluster).
pub fn route(
    shard: &Rc<Shard>,
    state: &mut State,
    origin: Origin,
    action: RoomAction,
) -> Option<(Origin, RoomAction)> {
    route_since(shard, state, Instant::now(), origin, action)
}

fn route_since(
    shard: &Rc<Shard>,
    state: &mut State,
    since: Instant,
    origin: Origin,
    action: RoomAction,
) -> Option<(Origin, RoomAction)> {
    let Some(cluster) = &shard.shared.cluster else { return Some((origin, action)) };
    let room = action.room().clone();
    let forwarded_here = Some(origin.shard) == shard.mesh().gateway();
    match cluster.route(&room) {
        Route::Local => return Some((origin, action)),
        Route::Remote(node) if !forwarded_here => {
            let_go(shard, state, &room);
            cluster.forward(node, shard.id, origin, action);
        }
        // A room this node is catching up on, or a command forwarded here by a node
        // whose view differs from ours: it waits for the next ownership change here.
        Route::Remote(_) | Route::Moving => state.relay.parked.push(Parked { since, origin, action }),
    }
    None
}

fn refuse(shard: &Rc<Shard>, parked: Parked) {
    let Parked { origin, action, .. } = parked;
    let mut reply = Reply::plain(
        &origin,
        error(ErrorCode::Unavailable, "the room is moving between cluster nodes; try again"),
    );
    if action.is_join() {
        reply.was_join = Some(action.room().clone());
    }
    answer(shard, origin.shard, reply);
}

/// Tries the parked commands again (ownership changed or settled).
fn retry_parked(shard: &Rc<Shard>, state: &mut State) {
    let parked = std::mem::take(&mut state.relay.parked);
    for p in parked {
        if p.since.elapsed() > PARK_LIMIT {
            refuse(shard, p);
        } else if let Some((origin, action)) = route_since(shard, state, p.since, p.origin, p.action) {
            super::owner::on_routed_command(shard, state, origin, action);
        }
    }
}

/// Refuses parked commands that waited too long (from the shard's room tick).
pub fn expire_parked(shard: &Rc<Shard>, relay: &mut Relay) {
    if relay.parked.iter().any(|p| p.since.elapsed() > PARK_LIMIT) {
        let parked = std::mem::take(&mut relay.parked);
        let (old, young): (Vec<_>, Vec<_>) = parked.into_iter().partition(|p| p.since.elapsed() > PARK_LIMIT);
        relay.parked = young;
        for p in old {
            refuse(shard, p);
        }
    }
}

/// Drops the in-memory room (if loaded and idle) now that another node owns it; its
/// local subscribers stay, now fed by the relay. A room with writes in flight is
/// marked for reload instead, and let go of at its next command.
fn let_go(shard: &Shard, state: &mut State, room: &RoomId) {
    let rooms = &mut state.rooms.rooms;
    let Some(held) = rooms.get_mut(room) else { return };
    if !held.owner.is_settled() {
        held.owner.poison();
        return;
    }
    let Some(held) = rooms.remove(room) else { return };
    let gateway = shard.mesh().gateway();
    let subscribers = state.relay.relayed.entry(room.clone()).or_default();
    subscribers.extend(held.owner.sites().iter().copied().filter(|s| Some(*s) != gateway));
}

/// Ownership changed: let go of every room this node no longer owns (or owns anew,
/// which means its memory is from an earlier term and must be reloaded).
pub fn on_cluster_view(shard: &Rc<Shard>, state: &mut State) {
    let Some(cluster) = &shard.shared.cluster else { return };
    let rooms: Vec<RoomId> = state.rooms.rooms.keys().cloned().collect();
    for room in rooms {
        if cluster.route(&room) != Route::Local {
            let_go(shard, state, &room);
        }
    }
    retry_parked(shard, state);
}

/// The sites a room's owner takes over when this shard loads or creates it: the local
/// shards the relay was feeding, and in a cluster the gateway (other nodes).
pub fn adopted_sites(shard: &Shard, relay: &mut Relay, room: &RoomId) -> Vec<usize> {
    let mut sites: Vec<usize> = relay.relayed.remove(room).into_iter().flatten().collect();
    sites.extend(shard.mesh().gateway());
    sites
}

/// The owning node answered a forwarded command. A join subscribes the origin shard
/// here, from no further than this replica has applied (the rest arrives as it applies
/// it), so a subscription never catches up past what local storage holds.
pub fn on_forwarded_reply(shard: &Rc<Shard>, relay: &mut Relay, origin_shard: usize, mut reply: Reply) {
    if let Some(subscribe) = &mut reply.subscribe {
        let applied = shard.shared.store.last_seq(&subscribe.room).unwrap_or(0);
        subscribe.last_seq = subscribe.last_seq.min(applied);
        subscribe.cursor = subscribe.cursor.min(subscribe.last_seq);
        relay.relayed.entry(subscribe.room.clone()).or_default().insert(origin_shard);
    }
    answer(shard, origin_shard, reply);
}

/// This node's replica applied a message another node stored.
pub fn on_replicated(shard: &Rc<Shard>, state: &mut State, message: Message) {
    let room = message.room.clone();
    if state.rooms.rooms.contains_key(&room) {
        let local = shard.shared.cluster.as_ref().is_some_and(|c| c.route(&room) == Route::Local);
        if local {
            // Two nodes wrote this room: this node's memory of it is wrong now.
            if let Some(cluster) = &shard.shared.cluster {
                cluster.ownership_conflicts.fetch_add(1, Ordering::Relaxed);
            }
            tracing::error!(room = %room, seq = message.seq, "another node stored a message in a room owned here");
            if let Some(held) = state.rooms.rooms.get_mut(&room) {
                held.owner.poison();
            }
            return;
        }
        let_go(shard, state, &room);
    }
    let subscribers = relay_targets(shard, state, &room);
    if subscribers.is_empty() {
        return;
    }
    let delivery = Arc::new(Delivery::of(message));
    for s in subscribers {
        shard.mesh().send(s, ShardMsg::Deliver(delivery.clone()));
    }
}

/// The local shards subscribed to a room another node owns: those the relay feeds, and
/// those of a room this shard still holds until its last writes settle.
fn relay_targets(shard: &Shard, state: &State, room: &RoomId) -> Vec<usize> {
    let mut targets: BTreeSet<usize> = state.relay.relayed.get(room).into_iter().flatten().copied().collect();
    if let Some(held) = state.rooms.rooms.get(room) {
        let gateway = shard.mesh().gateway();
        targets.extend(held.owner.sites().iter().filter(|s| Some(**s) != gateway));
    }
    targets.into_iter().collect()
}

/// An event from a room's owner on another node.
pub fn on_room_event(shard: &Rc<Shard>, state: &mut State, event: RemoteRoomEvent) {
    let room = event.room().clone();
    let local = shard.shared.cluster.as_ref().is_some_and(|c| c.route(&room) == Route::Local);
    if local {
        return; // A stale owner's event: this node owns the room now.
    }
    let subscribers = relay_targets(shard, state, &room);
    if matches!(event, RemoteRoomEvent::RoomGone { .. }) {
        state.relay.relayed.remove(&room);
    }
    for s in subscribers {
        let msg = match &event {
            RemoteRoomEvent::Ephemeral(e) => ShardMsg::Ephemeral(e.clone()),
            RemoteRoomEvent::MemberGone { room, user } => {
                ShardMsg::MemberGone { room: room.clone(), user: user.clone() }
            }
            RemoteRoomEvent::RoomGone { room } => ShardMsg::RoomGone { room: room.clone() },
        };
        shard.mesh().send(s, msg);
    }
}

/// A local shard no longer has subscribers to a relayed room.
pub fn on_unsubscribe(relay: &mut Relay, room: &RoomId, from: usize) {
    if let Some(subscribers) = relay.relayed.get_mut(room) {
        subscribers.remove(&from);
        if subscribers.is_empty() {
            relay.relayed.remove(room);
        }
    }
}

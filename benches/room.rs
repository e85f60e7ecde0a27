//! The rules' hot path for a message: the room state machine accepting a send and
//! marking it durable, and the room's owner (what the shard drives) doing the same
//! through `RoomOwner::handle` and `on_committed`: lookups, the writes it decides, the
//! answer and the delivery it hands back.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use palaver_benches::room;
use palaver_core::memory::MemoryStore;
use palaver_core::owner::{Effects, NewRoom, Outgoing, OwnerConfig, RoomOp, RoomOwner};
use palaver_core::route::RoomRequest;
use palaver_core::{Draft, Room, RoomLimits};
use palaver_protocol::{ClientMsgId, MessageKind, RoomKind, UserId};

fn room_apply(c: &mut Criterion) {
    let owner = UserId::parse("u_owner").unwrap_or_else(|_| unreachable!());
    let mut state =
        Room::create(room(), "bench".into(), RoomKind::Public, owner.clone(), RoomLimits::default())
            .unwrap_or_else(|_| unreachable!());
    let cids: Vec<ClientMsgId> =
        (0..4096).map(|i| ClientMsgId::parse(&format!("c{i}")).unwrap_or_else(|_| unreachable!())).collect();
    let mut n = 0usize;
    c.bench_function("room/send+committed", |b| {
        b.iter(|| {
            n += 1;
            let draft = Draft {
                cid: cids[n % cids.len()].clone(),
                kind: MessageKind::Text,
                text: "a typical short chat message".into(),
                client_ts: None,
                reply_to: None,
                file: None,
                encryption: None,
                mention_all: None,
                forward: None,
                mentions: Vec::new(),
                also_to_room: false,
                thread: None,
            };
            let outcome = state.send(n as u64, &owner, draft, |_| None);
            state.committed(state.last_seq());
            black_box(outcome)
        })
    });
}

/// A send handled by the owner and settled as durable. The store stays empty (the owner's
/// writes are not applied), so the cost measured is the owner's, not a growing map's;
/// each send has a new cid (made outside the measurement).
fn owner_send(c: &mut Criterion) {
    let sender = UserId::parse("u_owner").unwrap_or_else(|_| unreachable!());
    let mut store = MemoryStore::new();
    store.add_user(&sender, "owner");
    let mut fx = Effects::default();
    let request = RoomRequest { name: "bench".into(), kind: RoomKind::Public, topic: None, settings: None };
    let config = OwnerConfig { room: RoomLimits::default(), max_rooms_per_user: 10 };
    let new = NewRoom { id: room(), request };
    let mut owner =
        RoomOwner::create(0, 0u64, &sender, new, config, &store, &mut fx).unwrap_or_else(|| unreachable!());
    for commit in std::mem::take(&mut fx.commits) {
        store.apply(&commit.writes);
        owner.on_committed(commit.settle, Ok(()), &store, &mut fx);
    }
    let mut n = 0u64;
    c.bench_function("owner/send+on_committed", |b| {
        b.iter_batched(
            || {
                n += 1;
                let cid = ClientMsgId::parse(&format!("c{n}")).unwrap_or_else(|_| unreachable!());
                let op = RoomOp::Send(Box::new(Outgoing {
                    cid,
                    kind: MessageKind::Text,
                    text: "a typical short chat message".into(),
                    client_ts: None,
                    reply_to: None,
                    file: None,
                    encryption: None,
                    forward: None,
                    also_to_room: false,
                    thread: None,
                }));
                (n, op)
            },
            |(now, op)| {
                owner.handle(now, now, &sender, op, &store, &mut fx);
                // One commit per send: taking it off the end keeps the order.
                while let Some(commit) = fx.commits.pop() {
                    owner.on_committed(commit.settle, Ok(()), &store, &mut fx);
                }
                black_box((fx.answers.pop(), fx.deliveries.pop()));
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, room_apply, owner_send);
criterion_main!(benches);

//! The room state machine's hot path: accept a send, then mark it durable.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palaver_benches::room;
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
                mentions: Vec::new(),
            };
            let outcome = state.send(n as u64, &owner, draft, |_| None);
            state.committed(state.last_seq());
            black_box(outcome)
        })
    });
}

criterion_group!(benches, room_apply);
criterion_main!(benches);

//! Fan-out of one stored message to 1,000 local subscribers through the server's own
//! delivery path: the `Delivery` the owner's driver makes, its frames encoded once per
//! wire form by the first socket that needs it, then the shard's fan-out queueing the
//! same buffer on every live subscriber's outbound queue (`Outbound::push`), half of
//! them WebSocket JSON and half WebSocket rkyv. Each socket's writer then takes what was
//! queued. This is the per-recipient user-space cost the server pays on top of the
//! kernel write.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palaver_benches::{message, room};
use palaver_server::benching::Fanout;

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let subscribers = 1_000;
    group.throughput(Throughput::Elements(subscribers as u64));
    let mut sockets = Fanout::new(&room(), 0, subscribers, 1 << 20);
    let mut seq = 0;
    group.bench_function("deliver one message to 1000 sockets, then their writers take it", |b| {
        b.iter(|| {
            seq += 1;
            let queued = sockets.deliver(message(seq));
            assert_eq!(queued, subscribers as u64, "every socket is live");
            black_box(sockets.queued_bytes());
            sockets.drain();
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);

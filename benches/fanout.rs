//! Fan-out of one event to 1,000 local subscribers: encode once per codec into a complete
//! WebSocket frame, then give every subscriber's queue a reference to the same buffer.
//! This is the per-recipient user-space cost the server pays on top of the kernel write.

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palaver_benches::event;
use palaver_protocol::Codec;
use palaver_server::ws::{OpCode, encode_frame};

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let subscribers = 1_000;
    group.throughput(Throughput::Elements(subscribers as u64));
    let mut queues: Vec<VecDeque<Bytes>> = (0..subscribers).map(|_| VecDeque::with_capacity(64)).collect();
    let mut seq = 0;
    group.bench_function("encode once, share with 1000 sockets", |b| {
        b.iter(|| {
            seq += 1;
            let frame = event(seq);
            let json = encode_frame(OpCode::Text, &Codec::Json.encode_server(&frame).unwrap_or_default());
            let rkyv = encode_frame(OpCode::Binary, &Codec::Rkyv.encode_server(&frame).unwrap_or_default());
            for (i, queue) in queues.iter_mut().enumerate() {
                queue.push_back(if i % 2 == 0 { json.clone() } else { rkyv.clone() });
                if queue.len() == 64 {
                    queue.clear();
                }
            }
            black_box(&queues);
        })
    });
    group.bench_function("encode per socket (what encode-once avoids)", |b| {
        b.iter(|| {
            seq += 1;
            let frame = event(seq);
            for queue in &mut queues {
                let bytes = Codec::Json.encode_server(&frame).unwrap_or_default();
                queue.push_back(encode_frame(OpCode::Text, &bytes));
                if queue.len() == 64 {
                    queue.clear();
                }
            }
            black_box(&queues);
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);

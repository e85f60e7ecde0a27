//! Encode and decode (validated access + deserialize) of the hottest frames, both codecs.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palaver_benches::{event, send_request};
use palaver_protocol::Codec;

fn codecs(c: &mut Criterion) {
    let event = event(42);
    let request = send_request(7);
    for codec in Codec::ALL {
        let name = codec.subprotocol();
        let encoded_event = codec.encode_server(&event).unwrap_or_default();
        let encoded_request = codec.encode_client(&request).unwrap_or_default();
        c.bench_function(&format!("{name}/encode message event"), |b| {
            b.iter(|| codec.encode_server(black_box(&event)))
        });
        c.bench_function(&format!("{name}/decode message event"), |b| {
            b.iter(|| codec.decode_server(black_box(&encoded_event)))
        });
        c.bench_function(&format!("{name}/decode+validate send request"), |b| {
            b.iter(|| codec.decode_client(black_box(&encoded_request)))
        });
    }
}

criterion_group!(benches, codecs);
criterion_main!(benches);

//! QUIC vs WebSocket vs WebSocket over TLS (`--http-tls`, a second server) on loopback,
//! through the SDK against the real `palaver` binary:
//! - `ping`: one request's round trip;
//! - `send→message`: a `send` until the sender's own `message` event arrives (the store
//!   commit, `--durability buffered` so the disk is not what is measured, and fan-out);
//! - `100 pipelined sends`: throughput of requests in flight together.
//!
//! The server binary must be built in the same profile first:
//! `cargo build -p palaver-server && cargo bench -p palaver-benches --bench transport --profile dev`
//! (or both with `--release`). Both transports carry rkyv frames, so the difference is
//! the transport alone.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palaver_e2e::Server;
use palaver_protocol::{Codec, RoomKind};
use palaver_sdk::{Client, ClientOptions, Credentials, QuicOptions, QuicTrust, TlsTrust};

fn transports(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let flags = [
        "--shards",
        "1",
        "--durability",
        "buffered",
        "--ops-per-sec",
        "1000000",
        "--ops-burst",
        "1000000",
        "--max-in-flight",
        "100000",
    ];
    let server = Server::start(&flags);
    let tls_server = Server::start(&[&flags[..], &["--http-tls"]].concat());
    let url = server.url("");
    let quic =
        QuicOptions::new(server.quic_addr.to_string(), QuicTrust::CertificatePem(server.dev_cert_pem()));
    let wss =
        ClientOptions::with_codec(Codec::Rkyv).trusting(TlsTrust::CertificatePem(tls_server.dev_cert_pem()));
    let cases = [
        ("websocket-rkyv", url.clone(), ClientOptions::with_codec(Codec::Rkyv)),
        ("wss-rkyv", tls_server.url(""), wss),
        ("quic-rkyv", url.clone(), ClientOptions::with_quic(quic)),
    ];
    let mut group = c.benchmark_group("transport");
    group.measurement_time(Duration::from_secs(5));
    for (i, (name, url, options)) in cases.into_iter().enumerate() {
        let (client, room, mut events) = runtime.block_on(async {
            let client = Client::connect_with(
                &url,
                Credentials::register(format!("user{i}"), "password-123"),
                options,
            )
            .await
            .expect("connect");
            let events = client.events();
            let room =
                client.create_room(&format!("bench-{name}"), RoomKind::Public).await.expect("room").room_id;
            client.join(&room).await.expect("join");
            (client, room, events)
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/ping"), |b| {
            b.iter(|| runtime.block_on(client.ping()).expect("ping"));
        });
        group.bench_function(format!("{name}/send→message"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    client.send(&room, "bench").await.expect("send");
                    events.next_message().await.expect("message");
                })
            });
        });
        group.throughput(Throughput::Elements(100));
        group.bench_function(format!("{name}/100 pipelined sends"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let sends = (0..100).map(|_| client.send(&room, "bench"));
                    for sent in futures_util::future::join_all(sends).await {
                        sent.expect("send");
                    }
                    for _ in 0..100 {
                        events.next_message().await.expect("message");
                    }
                })
            });
        });
        client.close();
    }
    group.finish();
    drop(server);
    drop(tls_server);
}

criterion_group!(benches, transports);
criterion_main!(benches);

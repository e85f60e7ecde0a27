//! How many heap allocations the message path makes, counted by a global allocator that
//! counts on the measuring thread only: decoding a client's `send` frame, a room owner
//! deciding the `send` and settling it as durable, and the shard's fan-out of a stored
//! message to ten sockets (five JSON, five rkyv) whose writers then take it. The bounds
//! are today's counts: a change that adds an allocation per message fails here, and the
//! bound moves only on purpose.
#![allow(
    unsafe_code,
    reason = "a global allocator is unsafe to implement; it only counts and defers to System"
)]
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use palaver_benches::{message, room, send_request};
use palaver_core::RoomLimits;
use palaver_core::memory::MemoryStore;
use palaver_core::owner::{Effects, NewRoom, Outgoing, OwnerConfig, RoomOp, RoomOwner};
use palaver_core::route::RoomRequest;
use palaver_protocol::{ClientMsgId, Codec, MessageKind, RoomKind, UserId};
use palaver_server::benching::Fanout;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread's locals may be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; counting touches only
// thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (and reallocations) `work` makes on this thread, per round, over `rounds`.
fn allocations_per_round(rounds: u64, mut work: impl FnMut(u64)) -> f64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    for round in 0..rounds {
        work(round);
    }
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get) as f64 / rounds as f64
}

/// Most allocations one `send` may make in the owner: deciding it, settling it durable,
/// and its answer and delivery handed on.
const OWNER_SEND_BOUND: f64 = 10.5;
/// Most allocations the fan-out of one message to ten sockets may make, writers included.
const FANOUT_TEN_BOUND: f64 = 4.0;
/// Most allocations decoding a client's `send` frame may make, per codec: its room, cid
/// and text, which the request owns from then on.
const DECODE_SEND_BOUND: [(Codec, f64); 2] = [(Codec::Json, 3.0), (Codec::Rkyv, 3.0)];

#[test]
fn decoding_a_send_allocates_within_its_bound() {
    for (codec, bound) in DECODE_SEND_BOUND {
        // The frames are made outside the count: a socket's reader brings them.
        let frames: Vec<Vec<u8>> =
            (0..1_000u64).map(|n| codec.encode_client(&send_request(n)).unwrap()).collect();
        let per_frame = allocations_per_round(1_000, |n| {
            let frame = codec.decode_client(&frames[n as usize]).unwrap();
            drop(frame);
        });
        eprintln!("decoding a send ({codec:?}): {per_frame:.2} allocations");
        assert!(per_frame <= bound, "{codec:?}: {per_frame:.2} allocations per send (bound {bound})");
    }
}

#[test]
fn a_send_in_the_owner_allocates_within_its_bound() {
    let sender = UserId::parse("u_owner").unwrap();
    let mut store = MemoryStore::new();
    store.add_user(&sender, "owner");
    let mut fx = Effects::default();
    let request = RoomRequest { name: "counted".into(), kind: RoomKind::Public, topic: None, settings: None };
    let config = OwnerConfig { room: RoomLimits::default(), max_rooms_per_user: 10 };
    let mut owner =
        RoomOwner::create(0, 0u64, &sender, NewRoom { id: room(), request }, config, &store, &mut fx)
            .unwrap_or_else(|| unreachable!());
    for commit in std::mem::take(&mut fx.commits) {
        store.apply(&commit.writes);
        owner.on_committed(commit.settle, Ok(()), &store, &mut fx);
    }
    // The cids and ops are made outside the count: a client's frame brings them.
    let ops: Vec<RoomOp> = (0..2_000u64)
        .map(|n| {
            RoomOp::Send(Box::new(Outgoing {
                cid: ClientMsgId::parse(&format!("c{n}")).unwrap(),
                kind: MessageKind::Text,
                text: "a typical short chat message".into(),
                client_ts: None,
                reply_to: None,
                file: None,
                encryption: None,
                forward: None,
                also_to_room: false,
                thread: None,
            }))
        })
        .collect();
    let mut ops = ops.into_iter();
    let mut send = |now: u64| {
        owner.handle(now + 1, now + 1, &sender, ops.next().unwrap(), &store, &mut fx);
        while let Some(commit) = fx.commits.pop() {
            owner.on_committed(commit.settle, Ok(()), &store, &mut fx);
        }
        // What the driver takes away (and frees) after each send.
        drop((fx.answers.pop(), fx.deliveries.pop()));
    };
    // Warm: the owner's maps and buffers reach their working size first.
    for now in 0..1_000 {
        send(now);
    }
    let per_send = allocations_per_round(1_000, |round| send(1_000 + round));
    eprintln!("owner: {per_send:.2} allocations per send");
    assert!(per_send <= OWNER_SEND_BOUND, "{per_send:.2} allocations per send (bound {OWNER_SEND_BOUND})");
}

#[test]
fn fanning_out_to_ten_sockets_allocates_within_its_bound() {
    let mut sockets = Fanout::new(&room(), 0, 10, 1 << 20);
    let messages: Vec<_> = (1..=2_000u64).map(message).collect();
    let mut messages = messages.into_iter();
    let mut deliver = |_| {
        assert_eq!(sockets.deliver(messages.next().unwrap()), 10);
        sockets.drain();
    };
    for round in 0..1_000 {
        deliver(round);
    }
    let per_message = allocations_per_round(1_000, deliver);
    eprintln!("fan-out to 10 sockets: {per_message:.2} allocations per message");
    assert!(
        per_message <= FANOUT_TEN_BOUND,
        "{per_message:.2} allocations per message (bound {FANOUT_TEN_BOUND})"
    );
}

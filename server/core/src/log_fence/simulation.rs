//! A deterministic simulation of a cluster writing one room through the shared log:
//! three nodes, each with its own replica (a [`MemoryStore`]), its own [`LogFence`] and,
//! while it believes it owns the room, its own [`RoomOwner`]; one in-memory broker with
//! the conditional append. The schedule is drawn from a seed: clients send (and retry
//! with the same cid) on whichever node believes it owns the room, several nodes may
//! believe so at once (a stalled node that resumes with its old view), group commits
//! run late (a node that keeps writing from a stale lease), nodes freeze past their
//! leases' vouch, acknowledgements are lost,
//! replicas lag, nodes restart. Each node's commit runs the same steps as the server's
//! group committer: the [`SeqFence`], then the fence's plan, claim check, claim and
//! conditional append, then local apply; its replica applies everyone else's records in
//! log order.
//!
//! After every schedule, once every replica has read the whole log, for the room:
//!
//! - every replica holds the same messages, at gapless seqs from 1;
//! - every acknowledged send is stored at its acknowledged seq, on every replica;
//! - no sender's cid is stored twice;
//! - a send refused as surely not applied is not stored unless a retry was acknowledged.
//!
//! Without the fence (every append unconditional) the same schedules lose acknowledged
//! messages: a test checks that the simulation notices. A failing seed is named in the
//! failure; it joins `REGRESSIONS`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "a simulation: failing loudly is the point")]

use std::collections::{BTreeSet, HashMap, VecDeque};

use palaver_protocol::{ClientMsgId, ErrorCode, MessageKind, OkBody, ReplyBody, RoomId, RoomKind, UserId};

use super::{LogFence, Plan, check_claim};
use crate::memory::MemoryStore;
use crate::owner::{
    Commit, Effects, LookupError, NewRoom, Outgoing, OwnerConfig, RoomOp, RoomOwner, StoredRoom,
};
use crate::records::{SeqFence, Write};
use crate::room::RoomLimits;
use crate::route::RoomRequest;

const NODES: usize = 3;
const USERS: usize = 3;
const CIDS: u64 = 6;
/// How long a node fenced out of the room stays away from it.
const BACKOFF_MS: u64 = 1_000;
/// How long each vouch holds a node's leases.
const VOUCH_MS: u64 = 1_000;

/// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn user(i: usize) -> UserId {
    UserId::parse(&format!("u_sim{i}")).unwrap()
}

fn room_id() -> RoomId {
    RoomId::parse("r_sim").unwrap()
}

fn cid(n: u64) -> ClientMsgId {
    ClientMsgId::parse(&format!("c{n}")).unwrap()
}

/// Who asked: the user and the cid of a send.
#[derive(Debug, Clone, PartialEq)]
struct Asker {
    user: usize,
    cid: u64,
}

/// One record of the log (every record here is on the room's subject).
#[derive(Debug, Clone)]
struct Record {
    node: usize,
    incarnation: u64,
    writes: Vec<Write>,
}

/// The broker: the stream of records, positions from 1.
#[derive(Debug, Default)]
struct Broker {
    log: Vec<Record>,
}

impl Broker {
    /// The position of the room subject's last record (0: none).
    fn last(&self) -> u64 {
        self.log.len() as u64
    }

    /// Appends `record` if the subject's last record is at `expected` (always, when
    /// `expected` is `None`).
    fn append(&mut self, expected: Option<u64>, record: Record) -> Option<u64> {
        if expected.is_some_and(|e| e != self.last()) {
            return None;
        }
        self.log.push(record);
        Some(self.last())
    }
}

/// What the clients were told about each `(user, cid)`.
#[derive(Debug, Default)]
struct Told {
    acked: Option<u64>,
    /// Refused at least once as surely not applied.
    refused: bool,
    /// An attempt's outcome was unknown (it may be in the log).
    unknown: bool,
}

/// How a group commit's outcome reached the node.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Applied,
    /// Surely not in the log.
    Refused,
    /// Maybe in the log (no acknowledgement).
    Unknown,
}

struct Node {
    id: usize,
    incarnation: u64,
    store: MemoryStore,
    /// The log position this replica has applied.
    applied: u64,
    /// This incarnation's records it applied itself when they were acknowledged.
    own_applied: BTreeSet<u64>,
    fence: LogFence,
    /// The node is frozen (it vouches for nothing) until then.
    frozen_until: u64,
    believes_owner: bool,
    owner: Option<RoomOwner<Asker>>,
    fx: Effects<Asker>,
    pending: VecDeque<Commit<Asker>>,
}

impl Node {
    fn new(id: usize) -> Node {
        let mut store = MemoryStore::new();
        for i in 0..USERS {
            store.add_user(&user(i), &format!("sim{i}"));
        }
        Node {
            id,
            incarnation: 1,
            store,
            applied: 0,
            own_applied: BTreeSet::new(),
            fence: LogFence::new(BACKOFF_MS),
            frozen_until: 0,
            believes_owner: false,
            owner: None,
            fx: Effects::default(),
            pending: VecDeque::new(),
        }
    }

    fn stored_room(&self) -> StoredRoom {
        self.store.stored_room(&room_id()).unwrap()
    }

    fn load(&mut self, now: u64) {
        self.owner = Some(RoomOwner::load(self.stored_room(), RoomLimits::default(), now).unwrap());
        self.fence.reloaded(&room_id());
    }

    /// The replica applies up to `n` more records of the log, as the replica thread does:
    /// its own current records it applied itself already; anyone else's it applies, and a
    /// room held in memory that someone else wrote is stale (the shard poisons it).
    fn replicate(&mut self, broker: &Broker, n: usize) {
        for _ in 0..n {
            let Some(record) = broker.log.get(self.applied as usize) else { return };
            let position = self.applied + 1;
            let own = record.node == self.id && record.incarnation == self.incarnation;
            if !(own && self.own_applied.remove(&position)) {
                self.store.apply(&record.writes);
                if !own
                    && record.writes.iter().any(|w| matches!(w, Write::AppendMessage(_)))
                    && let Some(owner) = &mut self.owner
                {
                    owner.poison();
                }
            }
            self.applied = position;
        }
    }
}

/// How often a run met what the fence is for.
#[derive(Debug, Default, Clone)]
struct Seen {
    acked: u64,
    claims: u64,
    /// Appends and claims the log refused.
    fenced: u64,
    /// Appends whose acknowledgement was lost.
    unknown: u64,
    /// Writes refused before the log because the node's vouch had lapsed.
    adrift: u64,
}

impl Seen {
    fn add(&mut self, other: &Seen) {
        self.acked += other.acked;
        self.claims += other.claims;
        self.fenced += other.fenced;
        self.unknown += other.unknown;
        self.adrift += other.adrift;
    }
}

struct Sim {
    seen: Seen,
    /// Promises seen broken while running.
    broken: Vec<String>,
    rng: Rng,
    fenced: bool,
    broker: Broker,
    nodes: Vec<Node>,
    now: u64,
    told: HashMap<(usize, u64), Told>,
    /// The sends each node's clients wait on (answers lost at a restart are unknown).
    waiting: Vec<Vec<Asker>>,
    next_incarnation: u64,
}

impl Sim {
    /// The room, created and joined by every user, as the log's first record; every
    /// replica has applied it.
    fn new(seed: u64, fenced: bool) -> Sim {
        let mut scratch = Node::new(0);
        let mut fx = Effects::default();
        let request = RoomRequest { name: "sim".into(), kind: RoomKind::Public, topic: None, settings: None };
        let config = OwnerConfig { room: RoomLimits::default(), max_rooms_per_user: 10 };
        let asker = Asker { user: 0, cid: 0 };
        let mut owner = RoomOwner::create(
            1_000,
            asker.clone(),
            &user(0),
            NewRoom { id: room_id(), request },
            config,
            &scratch.store,
            &mut fx,
        )
        .unwrap();
        let mut writes = Vec::new();
        for i in 0..USERS {
            if i > 0 {
                owner.handle(
                    1_000,
                    asker.clone(),
                    &user(i),
                    RoomOp::Join { since: None },
                    &scratch.store,
                    &mut fx,
                );
            }
            for commit in std::mem::take(&mut fx.commits) {
                scratch.store.apply(&commit.writes);
                writes.extend(commit.writes);
                owner.on_committed(commit.settle, Ok(()), &scratch.store, &mut fx);
            }
        }
        let mut broker = Broker::default();
        broker.append(Some(0), Record { node: NODES, incarnation: 0, writes });
        let mut nodes: Vec<Node> = (0..NODES).map(Node::new).collect();
        for node in &mut nodes {
            node.replicate(&broker, 1);
        }
        nodes[0].believes_owner = true;
        Sim {
            seen: Seen::default(),
            broken: Vec::new(),
            rng: Rng::new(seed),
            fenced,
            broker,
            nodes,
            now: 2_000,
            told: HashMap::new(),
            waiting: vec![Vec::new(); NODES],
            next_incarnation: 2,
        }
    }

    /// A client of `user` sends (or resends) `cid` to node `n`, which handles it if it
    /// believes it owns the room.
    fn send(&mut self, n: usize, u: usize, c: u64) {
        self.now += 3;
        let now = self.now;
        let node = &mut self.nodes[n];
        if !node.believes_owner {
            return;
        }
        if node.owner.as_ref().is_none_or(|o| o.needs_reload()) {
            node.load(now);
        }
        let outgoing = Outgoing {
            cid: cid(c),
            kind: MessageKind::Text,
            text: format!("from {u}: {c}"),
            client_ts: None,
            reply_to: None,
            file: None,
            encryption: None,
            forward: None,
            also_to_room: false,
            thread: None,
        };
        let asker = Asker { user: u, cid: c };
        self.waiting[n].push(asker.clone());
        let Node { owner, store, fx, .. } = node;
        if let Some(owner) = owner {
            owner.handle(now, asker, &user(u), RoomOp::Send(Box::new(outgoing)), store, fx);
        }
        self.drain(n, Outcome::Applied);
    }

    /// Carries out node `n`'s effects: commits queue, answers reach their clients.
    /// `outcome` is how the commit that led to these answers ended.
    fn drain(&mut self, n: usize, outcome: Outcome) {
        let node = &mut self.nodes[n];
        node.pending.extend(node.fx.commits.drain(..));
        for answer in std::mem::take(&mut node.fx.answers) {
            let waiting = &mut self.waiting[n];
            let at = waiting.iter().position(|a| *a == answer.to).expect("an answer to a send");
            waiting.remove(at);
            let told = self.told.entry((answer.to.user, answer.to.cid)).or_default();
            match answer.body {
                ReplyBody::Ok(OkBody::Sent(sent)) => {
                    if told.acked.is_some_and(|acked| acked != sent.seq) {
                        self.broken.push(format!(
                            "c{} of user {} acknowledged at two seqs",
                            answer.to.cid, answer.to.user
                        ));
                    }
                    told.acked = Some(sent.seq);
                    self.seen.acked += 1;
                }
                ReplyBody::Err(e) if e.code == ErrorCode::Unknown => told.unknown = true,
                ReplyBody::Err(e) => {
                    assert_ne!(outcome, Outcome::Unknown, "an unknown outcome answered {e:?}");
                    told.refused = true;
                }
                other => panic!("a send answered {other:?}"),
            }
        }
        node.fx = Effects::default();
        node.fx.commits = Vec::new();
    }

    /// Node `n`'s oldest commit goes through its group committer: the seq fence against
    /// its replica, the log fence's plan (a claim first without a lease), the
    /// conditional append, the local apply. `ack_lost`: the broker takes the append but
    /// its acknowledgement never arrives.
    fn commit(&mut self, n: usize, ack_lost: bool) {
        let Some(commit) = self.nodes[n].pending.pop_front() else { return };
        let outcome = self.log_and_apply(n, &commit.writes, ack_lost);
        if outcome != Outcome::Applied {
            self.nodes[n].fence.spoil(&room_id());
        }
        let node = &mut self.nodes[n];
        let result = match outcome {
            Outcome::Applied => Ok(()),
            Outcome::Refused => Err(LookupError::Unavailable),
            Outcome::Unknown => Err(LookupError::Unknown),
        };
        let Node { owner, store, fx, .. } = node;
        let owner = owner.as_mut().expect("a commit comes from a held room");
        owner.on_committed(commit.settle, result, store, fx);
        let reload = owner.needs_reload();
        self.drain(n, outcome);
        let now = self.now;
        let node = &mut self.nodes[n];
        if reload {
            if node.believes_owner {
                node.load(now);
            } else {
                node.owner = None;
            }
        }
    }

    fn log_and_apply(&mut self, n: usize, writes: &[Write], ack_lost: bool) -> Outcome {
        let now = self.now;
        let room = room_id();
        let node = &mut self.nodes[n];
        let record = Record { node: node.id, incarnation: node.incarnation, writes: writes.to_vec() };
        if SeqFence::new().admit::<()>(writes, |r| Ok(node.store.last_seq(r))).unwrap().is_err() {
            return Outcome::Refused;
        }
        let expected = if self.fenced {
            match node.fence.plan(&room, now) {
                Err(super::Refusal::Adrift { .. }) => {
                    self.seen.adrift += 1;
                    return Outcome::Refused;
                }
                Err(_) => return Outcome::Refused,
                Ok(Plan::Append { expected }) => Some(expected),
                Ok(Plan::Claim) => {
                    let log_last = self.broker.last();
                    let first_seq = writes.iter().find_map(|w| match w {
                        Write::AppendMessage(m) => Some(m.seq),
                        _ => None,
                    });
                    let store = &node.store;
                    let check = check_claim::<()>(&room, log_last, node.applied, first_seq, || {
                        Ok(store.last_seq(&room))
                    });
                    if check.unwrap().is_err() {
                        return Outcome::Refused;
                    }
                    let claim = Record { node: node.id, incarnation: node.incarnation, writes: Vec::new() };
                    match self.broker.append(Some(log_last), claim) {
                        None => {
                            node.fence.refused(&room, now);
                            self.seen.fenced += 1;
                            return Outcome::Refused;
                        }
                        Some(position) => {
                            self.seen.claims += 1;
                            node.fence.claimed(&room, position);
                            node.own_applied.insert(position);
                            Some(position)
                        }
                    }
                }
            }
        } else {
            None
        };
        match self.broker.append(expected, record) {
            None => {
                node.fence.refused(&room, now);
                self.seen.fenced += 1;
                Outcome::Refused
            }
            Some(_) if ack_lost => {
                node.fence.unknown(&room);
                self.seen.unknown += 1;
                Outcome::Unknown
            }
            Some(position) => {
                node.fence.appended(&room, position);
                node.store.apply(writes);
                node.own_applied.insert(position);
                Outcome::Applied
            }
        }
    }

    /// The node's ownership view changes (each node's view is its own: two may believe
    /// they own the room, as a resumed node does until it hears the others again).
    fn believe(&mut self, n: usize, owns: bool) {
        let node = &mut self.nodes[n];
        if node.believes_owner == owns {
            return;
        }
        node.believes_owner = owns;
        node.fence.release_lost(|_| owns);
        match &mut node.owner {
            Some(owner) if !owns && owner.is_settled() => node.owner = None,
            // Let go once its writes settle.
            Some(owner) if !owns => owner.poison(),
            Some(owner) => owner.poison(),
            None => {}
        }
        if node.owner.as_ref().is_some_and(|o| o.needs_reload()) {
            if owns {
                let now = self.now;
                node.load(now);
            } else {
                node.owner = None;
            }
        }
    }

    /// The process restarts: memory, leases and unsent answers are gone; the replica
    /// resumes from its position; a new incarnation.
    fn restart(&mut self, n: usize) {
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        // Their answers are lost; their commits were never logged.
        self.waiting[n].clear();
        let node = &mut self.nodes[n];
        node.incarnation = incarnation;
        node.own_applied.clear();
        node.fence = LogFence::new(BACKOFF_MS);
        node.owner = None;
        node.fx = Effects::default();
        node.pending.clear();
    }

    fn step(&mut self) {
        let n = self.rng.below(NODES as u64) as usize;
        // Nodes in touch vouch for their leases, as the cluster thread's ticks do.
        let now = self.now;
        for node in self.nodes.iter_mut().filter(|node| now >= node.frozen_until) {
            node.fence.vouch(now + VOUCH_MS);
        }

        match self.rng.below(100) {
            0..40 => {
                let u = self.rng.below(USERS as u64) as usize;
                let c = self.rng.below(CIDS);
                self.send(n, u, c);
            }
            40..70 => {
                let lost = self.rng.chance(10);
                self.commit(n, lost);
            }
            70..85 => {
                let count = 1 + self.rng.below(3) as usize;
                self.nodes[n].replicate(&self.broker, count);
            }
            85..95 => {
                // Mostly one owner at a time, sometimes two.
                let owns = self.rng.chance(50);
                self.believe(n, owns);
                if owns && self.rng.chance(40) {
                    for other in (0..NODES).filter(|o| *o != n) {
                        self.believe(other, false);
                    }
                }
            }
            95..97 => self.now += 400,
            97 => {
                // A freeze longer than a vouch: the node's first plan after it drops
                // every lease, so it claims again before it writes.
                self.nodes[n].frozen_until = self.now + 2 * VOUCH_MS;
                self.now += VOUCH_MS + 200;
            }
            _ => self.restart(n),
        }
    }

    /// Every pending commit settles (acknowledged), every replica reads the whole log.
    fn finish(&mut self) {
        for n in 0..NODES {
            while !self.nodes[n].pending.is_empty() {
                self.commit(n, false);
            }
        }
        let broker = &self.broker;
        for node in &mut self.nodes {
            node.replicate(broker, usize::MAX);
        }
    }

    /// What the clients were promised, against what every replica stores: the broken
    /// promises.
    fn check(&self) -> Result<(), String> {
        if let Some(broken) = self.broken.first() {
            return Err(broken.clone());
        }
        let room = room_id();
        let reference = self.nodes[0].store.messages(&room);
        for node in &self.nodes[1..] {
            if node.store.messages(&room) != reference {
                return Err(format!("replicas {} and 0 differ", node.id));
            }
        }
        let seqs: Vec<u64> = reference.iter().map(|m| m.seq).collect();
        if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
            return Err(format!("the log has holes: {seqs:?}"));
        }
        let mut cids = BTreeSet::new();
        for m in reference.iter().filter(|m| m.system.is_none()) {
            if !cids.insert((m.sender.clone(), m.cid.as_str().to_owned())) {
                return Err(format!("{:?} of {} stored twice", m.cid, m.sender));
            }
        }
        for ((u, c), told) in &self.told {
            let stored = reference.iter().find(|m| m.sender == user(*u) && m.cid == cid(*c));
            match (told.acked, stored) {
                (Some(seq), Some(m)) if m.seq != seq => {
                    return Err(format!("c{c} of user {u} acknowledged at {seq}, stored at {}", m.seq));
                }
                (Some(seq), None) => {
                    return Err(format!("c{c} of user {u} acknowledged at {seq} and not stored"));
                }
                (None, Some(m)) if told.refused && !told.unknown => {
                    return Err(format!("c{c} of user {u} refused as not applied, yet stored at {}", m.seq));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn run(seed: u64, fenced: bool, steps: usize) -> (Result<(), String>, Seen) {
    let mut sim = Sim::new(seed, fenced);
    for _ in 0..steps {
        sim.step();
    }
    sim.finish();
    (sim.check(), sim.seen)
}

/// Seeds that once failed, replayed first. 4: a write refused by the log spoiled the
/// owner's later writes (answered refused at once) but one of them, still queued, was
/// claimed and appended after the stay-away, its seq filled by another node meanwhile.
const REGRESSIONS: &[u64] = &[4];

#[test]
fn acknowledged_means_stored_once_at_that_seq_on_every_replica() {
    let mut seen = Seen::default();
    for &seed in REGRESSIONS.iter().chain(&(0..3_000).collect::<Vec<u64>>()) {
        let (verdict, met) = run(seed, true, 300);
        if let Err(broken) = verdict {
            panic!("seed {seed}: {broken}");
        }
        seen.add(&met);
    }
    eprintln!("3,000 schedules: {seen:?}");
    // The schedules reach what the fence is for.
    assert!(
        seen.claims > 1_000 && seen.fenced > 100 && seen.unknown > 100 && seen.acked > 10_000,
        "{seen:?}"
    );
}

#[test]
fn without_the_fence_the_simulation_finds_lost_acknowledged_messages() {
    let failing = (0..200).filter(|seed| run(*seed, false, 300).0.is_err()).count();
    eprintln!("without the fence, {failing} of 200 schedules break the promise");
    assert!(failing > 0, "the simulation cannot tell a fenced log from an unfenced one");
}

//! A deterministic simulation of one room's owner as the shard drives it: clients send
//! (and retry with the same cid), join, leave, edit and delete; group commit settles the
//! owner's writes in order, refuses some, lets later ones through, or the process
//! crashes with part of them durable; answers and deliveries travel to their shards.
//! Thousands of seeded schedules check the promise the owner exists for:
//!
//! - an acknowledged message is stored, exactly once, at the acknowledged seq;
//! - a room's stored seqs have no holes, and no sender's cid is stored twice;
//! - a send refused (not `unknown`) is not stored unless a retry of it was acknowledged;
//! - every site receives a room's messages in seq order, each once, each durable.
//!
//! Storage is the in-memory store behind the same [`SeqFence`] the group committer uses.
#![allow(clippy::unwrap_used, clippy::panic, reason = "a simulation: failing loudly is the point")]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palaver_protocol::{ClientMsgId, MessageKind, OkBody, ReplyBody, RoomId, RoomKind, UserId};
use proptest::prelude::*;

use super::*;
use crate::memory::MemoryStore;
use crate::records::SeqFence;
use crate::route::RoomRequest;

const USERS: usize = 3;
const CIDS: u8 = 6;

#[derive(Debug, Clone, Copy)]
enum Step {
    Send {
        user: usize,
        cid: u8,
    },
    Join {
        user: usize,
    },
    Leave {
        user: usize,
    },
    Edit {
        user: usize,
        seq: u8,
    },
    Delete {
        user: usize,
        seq: u8,
    },
    /// The oldest commit settles: durable (if the fence admits it) or refused.
    Settle {
        durable: bool,
    },
    /// The process dies with the first `keep` commits durable; the room is loaded again.
    Crash {
        keep: u8,
    },
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..USERS, 0..CIDS).prop_map(|(user, cid)| Step::Send { user, cid }),
        1 => (0..USERS).prop_map(|user| Step::Join { user }),
        1 => (1..USERS).prop_map(|user| Step::Leave { user }),
        1 => (0..USERS, 1..12u8).prop_map(|(user, seq)| Step::Edit { user, seq }),
        1 => (0..USERS, 1..12u8).prop_map(|(user, seq)| Step::Delete { user, seq }),
        5 => prop::bool::weighted(0.85).prop_map(|durable| Step::Settle { durable }),
        1 => (0..4u8).prop_map(|keep| Step::Crash { keep }),
        1 => Just(Step::Tick),
    ]
}

fn user(i: usize) -> UserId {
    UserId::parse(&format!("u_sim{i}")).unwrap()
}

fn room_id() -> RoomId {
    RoomId::parse("r_sim").unwrap()
}

/// Who asked: the user, the cid of a send (if it was one), and the shard it came from.
#[derive(Debug, Clone, PartialEq)]
struct Asker {
    user: usize,
    cid: Option<u8>,
    site: usize,
}

/// What the clients were told about each `(user, cid)`.
#[derive(Debug, Default)]
struct Told {
    /// Acknowledged at this seq.
    acked: Option<u64>,
    /// Refused at least once (the attempt was not applied).
    refused: bool,
    /// An attempt's answer was lost in a crash: its outcome is unknown.
    lost: bool,
}

struct Sim {
    store: MemoryStore,
    owner: RoomOwner<Asker>,
    fx: Effects<Asker>,
    /// Commits in submission order.
    pending: Vec<Commit<Asker>>,
    now: u64,
    told: HashMap<(usize, u8), Told>,
    /// Per site: the last seq delivered there.
    delivered: BTreeMap<usize, u64>,
    /// Asks whose answer has not come yet.
    waiting: Vec<Asker>,
}

impl Sim {
    fn new() -> Sim {
        let mut store = MemoryStore::new();
        for i in 0..USERS {
            store.add_user(&user(i), &format!("sim{i}"));
        }
        let mut fx = Effects::default();
        let request = RoomRequest { name: "sim".into(), kind: RoomKind::Public, topic: None, settings: None };
        let config = OwnerConfig { room: RoomLimits::default(), max_rooms_per_user: 10 };
        let asker = Asker { user: 0, cid: None, site: 0 };
        let owner = RoomOwner::create(
            1_000,
            asker,
            &user(0),
            NewRoom { id: room_id(), request },
            config,
            &store,
            &mut fx,
        )
        .unwrap();
        let mut sim = Sim {
            store,
            owner,
            fx,
            pending: Vec::new(),
            now: 1_000,
            told: HashMap::new(),
            delivered: BTreeMap::new(),
            waiting: vec![Asker { user: 0, cid: None, site: 0 }],
        };
        sim.drain();
        sim.settle_all();
        for i in 1..USERS {
            sim.ask(Asker { user: i, cid: None, site: i % 2 }, RoomOp::Join { since: None });
        }
        sim.settle_all();
        sim
    }

    fn ask(&mut self, asker: Asker, op: RoomOp) {
        self.now += 7;
        if matches!(op, RoomOp::Join { .. }) {
            self.owner.add_site(asker.site);
        }
        self.waiting.push(asker.clone());
        let who = user(asker.user);
        self.owner.handle(self.now, asker, &who, op, &self.store, &mut self.fx);
        self.drain();
    }

    /// Carries out the effects: commits queue up, answers and deliveries are checked as
    /// they reach their shards (each shard's inbox is first in, first out).
    fn drain(&mut self) {
        self.pending.append(&mut self.fx.commits);
        for message in self.fx.deliveries.drain(..) {
            let stored = self.store.message(&room_id(), message.seq).unwrap();
            assert_eq!(
                stored.as_ref().map(|m| &m.cid),
                Some(&message.cid),
                "delivered before durable: {message:?}"
            );
            for &site in self.owner.sites() {
                let last = self.delivered.entry(site).or_insert(message.seq - 1);
                assert_eq!(message.seq, *last + 1, "site {site} got seq {} after {last}", message.seq);
                *last = message.seq;
            }
        }
        for answer in self.fx.answers.drain(..) {
            let at = self.waiting.iter().position(|a| *a == answer.to).expect("an answer to an ask");
            self.waiting.remove(at);
            let Some(cid) = answer.to.cid else { continue };
            let told = self.told.entry((answer.to.user, cid)).or_default();
            match answer.body {
                ReplyBody::Ok(OkBody::Sent(sent)) => {
                    if let Some(acked) = told.acked {
                        assert_eq!(acked, sent.seq, "one cid acknowledged at two seqs");
                    }
                    told.acked = Some(sent.seq);
                }
                ReplyBody::Err(_) => told.refused = true,
                other => panic!("a send answered {other:?}"),
            }
        }
        self.fx.announcements.clear();
        self.fx.notices.clear();
        self.fx.endings.clear();
        self.fx.deleted_files.clear();
    }

    /// Settles the oldest commit, as one group commit: durable if the fence admits it.
    fn settle(&mut self, durable: bool) {
        if self.pending.is_empty() {
            return;
        }
        let commit = self.pending.remove(0);
        let mut fence = SeqFence::new();
        let admitted = durable
            && fence.admit::<()>(&commit.writes, |room| Ok(self.store.last_seq(room))).unwrap().is_ok();
        let result = if admitted {
            self.store.apply(&commit.writes);
            Ok(())
        } else {
            Err(LookupError::Unavailable)
        };
        self.owner.on_committed(commit.settle, result, &self.store, &mut self.fx);
        self.drain();
        if self.owner.needs_reload() {
            self.reload();
        }
    }

    fn settle_all(&mut self) {
        while !self.pending.is_empty() {
            self.settle(true);
        }
    }

    /// The driver's reload: the room from storage, keeping its sites.
    fn reload(&mut self) {
        let sites: Vec<usize> = self.owner.sites().iter().copied().collect();
        self.owner =
            RoomOwner::load(self.store.stored_room(&room_id()).unwrap(), RoomLimits::default(), self.now)
                .unwrap();
        self.owner.adopt_sites(sites);
    }

    /// The process dies: the first `keep` commits reached the disk (as far as the fence
    /// lets them), the rest and every unsent answer are gone; the room is loaded again
    /// and the sockets reconnect (their sites start over).
    fn crash(&mut self, keep: usize) {
        let pending = std::mem::take(&mut self.pending);
        let mut fence = SeqFence::new();
        for commit in pending.into_iter().take(keep) {
            if fence.admit::<()>(&commit.writes, |room| Ok(self.store.last_seq(room))).unwrap().is_ok() {
                self.store.apply(&commit.writes);
            }
        }
        for asker in self.waiting.drain(..) {
            if let Some(cid) = asker.cid {
                self.told.entry((asker.user, cid)).or_default().lost = true;
            }
        }
        self.fx = Effects::default();
        self.owner =
            RoomOwner::load(self.store.stored_room(&room_id()).unwrap(), RoomLimits::default(), self.now)
                .unwrap();
        self.delivered.clear();
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Send { user: u, cid } => {
                let outgoing = Outgoing {
                    cid: ClientMsgId::parse(&format!("c{cid}")).unwrap(),
                    kind: MessageKind::Text,
                    text: format!("from {u}: {cid}"),
                    client_ts: None,
                    reply_to: None,
                    file: None,
                    encryption: None,
                    forward: None,
                    also_to_room: false,
                    thread: None,
                };
                self.ask(Asker { user: u, cid: Some(cid), site: u % 2 }, RoomOp::Send(Box::new(outgoing)));
            }
            Step::Join { user } => {
                self.ask(Asker { user, cid: None, site: user % 2 }, RoomOp::Join { since: None })
            }
            Step::Leave { user } => self.ask(Asker { user, cid: None, site: user % 2 }, RoomOp::Leave),
            Step::Edit { user, seq } => {
                let op = RoomOp::Edit { seq: u64::from(seq), text: "edited".into() };
                self.ask(Asker { user, cid: None, site: user % 2 }, op);
            }
            Step::Delete { user, seq } => {
                self.ask(Asker { user, cid: None, site: user % 2 }, RoomOp::Delete { seq: u64::from(seq) })
            }
            Step::Settle { durable } => self.settle(durable),
            Step::Crash { keep } => self.crash(usize::from(keep)),
            Step::Tick => {
                self.now += 500;
                self.owner.tick(self.now, &mut self.fx);
                self.drain();
            }
        }
    }

    /// Once everything has settled: what was promised is what is stored.
    fn check(&mut self) {
        self.settle_all();
        assert!(self.waiting.is_empty(), "asks never answered: {:?}", self.waiting);
        let messages = self.store.messages(&room_id());
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "the log has holes");
        let mut cids = BTreeSet::new();
        for m in messages.iter().filter(|m| m.system.is_none()) {
            assert!(cids.insert((m.sender.clone(), m.cid.as_str().to_owned())), "{:?} stored twice", m.cid);
        }
        for ((u, cid), told) in &self.told {
            let cid_id = ClientMsgId::parse(&format!("c{cid}")).unwrap();
            let stored = messages.iter().find(|m| m.sender == user(*u) && m.cid == cid_id);
            match (told.acked, stored) {
                (Some(seq), Some(m)) => assert_eq!(m.seq, seq, "acknowledged at {seq}, stored at {}", m.seq),
                (Some(seq), None) => panic!("c{cid} of user {u} acknowledged at {seq} and not stored"),
                (None, Some(m)) => {
                    assert!(told.lost || !told.refused, "c{cid} of user {u} refused, yet stored at {}", m.seq)
                }
                (None, None) => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_means_stored_exactly_once_at_that_seq(steps in prop::collection::vec(step(), 1..120)) {
        let mut sim = Sim::new();
        for step in steps {
            sim.run(step);
        }
        sim.check();
    }
}

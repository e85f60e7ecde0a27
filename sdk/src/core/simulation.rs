//! A deterministic simulation: the client core against an in-memory fake server with a
//! virtual clock, dropped connections, lost replies, duplicated and missing events.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use palaver_protocol::{
    AuthOk, ClientFrame, ClientMsgId, Codec, ErrorBody, ErrorCode, Event, HistoryOk, JoinOk, Message, OkBody,
    Op, PresenceInfo, PresenceListOk, PresenceStatus, ReceiptOk, ReplyBody, RoomId, RoomInfo, RoomKind,
    SendOk, ServerFrame, SessionId, UserId,
};
use proptest::prelude::*;

use super::*;

const ME: &str = "u_me";
const OTHER: &str = "u_other";

/// The fake server: rooms with messages, idempotent sends, one connection at a time.
#[derive(Default)]
struct FakeServer {
    rooms: BTreeMap<RoomId, Vec<Message>>,
    cids: BTreeMap<(RoomId, String), u64>,
    /// Whether a socket is open and whether it authenticated.
    conn: Option<bool>,
    subscribed: BTreeSet<RoomId>,
    to_client: VecDeque<ServerFrame>,
    /// New connections are refused.
    down: bool,
    /// Tokens the server accepts.
    good_tokens: BTreeSet<String>,
    /// Requests received and ignored (a stalled server).
    stalled: bool,
    /// Drop live message events with these seqs (as if lost), to exercise gap filling.
    lose_live: BTreeSet<u64>,
    /// Deliver every live message event twice.
    duplicate_live: bool,
    receipts: BTreeMap<RoomId, (u64, u64)>,
    receipt_requests: usize,
    sessions: u64,
    /// Refuse this many authenticated requests with `rate_limited`.
    rate_limit_next: usize,
    /// Store this many sends but answer them `unknown` (a cluster log that stored the
    /// write and did not say so in time).
    unknown_next: usize,
    /// Users who refuse to be followed (`presence.subscribe` naming one is `forbidden`).
    presence_refused: BTreeSet<UserId>,
    /// `presence.subscribe` requests received.
    presence_requests: Vec<Vec<UserId>>,
}

impl FakeServer {
    fn new() -> Self {
        let mut s = FakeServer::default();
        s.good_tokens.insert("access-1".into());
        s.rooms.insert(room(), Vec::new());
        s
    }

    fn store(&mut self, room: &RoomId, sender: &str, cid: &str, text: &str) -> (u64, bool) {
        if let Some(&seq) = self.cids.get(&(room.clone(), cid.to_owned())) {
            return (seq, true);
        }
        let messages = self.rooms.get_mut(room).unwrap();
        let seq = messages.len() as u64 + 1;
        let message = Message {
            room: room.clone(),
            seq,
            ts: 1000 + seq,
            sender: UserId::parse(sender).unwrap(),
            cid: ClientMsgId::parse(cid).unwrap(),
            kind: palaver_protocol::MessageKind::Text,
            text: text.to_owned(),
            client_ts: None,
            reactions: vec![],
            reply_to: None,
            reply: None,
            mentions: vec![],
            file: None,
            edited_at: None,
            deleted: false,
            system: None,
            blocked: false,
            encryption: None,
            mention_all: None,
            forward: None,
            also_to_room: false,
            thread: None,
            thread_summary: None,
        };
        messages.push(message.clone());
        self.cids.insert((room.clone(), cid.to_owned()), seq);
        if self.conn == Some(true) && self.subscribed.contains(room) && !self.lose_live.contains(&seq) {
            self.to_client.push_back(ServerFrame::Event(Event::Message(message.clone())));
            if self.duplicate_live {
                self.to_client.push_back(ServerFrame::Event(Event::Message(message)));
            }
        }
        (seq, false)
    }

    /// Another user sends a message.
    fn other_says(&mut self, text: &str) {
        let n = self.cids.len();
        self.store(&room(), OTHER, &format!("other-{n}"), text);
    }

    fn handle(&mut self, frame: ClientFrame) {
        if self.stalled {
            return;
        }
        let reply = |body| ServerFrame::Reply { re: frame.id, body };
        let ok = |body| reply(ReplyBody::Ok(body));
        if self.conn == Some(false) {
            let body = match frame.op {
                Op::Auth { token } if self.good_tokens.contains(&token) => {
                    self.conn = Some(true);
                    self.sessions += 1;
                    ReplyBody::Ok(OkBody::Authed(AuthOk {
                        user_id: UserId::parse(ME).unwrap(),
                        session_id: SessionId::from_body(&self.sessions.to_string()).unwrap(),
                    }))
                }
                _ => ReplyBody::Err(ErrorBody::new(ErrorCode::Unauthorized, "no")),
            };
            self.to_client.push_back(reply(body));
            return;
        }
        if self.rate_limit_next > 0 {
            self.rate_limit_next -= 1;
            let mut e = ErrorBody::new(ErrorCode::RateLimited, "slow down");
            e.retry_after_ms = Some(40);
            self.to_client.push_back(reply(ReplyBody::Err(e)));
            return;
        }
        match frame.op {
            Op::Join { room, since } => {
                let Some(messages) = self.rooms.get(&room) else {
                    self.to_client
                        .push_back(reply(ReplyBody::Err(ErrorBody::new(ErrorCode::NotFound, "no room"))));
                    return;
                };
                let last_seq = messages.len() as u64;
                let replay: Vec<Message> = since
                    .map(|s| messages.iter().filter(|m| m.seq > s).cloned().collect())
                    .unwrap_or_default();
                self.subscribed.insert(room.clone());
                let info = RoomInfo {
                    room_id: room,
                    name: "general".into(),
                    kind: RoomKind::Public,
                    topic: String::new(),
                };
                self.to_client.push_back(ok(OkBody::Joined(JoinOk {
                    room: info,
                    last_seq,
                    history_from: None,
                })));
                for m in replay {
                    self.to_client.push_back(ServerFrame::Event(Event::Message(m)));
                }
            }
            Op::Send { room, cid, text, .. } => {
                let (seq, duplicate) = self.store(&room, ME, cid.as_str(), &text);
                if self.unknown_next > 0 {
                    self.unknown_next -= 1;
                    let e = ErrorBody::new(ErrorCode::Unknown, "the log did not answer");
                    self.to_client.push_back(reply(ReplyBody::Err(e)));
                    return;
                }
                self.to_client.push_back(ok(OkBody::Sent(SendOk { seq, ts: 1000 + seq, duplicate })));
            }
            Op::History { room, before, limit, .. } => {
                let messages = &self.rooms[&room];
                let before = before.unwrap_or(u64::MAX);
                let limit = limit.unwrap_or(50) as usize;
                let mut page: Vec<Message> =
                    messages.iter().rev().filter(|m| m.seq < before).take(limit + 1).cloned().collect();
                let mut more = page.len() > limit;
                page.truncate(limit);
                // Like the server bounding a reply's bytes: a long page ends early.
                if page.len() > 3 {
                    page.truncate(page.len() / 2);
                    more = true;
                }
                let next = more.then(|| "more".to_owned());
                self.to_client.push_back(ok(OkBody::History(HistoryOk {
                    messages: page,
                    next,
                    history_from: None,
                })));
            }
            Op::Receipt { room, delivered, read } => {
                self.receipt_requests += 1;
                let last = self.rooms[&room].len() as u64;
                let entry = self.receipts.entry(room).or_default();
                entry.0 = entry.0.max(delivered.unwrap_or(0)).max(read.unwrap_or(0)).min(last);
                entry.1 = entry.1.max(read.unwrap_or(0)).min(last);
                let (delivered, read) = *entry;
                self.to_client.push_back(ok(OkBody::Receipt(ReceiptOk { delivered, read })));
            }
            Op::Ping {} | Op::Leave { .. } | Op::TypingStart { .. } => {
                self.to_client.push_back(ok(OkBody::Empty(Default::default())));
            }
            Op::Auth { .. } => {
                self.to_client.push_back(reply(ReplyBody::Err(ErrorBody::new(ErrorCode::Invalid, "again"))));
            }
            Op::PresenceSubscribe { users } => {
                self.presence_requests.push(users.clone());
                let body = if users.iter().any(|u| self.presence_refused.contains(u)) {
                    ReplyBody::Err(ErrorBody::new(ErrorCode::Forbidden, "blocked"))
                } else {
                    let presence = users
                        .into_iter()
                        .map(|user| PresenceInfo { user, status: PresenceStatus::Online, last_seen: None })
                        .collect();
                    ReplyBody::Ok(OkBody::PresenceList(PresenceListOk { presence }))
                };
                self.to_client.push_back(reply(body));
            }
            other => panic!("fake server does not do {other:?}"),
        }
    }
}

fn room() -> RoomId {
    RoomId::parse("r_general").unwrap()
}

/// The harness: a core, a fake server, a virtual clock, and what the app received.
struct Sim {
    core: ClientCore,
    server: FakeServer,
    now: u64,
    connected: bool,
    events: Vec<ClientEvent>,
    done: BTreeMap<Ticket, Result<OkBody, Error>>,
    /// Tokens handed out by the fake auth endpoint, in order.
    issued: u64,
    obtain_requests: Vec<Option<String>>,
    /// The auth endpoint is unreachable (a transient failure).
    auth_down: bool,
    /// The auth endpoint refuses the credentials (a fatal failure).
    credentials_refused: bool,
    /// Tokens come from a token source (access tokens only, with this lifetime in s)
    /// instead of the auth endpoint.
    source: Option<Source>,
    /// When each `ObtainTokens` was carried out.
    obtain_times: Vec<u64>,
}

/// How the simulated token source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Fresh tokens the server accepts, living this many seconds.
    Good { ttl_secs: u64 },
    /// Errors (the application's backend is failing).
    Failing,
    /// Tokens the server refuses (signed with another secret).
    Refused,
    /// No token: the user signed out.
    SignedOut,
}

impl Sim {
    fn new(config: Config) -> Self {
        let mut core = ClientCore::new(config);
        core.set_tokens(
            0,
            1_764_000_000_000,
            Tokens {
                access_token: "access-1".into(),
                refresh_token: Some("refresh-1".into()),
                expires_in: Some(900),
            },
        );
        Sim {
            core,
            server: FakeServer::new(),
            now: 0,
            connected: false,
            events: Vec::new(),
            done: BTreeMap::new(),
            issued: 1,
            obtain_requests: Vec::new(),
            auth_down: false,
            credentials_refused: false,
            source: None,
            obtain_times: Vec::new(),
        }
    }

    /// A client whose every token comes from a token source.
    fn with_source(config: Config, ttl_secs: u64) -> Self {
        let mut core = ClientCore::new(config);
        core.set_tokens_renewable(true);
        Sim { core, source: Some(Source::Good { ttl_secs }), ..Sim::new(test_config()) }
    }

    /// A client that has no tokens yet: it must log in first.
    fn without_tokens(config: Config) -> Self {
        Sim { core: ClientCore::new(config), ..Sim::new(test_config()) }
    }

    /// Moves everything that can move without time passing.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(action) = self.core.poll_action() {
                progress = true;
                if matches!(action, Action::ObtainTokens { .. }) {
                    self.obtain_times.push(self.now);
                }
                match action {
                    Action::ObtainTokens { refresh_token } if self.source.is_some() => {
                        self.obtain_requests.push(refresh_token);
                        self.issued += 1;
                        let access = format!("access-{}", self.issued);
                        match self.source {
                            Some(Source::Good { ttl_secs }) => {
                                self.server.good_tokens.insert(access.clone());
                                let tokens = Tokens {
                                    access_token: access,
                                    refresh_token: None,
                                    expires_in: Some(ttl_secs),
                                };
                                self.core.handle_tokens(self.now, 1_764_000_000_000 + self.now, tokens);
                            }
                            Some(Source::Refused) => {
                                let tokens =
                                    Tokens { access_token: access, refresh_token: None, expires_in: None };
                                self.core.handle_tokens(self.now, 1_764_000_000_000 + self.now, tokens);
                            }
                            Some(Source::Failing) => {
                                let error = Error::Auth("the token source failed: 502".into());
                                self.core.handle_tokens_failed(self.now, error, false);
                            }
                            _ => {
                                let error = Error::Auth("signed out".into());
                                self.core.handle_tokens_failed(self.now, error, true);
                            }
                        }
                    }
                    Action::Connect => {
                        if self.server.down {
                            self.core.handle_connect_failed(self.now, Error::Transport("refused".into()));
                        } else {
                            self.connected = true;
                            self.server.conn = Some(false);
                            self.server.subscribed.clear();
                            self.server.to_client.clear();
                            self.core.handle_connected(self.now);
                        }
                    }
                    Action::Disconnect => self.cut_silently(),
                    Action::ObtainTokens { refresh_token } if self.auth_down || self.credentials_refused => {
                        self.obtain_requests.push(refresh_token);
                        let (error, fatal) = if self.credentials_refused {
                            (
                                Error::Server {
                                    code: ErrorCode::Unauthorized,
                                    message: "no".into(),
                                    retry_after_ms: None,
                                },
                                true,
                            )
                        } else {
                            (Error::Transport("connection refused".into()), false)
                        };
                        self.core.handle_tokens_failed(self.now, error, fatal);
                    }
                    Action::ObtainTokens { refresh_token } => {
                        self.obtain_requests.push(refresh_token);
                        self.issued += 1;
                        let access = format!("access-{}", self.issued);
                        self.server.good_tokens.insert(access.clone());
                        self.core.handle_tokens(
                            self.now,
                            1_764_000_000_000 + self.now,
                            Tokens {
                                access_token: access,
                                refresh_token: Some(format!("refresh-{}", self.issued)),
                                expires_in: Some(900),
                            },
                        );
                    }
                }
            }
            while let Some(frame) = self.core.poll_transmit() {
                progress = true;
                assert!(self.connected, "transmit without a connection: {frame:?}");
                self.server.handle(frame);
            }
            if self.connected
                && let Some(frame) = self.server.to_client.pop_front()
            {
                progress = true;
                self.core.handle_frame(self.now, frame);
            }
            while let Some(output) = self.core.poll_output() {
                progress = true;
                match output {
                    Output::Event(e) => self.events.push(e),
                    Output::Completed(c) => assert!(self.done.insert(c.ticket, c.result).is_none()),
                }
            }
            if !progress {
                return;
            }
        }
        panic!("no quiescence");
    }

    /// Advances the virtual clock to the next timer (at most `max` ms) and settles.
    fn tick(&mut self, max: u64) {
        self.settle();
        let target = self.core.poll_timeout().map_or(self.now + max, |t| t.clamp(self.now, self.now + max));
        self.now = target;
        self.core.handle_timeout(self.now);
        self.settle();
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.tick(end - self.now);
        }
    }

    /// The server side closes the connection (frames not yet read are lost).
    fn cut(&mut self) {
        self.cut_silently();
        self.core.handle_disconnected(self.now, "cut");
        self.settle();
    }

    fn cut_silently(&mut self) {
        self.connected = false;
        self.server.conn = None;
        self.server.subscribed.clear();
        self.server.to_client.clear();
    }

    fn messages(&self) -> Vec<(u64, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message(m) => Some((m.seq, m.text.clone())),
                _ => None,
            })
            .collect()
    }

    fn seqs(&self) -> Vec<u64> {
        self.messages().into_iter().map(|(s, _)| s).collect()
    }

    fn connected_count(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, ClientEvent::Connected { .. })).count()
    }
}

fn test_config() -> Config {
    Config { seed: 42, ..Config::default() }
}

fn joined_sim() -> Sim {
    let mut sim = Sim::new(test_config());
    let t = sim.core.join(0, room(), None);
    sim.tick(1);
    assert!(matches!(sim.done.get(&t), Some(Ok(OkBody::Joined(_)))), "{:?}", sim.done);
    sim
}

#[test]
fn connects_authenticates_joins_and_chats() {
    let mut sim = joined_sim();
    assert_eq!(sim.connected_count(), 1);
    let t = sim.core.send(sim.now, Outgoing::text(room(), "hello"));
    sim.settle();
    sim.server.other_says("hi");
    sim.settle();
    assert!(matches!(sim.done[&t], Ok(OkBody::Sent(SendOk { seq: 1, .. }))));
    assert_eq!(sim.messages(), vec![(1, "hello".into()), (2, "hi".into())]);
}

#[test]
fn requests_queued_while_offline_go_out_once_connected() {
    let mut sim = Sim::new(test_config());
    sim.server.down = true;
    let join = sim.core.join(0, room(), Some(0));
    let send = sim.core.send(0, Outgoing::text(room(), "queued"));
    sim.run_for(2_000);
    assert!(sim.done.is_empty());
    sim.server.down = false;
    sim.run_for(30_000);
    assert!(sim.done[&join].is_ok() && sim.done[&send].is_ok());
    assert_eq!(sim.seqs(), vec![1]);
}

#[test]
fn a_send_whose_reply_is_lost_is_resent_with_the_same_cid_and_stored_once() {
    let mut sim = joined_sim();
    let tickets: Vec<Ticket> =
        (0..5).map(|i| sim.core.send(sim.now, Outgoing::text(room(), format!("m{i}")))).collect();
    // The server stores all five, but the connection dies before any reply or event
    // reaches the client.
    while let Some(frame) = sim.core.poll_transmit() {
        sim.server.handle(frame);
    }
    assert_eq!(sim.server.rooms[&room()].len(), 5);
    sim.cut();
    sim.run_for(60_000);
    assert_eq!(sim.connected_count(), 2);
    assert_eq!(sim.server.rooms[&room()].len(), 5, "stored exactly once");
    for (i, t) in tickets.iter().enumerate() {
        match &sim.done[t] {
            Ok(OkBody::Sent(s)) => assert_eq!(s.seq, i as u64 + 1),
            other => panic!("{other:?}"),
        }
    }
    // Replayed by the rejoin with since=0: each once, in order.
    assert_eq!(sim.seqs(), vec![1, 2, 3, 4, 5]);
}

#[test]
fn messages_missed_while_offline_are_replayed_without_gap_or_duplicate() {
    let mut sim = joined_sim();
    sim.server.other_says("a");
    sim.server.other_says("b");
    sim.settle();
    sim.cut();
    sim.server.down = true;
    sim.server.other_says("c");
    sim.run_for(5_000);
    sim.server.other_says("d");
    sim.server.down = false;
    sim.run_for(60_000);
    sim.server.other_says("e");
    sim.settle();
    assert_eq!(sim.messages().into_iter().map(|(_, t)| t).collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
    assert_eq!(sim.seqs(), vec![1, 2, 3, 4, 5]);
}

#[test]
fn duplicated_live_events_are_dropped_and_lost_ones_are_filled_from_history() {
    let mut sim = joined_sim();
    sim.server.duplicate_live = true;
    sim.server.lose_live.insert(3);
    for t in ["1", "2", "3", "4", "5"] {
        sim.server.other_says(t);
    }
    sim.settle();
    assert_eq!(sim.seqs(), vec![1, 2, 3, 4, 5]);
    assert!(sim.core.duplicates_dropped() >= 4);
}

#[test]
fn reconnect_delays_back_off_with_jitter_and_reset_after_success() {
    let mut sim = joined_sim();
    sim.server.down = true;
    sim.cut();
    sim.run_for(120_000);
    let delays: Vec<u64> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected { retry_in_ms, .. } => Some(*retry_in_ms),
            _ => None,
        })
        .collect();
    assert!(delays.len() >= 6, "{delays:?}");
    assert!(delays.iter().all(|&d| d <= 30_000));
    assert!(delays[5] > delays[0]);
    sim.server.down = false;
    sim.run_for(40_000);
    assert_eq!(sim.connected_count(), 2);
    sim.cut();
    match sim.events.iter().rev().find(|e| matches!(e, ClientEvent::Disconnected { .. })) {
        Some(ClientEvent::Disconnected { retry_in_ms, .. }) => assert!(*retry_in_ms <= 250),
        _ => unreachable!(),
    }
}

#[test]
fn an_expiring_token_is_refreshed_before_reconnecting_and_while_connected() {
    let mut sim = joined_sim();
    assert!(sim.obtain_requests.is_empty());
    // 900 s lifetime, 60 s margin: the proactive refresh comes at 840 s.
    sim.run_for(845_000);
    assert_eq!(sim.obtain_requests, vec![Some("refresh-1".to_owned())]);
    assert!(sim.events.iter().any(|e| matches!(e, ClientEvent::Tokens(t) if t.access_token == "access-2")));
    // Let this one lapse too while offline: the reconnect refreshes first.
    sim.server.down = true;
    sim.cut();
    sim.run_for(900_000);
    sim.server.down = false;
    sim.run_for(60_000);
    assert_eq!(sim.obtain_requests.last(), Some(&Some("refresh-2".to_owned())));
    assert!(sim.core.is_ready());
}

#[test]
fn short_lived_tokens_are_refreshed_at_four_fifths_of_their_life_not_back_to_back() {
    let mut sim = Sim::new(test_config());
    sim.core.set_tokens(
        0,
        1_764_000_000_000,
        Tokens {
            access_token: "access-1".into(),
            refresh_token: Some("refresh-1".into()),
            expires_in: Some(10),
        },
    );
    sim.core.join(0, room(), None);
    sim.run_for(1_000);
    assert!(sim.obtain_requests.is_empty());
    sim.run_for(8_000);
    assert_eq!(sim.obtain_requests.len(), 1, "refreshed once, at 8 s");
}

#[test]
fn a_refused_access_token_is_replaced_before_the_next_attempt() {
    let mut sim = joined_sim();
    sim.server.good_tokens.clear();
    sim.cut();
    sim.run_for(10_000);
    assert_eq!(sim.obtain_requests, vec![Some("refresh-1".to_owned())]);
    assert!(sim.core.is_ready());
}

#[test]
fn unanswered_requests_time_out_and_a_silent_server_is_declared_dead() {
    let mut sim = joined_sim();
    sim.server.stalled = true;
    let t = sim.core.request(sim.now, Op::TypingStart { room: room() });
    sim.run_for(16_000);
    assert_eq!(sim.done[&t], Err(Error::Timeout));
    // Keepalive ping unanswered: reconnect (which also stalls, then works again).
    sim.run_for(60_000);
    assert!(sim.events.iter().any(|e| matches!(e, ClientEvent::Disconnected { .. })));
    sim.server.stalled = false;
    sim.run_for(60_000);
    assert!(sim.core.is_ready());
}

#[test]
fn receipts_are_coalesced_to_one_in_flight_per_room() {
    let mut sim = joined_sim();
    for i in 0..50 {
        sim.server.other_says(&format!("m{i}"));
    }
    sim.settle();
    sim.core.mark_read(sim.now, &room(), 50);
    sim.settle();
    assert_eq!(sim.server.receipts[&room()], (50, 50));
    assert!(sim.server.receipt_requests < 10, "{} receipt requests", sim.server.receipt_requests);
}

#[test]
fn room_create_is_not_repeated_after_a_cut_but_idempotent_requests_are() {
    let mut sim = joined_sim();
    let create = sim.core.request(
        sim.now,
        Op::RoomCreate { name: "x".into(), kind: RoomKind::Public, topic: None, settings: None },
    );
    let typing = sim.core.request(sim.now, Op::TypingStart { room: room() });
    let _ = sim.core.poll_transmit();
    let _ = sim.core.poll_transmit();
    sim.cut();
    sim.run_for(5_000);
    assert_eq!(sim.done[&create], Err(Error::ConnectionLost));
    assert!(sim.done[&typing].is_ok());
}

#[test]
fn rate_limited_requests_and_sends_are_retried_when_the_server_says() {
    let mut sim = joined_sim();
    sim.server.rate_limit_next = 2;
    let history = sim.core.request(
        sim.now,
        Op::History {
            room: room(),
            before: None,
            after: None,
            limit: None,
            cursor: None,
            threads: Default::default(),
        },
    );
    let send = sim.core.send(sim.now, Outgoing::text(room(), "later"));
    sim.settle();
    assert!(!sim.done.contains_key(&history) && !sim.done.contains_key(&send));
    sim.run_for(100);
    assert!(matches!(sim.done[&history], Ok(OkBody::History(_))));
    assert!(matches!(sim.done[&send], Ok(OkBody::Sent(SendOk { seq: 1, .. }))));
}

#[test]
fn a_send_whose_outcome_is_unknown_is_resent_with_the_same_cid_and_stored_once() {
    let mut sim = joined_sim();
    sim.server.unknown_next = 2;
    let send = sim.core.send(sim.now, Outgoing::text(room(), "maybe"));
    sim.settle();
    sim.run_for(2_000);
    assert!(matches!(sim.done[&send], Ok(OkBody::Sent(SendOk { seq: 1, duplicate: true, .. }))));
    assert_eq!(sim.server.rooms[&room()].len(), 1, "stored once");
}

#[test]
fn closing_fails_everything_pending() {
    let mut sim = Sim::new(test_config());
    sim.server.down = true;
    let send = sim.core.send(0, Outgoing::text(room(), "never"));
    sim.run_for(1_000);
    sim.core.close(sim.now);
    sim.settle();
    assert_eq!(sim.done[&send], Err(Error::Closed));
    assert!(matches!(sim.events.last(), Some(ClientEvent::Closed { error: None })));
    assert!(sim.core.poll_timeout().is_none());
}

#[test]
fn a_room_that_cannot_be_rejoined_is_reported_lost() {
    let mut sim = joined_sim();
    sim.cut();
    sim.server.rooms.clear();
    sim.run_for(5_000);
    assert!(sim.events.iter().any(|e| matches!(e, ClientEvent::RoomLost { .. })));
    assert_eq!(sim.core.position(&room()), None);
}

/// The name of a protocol event. This match has no `_` arm: a new protocol event does not
/// compile until it is named here, and then the test below fails until it has a sample
/// that surfaces.
fn protocol_event_name(event: &Event) -> &'static str {
    match event {
        Event::Message(_) => "message",
        Event::Typing(_) => "typing",
        Event::Receipt(_) => "receipt",
        Event::Reaction(_) => "reaction",
        Event::Edit(_) => "edit",
        Event::Delete(_) => "delete",
        Event::Thread(_) => "thread",
        Event::Member(_) => "member",
        Event::Invite(_) => "invite",
        Event::Friend(_) => "friend",
        Event::Presence(_) => "presence",
        Event::Report(_) => "report",
        Event::Notifications(_) => "notifications",
    }
}

/// One of each server event, as the server sends it (docs/PROTOCOL.md §3.6).
const SERVER_EVENTS: &[&str] = &[
    r#"{"ev":"message","room":"r_general","seq":1,"ts":1764000000123,"sender":"u_other","cid":"c-1","kind":"text","text":"hi"}"#,
    r#"{"ev":"typing","room":"r_general","user":"u_other","active":true,"expires_in_ms":6000}"#,
    r#"{"ev":"receipt","room":"r_general","user":"u_other","delivered":1,"read":1}"#,
    r#"{"ev":"reaction","room":"r_general","seq":1,"emoji":"👍","user":"u_other","added":true,"count":1}"#,
    r#"{"ev":"edit","room":"r_general","seq":1,"text":"hello","edited_at":1764000009000}"#,
    r#"{"ev":"delete","room":"r_general","seq":1,"by":"u_other"}"#,
    r#"{"ev":"thread","room":"r_general","root":1,"summary":{"count":1,"last_seq":2,"last_at":1764000000000}}"#,
    r#"{"ev":"member","room":"r_general","user":"u_other","change":"joined","role":"member"}"#,
    r#"{"ev":"invite","room":{"room_id":"r_secret","name":"secret","kind":"private"},"by":"u_other","invited_at":1764000000000}"#,
    r#"{"ev":"friend","user":"u_other","username":"other","state":"incoming","since":1764000000000}"#,
    r#"{"ev":"presence","user":"u_other","status":"away"}"#,
    r#"{"ev":"report","report_id":"rp_01","room":"r_general","seq":1,"reporter":"u_other","reason":"spam","at":1764000000000}"#,
    r#"{"ev":"notifications","notifications":{"level":"mentions","keywords":["deploy"],"rooms":[{"room":"r_general","muted":true}]}}"#,
];

#[test]
fn every_server_event_surfaces_as_a_client_event() {
    let mut sim = joined_sim();
    let mut names = BTreeSet::new();
    for json in SERVER_EVENTS {
        let ServerFrame::Event(event) = Codec::Json.decode_server(json.as_bytes()).unwrap() else {
            panic!("{json} is not an event")
        };
        let name = protocol_event_name(&event);
        names.insert(name);
        let before = sim.events.len();
        sim.core.handle_frame(sim.now, ServerFrame::Event(event.clone()));
        sim.settle();
        let surfaced: Vec<&ClientEvent> = sim.events[before..].iter().collect();
        assert!(
            surfaced.iter().any(|e| e.kind() == name && *e == &ClientEvent::from(event.clone())),
            "{name} did not surface: {surfaced:?}"
        );
        // Its JSON form (for bindings) names it and carries the protocol's body.
        let json = ClientEvent::from(event).to_json();
        assert_eq!(json["type"], name);
        assert!(json[name].is_object(), "{json}");
    }
    let every: BTreeSet<&str> = ClientEvent::KINDS.iter().copied().filter(|k| names.contains(k)).collect();
    assert_eq!(names, every, "each protocol event has a sample and a ClientEvent kind");
    assert_eq!(names.len(), SERVER_EVENTS.len(), "one sample per event");
}

#[test]
fn room_events_of_rooms_not_joined_are_not_surfaced() {
    let mut sim = joined_sim();
    let before = sim.events.len();
    let other = r#"{"ev":"member","room":"r_elsewhere","user":"u_other","change":"left","role":"member"}"#;
    sim.core.handle_frame(sim.now, Codec::Json.decode_server(other.as_bytes()).unwrap());
    sim.settle();
    assert_eq!(sim.events.len(), before);
}

#[test]
fn client_event_kinds_are_all_listed_once() {
    let kinds: BTreeSet<&str> = ClientEvent::KINDS.iter().copied().collect();
    assert_eq!(kinds.len(), ClientEvent::KINDS.len());
    let connection_events = [
        ClientEvent::Connected {
            user_id: UserId::parse(ME).unwrap(),
            session_id: SessionId::from_body("1").unwrap(),
        },
        ClientEvent::Disconnected { reason: "cut".into(), retry_in_ms: 1 },
        ClientEvent::Tokens(Tokens::access_only("a")),
        ClientEvent::RoomReset { room: room(), last_seq: 1 },
        ClientEvent::RoomLost { room: room(), error: Error::Closed },
        ClientEvent::Lagged { missed: 1 },
        ClientEvent::Closed { error: None },
    ];
    for event in connection_events {
        assert!(kinds.contains(event.kind()), "{event:?}");
        assert_eq!(event.to_json()["type"], event.kind());
    }
}

#[test]
fn presence_subscriptions_are_renewed_after_a_reconnect_with_the_current_presence() {
    let mut sim = joined_sim();
    let (friendly, hostile) = (UserId::parse("u_friendly").unwrap(), UserId::parse("u_hostile").unwrap());
    let t =
        sim.core.request(sim.now, Op::PresenceSubscribe { users: vec![friendly.clone(), hostile.clone()] });
    sim.settle();
    assert!(matches!(sim.done[&t], Ok(OkBody::PresenceList(_))));
    // While offline, one of them blocks the user: the batch renewal is refused, so each
    // is renewed alone and the refusing one is no longer followed.
    sim.server.presence_refused.insert(hostile.clone());
    let before = sim.events.len();
    sim.cut();
    sim.run_for(5_000);
    assert!(sim.core.is_ready());
    let renewed: Vec<&PresenceInfo> = sim.events[before..]
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Presence(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(renewed.iter().map(|p| &p.user).collect::<Vec<_>>(), vec![&friendly]);
    assert_eq!(
        sim.server.presence_requests[1..],
        [vec![friendly.clone(), hostile.clone()], vec![friendly.clone()], vec![hostile.clone()]]
    );
    // Next time only the one still followed is renewed.
    sim.cut();
    sim.run_for(5_000);
    assert_eq!(sim.server.presence_requests.last(), Some(&vec![friendly]));
}

#[test]
fn the_first_connection_is_retried_until_the_server_comes_up() {
    let mut sim = Sim::without_tokens(test_config());
    sim.auth_down = true;
    sim.run_for(10_000);
    assert!(sim.obtain_requests.len() >= 3, "{:?}", sim.obtain_requests);
    assert!(sim.obtain_requests.iter().all(Option::is_none), "logs in: no refresh token yet");
    assert!(!sim.core.is_closed());
    sim.auth_down = false;
    sim.run_for(15_000);
    assert!(sim.core.is_ready());
    assert_eq!(sim.connected_count(), 1);
}

#[test]
fn the_first_connection_gives_up_after_its_deadline_with_the_last_failure() {
    let mut sim = Sim::without_tokens(Config { first_connect_retry_ms: 5_000, ..test_config() });
    sim.auth_down = true;
    sim.run_for(60_000);
    assert!(sim.core.is_closed());
    match sim.events.last() {
        Some(ClientEvent::Closed { error: Some(Error::Transport(reason)) }) => {
            assert!(reason.contains("connection refused"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let attempts = sim.obtain_requests.len();
    assert!((2..10).contains(&attempts), "{attempts} attempts in 5 s of backoff");
}

#[test]
fn a_first_connection_without_retry_fails_at_once_and_refused_credentials_always_do() {
    let mut sim = Sim::without_tokens(Config { first_connect_retry_ms: 0, ..test_config() });
    sim.server.down = true;
    sim.run_for(10_000);
    assert!(sim.core.is_closed());
    assert!(matches!(sim.events.last(), Some(ClientEvent::Closed { error: Some(Error::Transport(_)) })));

    let mut sim = Sim::without_tokens(test_config());
    sim.credentials_refused = true;
    sim.run_for(10_000);
    assert_eq!(sim.obtain_requests.len(), 1);
    match sim.events.last() {
        Some(ClientEvent::Closed { error: Some(e) }) => assert_eq!(e.code(), Some(ErrorCode::Unauthorized)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_token_on_a_first_connection_without_retry_closes_with_the_refusal() {
    let mut sim = Sim::new(Config { first_connect_retry_ms: 0, ..test_config() });
    sim.server.good_tokens.clear();
    sim.run_for(1_000);
    match sim.events.last() {
        Some(ClientEvent::Closed { error: Some(e) }) => assert_eq!(e.code(), Some(ErrorCode::Unauthorized)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_the_first_connection_the_client_retries_forever() {
    let mut sim = Sim::new(Config { first_connect_retry_ms: 1_000, ..test_config() });
    sim.run_for(100);
    assert!(sim.core.is_ready());
    sim.server.down = true;
    sim.cut();
    sim.run_for(300_000);
    assert!(!sim.core.is_closed());
    sim.server.down = false;
    sim.run_for(60_000);
    assert!(sim.core.is_ready());
}

fn closed_unauthorized(sim: &Sim) -> bool {
    sim.core.is_closed()
        && matches!(sim.events.last(), Some(ClientEvent::Closed { error: Some(Error::Auth(_)) }))
}

#[test]
fn a_token_source_renews_before_expiry_and_after_every_restart() {
    let mut sim = Sim::with_source(test_config(), 10);
    sim.core.join(0, room(), None);
    sim.run_for(1_000);
    assert!(sim.core.is_ready());
    assert_eq!(sim.obtain_requests, vec![None], "the first token comes from the source");
    // 10 s tokens are renewed at 8 s of their life, while connected, without a refresh token.
    sim.run_for(60_000);
    assert!((7..=9).contains(&sim.obtain_requests.len()), "{:?}", sim.obtain_times);
    assert!(sim.obtain_requests.iter().all(Option::is_none));
    assert_eq!(sim.connected_count(), 1);
    // Restarts with another secret (every token refused), each while the current token
    // expired: the client asks the source again each time and carries on.
    for restart in 0..5 {
        sim.server.down = true;
        sim.cut();
        sim.run_for(20_000);
        sim.server.good_tokens.clear();
        sim.server.down = false;
        sim.run_for(40_000);
        assert!(sim.core.is_ready(), "after restart {restart}");
    }
    assert_eq!(sim.connected_count(), 6);
    sim.server.other_says("still here");
    sim.settle();
    assert_eq!(sim.messages().last().map(|(_, t)| t.as_str()), Some("still here"));
}

#[test]
fn a_token_source_that_keeps_failing_ends_unauthorized_after_backing_off() {
    let mut sim = Sim::with_source(test_config(), 10);
    sim.run_for(1_000);
    assert!(sim.core.is_ready());
    sim.source = Some(Source::Failing);
    sim.cut();
    sim.run_for(3_600_000);
    assert!(closed_unauthorized(&sim), "{:?}", sim.events.last());
    // The first token, then the proactive renewals that failed while connected were
    // counted too: max_token_failures attempts in all after the first.
    let failing: Vec<u64> = sim.obtain_times[1..].to_vec();
    assert_eq!(failing.len() as u32, test_config().max_token_failures, "{failing:?}");
    let gaps: Vec<u64> = failing.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.last().unwrap() > &(gaps[0] * 8), "backs off: {gaps:?}");
    // And nothing after the end.
    let attempts = sim.obtain_times.len();
    sim.run_for(600_000);
    assert_eq!(sim.obtain_times.len(), attempts);
}

#[test]
fn tokens_the_server_keeps_refusing_end_unauthorized_too() {
    let mut sim = Sim::with_source(test_config(), 10);
    sim.run_for(1_000);
    sim.source = Some(Source::Refused);
    sim.server.good_tokens.clear();
    sim.cut();
    sim.run_for(3_600_000);
    assert!(closed_unauthorized(&sim), "{:?}", sim.events.last());
    assert!(sim.obtain_times.len() <= 1 + test_config().max_token_failures as usize);
}

#[test]
fn a_server_that_is_down_is_not_a_token_failure() {
    let mut sim = Sim::with_source(test_config(), 10);
    sim.run_for(1_000);
    sim.server.down = true;
    sim.cut();
    sim.run_for(3_600_000);
    assert!(!sim.core.is_closed());
    sim.server.down = false;
    sim.run_for(60_000);
    assert!(sim.core.is_ready());
}

#[test]
fn a_signed_out_source_stops_the_client_at_once() {
    let mut sim = Sim::with_source(test_config(), 10);
    sim.run_for(1_000);
    sim.source = Some(Source::SignedOut);
    sim.run_for(10_000);
    assert!(closed_unauthorized(&sim), "{:?}", sim.events.last());
    assert_eq!(sim.obtain_times.len(), 2);
}

/// One step of a random scenario.
#[derive(Debug, Clone)]
enum Step {
    Send,
    OtherSays,
    /// Deliver only this many queued frames each way, then cut.
    Cut {
        deliver: usize,
    },
    ServerDown,
    ServerUp,
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Send),
        3 => Just(Step::OtherSays),
        2 => (0usize..6).prop_map(|deliver| Step::Cut { deliver }),
        1 => Just(Step::ServerDown),
        1 => Just(Step::ServerUp),
        2 => (0u64..3_000).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the cuts and outages, in the end: every send is stored exactly once and
    /// acknowledged, and the app saw every seq of the room exactly once, in order.
    #[test]
    fn every_message_exactly_once_in_order_whatever_the_cuts(steps in prop::collection::vec(step(), 1..40), seed in any::<u64>()) {
        let mut sim = Sim::new(Config { seed, ..Config::default() });
        sim.core.join(0, room(), Some(0));
        let mut sends = Vec::new();
        for step in steps {
            match step {
                Step::Send => sends.push(sim.core.send(sim.now, Outgoing::text(room(), format!("s{}", sends.len())))),
                Step::OtherSays => sim.server.other_says("o"),
                Step::Cut { deliver } => {
                    for _ in 0..deliver {
                        if let Some(f) = sim.core.poll_transmit() { sim.server.handle(f); }
                        if let Some(f) = sim.server.to_client.pop_front() { sim.core.handle_frame(sim.now, f); }
                    }
                    if sim.connected { sim.cut(); }
                }
                Step::ServerDown => sim.server.down = true,
                Step::ServerUp => sim.server.down = false,
                Step::Wait(ms) => sim.run_for(ms),
            }
            sim.settle();
        }
        sim.server.down = false;
        sim.run_for(120_000);
        prop_assert!(sim.core.is_ready());
        let stored = &sim.server.rooms[&room()];
        let mine: Vec<&Message> = stored.iter().filter(|m| m.sender.as_str() == ME).collect();
        prop_assert_eq!(mine.len(), sends.len(), "each send stored once");
        let cids: BTreeSet<&str> = mine.iter().map(|m| m.cid.as_str()).collect();
        prop_assert_eq!(cids.len(), sends.len());
        for t in &sends {
            prop_assert!(matches!(sim.done.get(t), Some(Ok(OkBody::Sent(_)))), "{:?}", sim.done.get(t));
        }
        prop_assert_eq!(sim.seqs(), (1..=stored.len() as u64).collect::<Vec<_>>());
        prop_assert_eq!(sim.core.unacknowledged_sends(), 0);
    }
}

//! The sans-IO client: every rule of a well-behaved Palaver client as a state machine with
//! no sockets and no clock, in the style of `quinn-proto`.
//!
//! The driver (native or browser) feeds it what happens — `handle_connected`,
//! `handle_frame`, `handle_disconnected`, `handle_tokens`, `handle_timeout`, with `now`
//! in milliseconds of a monotonic clock of the driver's choosing — and carries out what it
//! asks for: [`ClientCore::poll_transmit`] (frames to write), [`ClientCore::poll_action`]
//! (connect, disconnect, obtain tokens), [`ClientCore::poll_output`] (events for the
//! application, completed requests) and [`ClientCore::poll_timeout`] (when to call
//! `handle_timeout` next).
//!
//! What it takes care of:
//!
//! - matching replies to requests by id, with a timeout per request;
//! - per-room resume positions: messages are delivered once each, in seq order, with
//!   duplicates dropped and gaps filled from `history`;
//! - an outbox: every `send` carries a `cid` generated here and is re-sent with the same
//!   `cid` after a reconnect until the server acknowledges it, so it is stored once;
//! - reconnecting with bounded exponential backoff and jitter, re-authenticating,
//!   re-joining every room with `since`, and refreshing the access token before it
//!   expires;
//! - delivered/read receipts, coalesced to one request per room in flight;
//! - presence subscriptions, renewed after every reconnect;
//! - the first connection: retried with backoff until [`Config::first_connect_retry_ms`]
//!   has passed, then the client closes with the last failure.

mod backoff;
mod client_event;
mod presence_follow;
mod room_track;
#[cfg(test)]
mod simulation;

pub use client_event::ClientEvent;

use std::collections::{BTreeMap, VecDeque};

use palaver_protocol::{
    Answer, ClientFrame, ClientMsgId, ErrorCode, Event, MessageKind, OkBody, Op, ReplyBody, RoomId,
    ServerFrame, SessionId, UserId,
};

use crate::error::Error;
use crate::tokens::{Tokens, jwt_expiry_secs};
use backoff::{Backoff, SplitMix};
use presence_follow::PresenceFollow;
use room_track::{JoinState, RoomTrack};

/// Tuning of the client core. All durations in milliseconds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a request may wait for its reply (including time queued while offline).
    pub request_timeout_ms: u64,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay.
    pub backoff_max_ms: u64,
    /// Send an application `ping` after this long without any frame from the server; the
    /// connection is declared dead if the ping is not answered within the request timeout.
    pub keepalive_ms: u64,
    /// Refresh the access token this long before it expires (at most a fifth of its
    /// lifetime before).
    pub refresh_margin_ms: u64,
    /// Most `send`s in flight at once (the server allows 256 requests in flight).
    pub max_in_flight_sends: usize,
    /// Send `delivered` receipts automatically as messages are delivered.
    pub auto_delivered_receipts: bool,
    /// How long the first connection keeps trying: attempts that fail (server
    /// unreachable or unavailable, tokens not obtainable for now) are retried with the
    /// reconnect backoff, the last one this long after the first; if it fails too, the
    /// client closes with its failure. `0`: give up at the first failure. Refusals of the
    /// credentials (wrong password, username taken) end it at once either way.
    pub first_connect_retry_ms: u64,
    /// How many times in a row getting a usable access token may fail — a token source
    /// that errs, a refresh or login refused for a transient reason other than the server
    /// being unreachable, a token the server refuses — before the client stops for good
    /// with [`Error::Auth`] (unauthorized). Attempts are spaced by the reconnect backoff;
    /// a server that cannot be reached is not a token failure (the client waits for it).
    pub max_token_failures: u32,
    /// Seed for backoff jitter and the `cid` prefix; the drivers take it from the OS.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout_ms: 15_000,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            keepalive_ms: 20_000,
            refresh_margin_ms: 60_000,
            max_in_flight_sends: 64,
            auto_delivered_receipts: true,
            first_connect_retry_ms: 30_000,
            max_token_failures: 8,
            seed: 0x5eed,
        }
    }
}

/// Identifies one application request until it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Something the application asked for has finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Which request.
    pub ticket: Ticket,
    /// Its `ok` body or its error.
    pub result: Result<OkBody, Error>,
}

/// One output for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An event for the event stream.
    Event(ClientEvent),
    /// A request completed.
    Completed(Completion),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the WebSocket, then call `handle_connected` or `handle_connect_failed`.
    Connect,
    /// Close the current socket; the core already counts it as gone.
    Disconnect,
    /// Get fresh tokens (refresh with this token if any, else log in), then call
    /// `handle_tokens` or `handle_tokens_failed`.
    ObtainTokens {
        /// The refresh token to use, if there is one.
        refresh_token: Option<String>,
    },
}

/// Options of a `send`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The room.
    pub room: RoomId,
    /// The kind (text unless sharing a file).
    pub kind: MessageKind,
    /// The text.
    pub text: String,
    /// The client timestamp to attach, if any.
    pub client_ts: Option<u64>,
    /// The seq this message replies to.
    pub reply_to: Option<u64>,
    /// With `image`/`file`: the shared file.
    pub file: Option<Box<palaver_protocol::FileRef>>,
    /// An explicit idempotency key; generated when absent.
    pub cid: Option<ClientMsgId>,
    /// With `encrypted`: how `text` (the ciphertext) was encrypted.
    pub encryption: Option<Box<palaver_protocol::Encryption>>,
    /// A thread reply: the seq of its thread's root.
    pub thread: Option<u64>,
    /// With `thread`: also part of the room's own timeline.
    pub also_to_room: bool,
}

impl Outgoing {
    /// A plain text message.
    pub fn text(room: RoomId, text: impl Into<String>) -> Self {
        Outgoing {
            room,
            kind: MessageKind::Text,
            text: text.into(),
            client_ts: None,
            reply_to: None,
            file: None,
            cid: None,
            encryption: None,
            thread: None,
            also_to_room: false,
        }
    }

    /// A text reply in the thread of message `root` (with `also_to_room`, also in the
    /// room's own timeline).
    pub fn thread_reply(room: RoomId, root: u64, text: impl Into<String>, also_to_room: bool) -> Self {
        Outgoing { thread: Some(root), also_to_room, ..Outgoing::text(room, text) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// Waiting until `retry_at` to start an attempt.
    Offline { retry_at: u64 },
    /// `ObtainTokens` was asked for before connecting.
    ObtainingTokens,
    /// `Connect` was asked for.
    Connecting,
    /// The `auth` frame is in flight.
    Authenticating { wire_id: u64 },
    /// Authenticated: frames flow.
    Ready,
    /// Stopped for good.
    Closed,
}

/// What an in-flight wire request is for.
#[derive(Debug, Clone)]
enum Purpose {
    Auth,
    Ping,
    User { ticket: Ticket, op: Op },
    Send { cid: ClientMsgId },
    Join { room: RoomId, since: Option<u64> },
    Fill { room: RoomId },
    Receipt { room: RoomId, delivered: Option<u64>, read: Option<u64> },
    PresenceRenewal,
}

#[derive(Debug)]
struct InFlight {
    purpose: Purpose,
    /// What its `ok` answer is (how a JSON reply to it is read).
    answer: Option<Answer>,
    deadline: u64,
}

/// A user request waiting for the connection.
#[derive(Debug)]
struct Queued {
    ticket: Ticket,
    op: Op,
    deadline: u64,
    /// Not before this time (after a `rate_limited` answer).
    not_before: u64,
}

/// A `send` until the server acknowledges it.
#[derive(Debug)]
struct OutboxEntry {
    ticket: Ticket,
    op: Op,
    cid: ClientMsgId,
    in_flight: Option<u64>,
    not_before: u64,
}

/// The client state machine. See the module docs.
#[derive(Debug)]
pub struct ClientCore {
    config: Config,
    rng: SplitMix,
    backoff: Backoff,
    link: Link,
    cid_prefix: String,
    next_cid: u64,
    next_wire_id: u64,
    next_ticket: u64,
    tokens: Option<Tokens>,
    /// Monotonic time at which the access token expires (unknown: `None`).
    access_expires_at: Option<u64>,
    /// How long refreshing comes before expiry: the configured margin, at most a fifth
    /// of the token's lifetime (so short-lived tokens are not refreshed back to back).
    refresh_margin: u64,
    /// The access token was refused by the server: get another before connecting.
    access_refused: bool,
    /// The driver can get a new access token without a refresh token (a token source).
    renewable: bool,
    /// Failed attempts at a usable access token since the last success.
    token_failures: u32,
    /// A proactive refresh is in progress while connected.
    refreshing: bool,
    refresh_retry_at: Option<u64>,
    in_flight: BTreeMap<u64, InFlight>,
    queued: VecDeque<Queued>,
    outbox: VecDeque<OutboxEntry>,
    rooms: BTreeMap<RoomId, RoomTrack>,
    /// Tickets of `join` calls waiting for their room's join reply.
    join_tickets: BTreeMap<RoomId, Vec<Ticket>>,
    last_rx: u64,
    user: Option<(UserId, SessionId)>,
    transmit: VecDeque<ClientFrame>,
    actions: VecDeque<Action>,
    outputs: VecDeque<Output>,
    duplicates_dropped: u64,
    /// Users followed by `presence.subscribe`, renewed on each connection.
    presence: PresenceFollow,
    /// A connection has been authenticated at least once.
    ever_ready: bool,
    /// When the first connection attempt started.
    started_at: Option<u64>,
    /// The latest `now` seen.
    now: u64,
}

/// Retrying these ops after a reconnect is harmless (the server treats a repeat as a
/// no-op or answers the same); `room.create` is the only one that is not.
fn retry_safe(op: &Op) -> bool {
    !matches!(op, Op::RoomCreate { .. })
}

impl ClientCore {
    /// A client that starts its first attempt at the first `handle_timeout`: with the
    /// tokens given by [`set_tokens`](Self::set_tokens), or else by asking the driver to
    /// obtain some (`Action::ObtainTokens` with no refresh token: log in or register).
    pub fn new(config: Config) -> Self {
        let mut rng = SplitMix::new(config.seed);
        let cid_prefix = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        ClientCore {
            backoff: Backoff::new(config.backoff_initial_ms, config.backoff_max_ms),
            rng,
            link: Link::Offline { retry_at: 0 },
            cid_prefix,
            next_cid: 0,
            next_wire_id: 0,
            next_ticket: 0,
            tokens: None,
            access_expires_at: None,
            refresh_margin: 0,
            access_refused: false,
            renewable: false,
            token_failures: 0,
            refreshing: false,
            refresh_retry_at: None,
            in_flight: BTreeMap::new(),
            queued: VecDeque::new(),
            outbox: VecDeque::new(),
            rooms: BTreeMap::new(),
            join_tickets: BTreeMap::new(),
            last_rx: 0,
            user: None,
            transmit: VecDeque::new(),
            actions: VecDeque::new(),
            outputs: VecDeque::new(),
            duplicates_dropped: 0,
            presence: PresenceFollow::default(),
            ever_ready: false,
            started_at: None,
            now: 0,
            config,
        }
    }

    // ------------------------------------------------------------ polls

    /// The next frame to write to the socket.
    pub fn poll_transmit(&mut self) -> Option<ClientFrame> {
        self.transmit.pop_front()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event or completed request for the application.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must be called next (monotonic ms), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut at: Option<u64> = None;
        let mut consider = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        match self.link {
            Link::Offline { retry_at } => consider(retry_at),
            Link::Ready => {
                if !self.in_flight.values().any(|f| matches!(f.purpose, Purpose::Ping)) {
                    consider(self.last_rx.saturating_add(self.config.keepalive_ms));
                }
                if !self.refreshing
                    && let Some(t) = self.refresh_at()
                {
                    consider(t);
                }
                for entry in &self.outbox {
                    // Entries already due wait for a free slot (a reply), not for time.
                    if entry.in_flight.is_none() && entry.not_before > self.now {
                        consider(entry.not_before);
                    }
                }
                if let Some(t) = self.presence.wake_at()
                    && t > self.now
                {
                    consider(t);
                }
            }
            Link::Closed => return None,
            _ => {}
        }
        for f in self.in_flight.values() {
            consider(f.deadline);
        }
        for q in &self.queued {
            consider(q.deadline);
            if self.link == Link::Ready && q.not_before > self.now {
                consider(q.not_before);
            }
        }
        at
    }

    /// Whether the client has stopped for good.
    pub fn is_closed(&self) -> bool {
        self.link == Link::Closed
    }

    /// Whether the socket is authenticated right now.
    pub fn is_ready(&self) -> bool {
        self.link == Link::Ready
    }

    /// The authenticated user, once known.
    pub fn user_id(&self) -> Option<&UserId> {
        self.user.as_ref().map(|(u, _)| u)
    }

    /// The current tokens.
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    /// The last seq delivered in a joined room.
    pub fn position(&self, room: &RoomId) -> Option<u64> {
        self.rooms.get(room).and_then(|r| r.last)
    }

    /// Sends not yet acknowledged by the server.
    pub fn unacknowledged_sends(&self) -> usize {
        self.outbox.len()
    }

    /// Messages dropped because they had been delivered already.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates_dropped
    }

    // ------------------------------------------------------------ application calls

    /// Sets the tokens to connect with (without a round of `ObtainTokens`).
    pub fn set_tokens(&mut self, now: u64, unix_ms: u64, tokens: Tokens) {
        self.install_tokens(now, unix_ms, tokens, false);
    }

    /// Tells the core the driver can get a fresh access token at any time without a
    /// refresh token (a [`TokenSource`](crate::TokenSource)): tokens are then renewed
    /// shortly before they expire, like refreshable ones.
    pub fn set_tokens_renewable(&mut self, renewable: bool) {
        self.renewable = renewable;
    }

    /// Any request. `join`, `leave` and `send` have their own calls, which keep the
    /// room and outbox bookkeeping: use those.
    pub fn request(&mut self, now: u64, op: Op) -> Ticket {
        let ticket = self.ticket();
        match op {
            Op::Join { room, since } => self.join_ticketed(now, ticket, room, since),
            Op::Leave { room } => {
                self.forget_room(&room, Error::Invalid("left the room before the join completed".into()));
                self.enqueue(now, ticket, Op::Leave { room });
            }
            Op::Send { .. } | Op::Auth { .. } => self
                .complete(ticket, Err(Error::Invalid(format!("use the dedicated call for {}", op.name())))),
            op => self.enqueue(now, ticket, op),
        }
        ticket
    }

    /// Joins a room and keeps it joined across reconnects. `since`: the last seq the
    /// application holds (its messages after that are replayed first); `None` to start
    /// from now on.
    pub fn join(&mut self, now: u64, room: RoomId, since: Option<u64>) -> Ticket {
        let ticket = self.ticket();
        self.join_ticketed(now, ticket, room, since);
        ticket
    }

    /// Leaves a room: its events stop at once and the membership ends on the server.
    pub fn leave(&mut self, now: u64, room: RoomId) -> Ticket {
        self.request(now, Op::Leave { room })
    }

    /// Sends a message through the outbox: re-sent with the same `cid` until the server
    /// acknowledges it (the ticket completes with `OkBody::Sent`) or refuses it.
    pub fn send(&mut self, now: u64, message: Outgoing) -> Ticket {
        let ticket = self.ticket();
        let cid = match message.cid {
            Some(cid) => cid,
            None => self.new_cid(),
        };
        let op = Op::Send {
            room: message.room,
            cid: cid.clone(),
            kind: message.kind,
            text: message.text,
            client_ts: message.client_ts,
            reply_to: message.reply_to,
            file: message.file,
            encryption: message.encryption,
            thread: message.thread,
            also_to_room: message.also_to_room,
        };
        self.outbox.push_back(OutboxEntry { ticket, op, cid, in_flight: None, not_before: 0 });
        self.pump(now);
        ticket
    }

    /// Marks a room read up to `seq` (sent as a `receipt`, coalesced).
    pub fn mark_read(&mut self, now: u64, room: &RoomId, seq: u64) {
        if let Some(track) = self.rooms.get_mut(room) {
            track.want_read = track.want_read.max(seq);
            track.want_delivered = track.want_delivered.max(seq);
        }
        self.pump(now);
    }

    /// Stops the client: everything pending fails with [`Error::Closed`].
    pub fn close(&mut self, _now: u64) {
        if self.link == Link::Closed {
            return;
        }
        self.shut_down(None);
    }

    // ------------------------------------------------------------ driver input

    /// The driver obtained tokens (`ObtainTokens`). `unix_ms` is wall-clock time, used to
    /// read the token's `exp`.
    pub fn handle_tokens(&mut self, now: u64, unix_ms: u64, tokens: Tokens) {
        self.install_tokens(now, unix_ms, tokens, true);
        if self.link == Link::Ready {
            // A renewal while connected: the new token will be used on the next connection.
            self.token_failures = 0;
        }
        self.refreshing = false;
        self.refresh_retry_at = None;
        if self.link == Link::ObtainingTokens {
            self.link = Link::Connecting;
            self.actions.push_back(Action::Connect);
        }
    }

    /// Obtaining tokens failed. `fatal`: the credentials are refused for good (the client
    /// closes with `error` itself if it never connected, else with [`Error::Auth`]).
    pub fn handle_tokens_failed(&mut self, now: u64, error: Error, fatal: bool) {
        self.refreshing = false;
        if fatal {
            let error = if self.ever_ready { Error::Auth(error.to_string()) } else { error };
            self.shut_down(Some(error));
            return;
        }
        if !error.is_transient() && self.token_failed(&error) {
            return;
        }
        match self.link {
            Link::ObtainingTokens => self.attempt_failed(now, "cannot obtain tokens", error),
            Link::Ready => {
                let delay = self.backoff_delay_peek();
                self.refresh_retry_at = Some(now + delay);
            }
            _ => {}
        }
    }

    /// The socket is open: authenticate it.
    pub fn handle_connected(&mut self, now: u64) {
        if self.link != Link::Connecting {
            return;
        }
        let Some(tokens) = &self.tokens else {
            self.go_offline(now, "no access token".into());
            return;
        };
        let op = Op::Auth { token: tokens.access_token.clone() };
        let wire_id = self.transmit_op(now, op, Purpose::Auth);
        self.link = Link::Authenticating { wire_id };
        self.last_rx = now;
    }

    /// Opening the socket failed.
    pub fn handle_connect_failed(&mut self, now: u64, error: Error) {
        if self.link == Link::Connecting {
            self.attempt_failed(now, "connect failed", error);
        }
    }

    /// The socket closed or failed (not after an `Action::Disconnect`, which the core
    /// already counted).
    pub fn handle_disconnected(&mut self, now: u64, reason: &str) {
        if matches!(self.link, Link::Connecting | Link::Authenticating { .. } | Link::Ready) {
            self.go_offline(now, reason.to_owned());
        }
    }

    /// The answer the request `re` gets when it succeeds, while it is in flight: JSON
    /// replies are decoded as that answer ([`Codec::decode_server_answering`]).
    ///
    /// [`Codec::decode_server_answering`]: palaver_protocol::Codec::decode_server_answering
    pub fn answer_of(&self, re: u64) -> Option<Answer> {
        self.in_flight.get(&re).and_then(|in_flight| in_flight.answer)
    }

    /// A frame arrived.
    pub fn handle_frame(&mut self, now: u64, frame: ServerFrame) {
        if !matches!(self.link, Link::Authenticating { .. } | Link::Ready) {
            return;
        }
        self.last_rx = now;
        match frame {
            ServerFrame::Reply { re, body } => self.on_reply(now, re, body),
            ServerFrame::Event(event) => self.on_event(now, event),
        }
        self.pump(now);
    }

    /// Time passed: start attempts, expire requests, keep the connection alive.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        if let Link::Offline { retry_at } = self.link
            && now >= retry_at
        {
            self.start_attempt(now);
        }
        let expired: Vec<u64> =
            self.in_flight.iter().filter(|(_, f)| f.deadline <= now).map(|(&id, _)| id).collect();
        for id in expired {
            if let Some(f) = self.in_flight.remove(&id) {
                self.on_request_timeout(now, id, f.purpose);
            }
        }
        while let Some(pos) = self.queued.iter().position(|q| q.deadline <= now) {
            if let Some(q) = self.queued.remove(pos) {
                self.complete(q.ticket, Err(Error::Timeout));
            }
        }
        if self.link == Link::Ready {
            let pinging = self.in_flight.values().any(|f| matches!(f.purpose, Purpose::Ping));
            if !pinging && now >= self.last_rx.saturating_add(self.config.keepalive_ms) {
                self.transmit_op(now, Op::Ping {}, Purpose::Ping);
            }
            if !self.refreshing && self.refresh_at().is_some_and(|t| now >= t) {
                self.refreshing = true;
                self.refresh_retry_at = None;
                let refresh_token = self.tokens.as_ref().and_then(|t| t.refresh_token.clone());
                self.actions.push_back(Action::ObtainTokens { refresh_token });
            }
        }
        self.pump(now);
    }

    // ------------------------------------------------------------ internals

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    fn new_cid(&mut self) -> ClientMsgId {
        self.next_cid += 1;
        let text = format!("{}-{}", self.cid_prefix, self.next_cid);
        match ClientMsgId::parse(&text) {
            Ok(cid) => cid,
            // 32 hex digits, a dash and a decimal counter: always valid, 54 bytes at most.
            Err(_) => unreachable!("generated cid {text} is valid"),
        }
    }

    fn complete(&mut self, ticket: Ticket, result: Result<OkBody, Error>) {
        self.outputs.push_back(Output::Completed(Completion { ticket, result }));
    }

    fn emit(&mut self, event: ClientEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn install_tokens(&mut self, now: u64, unix_ms: u64, tokens: Tokens, announce: bool) {
        let from_claim =
            jwt_expiry_secs(&tokens.access_token).map(|exp| exp.saturating_mul(1000).saturating_sub(unix_ms));
        let from_answer = tokens.expires_in.map(|s| s.saturating_mul(1000));
        let lifetime = match (from_claim, from_answer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.access_expires_at = lifetime.map(|l| now.saturating_add(l));
        self.refresh_margin =
            lifetime.map_or(self.config.refresh_margin_ms, |l| self.config.refresh_margin_ms.min(l / 5));
        self.access_refused = false;
        if announce {
            self.emit(ClientEvent::Tokens(tokens.clone()));
        }
        self.tokens = Some(tokens);
    }

    /// When to refresh proactively: a margin before expiry, if a refresh token exists.
    fn refresh_at(&self) -> Option<u64> {
        if let Some(retry) = self.refresh_retry_at {
            return Some(retry);
        }
        let expires = self.access_expires_at?;
        if self.tokens.as_ref()?.refresh_token.is_none() && !self.renewable {
            return None;
        }
        Some(expires.saturating_sub(self.refresh_margin))
    }

    fn access_usable(&self, now: u64) -> bool {
        self.tokens.is_some()
            && !self.access_refused
            && self
                .access_expires_at
                .is_none_or(|t| t > now.saturating_add(self.config.refresh_margin_ms.min(5_000)))
    }

    fn start_attempt(&mut self, now: u64) {
        self.started_at.get_or_insert(now);
        if self.access_usable(now) {
            self.link = Link::Connecting;
            self.actions.push_back(Action::Connect);
        } else {
            self.link = Link::ObtainingTokens;
            let refresh_token = self.tokens.as_ref().and_then(|t| t.refresh_token.clone());
            self.actions.push_back(Action::ObtainTokens { refresh_token });
        }
    }

    /// Counts a failed attempt at a usable access token; past
    /// [`Config::max_token_failures`] the client stops, unauthorized (returns true).
    fn token_failed(&mut self, error: &Error) -> bool {
        self.token_failures += 1;
        if self.token_failures < self.config.max_token_failures.max(1) {
            return false;
        }
        let attempts = self.token_failures;
        self.shut_down(Some(Error::Auth(format!(
            "no usable access token after {attempts} attempts: {error}"
        ))));
        true
    }

    fn backoff_delay_peek(&mut self) -> u64 {
        self.backoff.next_delay(&mut self.rng)
    }

    /// Whether the first connection has been tried for long enough: the next failure
    /// closes the client instead of scheduling another attempt.
    fn first_connect_over(&self, now: u64) -> bool {
        !self.ever_ready
            && now.saturating_sub(self.started_at.unwrap_or(now)) >= self.config.first_connect_retry_ms
    }

    /// A connection attempt failed with `error`: try again later, or give up if the
    /// first connection has been tried long enough.
    fn attempt_failed(&mut self, now: u64, context: &str, error: Error) {
        if self.first_connect_over(now) {
            self.shut_down(Some(error));
        } else {
            self.go_offline(now, format!("{context}: {error}"));
        }
    }

    /// The connection is gone (or an attempt failed): fail or re-queue what was in
    /// flight and schedule the next attempt (or, before the first connection, give up
    /// once it has been tried long enough).
    fn go_offline(&mut self, now: u64, reason: String) {
        if self.first_connect_over(now) {
            self.shut_down(Some(Error::Transport(reason)));
            return;
        }
        let was_connected = matches!(self.link, Link::Authenticating { .. } | Link::Ready);
        if was_connected {
            self.actions.push_back(Action::Disconnect);
        }
        self.transmit.clear();
        let in_flight = std::mem::take(&mut self.in_flight);
        let mut requeue = Vec::new();
        for (_, f) in in_flight {
            match f.purpose {
                Purpose::User { ticket, op } if retry_safe(&op) => {
                    requeue.push(Queued { ticket, op, deadline: f.deadline, not_before: 0 });
                }
                Purpose::User { ticket, .. } => self.complete(ticket, Err(Error::ConnectionLost)),
                _ => {}
            }
        }
        for q in requeue.into_iter().rev() {
            self.queued.push_front(q);
        }
        for entry in &mut self.outbox {
            entry.in_flight = None;
        }
        for track in self.rooms.values_mut() {
            track.disconnected();
        }
        self.presence.on_disconnected();
        let mut delay = self.backoff.next_delay(&mut self.rng);
        if !self.ever_ready {
            // The first connection's last attempt comes at its deadline, not after it.
            let deadline = self.started_at.unwrap_or(now).saturating_add(self.config.first_connect_retry_ms);
            delay = delay.min(deadline.saturating_sub(now));
        }
        self.link = Link::Offline { retry_at: now + delay };
        self.refreshing = false;
        self.emit(ClientEvent::Disconnected { reason, retry_in_ms: delay });
    }

    fn shut_down(&mut self, error: Option<Error>) {
        if matches!(self.link, Link::Authenticating { .. } | Link::Ready | Link::Connecting) {
            self.actions.push_back(Action::Disconnect);
        }
        self.link = Link::Closed;
        self.transmit.clear();
        let mut tickets: Vec<Ticket> = Vec::new();
        for (_, f) in std::mem::take(&mut self.in_flight) {
            if let Purpose::User { ticket, .. } = f.purpose {
                tickets.push(ticket);
            }
        }
        tickets.extend(std::mem::take(&mut self.queued).into_iter().map(|q| q.ticket));
        tickets.extend(std::mem::take(&mut self.outbox).into_iter().map(|e| e.ticket));
        tickets.extend(std::mem::take(&mut self.join_tickets).into_values().flatten());
        tickets.sort();
        for ticket in tickets {
            self.complete(ticket, Err(Error::Closed));
        }
        self.rooms.clear();
        self.emit(ClientEvent::Closed { error });
    }

    fn transmit_op(&mut self, now: u64, op: Op, purpose: Purpose) -> u64 {
        self.next_wire_id += 1;
        let id = self.next_wire_id;
        let answer = op.answer();
        self.transmit.push_back(ClientFrame { id, op });
        self.in_flight
            .insert(id, InFlight { purpose, answer, deadline: now + self.config.request_timeout_ms });
        id
    }

    fn enqueue(&mut self, now: u64, ticket: Ticket, op: Op) {
        if self.link == Link::Closed {
            self.complete(ticket, Err(Error::Closed));
            return;
        }
        self.queued.push_back(Queued {
            ticket,
            op,
            deadline: now + self.config.request_timeout_ms,
            not_before: 0,
        });
        self.pump(now);
    }

    fn join_ticketed(&mut self, now: u64, ticket: Ticket, room: RoomId, since: Option<u64>) {
        if self.link == Link::Closed {
            self.complete(ticket, Err(Error::Closed));
            return;
        }
        let track = self.rooms.entry(room.clone()).or_insert_with(|| RoomTrack::new(since));
        if track.last.is_none() || since.is_some_and(|s| track.last.is_some_and(|l| s < l)) {
            // A fresh join, or the application asks to replay from further back.
            track.last = since;
        }
        track.join = JoinState::NeedsJoin;
        track.held.clear();
        self.join_tickets.entry(room).or_default().push(ticket);
        self.pump(now);
    }

    fn forget_room(&mut self, room: &RoomId, error: Error) {
        self.rooms.remove(room);
        for ticket in self.join_tickets.remove(room).unwrap_or_default() {
            self.complete(ticket, Err(error.clone()));
        }
    }

    /// Sends whatever can go now: joins, queued requests, outbox entries, receipts, gap
    /// fills.
    fn pump(&mut self, now: u64) {
        self.now = self.now.max(now);
        if self.link != Link::Ready {
            return;
        }
        let joins: Vec<(RoomId, Option<u64>)> = self
            .rooms
            .iter()
            .filter(|(_, t)| t.join == JoinState::NeedsJoin)
            .map(|(room, t)| (room.clone(), t.last))
            .collect();
        for (room, since) in joins {
            let op = Op::Join { room: room.clone(), since };
            let wire_id = self.transmit_op(now, op, Purpose::Join { room: room.clone(), since });
            if let Some(track) = self.rooms.get_mut(&room) {
                track.join = JoinState::Joining { wire_id };
            }
        }
        let (due, later): (VecDeque<Queued>, VecDeque<Queued>) =
            std::mem::take(&mut self.queued).into_iter().partition(|q| q.not_before <= now);
        self.queued = later;
        for q in due {
            self.transmit_op(now, q.op.clone(), Purpose::User { ticket: q.ticket, op: q.op });
        }
        if let Some(users) = self.presence.due(now) {
            let op = Op::PresenceSubscribe { users: users.clone() };
            let wire_id = self.transmit_op(now, op, Purpose::PresenceRenewal);
            self.presence.sent(wire_id, users);
        }
        let mut sending = self.outbox.iter().filter(|e| e.in_flight.is_some()).count();
        let mut to_send = Vec::new();
        for (index, entry) in self.outbox.iter().enumerate() {
            if sending >= self.config.max_in_flight_sends {
                break;
            }
            if entry.in_flight.is_none() && entry.not_before <= now {
                to_send.push(index);
                sending += 1;
            }
        }
        for index in to_send {
            let Some(entry) = self.outbox.get(index) else { continue };
            let (op, cid) = (entry.op.clone(), entry.cid.clone());
            let wire_id = self.transmit_op(now, op, Purpose::Send { cid });
            if let Some(entry) = self.outbox.get_mut(index) {
                entry.in_flight = Some(wire_id);
            }
        }
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let Some(track) = self.rooms.get(&room) else { continue };
            if let Some((delivered, read)) = track.receipt_due() {
                let op = Op::Receipt { room: room.clone(), delivered, read };
                let wire_id =
                    self.transmit_op(now, op, Purpose::Receipt { room: room.clone(), delivered, read });
                if let Some(track) = self.rooms.get_mut(&room) {
                    track.receipt_in_flight = Some(wire_id);
                }
            }
            let Some(track) = self.rooms.get(&room) else { continue };
            if let Some((before, limit)) = track.gap() {
                let op = Op::History {
                    room: room.clone(),
                    before: Some(before),
                    after: None,
                    limit: Some(limit),
                    cursor: None,
                    threads: Default::default(),
                };
                let wire_id = self.transmit_op(now, op, Purpose::Fill { room: room.clone() });
                if let Some(track) = self.rooms.get_mut(&room) {
                    track.filling = Some((wire_id, before, limit));
                }
            }
        }
    }

    fn deliver(&mut self, room: &RoomId, accepted: room_track::Accepted) {
        self.duplicates_dropped += accepted.duplicates as u64;
        if let Some(last) = accepted.deliver.last().map(|m| m.seq)
            && self.config.auto_delivered_receipts
            && let Some(track) = self.rooms.get_mut(room)
        {
            track.want_delivered = track.want_delivered.max(last);
        }
        for message in accepted.deliver {
            self.emit(ClientEvent::Message(message));
        }
    }

    fn on_event(&mut self, _now: u64, event: Event) {
        if self.link != Link::Ready {
            return;
        }
        // Room events only for the rooms the application follows (a leave may still be in
        // flight); the user's own events always.
        let room = match &event {
            Event::Message(e) => Some(e.room.clone()),
            Event::Typing(e) => Some(e.room.clone()),
            Event::Receipt(e) => Some(e.room.clone()),
            Event::Reaction(e) => Some(e.room.clone()),
            Event::Edit(e) => Some(e.room.clone()),
            Event::Delete(e) => Some(e.room.clone()),
            Event::Thread(e) => Some(e.room.clone()),
            Event::Member(e) => Some(e.room.clone()),
            Event::Invite(_)
            | Event::Friend(_)
            | Event::Presence(_)
            | Event::Report(_)
            | Event::Notifications(_) => None,
        };
        if room.as_ref().is_some_and(|room| !self.rooms.contains_key(room)) {
            return;
        }
        match (event, room) {
            // Messages go through the room's resume position: once each, in order.
            (Event::Message(message), Some(room)) => {
                let Some(track) = self.rooms.get_mut(&room) else { return };
                let accepted = track.accept(message);
                self.deliver(&room, accepted);
            }
            (event, _) => self.emit(ClientEvent::from(event)),
        }
    }

    fn on_reply(&mut self, now: u64, re: u64, body: ReplyBody) {
        let Some(f) = self.in_flight.remove(&re) else { return };
        match f.purpose {
            Purpose::Auth => match body {
                ReplyBody::Ok(OkBody::Authed(ok)) => {
                    self.link = Link::Ready;
                    self.ever_ready = true;
                    self.token_failures = 0;
                    self.presence.on_connected();
                    self.backoff.reset();
                    self.user = Some((ok.user_id.clone(), ok.session_id.clone()));
                    self.emit(ClientEvent::Connected { user_id: ok.user_id, session_id: ok.session_id });
                }
                ReplyBody::Err(e) if e.code == ErrorCode::Unauthorized => {
                    self.access_refused = true;
                    let error: Error = e.into();
                    if !self.token_failed(&error) {
                        self.attempt_failed(now, "access token refused", error);
                    }
                }
                // (Described, not Debug-printed: the browser build carries no Debug of
                // every answer type.)
                ReplyBody::Err(e) => self.go_offline(now, format!("auth refused: {}", e.message)),
                ReplyBody::Ok(_) => self.go_offline(now, "auth answered with another shape".into()),
            },
            Purpose::Ping => {}
            Purpose::User { ticket, op } => match body {
                ReplyBody::Ok(ok) => {
                    self.presence.on_user_op_ok(&op);
                    self.complete(ticket, Ok(ok));
                }
                ReplyBody::Err(e) if e.code == ErrorCode::Unauthorized => {
                    // The socket lost its authentication (should not happen): reconnect.
                    self.queued.push_front(Queued { ticket, op, deadline: f.deadline, not_before: 0 });
                    self.go_offline(now, "socket not authenticated".into());
                }
                ReplyBody::Err(e) if e.code == ErrorCode::RateLimited => {
                    // The refused request had no effect: retry it when the server says.
                    let not_before = now + e.retry_after_ms.unwrap_or(100).max(1);
                    self.queued.push_back(Queued { ticket, op, deadline: f.deadline, not_before });
                }
                ReplyBody::Err(e) => self.complete(ticket, Err(e.into())),
            },
            Purpose::Send { cid } => self.on_send_reply(now, &cid, re, body),
            Purpose::Join { room, since } => self.on_join_reply(now, room, re, since, body),
            Purpose::Fill { room } => {
                let Some(track) = self.rooms.get_mut(&room) else { return };
                let Some((wire_id, before, _)) = track.filling else { return };
                if wire_id != re {
                    return;
                }
                track.filling = None;
                let accepted = match body {
                    ReplyBody::Ok(OkBody::History(page)) => {
                        track.filled(before, page.messages, page.next.is_none())
                    }
                    // Refused (e.g. access lost): re-join to resynchronise instead.
                    _ => {
                        track.join = JoinState::NeedsJoin;
                        track.held.clear();
                        return;
                    }
                };
                self.deliver(&room, accepted);
            }
            Purpose::PresenceRenewal => match body {
                ReplyBody::Ok(OkBody::PresenceList(list)) => {
                    self.presence.renewed(re);
                    for info in list.presence {
                        self.emit(ClientEvent::Presence(info));
                    }
                }
                ReplyBody::Err(e) if e.code == ErrorCode::RateLimited => {
                    self.presence.retry_later(re, now + e.retry_after_ms.unwrap_or(100).max(1));
                }
                ReplyBody::Err(e)
                    if matches!(
                        e.code,
                        ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::Unknown
                    ) =>
                {
                    self.presence.retry_later(re, now + self.config.backoff_initial_ms.max(1) * 4);
                }
                _ => self.presence.refused(re),
            },
            Purpose::Receipt { room, delivered, read } => {
                let Some(track) = self.rooms.get_mut(&room) else { return };
                track.receipt_in_flight = None;
                match body {
                    ReplyBody::Ok(OkBody::Receipt(ok)) => {
                        track.sent_delivered =
                            track.sent_delivered.max(ok.delivered).max(delivered.unwrap_or(0));
                        track.sent_read = track.sent_read.max(ok.read).max(read.unwrap_or(0));
                    }
                    ReplyBody::Err(e)
                        if matches!(
                            e.code,
                            ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Unknown
                        ) => {}
                    // Refused for good: stop asking for these values.
                    _ => {
                        track.sent_delivered = track.sent_delivered.max(delivered.unwrap_or(0));
                        track.sent_read = track.sent_read.max(read.unwrap_or(0));
                    }
                }
            }
        }
    }

    fn on_send_reply(&mut self, now: u64, cid: &ClientMsgId, re: u64, body: ReplyBody) {
        let Some(index) = self.outbox.iter().position(|e| &e.cid == cid) else { return };
        let Some(entry) = self.outbox.get_mut(index) else { return };
        if entry.in_flight != Some(re) {
            // A late answer to an earlier attempt: the current one will answer the same.
            if let ReplyBody::Ok(ok @ OkBody::Sent(_)) = body
                && let Some(entry) = self.outbox.remove(index)
            {
                self.complete(entry.ticket, Ok(ok));
            }
            return;
        }
        match body {
            ReplyBody::Ok(ok) => {
                if let Some(entry) = self.outbox.remove(index) {
                    self.complete(entry.ticket, Ok(ok));
                }
            }
            ReplyBody::Err(e) => match e.code {
                ErrorCode::RateLimited => {
                    entry.in_flight = None;
                    entry.not_before = now + e.retry_after_ms.unwrap_or(100).max(1);
                }
                // `unknown`: it may be stored; the same cid again is answered once.
                ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::Unknown => {
                    entry.in_flight = None;
                    entry.not_before = now + self.config.backoff_initial_ms.max(1) * 4;
                }
                ErrorCode::Unauthorized => {
                    entry.in_flight = None;
                    self.go_offline(now, "socket not authenticated".into());
                }
                _ => {
                    if let Some(entry) = self.outbox.remove(index) {
                        self.complete(entry.ticket, Err(e.into()));
                    }
                }
            },
        }
    }

    fn on_join_reply(&mut self, now: u64, room: RoomId, re: u64, since: Option<u64>, body: ReplyBody) {
        let Some(track) = self.rooms.get_mut(&room) else { return };
        if track.join != (JoinState::Joining { wire_id: re }) {
            return;
        }
        match body {
            ReplyBody::Ok(ok) => {
                let last_seq = match &ok {
                    OkBody::Joined(j) => j.last_seq,
                    _ => {
                        self.forget_room(&room, Error::UnexpectedReply { op: "join" });
                        return;
                    }
                };
                let (accepted, reset) = track.joined(since, last_seq);
                if reset {
                    self.emit(ClientEvent::RoomReset { room: room.clone(), last_seq });
                }
                self.deliver(&room, accepted);
                for ticket in self.join_tickets.remove(&room).unwrap_or_default() {
                    self.complete(ticket, Ok(ok.clone()));
                }
            }
            ReplyBody::Err(e)
                if matches!(
                    e.code,
                    ErrorCode::RateLimited
                        | ErrorCode::Unavailable
                        | ErrorCode::Internal
                        | ErrorCode::Unknown
                ) =>
            {
                // Transient: try again on the next connection.
                let _ = now;
                track.join = JoinState::NeedsJoin;
                self.go_offline(now, format!("join refused for now: {}", e.message));
            }
            ReplyBody::Err(e) => {
                let had_tickets = self.join_tickets.contains_key(&room);
                let error: Error = e.into();
                if !had_tickets {
                    self.emit(ClientEvent::RoomLost { room: room.clone(), error: error.clone() });
                }
                self.forget_room(&room, error);
            }
        }
    }

    fn on_request_timeout(&mut self, now: u64, id: u64, purpose: Purpose) {
        match purpose {
            Purpose::User { ticket, .. } => self.complete(ticket, Err(Error::Timeout)),
            Purpose::Send { cid } => {
                if let Some(entry) = self.outbox.iter_mut().find(|e| e.cid == cid && e.in_flight == Some(id))
                {
                    entry.in_flight = None;
                }
            }
            Purpose::Receipt { room, .. } => {
                if let Some(track) = self.rooms.get_mut(&room) {
                    track.receipt_in_flight = None;
                }
            }
            Purpose::Fill { room } => {
                if let Some(track) = self.rooms.get_mut(&room) {
                    track.filling = None;
                }
            }
            Purpose::PresenceRenewal => self.presence.retry_later(id, now),
            // The server does not answer: the connection is dead.
            Purpose::Auth | Purpose::Ping | Purpose::Join { .. } => {
                self.go_offline(now, "the server stopped answering".into());
            }
        }
    }
}

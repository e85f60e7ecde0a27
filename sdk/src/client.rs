//! The typed async API: [`Client`] (a cheap, cloneable handle to a running driver) and
//! [`Events`] (the event stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_channel::{mpsc, oneshot};
use futures_util::Stream;
use palaver_protocol::{
    EditOk, HistoryOk, JoinOk, Message, MessageKind, OkBody, Op, ReactionOk, ReceiptOk, RoomId, RoomInfo,
    RoomKind, RoomListOk, RoomSummary, SendOk, UserId,
};

use crate::auth_route::AuthRoute;
use crate::core::{ClientCore, ClientEvent, Config, Outgoing};
use crate::driver::{self, Command, DriverSetup, Platform, Shared, SharedState};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::tokens::{Credentials, Tokens};

/// How to connect: codec, timeouts and the core's tuning.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The frame encoding: JSON (any server) or rkyv (same `palaver-protocol` version).
    pub codec: palaver_protocol::Codec,
    /// How long opening the socket or an auth request may take.
    pub connect_timeout_ms: u64,
    /// The core's tuning (timeouts, backoff, keepalive…).
    pub core: Config,
    /// Native only: carry the event connection over QUIC (§7.3) instead of WebSocket;
    /// the codec is then rkyv whatever `codec` says. Ignored by the browser transport.
    pub quic: Option<crate::quic::QuicOptions>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            codec: palaver_protocol::Codec::Json,
            connect_timeout_ms: 10_000,
            core: Config::default(),
            quic: None,
        }
    }
}

impl ClientOptions {
    /// The default options with another codec.
    pub fn with_codec(codec: palaver_protocol::Codec) -> Self {
        ClientOptions { codec, ..ClientOptions::default() }
    }

    /// The default options over QUIC (rkyv frames).
    pub fn with_quic(quic: crate::quic::QuicOptions) -> Self {
        ClientOptions { codec: palaver_protocol::Codec::Rkyv, quic: Some(quic), ..ClientOptions::default() }
    }
}

/// An account session from register or login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub user_id: UserId,
    /// Its tokens.
    pub tokens: Tokens,
}

/// A connected Palaver client. Cloning gives another handle to the same connection; the
/// connection stops when [`Client::close`] is called or every handle is dropped.
///
/// Reconnecting is automatic and invisible: requests wait for the connection, `send`s
/// are retried with the same `cid` until acknowledged, and joined rooms are re-joined
/// with `since` so the [`Events`] stream continues with no gap and no duplicate.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    shared: SharedState,
}

/// The event stream of a [`Client`]: messages of joined rooms (each seq once, in order),
/// typing, receipts, reactions, edits, deletes, and connection changes. Ends when the
/// client closes. Also a [`Stream`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<ClientEvent>,
}

impl Events {
    /// The next event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        futures_util::StreamExt::next(&mut self.rx).await
    }

    /// The next `message` event, skipping the others; `None` once closed.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let ClientEvent::Message(m) = self.next().await? {
                return Some(m);
            }
        }
    }
}

impl Stream for Events {
    type Item = ClientEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// Pages backwards through a room's history, newest first.
#[derive(Debug)]
pub struct HistoryPager {
    client: Client,
    room: RoomId,
    before: Option<u64>,
    page_size: u32,
    done: bool,
}

impl HistoryPager {
    /// The next (older) page, or `None` once the start of the room was reached.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Message>>, Error> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.history(&self.room, self.before, Some(self.page_size)).await?;
        match page.last() {
            Some(oldest) if oldest.seq > 1 && page.len() == self.page_size as usize => {
                self.before = Some(oldest.seq)
            }
            _ => self.done = true,
        }
        if page.is_empty() { Ok(None) } else { Ok(Some(page)) }
    }
}

/// Logs in, registers or uses the given tokens, over HTTP.
pub(crate) async fn initial_session<P: Platform>(
    platform: &P,
    endpoint: &Endpoint,
    credentials: &Credentials,
) -> Result<Tokens, Error> {
    match credentials {
        Credentials::Tokens(tokens) => Ok(tokens.clone()),
        Credentials::Password { .. } => {
            Ok(driver::fetch_tokens(platform, endpoint, AuthRoute::Login, credentials, None).await?.0)
        }
        Credentials::Register { .. } => {
            Ok(driver::fetch_tokens(platform, endpoint, AuthRoute::Register, credentials, None).await?.0)
        }
    }
}

pub(crate) async fn auth_call<P: Platform>(
    platform: &P,
    url: &str,
    route: AuthRoute,
    credentials: &Credentials,
    refresh_token: Option<&str>,
) -> Result<Session, Error> {
    let endpoint = Endpoint::parse(url)?;
    let (tokens, user_id) =
        driver::fetch_tokens(platform, &endpoint, route, credentials, refresh_token).await?;
    let user_id = match user_id {
        Some(id) => UserId::parse(&id)?,
        None => {
            // `refresh` answers carry no user id: the token's `sub` claim has it.
            let sub = crate::auth_route::jwt_subject(&tokens.access_token)
                .ok_or_else(|| Error::Http { status: 200, body: "no user id in the answer".into() })?;
            UserId::parse(&sub)?
        }
    };
    Ok(Session { user_id, tokens })
}

/// Starts a driver on `spawn` and waits for its first connection.
pub(crate) async fn start<P: Platform>(
    platform: P,
    url: &str,
    credentials: Credentials,
    options: ClientOptions,
    seed: u64,
    spawn: impl FnOnce(P, DriverSetup),
) -> Result<Client, Error> {
    let endpoint = Endpoint::parse(url)?;
    let tokens = initial_session(&platform, &endpoint, &credentials).await?;
    let mut core_config = options.core;
    core_config.seed ^= seed;
    let mut core = ClientCore::new(core_config);
    core.set_tokens(platform.now_ms(), platform.unix_ms(), tokens.clone());
    let (commands_tx, commands_rx) = mpsc::unbounded();
    let (ready_tx, ready_rx) = oneshot::channel();
    let shared =
        SharedState::new(std::sync::Mutex::new(Shared { tokens: Some(tokens), ..Shared::default() }));
    let setup = DriverSetup {
        endpoint,
        codec: options.codec,
        credentials,
        connect_timeout_ms: options.connect_timeout_ms,
        core,
        commands: commands_rx,
        subscribers: Vec::new(),
        shared: shared.clone(),
        ready: ready_tx,
    };
    spawn(platform, setup);
    ready_rx.await.map_err(|_| Error::Closed)??;
    Ok(Client { commands: commands_tx, shared })
}

impl Client {
    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<OkBody, Error>>) -> Command,
    ) -> Result<OkBody, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.unbounded_send(make(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn op(&self, op: Op) -> Result<OkBody, Error> {
        self.call(|reply| Command::Request { op, reply }).await
    }

    /// Sends any op and returns its answer: for the server's ops that have no typed method
    /// here yet (moderation, profiles, friends, keys, …). Like the typed methods, it waits
    /// for the connection and is repeated after a drop, so use it for ops that are safe to
    /// repeat (everything but `send`, which goes through the outbox, and `room.create`).
    pub async fn request(&self, op: Op) -> Result<OkBody, Error> {
        self.op(op).await
    }

    /// Full-text search of the messages in the caller's rooms, newest first.
    pub async fn search(&self, query: &str) -> Result<palaver_protocol::SearchOk, Error> {
        let op = Op::Search {
            query: query.to_owned(),
            room: None,
            from: None,
            before: None,
            after: None,
            order: Some(palaver_protocol::SearchOrder::Newest),
            limit: None,
            cursor: None,
        };
        match self.op(op).await? {
            OkBody::Search(found) => Ok(found),
            _ => Err(Error::UnexpectedReply { op: "search" }),
        }
    }

    /// A new event stream. Subscribe before joining rooms: events are not buffered for
    /// subscribers that do not exist yet. Each stream receives every event.
    pub fn events(&self) -> Events {
        let (tx, rx) = mpsc::unbounded();
        // A closed client yields an already-ended stream.
        let _ = self.commands.unbounded_send(Command::Subscribe { events: tx });
        Events { rx }
    }

    /// The authenticated user.
    pub fn user_id(&self) -> Option<UserId> {
        driver::lock(&self.shared).user_id.clone()
    }

    /// The newest tokens (store them to resume a session later: refresh tokens rotate).
    pub fn tokens(&self) -> Option<Tokens> {
        driver::lock(&self.shared).tokens.clone()
    }

    /// Whether the socket is authenticated right now.
    pub fn is_connected(&self) -> bool {
        driver::lock(&self.shared).connected
    }

    /// Creates a room (the caller becomes its owner). Not retried after a dropped
    /// connection: it fails with [`Error::ConnectionLost`] then.
    pub async fn create_room(&self, name: &str, kind: RoomKind) -> Result<RoomInfo, Error> {
        match self.op(Op::RoomCreate { name: name.to_owned(), kind, topic: None, settings: None }).await? {
            OkBody::Room(ok) => Ok(ok.room),
            _ => Err(Error::UnexpectedReply { op: "room.create" }),
        }
    }

    /// Joins a room from now on; it stays joined across reconnects.
    pub async fn join(&self, room: &RoomId) -> Result<JoinOk, Error> {
        self.join_since(room, None).await
    }

    /// Joins a room, first replaying its messages after `since` (`Some(0)`: all of them).
    pub async fn join_since(&self, room: &RoomId, since: Option<u64>) -> Result<JoinOk, Error> {
        let room = room.clone();
        match self.call(|reply| Command::Join { room, since, reply }).await? {
            OkBody::Joined(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "join" }),
        }
    }

    /// Leaves a room: its events stop and the membership ends.
    pub async fn leave(&self, room: &RoomId) -> Result<(), Error> {
        self.op(Op::Leave { room: room.clone() }).await.map(drop)
    }

    /// Sends a text message; returns once it is durably stored. Survives reconnects: it
    /// is re-sent with the same `cid` until acknowledged, so it is stored exactly once.
    pub async fn send(&self, room: &RoomId, text: &str) -> Result<SendOk, Error> {
        self.send_message(Outgoing::text(room.clone(), text)).await
    }

    /// Sends a message with every option (kind, reply, file, client timestamp, cid).
    pub async fn send_message(&self, message: Outgoing) -> Result<SendOk, Error> {
        if message.kind == MessageKind::System {
            return Err(Error::Invalid("system messages are written by the server".into()));
        }
        match self.call(|reply| Command::Send { message, reply }).await? {
            OkBody::Sent(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "send" }),
        }
    }

    /// One page of history, newest first.
    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, Error> {
        match self.op(Op::History { room: room.clone(), before, limit }).await? {
            OkBody::History(HistoryOk { messages }) => Ok(messages),
            _ => Err(Error::UnexpectedReply { op: "history" }),
        }
    }

    /// Pages backwards through a room, `page_size` (1–100) messages at a time.
    pub fn history_pager(&self, room: &RoomId, page_size: u32) -> HistoryPager {
        HistoryPager {
            client: self.clone(),
            room: room.clone(),
            before: None,
            page_size: page_size.clamp(1, palaver_protocol::limits::MAX_HISTORY_LIMIT),
            done: false,
        }
    }

    /// Round trip through the server.
    pub async fn ping(&self) -> Result<(), Error> {
        self.op(Op::Ping {}).await.map(drop)
    }

    /// Tells the room the user is typing (renew every few seconds while typing).
    pub async fn typing_start(&self, room: &RoomId) -> Result<(), Error> {
        self.op(Op::TypingStart { room: room.clone() }).await.map(drop)
    }

    /// Tells the room the user stopped typing.
    pub async fn typing_stop(&self, room: &RoomId) -> Result<(), Error> {
        self.op(Op::TypingStop { room: room.clone() }).await.map(drop)
    }

    /// Marks a joined room read up to `seq`; sent in the background, coalesced, and
    /// re-sent after a reconnect.
    pub fn mark_read(&self, room: &RoomId, seq: u64) {
        let _ = self.commands.unbounded_send(Command::MarkRead { room: room.clone(), seq });
    }

    /// Moves the receipt watermarks now and returns them.
    pub async fn receipt(
        &self,
        room: &RoomId,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<ReceiptOk, Error> {
        match self.op(Op::Receipt { room: room.clone(), delivered, read }).await? {
            OkBody::Receipt(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "receipt" }),
        }
    }

    /// Adds the user's reaction to a message.
    pub async fn react(&self, room: &RoomId, seq: u64, emoji: &str) -> Result<ReactionOk, Error> {
        match self.op(Op::React { room: room.clone(), seq, emoji: emoji.to_owned() }).await? {
            OkBody::Reaction(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "react" }),
        }
    }

    /// Removes the user's reaction from a message.
    pub async fn unreact(&self, room: &RoomId, seq: u64, emoji: &str) -> Result<ReactionOk, Error> {
        match self.op(Op::Unreact { room: room.clone(), seq, emoji: emoji.to_owned() }).await? {
            OkBody::Reaction(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "unreact" }),
        }
    }

    /// Edits one of the user's messages.
    pub async fn edit(&self, room: &RoomId, seq: u64, text: &str) -> Result<EditOk, Error> {
        match self.op(Op::Edit { room: room.clone(), seq, text: text.to_owned() }).await? {
            OkBody::Edited(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "edit" }),
        }
    }

    /// Deletes a message (leaves a tombstone).
    pub async fn delete(&self, room: &RoomId, seq: u64) -> Result<(), Error> {
        self.op(Op::Delete { room: room.clone(), seq }).await.map(drop)
    }

    /// Lists public rooms, optionally filtered by name; pass the answer's `next` as
    /// `after` for the next page.
    pub async fn room_list(
        &self,
        query: Option<&str>,
        after: Option<&RoomId>,
        limit: Option<u32>,
    ) -> Result<RoomListOk, Error> {
        let op = Op::RoomList { query: query.map(str::to_owned), after: after.cloned(), limit };
        match self.op(op).await? {
            OkBody::RoomList(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "room.list" }),
        }
    }

    /// Opens (creating once) the direct-message room with another user.
    pub async fn dm_open(&self, user: &UserId) -> Result<RoomInfo, Error> {
        match self.op(Op::DmOpen { user: user.clone() }).await? {
            OkBody::Room(ok) => Ok(ok.room),
            _ => Err(Error::UnexpectedReply { op: "dm.open" }),
        }
    }

    /// The user's rooms with their last message and unread counts.
    pub async fn sync(&self) -> Result<Vec<RoomSummary>, Error> {
        match self.op(Op::Sync {}).await? {
            OkBody::Sync(ok) => Ok(ok.rooms),
            _ => Err(Error::UnexpectedReply { op: "sync" }),
        }
    }

    /// Closes the connection; pending requests fail with [`Error::Closed`] and unsent
    /// messages are dropped.
    pub fn close(&self) {
        let _ = self.commands.unbounded_send(Command::Close);
    }
}

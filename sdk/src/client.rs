//! The typed async API: [`Client`], a cheap, cloneable handle to a running driver.

use futures_channel::{mpsc, oneshot};
use palaver_protocol::{
    ClaimedKey, ClientMsgId, DeviceKeys, FileRef, FriendInfo, InviteInfo, KeysUploadOk, MembersOk,
    NotificationSettings, NotifyLevel, OneTimeKey, PresenceChoice, PresenceInfo, Profile, ProfileOk,
    RoomDetailsOk, RoomNotifications, RoomRole, RoomSettingsPatch, SearchOk, ThreadHistoryOk, ThreadReadOk,
    ThreadReplies, ThreadsOk,
};
use palaver_protocol::{
    EditOk, EditsOk, HistoryOk, JoinOk, Message, MessageKind, OkBody, Op, PinsOk, ReactionOk, ReceiptListOk,
    ReceiptOk, RoomId, RoomInfo, RoomKind, RoomListOk, RoomSummary, SendOk, UserId,
};

use crate::auth_route::AuthRoute;
use crate::core::{ClientCore, Config, Outgoing};
use crate::driver::{self, Command, DriverSetup, HttpRequest, Platform, Shared, SharedState};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::event_stream::{self, DEFAULT_EVENT_BUFFER, Events};
use crate::file_route;
use crate::search_query::SearchQuery;
use crate::tokens::{Credentials, Tokens};

/// The platform the client runs on, for the HTTP calls the handles make themselves.
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub(crate) type ClientPlatform = crate::native::Native;
/// The platform the client runs on, for the HTTP calls the handles make themselves.
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub(crate) type ClientPlatform = crate::wasm::Browser;

/// How to connect: codec, timeouts and the core's tuning.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The frame encoding: JSON (any server) or rkyv (same `palaver-protocol` version).
    /// The browser transport always speaks JSON.
    pub codec: palaver_protocol::Codec,
    /// How long opening the socket or an auth request may take.
    pub connect_timeout_ms: u64,
    /// The core's tuning (timeouts, backoff, keepalive…).
    pub core: Config,
    /// Native only: carry the event connection over QUIC (§7.3) instead of WebSocket;
    /// the codec is then rkyv whatever `codec` says. Ignored by the browser transport.
    pub quic: Option<crate::quic::QuicOptions>,
    /// Native only: the certificate to trust for `https://`/`wss://` (e.g. the server's
    /// development certificate, `DATA_DIR/tls/cert.pem`). `None`: what
    /// [`QuicOptions::trust`](crate::QuicOptions) says if `quic` is set, else the system's
    /// root certificates. Ignored by the browser transport (the browser does TLS).
    pub trust: Option<crate::trust::TlsTrust>,
    /// Other nodes of the same cluster (same forms as the main URL). When a connection
    /// attempt fails, the next reconnection goes to the next URL in turn, so a client
    /// of a node that died resumes on another (with `since`, like any reconnection).
    pub fallback_urls: Vec<String>,
    /// How many events each [`Events`] stream holds before dropping its oldest (it then
    /// yields [`ClientEvent::Lagged`](crate::ClientEvent::Lagged)); default 4 096.
    pub event_buffer: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            codec: palaver_protocol::Codec::Json,
            connect_timeout_ms: 10_000,
            core: Config::default(),
            quic: None,
            trust: None,
            fallback_urls: Vec::new(),
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }
}

impl ClientOptions {
    /// The default options with another codec.
    pub fn with_codec(codec: palaver_protocol::Codec) -> Self {
        ClientOptions { codec, ..ClientOptions::default() }
    }

    /// These options, trusting `trust` for `https://`/`wss://`.
    pub fn trusting(self, trust: crate::trust::TlsTrust) -> Self {
        ClientOptions { trust: Some(trust), ..self }
    }

    /// These options, failing over to `urls` (other nodes of a cluster).
    pub fn failing_over_to(self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientOptions { fallback_urls: urls.into_iter().map(Into::into).collect(), ..self }
    }

    /// These options, retrying the first connection for up to `ms` (the default is 30 s;
    /// see [`Config::first_connect_retry_ms`]).
    pub fn retrying_first_connect_for(mut self, ms: u64) -> Self {
        self.core.first_connect_retry_ms = ms;
        self
    }

    /// These options, with a first connection that is not retried: `connect` fails at
    /// the first failure (server unreachable, …).
    pub fn failing_fast(self) -> Self {
        self.retrying_first_connect_for(0)
    }

    /// These options, with streams holding at most `events` events (at least 1).
    pub fn buffering_events(self, events: usize) -> Self {
        ClientOptions { event_buffer: events.max(1), ..self }
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
    platform: ClientPlatform,
}

impl Client {
    /// The platform this client runs on.
    #[cfg(all(feature = "wasm", target_arch = "wasm32"))]
    pub(crate) fn platform(&self) -> &ClientPlatform {
        &self.platform
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

/// Pages through every hit of a search, following `next`.
#[derive(Debug)]
pub struct SearchPager {
    client: Client,
    query: SearchQuery,
    done: bool,
}

impl SearchPager {
    /// The next page of hits, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<palaver_protocol::SearchHit>>, Error> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.search(self.query.clone()).await?;
        match page.next {
            Some(cursor) => self.query.cursor = Some(cursor),
            None => self.done = true,
        }
        if page.hits.is_empty() { Ok(None) } else { Ok(Some(page.hits)) }
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

/// Starts a driver on `spawn` and waits for its first connection: `Ok` once it is ready
/// (its `Connected` emitted), or the error the client closed with.
pub(crate) async fn start(
    platform: ClientPlatform,
    url: &str,
    credentials: Credentials,
    options: ClientOptions,
    seed: u64,
    spawn: impl FnOnce(ClientPlatform, DriverSetup),
) -> Result<Client, Error> {
    let endpoint = Endpoint::parse(url)?;
    let mut endpoints = vec![endpoint.clone()];
    for fallback in &options.fallback_urls {
        endpoints.push(Endpoint::parse(fallback)?);
    }
    let mut core_config = options.core;
    core_config.seed ^= seed;
    let mut core = ClientCore::new(core_config);
    // Given tokens are used as they are; otherwise the driver logs in (or registers)
    // as the core's first action, retried like any connection attempt.
    let tokens = match &credentials {
        Credentials::Tokens(tokens) => {
            core.set_tokens(platform.now_ms(), platform.unix_ms(), tokens.clone());
            Some(tokens.clone())
        }
        Credentials::Source(_) => {
            core.set_tokens_renewable(true);
            None
        }
        _ => None,
    };
    let (commands_tx, commands_rx) = mpsc::unbounded();
    let (ready_tx, ready_rx) = oneshot::channel();
    let shared = SharedState::new(std::sync::Mutex::new(Shared {
        tokens,
        http_base: endpoint.http_base.clone(),
        event_buffer: options.event_buffer.max(1),
        ..Shared::default()
    }));
    let setup = DriverSetup {
        endpoints,
        codec: options.codec,
        credentials,
        connect_timeout_ms: options.connect_timeout_ms,
        core,
        commands: commands_rx,
        shared: shared.clone(),
        ready: ready_tx,
    };
    spawn(platform.clone(), setup);
    ready_rx.await.map_err(|_| Error::Closed)??;
    Ok(Client { commands: commands_tx, shared, platform })
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

    /// Sends any op and returns its answer: for ops newer than this SDK's typed methods.
    /// Like the typed methods, it waits
    /// for the connection and is repeated after a drop, so use it for ops that are safe to
    /// repeat (everything but `send`, which goes through the outbox, and `room.create`).
    pub async fn request(&self, op: Op) -> Result<OkBody, Error> {
        self.op(op).await
    }

    /// One page of a full-text search of the messages in the caller's rooms: a
    /// [`SearchQuery`] (filters, order, page size, cursor) or just the words. Pass the
    /// answer's `next` to [`SearchQuery::cursor`] for the next page, or use
    /// [`Client::search_pager`].
    pub async fn search(&self, query: impl Into<SearchQuery>) -> Result<SearchOk, Error> {
        match self.op(query.into().to_op()).await? {
            OkBody::Search(found) => Ok(found),
            _ => Err(Error::UnexpectedReply { op: "search" }),
        }
    }

    /// Pages through every hit of a search, following the cursors.
    pub fn search_pager(&self, query: impl Into<SearchQuery>) -> SearchPager {
        SearchPager { client: self.clone(), query: query.into(), done: false }
    }

    /// A stream of this client's events, each in its own bounded queue (see [`Events`]).
    ///
    /// The **first** call returns the stream opened when the first connection became
    /// ready: it holds every event emitted after that first `Connected` (which `connect`
    /// waits for), so nothing that happens between `connect` returning and this call is
    /// lost. Every later call returns a new stream that receives the events emitted after
    /// it returns. Once the client is closed, a new stream ends at once.
    pub fn events(&self) -> Events {
        let mut shared = driver::lock(&self.shared);
        if let Some(first) = shared.first_stream.take() {
            return first;
        }
        let capacity = shared.event_buffer;
        drop(shared);
        self.events_holding(capacity)
    }

    /// A new stream that starts now and holds at most `capacity` events (at least 1)
    /// before dropping its oldest, whatever [`ClientOptions::event_buffer`] says: for a
    /// consumer that only cares about the latest events, or one that must never lag.
    pub fn events_holding(&self, capacity: usize) -> Events {
        let mut shared = driver::lock(&self.shared);
        let (sink, stream) = event_stream::stream(capacity);
        // A closed client yields an already-ended stream (`sink` is dropped).
        if !shared.closed {
            shared.subscribers.push(sink);
        }
        stream
    }

    /// Uploads a file to a room (`POST /v1/files`, PROTOCOL.md §2.10) and returns the
    /// stored file: its id, size, the content type the server found from the bytes, and
    /// an image's dimensions. Share it with [`Client::send_file`] or a
    /// [`send_message`](Client::send_message) of kind `image`/`file`. The caller must be a
    /// member of the room, and the room's file sharing on. Not retried: on a transient
    /// error ([`Error::is_transient`]) upload again.
    pub async fn upload(&self, room: &RoomId, name: &str, bytes: Vec<u8>) -> Result<FileRef, Error> {
        let url = file_route::upload_url(&self.http_base(), room, name);
        let (status, body) = self
            .authorized_http(|token| HttpRequest {
                method: "POST",
                url: url.clone(),
                headers: vec![
                    ("authorization", format!("Bearer {token}")),
                    ("content-type", "application/octet-stream".into()),
                ],
                body: bytes.clone(),
                max_answer_bytes: file_route::MAX_UPLOAD_ANSWER_BYTES,
            })
            .await?;
        file_route::parse_upload_answer(status, &body)
    }

    /// Downloads a shared file's bytes (`GET /v1/files/{file_id}`; members of its room
    /// only). At most [`MAX_DOWNLOAD_BYTES`](crate::MAX_DOWNLOAD_BYTES).
    pub async fn download(&self, file_id: &str) -> Result<Vec<u8>, Error> {
        let url = file_route::download_url(&self.http_base(), file_id)
            .ok_or_else(|| Error::Invalid(format!("{file_id:?} is not a file id")))?;
        let (status, body) = self
            .authorized_http(|token| HttpRequest {
                method: "GET",
                url: url.clone(),
                headers: vec![("authorization", format!("Bearer {token}"))],
                body: Vec::new(),
                max_answer_bytes: file_route::MAX_DOWNLOAD_BYTES,
            })
            .await?;
        file_route::parse_download_answer(status, body)
    }

    /// Uploads a file and shares it in the room: a message of kind `image` (for image
    /// types) or `file`, with `text` as its caption (may be empty). Returns the file and
    /// the message's seq.
    pub async fn send_file(
        &self,
        room: &RoomId,
        name: &str,
        bytes: Vec<u8>,
        text: &str,
    ) -> Result<(FileRef, SendOk), Error> {
        let file = self.upload(room, name, bytes).await?;
        let kind =
            if file.content_type.starts_with("image/") { MessageKind::Image } else { MessageKind::File };
        let message =
            Outgoing { kind, file: Some(Box::new(file.clone())), ..Outgoing::text(room.clone(), text) };
        let sent = self.send_message(message).await?;
        Ok((file, sent))
    }

    /// Reports a message of someone else to the room's moderators and the server's
    /// admins (`POST /v1/reports`, PROTOCOL.md §2.14). The caller must be a member of the
    /// room; 10 reports at once, then one a minute ([`ErrorCode::RateLimited`](palaver_protocol::ErrorCode::RateLimited)).
    pub async fn report(
        &self,
        room: &RoomId,
        seq: u64,
        reason: Option<&str>,
    ) -> Result<crate::Report, Error> {
        let body = serde_json::json!({ "room": room, "seq": seq, "reason": reason }).to_string();
        let url = format!("{}/v1/reports", self.http_base());
        let (status, answer) =
            self.authorized_http(|token| report_request("POST", url.clone(), token, &body)).await?;
        crate::report_route::parse_report(status, &answer)
    }

    /// A page of a room's reports, oldest first, after the report `after` (for its
    /// moderators and the admins): open ones only if `open_only`.
    pub async fn room_reports(
        &self,
        room: &RoomId,
        open_only: bool,
        after: Option<&str>,
    ) -> Result<crate::ReportPage, Error> {
        let mut url = format!("{}/v1/rooms/{room}/reports?open={open_only}", self.http_base());
        if let Some(after) = after {
            if !crate::report_route::valid_id(after) {
                return Err(Error::Invalid(format!("{after:?} is not a report id")));
            }
            url.push_str(&format!("&after={after}"));
        }
        let (status, answer) =
            self.authorized_http(|token| report_request("GET", url.clone(), token, "")).await?;
        crate::report_route::parse_page(status, &answer)
    }

    /// Resolves a report (a moderator of its room, or an admin), with an optional note.
    pub async fn resolve_report(&self, report_id: &str, note: Option<&str>) -> Result<crate::Report, Error> {
        if !crate::report_route::valid_id(report_id) {
            return Err(Error::Invalid(format!("{report_id:?} is not a report id")));
        }
        let url = format!("{}/v1/reports/{report_id}/resolve", self.http_base());
        let body = serde_json::json!({ "note": note }).to_string();
        let (status, answer) =
            self.authorized_http(|token| report_request("POST", url.clone(), token, &body)).await?;
        crate::report_route::parse_report(status, &answer)
    }

    /// Everything the server stores about the user (`GET /v1/account/export`,
    /// PROTOCOL.md §2.15), as JSON: account, profile, rooms, friends, blocks, devices,
    /// files, reports made, and the first 1,000 messages the user sent (`messages.next`
    /// continues them at `/v1/account/export/messages`). Throttled by the server: three at
    /// once, then one a minute ([`ErrorCode::RateLimited`](palaver_protocol::ErrorCode::RateLimited)).
    pub async fn export_account(&self) -> Result<serde_json::Value, Error> {
        let text = self.call_route("GET", "/v1/account/export", None).await?;
        serde_json::from_str(&text)
            .map_err(|_| Error::Http { status: 200, body: text.chars().take(200).collect() })
    }

    /// Calls one of the server's HTTP routes under `/v1/` (`path` with its query) with
    /// this client's access token, renewed once if refused; the answer's body on success
    /// (any 2xx), else the route's error. For routes this SDK has no method for.
    pub async fn call_route(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, Error> {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            other => return Err(Error::Invalid(format!("{other:?}: routes take GET or POST"))),
        };
        if !path.starts_with("/v1/")
            || path.contains("..")
            || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(Error::Invalid(format!("{path:?} is not a route under /v1/")));
        }
        let url = format!("{}{path}", self.http_base());
        let body = body.unwrap_or("");
        let (status, answer) = self
            .authorized_http(|token| {
                let mut request = report_request(method, url.clone(), token, body);
                request.max_answer_bytes = crate::report_route::MAX_ROUTE_ANSWER_BYTES;
                request
            })
            .await?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(crate::auth_route::error_answer(status, &text))
        }
    }

    /// The HTTP base of the node the client is connected to.
    fn http_base(&self) -> String {
        driver::lock(&self.shared).http_base.clone()
    }

    /// Makes an HTTP request with the access token. A `401` (the token expired while the
    /// connection was down) waits for the connection, whose attempt renews the token,
    /// and tries once more.
    async fn authorized_http(&self, request: impl Fn(&str) -> HttpRequest) -> Result<(u16, Vec<u8>), Error> {
        let token = || self.tokens().map(|t| t.access_token).ok_or(Error::Closed);
        let answer = self.platform.http(request(&token()?)).await?;
        if answer.0 != 401 {
            return Ok(answer);
        }
        self.ping().await?;
        self.platform.http(request(&token()?)).await
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
        let op = Op::History {
            room: room.clone(),
            before,
            after: None,
            limit,
            cursor: None,
            threads: Default::default(),
        };
        match self.op(op).await? {
            OkBody::History(HistoryOk { messages, .. }) => Ok(messages),
            _ => Err(Error::UnexpectedReply { op: "history" }),
        }
    }

    /// One page of history forwards from after `after`, oldest first, with the cursor
    /// of the page after it (`None` once the page reaches the newest message).
    pub async fn history_after(
        &self,
        room: &RoomId,
        after: u64,
        limit: Option<u32>,
    ) -> Result<HistoryOk, Error> {
        let op = Op::History {
            room: room.clone(),
            before: None,
            after: Some(after),
            limit,
            cursor: None,
            threads: Default::default(),
        };
        match self.op(op).await? {
            OkBody::History(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "history" }),
        }
    }

    /// The page of history after the one whose `next` is `cursor`, in that page's
    /// direction.
    pub async fn history_next(
        &self,
        room: &RoomId,
        cursor: &str,
        limit: Option<u32>,
    ) -> Result<HistoryOk, Error> {
        let op = Op::History {
            room: room.clone(),
            before: None,
            after: None,
            limit,
            cursor: Some(cursor.to_owned()),
            threads: Default::default(),
        };
        match self.op(op).await? {
            OkBody::History(ok) => Ok(ok),
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

    /// One page of a message's earlier texts, oldest first (room members only); pass the
    /// answer's `next` as `cursor`.
    pub async fn edit_list(
        &self,
        room: &RoomId,
        seq: u64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<EditsOk, Error> {
        let op = Op::EditList { room: room.clone(), seq, limit, cursor: cursor.map(str::to_owned) };
        match self.op(op).await? {
            OkBody::Edits(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "edit.list" }),
        }
    }

    /// Pins a message (the room's `pin_role` and above); answers with the seq of the
    /// `system` notice that records it.
    pub async fn pin(&self, room: &RoomId, seq: u64) -> Result<SendOk, Error> {
        self.op_notice(Op::Pin { room: room.clone(), seq }, "pin").await
    }

    /// Unpins a message; answers with the seq of the `system` notice that records it.
    pub async fn unpin(&self, room: &RoomId, seq: u64) -> Result<SendOk, Error> {
        self.op_notice(Op::Unpin { room: room.clone(), seq }, "unpin").await
    }

    /// One page of a room's pinned messages, the most recently pinned first; pass the
    /// answer's `next` as `cursor`.
    pub async fn pin_list(
        &self,
        room: &RoomId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<PinsOk, Error> {
        let op = Op::PinList { room: room.clone(), limit, cursor: cursor.map(str::to_owned) };
        match self.op(op).await? {
            OkBody::Pins(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "pin.list" }),
        }
    }

    /// Replies in the thread of message `root` (with `also_to_room`, the reply is also
    /// part of the room's own timeline). Like [`Client::send`], stored exactly once.
    pub async fn reply_in_thread(
        &self,
        room: &RoomId,
        root: u64,
        text: &str,
        also_to_room: bool,
    ) -> Result<SendOk, Error> {
        self.send_message(Outgoing::thread_reply(room.clone(), root, text, also_to_room)).await
    }

    /// One page of the thread of message `root`: its replies newest first (the root in
    /// the answer); pass the answer's `next` as `cursor` for older ones.
    pub async fn thread_history(
        &self,
        room: &RoomId,
        root: u64,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ThreadHistoryOk, Error> {
        let op = Op::ThreadHistory {
            room: room.clone(),
            root,
            before: None,
            after: None,
            limit,
            cursor: cursor.map(str::to_owned),
        };
        match self.op(op).await? {
            OkBody::ThreadHistory(ok) => Ok(*ok),
            _ => Err(Error::UnexpectedReply { op: "thread.history" }),
        }
    }

    /// One page of a room's threads, the most recently replied to first, each with the
    /// user's read mark and unread count; pass the answer's `next` as `cursor`.
    pub async fn thread_list(
        &self,
        room: &RoomId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ThreadsOk, Error> {
        let op = Op::ThreadList { room: room.clone(), limit, cursor: cursor.map(str::to_owned) };
        match self.op(op).await? {
            OkBody::Threads(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "thread.list" }),
        }
    }

    /// Marks the thread of message `root` read up to reply `seq` (the mark never moves
    /// back); answers with the mark and what is still unread.
    pub async fn thread_read(&self, room: &RoomId, root: u64, seq: u64) -> Result<ThreadReadOk, Error> {
        match self.op(Op::ThreadRead { room: room.clone(), root, seq }).await? {
            OkBody::ThreadRead(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "thread.read" }),
        }
    }

    /// Like [`Client::history`], for the room's own timeline: thread replies that were
    /// not also sent to the room are left out (a page may hold fewer than `limit`).
    pub async fn room_timeline(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryOk, Error> {
        let op = Op::History {
            room: room.clone(),
            before,
            after: None,
            limit,
            cursor: None,
            threads: ThreadReplies::Exclude,
        };
        match self.op(op).await? {
            OkBody::History(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "history" }),
        }
    }

    /// One page of the members who read message `seq` (or, with `delivered`, had it
    /// delivered: rooms of at most 100 members); pass the answer's `next` as `cursor`.
    pub async fn receipt_list(
        &self,
        room: &RoomId,
        seq: u64,
        delivered: bool,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ReceiptListOk, Error> {
        let op =
            Op::ReceiptList { room: room.clone(), seq, delivered, limit, cursor: cursor.map(str::to_owned) };
        match self.op(op).await? {
            OkBody::ReceiptList(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "receipt.list" }),
        }
    }

    /// Forwards message `seq` of `from_room` (a room the user may read) into `room` with a
    /// comment (may be empty); `cid` is the idempotency key, as for a send: retry with the
    /// same one. Readers see the original's content only if they may read `from_room`.
    pub async fn forward(
        &self,
        room: &RoomId,
        cid: &ClientMsgId,
        from_room: &RoomId,
        seq: u64,
        text: &str,
    ) -> Result<SendOk, Error> {
        let op = Op::Forward {
            room: room.clone(),
            cid: cid.clone(),
            from_room: from_room.clone(),
            seq,
            text: text.to_owned(),
        };
        match self.op(op).await? {
            OkBody::Sent(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "forward" }),
        }
    }

    /// Deletes a message (leaves a tombstone).
    pub async fn delete(&self, room: &RoomId, seq: u64) -> Result<(), Error> {
        self.op(Op::Delete { room: room.clone(), seq }).await.map(drop)
    }

    /// Lists public rooms, optionally filtered by name; pass the answer's `next` as
    /// `cursor` for the next page.
    pub async fn room_list(
        &self,
        query: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<RoomListOk, Error> {
        let op = Op::RoomList { query: query.map(str::to_owned), limit, cursor: cursor.map(str::to_owned) };
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

    /// The user's rooms with their last message and unread counts (every page).
    pub async fn sync(&self) -> Result<Vec<RoomSummary>, Error> {
        let mut rooms = Vec::new();
        let mut cursor = None;
        loop {
            match self.op(Op::Sync { limit: None, cursor }).await? {
                OkBody::Sync(ok) => {
                    rooms.extend(ok.rooms);
                    match ok.next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(rooms),
                    }
                }
                _ => return Err(Error::UnexpectedReply { op: "sync" }),
            }
        }
    }

    /// Closes the connection; pending requests fail with [`Error::Closed`] and unsent
    /// messages are dropped.
    pub fn close(&self) {
        let _ = self.commands.unbounded_send(Command::Close);
    }

    /// Logs this session out (`POST /v1/auth/logout`, PROTOCOL.md §2.5.1) and closes the
    /// client: its refresh and access tokens are refused from then on. The client is
    /// closed even if the server could not be told (then the error says why, and the
    /// tokens still work until they expire or are ended another way).
    pub async fn logout(&self) -> Result<(), Error> {
        self.end_sessions(crate::auth_route::AuthRoute::Logout).await
    }

    /// Ends every session of the user, this one included (`POST /v1/auth/logout-all`):
    /// every device's tokens are refused and its sockets closed. Closes the client, like
    /// [`Client::logout`].
    pub async fn logout_everywhere(&self) -> Result<(), Error> {
        self.end_sessions(crate::auth_route::AuthRoute::LogoutAll).await
    }

    async fn end_sessions(&self, route: crate::auth_route::AuthRoute) -> Result<(), Error> {
        let token = self.tokens().map(|t| t.access_token).ok_or(Error::Closed)?;
        // Closed first: the server closes this session's socket, which the client must
        // not take for a drop to recover from.
        self.close();
        let (status, body) =
            self.platform.http(bearer_json(&self.http_base(), route, &token, "{}".into())).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(crate::auth_route::error_answer(status, &String::from_utf8_lossy(&body)))
        }
    }

    /// Changes the user's password (`POST /v1/auth/password`). Every session of the
    /// user ends, this one included: the client is closed and the answer is a new
    /// session (connect again with its tokens). A wrong `current` password is
    /// [`ErrorCode::Forbidden`](palaver_protocol::ErrorCode::Forbidden).
    pub async fn change_password(&self, current: &str, new: &str) -> Result<Session, Error> {
        let token = self.tokens().map(|t| t.access_token).ok_or(Error::Closed)?;
        let user_id = self.user_id().ok_or(Error::Closed)?;
        let body = serde_json::json!({"current_password": current, "new_password": new}).to_string();
        let route = crate::auth_route::AuthRoute::Password;
        let (status, answer) =
            self.platform.http(bearer_json(&self.http_base(), route, &token, body)).await?;
        let (tokens, _) = crate::auth_route::parse_token_answer(status, &String::from_utf8_lossy(&answer))?;
        self.close();
        Ok(Session { user_id, tokens })
    }
}

/// A request to a report route with an access token.
fn report_request(method: &'static str, url: String, token: &str, body: &str) -> HttpRequest {
    HttpRequest {
        method,
        url,
        headers: vec![
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
        ],
        body: body.as_bytes().to_vec(),
        max_answer_bytes: crate::report_route::MAX_REPORT_ANSWER_BYTES,
    }
}

impl Client {
    /// Deletes the user's account, given its password (`POST /v1/account/delete`,
    /// PROTOCOL.md §2.16): every session ends, rooms the user owns are deleted and the
    /// others left; messages stay under the user's id. The client is closed. A wrong
    /// password is [`ErrorCode::Forbidden`](palaver_protocol::ErrorCode::Forbidden) and
    /// leaves everything as it was.
    pub async fn delete_account(&self, password: &str) -> Result<(), Error> {
        let token = self.tokens().map(|t| t.access_token).ok_or(Error::Closed)?;
        let body = serde_json::json!({ "password": password }).to_string();
        let route = crate::auth_route::AuthRoute::DeleteAccount;
        let (status, answer) =
            self.platform.http(bearer_json(&self.http_base(), route, &token, body)).await?;
        if !(200..300).contains(&status) {
            return Err(crate::auth_route::error_answer(status, &String::from_utf8_lossy(&answer)));
        }
        self.close();
        Ok(())
    }
}

/// A JSON `POST` to an auth route with an access token.
fn bearer_json(
    http_base: &str,
    route: crate::auth_route::AuthRoute,
    token: &str,
    body: String,
) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url: format!("{http_base}{}", route.path()),
        headers: vec![
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
        ],
        body: body.into_bytes(),
        max_answer_bytes: driver::MAX_AUTH_ANSWER_BYTES,
    }
}

/// Typed methods for the rooms', people's and keys' ops (PROTOCOL.md §3.5). Each waits
/// for the connection and is repeated after a drop like [`Client::request`]; each
/// returns the answer's body unpacked, or [`Error::UnexpectedReply`] if the server
/// answered with another shape.
impl Client {
    async fn op_empty(&self, op: Op, name: &'static str) -> Result<(), Error> {
        match self.op(op).await? {
            OkBody::Empty(_) => Ok(()),
            _ => Err(Error::UnexpectedReply { op: name }),
        }
    }

    /// A moderation op: its answer is the seq and time of the room's notice.
    async fn op_notice(&self, op: Op, name: &'static str) -> Result<SendOk, Error> {
        match self.op(op).await? {
            OkBody::Sent(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: name }),
        }
    }

    async fn op_friend(&self, op: Op, name: &'static str) -> Result<FriendInfo, Error> {
        match self.op(op).await? {
            OkBody::Friend(ok) => Ok(ok.friend),
            _ => Err(Error::UnexpectedReply { op: name }),
        }
    }

    async fn op_details(&self, op: Op, name: &'static str) -> Result<RoomDetailsOk, Error> {
        match self.op(op).await? {
            OkBody::RoomDetails(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: name }),
        }
    }

    /// A room's details: info, settings, member count and the caller's role.
    pub async fn room_get(&self, room: &RoomId) -> Result<RoomDetailsOk, Error> {
        self.op_details(Op::RoomGet { room: room.clone() }, "room.get").await
    }

    /// Renames a room, changes its topic or settings (`None` keeps a field).
    pub async fn room_update(
        &self,
        room: &RoomId,
        name: Option<&str>,
        topic: Option<&str>,
        settings: Option<RoomSettingsPatch>,
    ) -> Result<RoomDetailsOk, Error> {
        let op = Op::RoomUpdate {
            room: room.clone(),
            name: name.map(str::to_owned),
            topic: topic.map(str::to_owned),
            settings,
        };
        self.op_details(op, "room.update").await
    }

    /// Deletes a room (owner only); its members' subscriptions end.
    pub async fn room_delete(&self, room: &RoomId) -> Result<(), Error> {
        self.op_empty(Op::RoomDelete { room: room.clone() }, "room.delete").await
    }

    /// One page of a room's members; pass the answer's `next` as `cursor`.
    pub async fn room_members(
        &self,
        room: &RoomId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<MembersOk, Error> {
        match self
            .op(Op::RoomMembers { room: room.clone(), limit, cursor: cursor.map(str::to_owned) })
            .await?
        {
            OkBody::Members(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "room.members" }),
        }
    }

    /// Invites a user to a room.
    pub async fn room_invite(&self, room: &RoomId, user: &UserId) -> Result<(), Error> {
        self.op_empty(Op::RoomInvite { room: room.clone(), user: user.clone() }, "room.invite").await
    }

    /// The caller's pending invitations.
    pub async fn invite_list(&self) -> Result<Vec<InviteInfo>, Error> {
        let mut invites = Vec::new();
        let mut cursor = None;
        loop {
            match self.op(Op::InviteList { limit: None, cursor }).await? {
                OkBody::Invites(ok) => {
                    invites.extend(ok.invites);
                    match ok.next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(invites),
                    }
                }
                _ => return Err(Error::UnexpectedReply { op: "invite.list" }),
            }
        }
    }

    /// Accepts an invitation: the caller becomes a member, and the room is joined like
    /// [`Client::join`] (its events flow and it is re-joined after reconnects).
    pub async fn invite_accept(&self, room: &RoomId) -> Result<JoinOk, Error> {
        match self.op(Op::InviteAccept { room: room.clone() }).await? {
            OkBody::Joined(_) => {}
            _ => return Err(Error::UnexpectedReply { op: "invite.accept" }),
        }
        // The accept made the membership; this join makes the client follow the room
        // (a member's join is idempotent).
        self.join(room).await
    }

    /// Declines an invitation.
    pub async fn invite_decline(&self, room: &RoomId) -> Result<(), Error> {
        self.op_empty(Op::InviteDecline { room: room.clone() }, "invite.decline").await
    }

    /// Removes a member from a room (they may join again if the room lets them).
    pub async fn kick(&self, room: &RoomId, user: &UserId, reason: Option<&str>) -> Result<SendOk, Error> {
        let op = Op::Kick { room: room.clone(), user: user.clone(), reason: reason.map(str::to_owned) };
        self.op_notice(op, "kick").await
    }

    /// Removes a member and keeps them out.
    pub async fn ban(&self, room: &RoomId, user: &UserId, reason: Option<&str>) -> Result<SendOk, Error> {
        let op = Op::Ban { room: room.clone(), user: user.clone(), reason: reason.map(str::to_owned) };
        self.op_notice(op, "ban").await
    }

    /// Lifts a ban.
    pub async fn unban(&self, room: &RoomId, user: &UserId) -> Result<SendOk, Error> {
        self.op_notice(Op::Unban { room: room.clone(), user: user.clone() }, "unban").await
    }

    /// Silences a member for `duration_secs` (1 s to 366 days).
    pub async fn mute(
        &self,
        room: &RoomId,
        user: &UserId,
        duration_secs: u64,
        reason: Option<&str>,
    ) -> Result<SendOk, Error> {
        let op = Op::Mute {
            room: room.clone(),
            user: user.clone(),
            duration_secs,
            reason: reason.map(str::to_owned),
        };
        self.op_notice(op, "mute").await
    }

    /// Lifts a mute early.
    pub async fn unmute(&self, room: &RoomId, user: &UserId) -> Result<SendOk, Error> {
        self.op_notice(Op::Unmute { room: room.clone(), user: user.clone() }, "unmute").await
    }

    /// Sets a member's role (`member`, `moderator` or `admin`).
    pub async fn role_set(&self, room: &RoomId, user: &UserId, role: RoomRole) -> Result<SendOk, Error> {
        self.op_notice(Op::RoleSet { room: room.clone(), user: user.clone(), role }, "role.set").await
    }

    /// Hands the room to another member; the caller becomes an admin.
    pub async fn room_transfer(&self, room: &RoomId, user: &UserId) -> Result<SendOk, Error> {
        self.op_notice(Op::RoomTransfer { room: room.clone(), user: user.clone() }, "room.transfer").await
    }

    /// A user's profile, with their presence when the caller may see it.
    pub async fn user_get(&self, user: &UserId) -> Result<ProfileOk, Error> {
        match self.op(Op::UserGet { user: user.clone() }).await? {
            OkBody::Profile(ok) => Ok(*ok),
            _ => Err(Error::UnexpectedReply { op: "user.get" }),
        }
    }

    /// Changes the caller's profile: `None` keeps a field, an empty string clears it.
    pub async fn user_update(
        &self,
        display_name: Option<&str>,
        avatar: Option<&str>,
        status_text: Option<&str>,
    ) -> Result<Profile, Error> {
        let op = Op::UserUpdate {
            display_name: display_name.map(str::to_owned),
            avatar: avatar.map(str::to_owned),
            status_text: status_text.map(str::to_owned),
            share_read_receipts: None,
        };
        match self.op(op).await? {
            OkBody::Profile(ok) => Ok(ok.profile),
            _ => Err(Error::UnexpectedReply { op: "user.update" }),
        }
    }

    /// Shares how far the user has read with the members of their rooms (the default), or
    /// keeps it private; answers with the user's own profile.
    pub async fn share_read_receipts(&self, share: bool) -> Result<Profile, Error> {
        let op = Op::UserUpdate {
            display_name: None,
            avatar: None,
            status_text: None,
            share_read_receipts: Some(share),
        };
        match self.op(op).await? {
            OkBody::Profile(ok) => Ok(ok.profile),
            _ => Err(Error::UnexpectedReply { op: "user.update" }),
        }
    }

    /// The user's notification settings (the same on every device).
    pub async fn notifications(&self) -> Result<NotificationSettings, Error> {
        self.notifications_op(Op::NotificationsGet {}, "notifications.get").await
    }

    /// Changes the account-wide notification settings: the level of rooms without their
    /// own, and the keywords that count as mentions; `None` keeps either.
    pub async fn set_notifications(
        &self,
        level: Option<NotifyLevel>,
        keywords: Option<Vec<String>>,
    ) -> Result<NotificationSettings, Error> {
        self.notifications_op(Op::NotificationsSet { level, keywords }, "notifications.set").await
    }

    /// Replaces one room's notification setting: its own level (`None`: the account's)
    /// and a mute (`muted_until`: when it ends, ms since the Unix epoch; `None`: until
    /// lifted). `RoomNotifications { room, level: None, muted: false, muted_until: None }`
    /// returns the room to the account's settings.
    pub async fn set_room_notifications(
        &self,
        setting: RoomNotifications,
    ) -> Result<NotificationSettings, Error> {
        let RoomNotifications { room, level, muted, muted_until } = setting;
        self.notifications_op(Op::NotificationsRoom { room, level, muted, muted_until }, "notifications.room")
            .await
    }

    /// Registers this browser's or device's Web Push subscription (its endpoint, and
    /// its `p256dh` and `auth` keys in base64url): while no socket of the user is
    /// connected, messages their notification settings select are pushed to it.
    pub async fn push_subscribe(&self, endpoint: &str, p256dh: &str, auth: &str) -> Result<(), Error> {
        let op = Op::PushSubscribe { endpoint: endpoint.into(), p256dh: p256dh.into(), auth: auth.into() };
        self.op(op).await.map(drop)
    }

    /// Forgets a Web Push subscription.
    pub async fn push_unsubscribe(&self, endpoint: &str) -> Result<(), Error> {
        self.op(Op::PushUnsubscribe { endpoint: endpoint.into() }).await.map(drop)
    }

    async fn notifications_op(&self, op: Op, name: &'static str) -> Result<NotificationSettings, Error> {
        match self.op(op).await? {
            OkBody::Notifications(ok) => Ok(ok.notifications),
            _ => Err(Error::UnexpectedReply { op: name }),
        }
    }

    /// Users whose username starts with `prefix`.
    pub async fn user_search(&self, prefix: &str, limit: Option<u32>) -> Result<Vec<Profile>, Error> {
        match self.op(Op::UserSearch { prefix: prefix.to_owned(), limit }).await? {
            OkBody::Users(ok) => Ok(ok.users),
            _ => Err(Error::UnexpectedReply { op: "user.search" }),
        }
    }

    /// Asks a user to be friends (accepted at once if they already asked).
    pub async fn friend_request(&self, user: &UserId) -> Result<FriendInfo, Error> {
        self.op_friend(Op::FriendRequest { user: user.clone() }, "friend.request").await
    }

    /// Accepts a user's friend request.
    pub async fn friend_accept(&self, user: &UserId) -> Result<FriendInfo, Error> {
        self.op_friend(Op::FriendAccept { user: user.clone() }, "friend.accept").await
    }

    /// Declines a user's friend request.
    pub async fn friend_decline(&self, user: &UserId) -> Result<FriendInfo, Error> {
        self.op_friend(Op::FriendDecline { user: user.clone() }, "friend.decline").await
    }

    /// Withdraws the caller's own request to a user.
    pub async fn friend_cancel(&self, user: &UserId) -> Result<FriendInfo, Error> {
        self.op_friend(Op::FriendCancel { user: user.clone() }, "friend.cancel").await
    }

    /// Ends a friendship.
    pub async fn friend_remove(&self, user: &UserId) -> Result<FriendInfo, Error> {
        self.op_friend(Op::FriendRemove { user: user.clone() }, "friend.remove").await
    }

    /// Friends and pending requests, with friends' presence.
    pub async fn friend_list(&self) -> Result<Vec<FriendInfo>, Error> {
        let mut friends = Vec::new();
        let mut cursor = None;
        loop {
            match self.op(Op::FriendList { limit: None, cursor }).await? {
                OkBody::Friends(ok) => {
                    friends.extend(ok.friends);
                    match ok.next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(friends),
                    }
                }
                _ => return Err(Error::UnexpectedReply { op: "friend.list" }),
            }
        }
    }

    /// Blocks a user: no DMs, friend requests or invitations from them; their messages
    /// arrive flagged `blocked`.
    pub async fn block(&self, user: &UserId) -> Result<(), Error> {
        self.op_empty(Op::Block { user: user.clone() }, "block").await
    }

    /// Lifts a block.
    pub async fn unblock(&self, user: &UserId) -> Result<(), Error> {
        self.op_empty(Op::Unblock { user: user.clone() }, "unblock").await
    }

    /// The users the caller blocked.
    pub async fn block_list(&self) -> Result<Vec<UserId>, Error> {
        let mut blocked = Vec::new();
        let mut cursor = None;
        loop {
            match self.op(Op::BlockList { limit: None, cursor }).await? {
                OkBody::Blocked(ok) => {
                    blocked.extend(ok.blocked);
                    match ok.next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(blocked),
                    }
                }
                _ => return Err(Error::UnexpectedReply { op: "block.list" }),
            }
        }
    }

    /// Chooses online, away or invisible.
    pub async fn presence_set(&self, status: PresenceChoice) -> Result<(), Error> {
        self.op_empty(Op::PresenceSet { status }, "presence.set").await
    }

    /// Follows users' presence; returns their current presence. Changes then arrive as
    /// [`ClientEvent::Presence`](crate::ClientEvent::Presence) events. The subscription
    /// is renewed after every reconnect, which also emits each user's current presence as
    /// a `Presence` event (changes while offline are not missed).
    pub async fn presence_subscribe(&self, users: &[UserId]) -> Result<Vec<PresenceInfo>, Error> {
        match self.op(Op::PresenceSubscribe { users: users.to_vec() }).await? {
            OkBody::PresenceList(ok) => Ok(ok.presence),
            _ => Err(Error::UnexpectedReply { op: "presence.subscribe" }),
        }
    }

    /// Stops following users' presence.
    pub async fn presence_unsubscribe(&self, users: &[UserId]) -> Result<(), Error> {
        self.op_empty(Op::PresenceUnsubscribe { users: users.to_vec() }, "presence.unsubscribe").await
    }

    /// Publishes a device's public keys and one-time prekeys; returns how many unclaimed
    /// one-time keys the device now has.
    pub async fn keys_upload(
        &self,
        device_id: &str,
        identity_key: &str,
        signing_key: Option<&str>,
        one_time_keys: Vec<OneTimeKey>,
    ) -> Result<KeysUploadOk, Error> {
        let op = Op::KeysUpload {
            device_id: device_id.to_owned(),
            identity_key: identity_key.to_owned(),
            signing_key: signing_key.map(str::to_owned),
            one_time_keys,
        };
        match self.op(op).await? {
            OkBody::KeysUploaded(ok) => Ok(ok),
            _ => Err(Error::UnexpectedReply { op: "keys.upload" }),
        }
    }

    /// A user's devices and their public keys.
    pub async fn keys_list(&self, user: &UserId) -> Result<Vec<DeviceKeys>, Error> {
        match self.op(Op::KeysList { user: user.clone() }).await? {
            OkBody::Devices(ok) => Ok(ok.devices),
            _ => Err(Error::UnexpectedReply { op: "keys.list" }),
        }
    }

    /// Claims one one-time key of each of a user's devices (or of one device); each key
    /// is handed out once.
    pub async fn keys_claim(&self, user: &UserId, device_id: Option<&str>) -> Result<Vec<ClaimedKey>, Error> {
        match self.op(Op::KeysClaim { user: user.clone(), device_id: device_id.map(str::to_owned) }).await? {
            OkBody::Claimed(ok) => Ok(ok.claimed),
            _ => Err(Error::UnexpectedReply { op: "keys.claim" }),
        }
    }
}

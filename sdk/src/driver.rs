//! The async driver shared by the native and browser transports: it owns a
//! [`ClientCore`], a socket and the command channel from the [`Client`](crate::Client)
//! handles, and moves bytes and time between them. A [`Platform`] supplies the I/O.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use futures_channel::{mpsc, oneshot};
use futures_util::{FutureExt as _, StreamExt as _, future, pin_mut, select};
use palaver_protocol::{ClientFrame, Codec, ErrorCode, OkBody, Op, RoomId, ServerFrame, UserId};

use crate::auth_route::{AuthRoute, auth_body, parse_token_answer};
use crate::core::{Action, ClientCore, ClientEvent, Outgoing, Output, Ticket};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::event_stream::{self, EventSink, Events};
use crate::tokens::{Credentials, Tokens};

/// Largest HTTP answer read from the auth routes.
pub(crate) const MAX_AUTH_ANSWER_BYTES: usize = 1 << 20;

/// One HTTP/1.1 request.
#[derive(Debug)]
pub(crate) struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    /// Headers besides `host`, `content-length` and `connection`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A longer answer body is an error.
    pub max_answer_bytes: usize,
}

/// I/O a transport provides: sockets, HTTP, timers and clocks.
pub(crate) trait Platform: Clone + 'static {
    /// An open WebSocket.
    type Socket: Socket;
    /// Opens the WebSocket at `url` offering `codec`'s subprotocol.
    fn connect(&self, url: String, codec: Codec) -> impl Future<Output = Result<Self::Socket, Error>>;
    /// Makes an HTTP request; returns the status and the body. A server that refuses a
    /// request before reading all of its body still has its answer read.
    fn http(&self, request: HttpRequest) -> impl Future<Output = Result<(u16, Vec<u8>), Error>>;
    /// Sleeps.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// Monotonic milliseconds.
    fn now_ms(&self) -> u64;
    /// Wall-clock milliseconds since the Unix epoch.
    fn unix_ms(&self) -> u64;
}

/// One open WebSocket.
pub(crate) trait Socket {
    /// Writes one message (text or binary).
    fn send(&mut self, bytes: Vec<u8>, text: bool) -> impl Future<Output = Result<(), Error>>;
    /// The next data message; `None` once closed.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Vec<u8>, Error>>>;
    /// Closes politely.
    fn close(&mut self) -> impl Future<Output = ()>;
    /// Sends one frame as an unreliable datagram, if the transport has them and it
    /// fits; false otherwise (send it as a message then).
    fn send_datagram(&mut self, _bytes: &[u8]) -> bool {
        false
    }
}

/// What a [`Client`](crate::Client) handle asks the driver.
pub(crate) enum Command {
    Request { op: Op, reply: oneshot::Sender<Result<OkBody, Error>> },
    Join { room: RoomId, since: Option<u64>, reply: oneshot::Sender<Result<OkBody, Error>> },
    Send { message: Outgoing, reply: oneshot::Sender<Result<OkBody, Error>> },
    MarkRead { room: RoomId, seq: u64 },
    Close,
}

/// POSTs a JSON body to an auth route; returns the status and the body.
pub(crate) async fn post_json<P: Platform>(
    platform: &P,
    url: String,
    body: String,
) -> Result<(u16, String), Error> {
    let request = HttpRequest {
        method: "POST",
        url,
        headers: vec![("content-type", "application/json".into()), ("accept", "application/json".into())],
        body: body.into_bytes(),
        max_answer_bytes: MAX_AUTH_ANSWER_BYTES,
    };
    let (status, body) = platform.http(request).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// State the handles can read without a round trip.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub tokens: Option<Tokens>,
    pub user_id: Option<UserId>,
    pub connected: bool,
    /// The HTTP base of the node the client is (or was last) connected to.
    pub http_base: String,
    /// Event streams. Registered here, synchronously, by `Client::events`, so a stream
    /// gets every event emitted after the call returns (through a command it could miss
    /// the events the driver handled before reading that command).
    pub subscribers: Vec<EventSink>,
    /// The stream opened when the first connection was ready, for the first
    /// `Client::events` call: it holds every event after that first `Connected`.
    pub first_stream: Option<Events>,
    /// How many events each stream holds before dropping its oldest.
    pub event_buffer: usize,
    /// The driver has stopped: new streams end at once.
    pub closed: bool,
}

/// Hands an event to every live stream.
fn emit(shared: &SharedState, event: &ClientEvent) {
    lock(shared).subscribers.retain(|s| s.push(event));
}

pub(crate) type SharedState = Arc<Mutex<Shared>>;

pub(crate) fn lock(shared: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the driver needs besides the platform.
pub(crate) struct DriverSetup {
    /// The server, then its fallbacks (other nodes of a cluster), tried in turn.
    pub endpoints: Vec<Endpoint>,
    pub codec: Codec,
    pub credentials: Credentials,
    pub connect_timeout_ms: u64,
    pub core: ClientCore,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub shared: SharedState,
    /// Answered once: the first connection is ready (after its `Connected` was emitted),
    /// or the client closed before that (its first connection failed for good).
    pub ready: oneshot::Sender<Result<UserId, Error>>,
}

/// Gets tokens over HTTP from credentials (login or register) or a refresh token.
pub(crate) async fn fetch_tokens<P: Platform>(
    platform: &P,
    endpoint: &Endpoint,
    route: AuthRoute,
    credentials: &Credentials,
    refresh_token: Option<&str>,
) -> Result<(Tokens, Option<String>), Error> {
    let body = auth_body(route, credentials, refresh_token)
        .ok_or_else(|| Error::Auth("no credentials to log in with".into()))?;
    let (status, text) = post_json(platform, format!("{}{}", endpoint.http_base, route.path()), body).await?;
    parse_token_answer(status, &text)
}

/// Where creating the account stands, for [`Credentials::Register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registration {
    NotTried,
    /// A `register` was sent and its outcome is unknown (no answer, or `internal`): the
    /// account may exist, so a `conflict` on the next try means it is ours.
    Unsure,
    /// The account exists: log in from now on.
    Done,
}

/// Obtains fresh tokens for the core: refresh if possible, else register (once, with
/// [`Credentials::Register`]) or log in with the password. `Err((error, fatal))`: a
/// fatal error is a refusal of the credentials, not worth retrying.
async fn obtain_tokens<P: Platform>(
    platform: &P,
    endpoint: &Endpoint,
    credentials: &Credentials,
    refresh_token: Option<String>,
    registration: &mut Registration,
) -> Result<Tokens, (Error, bool)> {
    if let Credentials::Source(source) = credentials {
        return match source.fetch().await {
            Ok(Some(token)) => Ok(Tokens::access_only(token)),
            Ok(None) => Err((Error::Auth("signed out: the token source has no token".into()), true)),
            Err(reason) => Err((Error::Auth(format!("the token source failed: {reason}")), false)),
        };
    }
    let can_login = !matches!(credentials, Credentials::Tokens(_));
    if let Some(refresh) = refresh_token {
        match fetch_tokens(platform, endpoint, AuthRoute::Refresh, credentials, Some(&refresh)).await {
            Ok((tokens, _)) => return Ok(tokens),
            Err(e) if e.code() == Some(ErrorCode::Unauthorized) || e.code() == Some(ErrorCode::Invalid) => {
                if !can_login {
                    return Err((e, true));
                }
            }
            Err(e) => return Err((e, false)),
        }
    }
    if !can_login {
        return Err((Error::Auth("the access token expired and there is no refresh token".into()), true));
    }
    if matches!(credentials, Credentials::Register { .. }) && *registration != Registration::Done {
        let first_try = *registration == Registration::NotTried;
        // Until an answer says otherwise (the attempt may be cut short by a timeout).
        *registration = Registration::Unsure;
        match fetch_tokens(platform, endpoint, AuthRoute::Register, credentials, None).await {
            Ok((tokens, _)) => {
                *registration = Registration::Done;
                return Ok(tokens);
            }
            // An earlier attempt whose answer was lost created the account: log in.
            Err(e) if e.code() == Some(ErrorCode::Conflict) && !first_try => {
                *registration = Registration::Done;
            }
            Err(e) if e.is_transient() => {
                // These two are guaranteed to have had no effect.
                if first_try && matches!(e.code(), Some(ErrorCode::RateLimited | ErrorCode::Unavailable)) {
                    *registration = Registration::NotTried;
                }
                return Err((e, false));
            }
            Err(e) => return Err((e, true)),
        }
    }
    match fetch_tokens(platform, endpoint, AuthRoute::Login, credentials, None).await {
        Ok((tokens, _)) => Ok(tokens),
        Err(e) => {
            let fatal = !e.is_transient();
            Err((e, fatal))
        }
    }
}

async fn with_timeout<P: Platform, T>(
    platform: &P,
    ms: u64,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let fut = fut.fuse();
    let timer = platform.sleep(ms).fuse();
    pin_mut!(fut, timer);
    select! {
        r = fut => r,
        () = timer => Err(Error::Transport(format!("no answer within {ms} ms"))),
    }
}

/// Sends a `typing.start`/`typing.stop` as a datagram (id 0: its answer is never sent);
/// false for any other op or when the socket cannot.
fn sent_as_datagram<S: Socket>(socket: &mut S, codec: Codec, op: &Op) -> bool {
    if !matches!(op, Op::TypingStart { .. } | Op::TypingStop { .. }) {
        return false;
    }
    match encode_frame(codec, &ClientFrame { id: 0, op: op.clone() }) {
        Ok(bytes) => socket.send_datagram(&bytes),
        Err(_) => false,
    }
}

/// A frame to send, in the connection's codec.
#[cfg(not(target_arch = "wasm32"))]
fn encode_frame(codec: Codec, frame: &ClientFrame) -> Result<Vec<u8>, Error> {
    codec.encode_client(frame).map_err(|e| Error::Codec(e.to_string()))
}

/// A frame received, in the connection's codec; a JSON reply is read as the answer of
/// the request it answers.
#[cfg(not(target_arch = "wasm32"))]
fn decode_frame(codec: Codec, bytes: &[u8], core: &ClientCore) -> Result<ServerFrame, Error> {
    codec.decode_server_answering(bytes, |re| core.answer_of(re)).map_err(|e| Error::Codec(e.to_string()))
}

/// A frame to send: the browser speaks JSON only (see `wasm::Client::connect_with`), so
/// its build carries no rkyv codec.
#[cfg(target_arch = "wasm32")]
fn encode_frame(_: Codec, frame: &ClientFrame) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(frame).map_err(|e| Error::Codec(e.to_string()))
}

/// A frame received, as JSON (see [`encode_frame`]).
#[cfg(target_arch = "wasm32")]
fn decode_frame(_: Codec, bytes: &[u8], core: &ClientCore) -> Result<ServerFrame, Error> {
    palaver_protocol::decode_json_server_answering(bytes, |re| core.answer_of(re))
        .map_err(|e| Error::Codec(e.to_string()))
}

enum Woke {
    Command(Option<Command>),
    Frame(Option<Result<Vec<u8>, Error>>),
    Timer,
}

/// Runs a client until it is closed (by a handle, or by every handle being dropped) or
/// its credentials are refused.
pub(crate) async fn run<P: Platform>(platform: P, setup: DriverSetup) {
    let DriverSetup {
        endpoints,
        codec,
        credentials,
        connect_timeout_ms,
        mut core,
        mut commands,
        shared,
        ready,
    } = setup;
    let mut current = 0usize;
    let mut registration = Registration::NotTried;
    let mut ready = Some(ready);
    let mut socket: Option<P::Socket> = None;
    let mut tickets: HashMap<Ticket, oneshot::Sender<Result<OkBody, Error>>> = HashMap::new();
    core.handle_timeout(platform.now_ms());
    loop {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Completed(c) => {
                    if let Some(reply) = tickets.remove(&c.ticket) {
                        let _ = reply.send(c.result);
                    }
                }
                Output::Event(event) => {
                    match &event {
                        ClientEvent::Connected { user_id, .. } => {
                            let mut s = lock(&shared);
                            s.user_id = Some(user_id.clone());
                            s.connected = true;
                            s.http_base = endpoints[current].http_base.clone();
                        }
                        ClientEvent::Disconnected { .. } => lock(&shared).connected = false,
                        ClientEvent::Tokens(tokens) => lock(&shared).tokens = Some(tokens.clone()),
                        ClientEvent::Closed { .. } => lock(&shared).connected = false,
                        _ => {}
                    }
                    emit(&shared, &event);
                    match (&event, ready.take()) {
                        // The first connection is ready: from here on every event also goes
                        // to the stream the first `Client::events` call will get, then
                        // `connect` returns.
                        (ClientEvent::Connected { user_id, .. }, Some(r)) => {
                            let mut s = lock(&shared);
                            let (sink, stream) = event_stream::stream(s.event_buffer);
                            s.subscribers.push(sink);
                            s.first_stream = Some(stream);
                            drop(s);
                            let _ = r.send(Ok(user_id.clone()));
                        }
                        (ClientEvent::Closed { error }, Some(r)) => {
                            let _ = r.send(Err(error.clone().unwrap_or(Error::Closed)));
                        }
                        (_, r) => ready = r,
                    }
                }
            }
        }
        if let Some(action) = core.poll_action() {
            match action {
                Action::Disconnect => {
                    if let Some(mut s) = socket.take() {
                        s.close().await;
                    }
                }
                Action::Connect => {
                    let result = with_timeout(
                        &platform,
                        connect_timeout_ms,
                        platform.connect(endpoints[current].ws_url.clone(), codec),
                    )
                    .await;
                    let now = platform.now_ms();
                    match result {
                        Ok(s) => {
                            socket = Some(s);
                            core.handle_connected(now);
                        }
                        Err(e) => {
                            // The next attempt goes to the next node, if there are others.
                            current = (current + 1) % endpoints.len();
                            core.handle_connect_failed(now, e);
                        }
                    }
                }
                Action::ObtainTokens { refresh_token } => {
                    let result = with_timeout(&platform, connect_timeout_ms, async {
                        let endpoint = &endpoints[current];
                        Ok(obtain_tokens(&platform, endpoint, &credentials, refresh_token, &mut registration)
                            .await)
                    })
                    .await
                    .unwrap_or_else(|timeout| {
                        // A token source that does not answer is failing (counted); the
                        // server's own routes not answering is the server being away.
                        let error = match credentials {
                            Credentials::Source(_) => Error::Auth(format!("the token source: {timeout}")),
                            _ => timeout,
                        };
                        Err((error, false))
                    });
                    let now = platform.now_ms();
                    match result {
                        Ok(tokens) => core.handle_tokens(now, platform.unix_ms(), tokens),
                        Err((e, fatal)) => {
                            if !fatal && !core.is_ready() {
                                // The next attempt goes to the next node, if there are others.
                                current = (current + 1) % endpoints.len();
                            }
                            core.handle_tokens_failed(now, e, fatal);
                        }
                    }
                }
            }
            continue;
        }
        if let Some(s) = socket.as_mut() {
            let mut failure = None;
            while let Some(frame) = core.poll_transmit() {
                match encode_frame(codec, &frame) {
                    Ok(bytes) => {
                        if let Err(e) = s.send(bytes, codec.is_text()).await {
                            failure = Some(e);
                            break;
                        }
                    }
                    // Only an rkyv/serde bug could do this; the request will time out.
                    Err(_) => continue,
                }
            }
            if let Some(e) = failure {
                socket = None;
                core.handle_disconnected(platform.now_ms(), &e.to_string());
                continue;
            }
        }
        if core.is_closed() {
            break;
        }
        let wait = core.poll_timeout().map(|t| t.saturating_sub(platform.now_ms()));
        let woke = {
            let command = commands.next().fuse();
            let frame = async {
                match socket.as_mut() {
                    Some(s) => s.recv().await,
                    None => future::pending().await,
                }
            }
            .fuse();
            let timer = async {
                match wait {
                    Some(ms) => platform.sleep(ms).await,
                    None => future::pending().await,
                }
            }
            .fuse();
            pin_mut!(command, frame, timer);
            select! {
                c = command => Woke::Command(c),
                f = frame => Woke::Frame(f),
                () = timer => Woke::Timer,
            }
        };
        let now = platform.now_ms();
        match woke {
            Woke::Command(None) | Woke::Command(Some(Command::Close)) => core.close(now),
            Woke::Command(Some(command)) => match command {
                // Typing goes as a datagram where the transport has them (QUIC, §7.3): the
                // server answers it on no stream, so it is done once sent.
                Command::Request { op, reply }
                    if core.is_ready()
                        && socket.as_mut().is_some_and(|s| sent_as_datagram(s, codec, &op)) =>
                {
                    let _ = reply.send(Ok(OkBody::Empty(palaver_protocol::Empty {})));
                }
                Command::Request { op, reply } => {
                    tickets.insert(core.request(now, op), reply);
                }
                Command::Join { room, since, reply } => {
                    tickets.insert(core.join(now, room, since), reply);
                }
                Command::Send { message, reply } => {
                    tickets.insert(core.send(now, message), reply);
                }
                Command::MarkRead { room, seq } => core.mark_read(now, &room, seq),
                Command::Close => core.close(now),
            },
            Woke::Frame(Some(Ok(bytes))) => {
                // Frames this version cannot decode (e.g. a future event) are ignored (§1.1).
                if let Ok(frame) = decode_frame(codec, &bytes, &core) {
                    core.handle_frame(now, frame);
                }
            }
            Woke::Frame(Some(Err(e))) => {
                socket = None;
                core.handle_disconnected(now, &e.to_string());
            }
            Woke::Frame(None) => {
                socket = None;
                core.handle_disconnected(now, "the server closed the connection");
            }
            Woke::Timer => core.handle_timeout(now),
        }
    }
    // Flush the final outputs (failed tickets, the Closed event).
    while let Some(output) = core.poll_output() {
        match output {
            Output::Completed(c) => {
                if let Some(reply) = tickets.remove(&c.ticket) {
                    let _ = reply.send(c.result);
                }
            }
            Output::Event(event) => emit(&shared, &event),
        }
    }
    {
        let mut s = lock(&shared);
        s.closed = true;
        s.subscribers.clear();
    }
    if let Some(r) = ready.take() {
        let _ = r.send(Err(Error::Closed));
    }
    if let Some(mut s) = socket.take() {
        s.close().await;
    }
}

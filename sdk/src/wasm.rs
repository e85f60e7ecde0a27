//! The browser transport: the browser's `WebSocket` and `fetch` through web-sys, timers
//! through `setTimeout`, and the `#[wasm_bindgen]` class [`WasmClient`] that the
//! JavaScript package (`sdk/js`, `@palaver/client`) wraps in its typed API.
//!
//! The event connection is WebTransport when the page has it (see `wasm_webtransport`),
//! else a WebSocket: [`TransportPreference`] says how to choose. A WebTransport session
//! that does not open within its timeout (UDP blocked, a proxy) or fails is replaced by a
//! WebSocket at once; once a WebSocket worked where WebTransport did not, the client
//! stays on WebSocket. Reconnects resume the same way on either (`since` per room).
//!
//! Browsers cannot set headers on a WebSocket, so the socket authenticates with the
//! `auth` op (as the core always does). The auth and file routes are called with `fetch`,
//! which needs the server to allow the page's origin (`--cors-origins`) when the page is
//! served from another origin. Nothing is stored in the page's storage: tokens live in
//! memory only, and the refresh token never leaves the client.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use futures_channel::mpsc;
use futures_util::StreamExt as _;
use palaver_protocol::{ClientMsgId, Codec, Encryption, FileRef, MessageKind, Op, RoomId};
use serde::Deserialize;
use serde_json::json;
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::auth_route::AuthRoute;
use crate::client::{self, Client, ClientOptions, Session};
use crate::core::{ClientEvent, Outgoing};
use crate::driver::{self, HttpRequest, Platform, Socket};
use crate::error::Error;
use crate::op_json::op_from_json;
use crate::tokens::{Credentials, TokenSource, Tokens};
use crate::wasm_webtransport::{self, WebTransportSocket};

/// The browser platform: the page's `WebTransport` or `WebSocket`, `fetch` and timers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Browser {
    transport: Arc<TransportPreference>,
}

/// How the browser picks its transport.
#[derive(Debug)]
pub(crate) struct TransportPreference {
    /// Try WebTransport first (when the page has it); `false`: WebSocket only.
    pub webtransport: bool,
    /// The session's URL (`https://host:port/v1/webtransport?codec=json`); by default
    /// the server's route `GET /v1/webtransport/certificate-hashes` gives the port.
    pub url: Option<String>,
    /// SHA-256 hashes of the certificates to accept (`serverCertificateHashes`); by
    /// default the route's, when the server presents its development certificate.
    pub certificate_hashes: Option<Vec<Vec<u8>>>,
    /// How long `ready` may take before the WebSocket is used instead.
    pub timeout_ms: u64,
    state: Mutex<TransportState>,
}

impl Default for TransportPreference {
    fn default() -> Self {
        TransportPreference {
            webtransport: true,
            url: None,
            certificate_hashes: None,
            timeout_ms: DEFAULT_WEBTRANSPORT_TIMEOUT_MS,
            state: Mutex::default(),
        }
    }
}

#[derive(Debug, Default)]
struct TransportState {
    /// The transport of the current (or last) connection.
    in_use: Option<&'static str>,
    /// WebTransport failed where a WebSocket then worked: WebSocket from now on.
    websocket_only: bool,
}

/// How long a WebTransport session may take to open by default.
const DEFAULT_WEBTRANSPORT_TIMEOUT_MS: u64 = 3_000;

pub(crate) fn js_error(context: &str, value: &JsValue) -> Error {
    Error::Transport(format!("{context}: {}", value.as_string().unwrap_or_else(|| format!("{value:?}"))))
}

fn window() -> Result<web_sys::Window, Error> {
    web_sys::window().ok_or_else(|| Error::Transport("no window (not running in a page)".into()))
}

enum Incoming {
    Open,
    Data(Vec<u8>),
    Closed(String),
}

/// Handlers registered on the WebSocket; dropped (and unregistered) with the socket.
struct Handlers {
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

/// The event connection: a WebTransport session or a WebSocket.
pub(crate) enum BrowserSocket {
    WebTransport(WebTransportSocket),
    WebSocket(WebSocketConnection),
}

pub(crate) struct WebSocketConnection {
    ws: WebSocket,
    rx: mpsc::UnboundedReceiver<Incoming>,
    _handlers: Handlers,
}

impl Drop for WebSocketConnection {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

impl Socket for BrowserSocket {
    async fn send(&mut self, bytes: Vec<u8>, text: bool) -> Result<(), Error> {
        match self {
            BrowserSocket::WebTransport(session) => session.send(&bytes).await,
            BrowserSocket::WebSocket(socket) => socket.send(bytes, text),
        }
    }

    async fn recv(&mut self) -> Option<Result<Vec<u8>, Error>> {
        match self {
            BrowserSocket::WebTransport(session) => session.recv().await,
            BrowserSocket::WebSocket(socket) => socket.recv().await,
        }
    }

    async fn close(&mut self) {
        match self {
            BrowserSocket::WebTransport(session) => session.close(),
            BrowserSocket::WebSocket(socket) => {
                let _ = socket.ws.close();
            }
        }
    }
}

impl WebSocketConnection {
    fn send(&mut self, bytes: Vec<u8>, text: bool) -> Result<(), Error> {
        let sent = if text {
            let text = String::from_utf8(bytes).map_err(|e| Error::Codec(e.to_string()))?;
            self.ws.send_with_str(&text)
        } else {
            self.ws.send_with_u8_array(&bytes)
        };
        sent.map_err(|e| js_error("WebSocket send", &e))
    }

    async fn recv(&mut self) -> Option<Result<Vec<u8>, Error>> {
        loop {
            match self.rx.next().await? {
                Incoming::Data(bytes) => return Some(Ok(bytes)),
                Incoming::Open => continue,
                Incoming::Closed(_) => return None,
            }
        }
    }
}

impl Browser {
    /// A platform choosing its transport as `preference` says.
    pub(crate) fn with_transport(preference: TransportPreference) -> Self {
        Browser { transport: Arc::new(preference) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TransportState> {
        self.transport.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport of the current (or last) connection: `webtransport` or `websocket`.
    pub(crate) fn transport_in_use(&self) -> Option<&'static str> {
        self.state().in_use
    }

    /// Where the session opens and which certificate hashes to accept: the preference's,
    /// else the server's route's (the WebSocket URL's host, the route's port and path).
    async fn webtransport_target(&self, ws_url: &str) -> Result<(String, Vec<Vec<u8>>), Error> {
        let preference = &self.transport;
        if let (Some(url), Some(hashes)) = (&preference.url, &preference.certificate_hashes) {
            return Ok((url.clone(), hashes.clone()));
        }
        let endpoint = crate::endpoint::Endpoint::parse(ws_url)?;
        let request = HttpRequest {
            method: "GET",
            url: format!("{}/v1/webtransport/certificate-hashes", endpoint.http_base),
            headers: vec![("accept", "application/json".into())],
            body: Vec::new(),
            max_answer_bytes: 64 * 1024,
        };
        let (status, body) = self.http(request).await?;
        if status != 200 {
            return Err(Error::Http { status, body: String::from_utf8_lossy(&body).into_owned() });
        }
        // `{"port", "path", "certificate_hashes": [{"value": HEX, …}]}` (read as a `Value`:
        // a derived decoder would cost the page more bytes).
        let route: serde_json::Value =
            serde_json::from_str(&String::from_utf8_lossy(&body)).unwrap_or_default();
        let (Some(port), Some(path)) = (route["port"].as_u64(), route["path"].as_str()) else {
            return Err(Error::Transport("the WebTransport route's answer has no port".into()));
        };
        let host =
            if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.clone() };
        let url = preference.url.clone().unwrap_or_else(|| format!("https://{host}:{port}{path}?codec=json"));
        let hashes = match &preference.certificate_hashes {
            Some(hashes) => hashes.clone(),
            None => route["certificate_hashes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| wasm_webtransport::parse_hash(h["value"].as_str().unwrap_or_default()))
                .collect::<Result<_, _>>()?,
        };
        Ok((url, hashes))
    }

    async fn open_webtransport(&self, ws_url: &str) -> Result<WebTransportSocket, Error> {
        let (url, hashes) = self.webtransport_target(ws_url).await?;
        WebTransportSocket::open(&url, &hashes, self.sleep(self.transport.timeout_ms)).await
    }

    async fn open_websocket(&self, url: String, codec: Codec) -> Result<WebSocketConnection, Error> {
        let ws = WebSocket::new_with_str(&url, codec.subprotocol()).map_err(|e| js_error("WebSocket", &e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, rx) = mpsc::unbounded();
        let on_open = {
            let tx = tx.clone();
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                let _ = tx.unbounded_send(Incoming::Open);
            })
        };
        let on_message = {
            let tx = tx.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                let bytes = if let Some(text) = data.as_string() {
                    text.into_bytes()
                } else if let Ok(buffer) = data.dyn_into::<js_sys::ArrayBuffer>() {
                    js_sys::Uint8Array::new(&buffer).to_vec()
                } else {
                    return;
                };
                let _ = tx.unbounded_send(Incoming::Data(bytes));
            })
        };
        let on_close = {
            let tx = tx.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                let _ = tx.unbounded_send(Incoming::Closed(format!("closed with {}", event.code())));
            })
        };
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let _ = tx.unbounded_send(Incoming::Closed("WebSocket error".into()));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let handlers =
            Handlers { _on_open: on_open, _on_message: on_message, _on_close: on_close, _on_error: on_error };
        // Owned by the socket from here: on a failure below, dropping it unregisters the
        // handlers before they are freed (a failed socket still fires `close` after `error`).
        let mut socket = WebSocketConnection { ws, rx, _handlers: handlers };
        match socket.rx.next().await {
            Some(Incoming::Open) => {}
            Some(Incoming::Closed(reason)) => return Err(Error::Transport(reason)),
            _ => return Err(Error::Transport("WebSocket failed to open".into())),
        }
        if socket.ws.protocol() != codec.subprotocol() {
            return Err(Error::Transport(format!("the server chose subprotocol {:?}", socket.ws.protocol())));
        }
        Ok(socket)
    }
}

impl Platform for Browser {
    type Socket = BrowserSocket;

    async fn connect(&self, url: String, codec: Codec) -> Result<BrowserSocket, Error> {
        let try_webtransport =
            self.transport.webtransport && !self.state().websocket_only && wasm_webtransport::available();
        let webtransport_error = if try_webtransport {
            match self.open_webtransport(&url).await {
                Ok(session) => {
                    self.state().in_use = Some("webtransport");
                    return Ok(BrowserSocket::WebTransport(session));
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let socket = self.open_websocket(url, codec).await?;
        let mut state = self.state();
        state.in_use = Some("websocket");
        if let Some(e) = webtransport_error {
            // The server answers over TCP but WebTransport failed: stay on WebSocket.
            state.websocket_only = true;
            web_sys::console::warn_1(&format!("palaver: WebTransport failed ({e}); using WebSocket").into());
        }
        Ok(BrowserSocket::WebSocket(socket))
    }

    async fn http(&self, request: HttpRequest) -> Result<(u16, Vec<u8>), Error> {
        let init = web_sys::RequestInit::new();
        init.set_method(request.method);
        if !request.body.is_empty() {
            init.set_body(&js_sys::Uint8Array::from(request.body.as_slice()));
        }
        let fetch_request = web_sys::Request::new_with_str_and_init(&request.url, &init)
            .map_err(|e| js_error("fetch", &e))?;
        for (name, value) in &request.headers {
            fetch_request.headers().set(name, value).map_err(|e| js_error("fetch", &e))?;
        }
        let response = JsFuture::from(window()?.fetch_with_request(&fetch_request))
            .await
            .map_err(|e| js_error("fetch", &e))?;
        let response: web_sys::Response = response.dyn_into().map_err(|e| js_error("fetch", &e))?;
        let buffer = response.array_buffer().map_err(|e| js_error("fetch", &e))?;
        let buffer = JsFuture::from(buffer).await.map_err(|e| js_error("fetch", &e))?;
        let bytes = js_sys::Uint8Array::new(&buffer);
        if bytes.length() as usize > request.max_answer_bytes {
            return Err(Error::Transport("HTTP answer too large".into()));
        }
        Ok((response.status(), bytes.to_vec()))
    }

    async fn sleep(&self, ms: u64) {
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            if let Some(window) = web_sys::window() {
                let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
            }
        });
        let _ = JsFuture::from(promise).await;
    }

    fn now_ms(&self) -> u64 {
        // Monotonic when the page has `performance` (it always does in browsers).
        web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now()) as u64
    }

    fn unix_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if filled {
        u64::from_le_bytes(bytes)
    } else {
        (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
            ^ (js_sys::Date::now() as u64).rotate_left(32)
    }
}

impl Client {
    /// Logs in (or registers, or uses tokens), opens the socket and authenticates it;
    /// returns once the connection is ready. The connection is driven by a task on the
    /// page's event loop (`spawn_local`).
    pub async fn connect(url: &str, credentials: Credentials) -> Result<Client, Error> {
        Self::connect_with(url, credentials, ClientOptions::default()).await
    }

    /// [`Client::connect`] with options. In the browser the codec is always JSON (a
    /// page's WebAssembly then carries no rkyv codec).
    pub async fn connect_with(
        url: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        Self::connect_in_browser(url, credentials, options, TransportPreference::default()).await
    }

    /// [`Client::connect_with`], choosing the transport as `transport` says.
    pub(crate) async fn connect_in_browser(
        url: &str,
        credentials: Credentials,
        mut options: ClientOptions,
        transport: TransportPreference,
    ) -> Result<Client, Error> {
        options.codec = Codec::Json;
        let platform = Browser::with_transport(transport);
        client::start(platform, url, credentials, options, random_seed(), |platform, setup| {
            wasm_bindgen_futures::spawn_local(driver::run(platform, setup));
        })
        .await
    }

    /// Registers an account with `fetch` (no socket).
    pub async fn register(url: &str, username: &str, password: &str) -> Result<Session, Error> {
        let credentials = Credentials::register(username, password);
        client::auth_call(&Browser::default(), url, AuthRoute::Register, &credentials, None).await
    }

    /// Logs in with `fetch` (no socket).
    pub async fn login(url: &str, username: &str, password: &str) -> Result<Session, Error> {
        let credentials = Credentials::password(username, password);
        client::auth_call(&Browser::default(), url, AuthRoute::Login, &credentials, None).await
    }
}

/// The error's name for JavaScript: the protocol's code when the server refused (with
/// `unauthorized` also for credentials that can no longer produce a token), else what
/// went wrong on this side.
fn error_code(error: &Error) -> &'static str {
    match error {
        Error::Server { code, .. } => code.as_str(),
        Error::Auth(_) => "unauthorized",
        Error::Timeout => "timeout",
        Error::ConnectionLost => "connection_lost",
        Error::Closed => "closed",
        Error::Transport(_) => "transport",
        Error::Http { .. } => "http",
        Error::InvalidUrl { .. } | Error::Invalid(_) => "invalid",
        Error::UnexpectedReply { .. } => "unexpected_reply",
        Error::Codec(_) => "codec",
        Error::Crypto(_) => "crypto",
    }
}

fn error_json(error: &Error) -> serde_json::Value {
    let mut value = json!({ "code": error_code(error), "message": error.to_string() });
    if let Error::Server { retry_after_ms: Some(ms), .. } = error {
        value["retry_after_ms"] = json!(ms);
    }
    value
}

/// A JavaScript `Error` named `PalaverError` with the error's `code` (and
/// `retry_after_ms`).
fn to_js(error: Error) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    js.set_name("PalaverError");
    let _ = js_sys::Reflect::set(&js, &"code".into(), &error_code(&error).into());
    if let Error::Server { retry_after_ms: Some(ms), .. } = error {
        let _ = js_sys::Reflect::set(&js, &"retryAfterMs".into(), &(ms as f64).into());
    }
    js.into()
}

fn invalid(message: impl Into<String>) -> JsValue {
    to_js(Error::Invalid(message.into()))
}

/// An event as the package hands it to the page: [`ClientEvent::to_json`], with errors as
/// `{code, message}` (codes as in [`error_code`]) and without the refresh token.
fn event_json(event: &ClientEvent) -> String {
    let mut value = event.to_json();
    match event {
        ClientEvent::Tokens(tokens) => {
            value["tokens"] = json!({ "access_token": tokens.access_token, "expires_in": tokens.expires_in });
        }
        ClientEvent::RoomLost { error, .. } => value["error"] = error_json(error),
        ClientEvent::Closed { error } => {
            value["error"] = error.as_ref().map_or(serde_json::Value::Null, error_json);
        }
        _ => {}
    }
    value.to_string()
}

/// How to connect, as the package passes it (JSON).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectConfig {
    url: String,
    /// The first access token (renewed with `getToken` when one is given).
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// Register `username` first.
    #[serde(default)]
    register: bool,
    #[serde(default)]
    max_token_failures: Option<u32>,
    #[serde(default)]
    request_timeout_ms: Option<u64>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    #[serde(default)]
    first_connect_retry_ms: Option<u64>,
    /// `auto` (WebTransport when the page has it, else WebSocket; the default) or
    /// `websocket`.
    #[serde(default)]
    transport: Option<String>,
    /// The WebTransport session's URL (default: from the server's route).
    #[serde(default)]
    web_transport_url: Option<String>,
    /// SHA-256 hashes (hex) of the certificates WebTransport accepts (default: the
    /// route's, for the server's development certificate).
    #[serde(default)]
    server_certificate_hashes: Option<Vec<String>>,
    /// How long WebTransport may take to open before WebSocket is used.
    #[serde(default)]
    web_transport_timeout_ms: Option<u64>,
}

/// A `send`, as `{op: "send", ...}` with an optional `cid` (generated when absent).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    #[serde(default)]
    #[expect(dead_code, reason = "the op's name, already matched")]
    op: Option<String>,
    room: RoomId,
    #[serde(default)]
    cid: Option<ClientMsgId>,
    #[serde(default)]
    kind: MessageKind,
    #[serde(default)]
    text: String,
    #[serde(default)]
    client_ts: Option<u64>,
    #[serde(default)]
    reply_to: Option<u64>,
    #[serde(default)]
    file: Option<Box<FileRef>>,
    #[serde(default)]
    encryption: Option<Box<Encryption>>,
    #[serde(default)]
    thread: Option<u64>,
    #[serde(default)]
    also_to_room: bool,
}

/// A token source calling the page's `getToken()`: its value, or the promise's. A
/// string is the token; `null` or `undefined` means the user is signed out; a throw or
/// rejection is a failure (retried with backoff, a bounded number of times). `first` is
/// answered first, without a call.
fn page_token_source(get_token: js_sys::Function, first: Option<String>) -> TokenSource {
    let first = Rc::new(RefCell::new(first));
    TokenSource::new(move || {
        let (get_token, first) = (get_token.clone(), first.clone());
        async move {
            if let Some(token) = first.borrow_mut().take() {
                return Ok(Some(token));
            }
            let describe = |e: JsValue| {
                e.dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
                    .or_else(|| e.as_string())
                    .unwrap_or_else(|| "getToken failed".to_owned())
            };
            let value = get_token.call0(&JsValue::NULL).map_err(describe)?;
            let value = match value.dyn_into::<js_sys::Promise>() {
                Ok(promise) => JsFuture::from(promise).await.map_err(describe)?,
                Err(value) => value,
            };
            if value.is_null() || value.is_undefined() {
                return Ok(None);
            }
            value.as_string().map(Some).ok_or_else(|| "getToken must give a string, null or undefined".into())
        }
    })
}

/// The client for the JavaScript package: one connection that resumes by itself, with
/// every op as JSON in and JSON out (the package types them). Not meant to be used
/// directly: `@palaver/client` wraps it.
#[wasm_bindgen]
pub struct WasmClient {
    client: Client,
}

#[wasm_bindgen]
impl WasmClient {
    /// Connects: `config` is the JSON of the connect options; `get_token` renews access
    /// tokens (and gives the first one unless `config.token` does); `on_event` gets every
    /// event as a JSON string, from the first `connected` on. Resolves once connected.
    pub async fn connect(
        config: String,
        get_token: Option<js_sys::Function>,
        on_event: js_sys::Function,
    ) -> Result<WasmClient, JsValue> {
        let config: ConnectConfig =
            serde_json::from_str(&config).map_err(|e| invalid(format!("connect options: {e}")))?;
        let credentials = match (get_token, config.token, config.username, config.password) {
            (Some(get_token), token, None, None) => Credentials::source(page_token_source(get_token, token)),
            (None, Some(token), None, None) => Credentials::tokens(Tokens::access_only(token)),
            (None, None, Some(username), Some(password)) if config.register => {
                Credentials::register(username, password)
            }
            (None, None, Some(username), Some(password)) => Credentials::password(username, password),
            _ => {
                return Err(invalid(
                    "give getToken (and optionally token), or token alone, or username and password",
                ));
            }
        };
        let mut options = ClientOptions::default();
        if let Some(n) = config.max_token_failures {
            options.core.max_token_failures = n.max(1);
        }
        if let Some(ms) = config.request_timeout_ms {
            options.core.request_timeout_ms = ms;
        }
        if let Some(ms) = config.connect_timeout_ms {
            options.connect_timeout_ms = ms;
        }
        if let Some(ms) = config.first_connect_retry_ms {
            options.core.first_connect_retry_ms = ms;
        }
        let mut transport = TransportPreference::default();
        match config.transport.as_deref() {
            None | Some("auto") => {}
            Some("websocket") => transport.webtransport = false,
            Some(other) => return Err(invalid(format!("transport {other:?}: auto or websocket"))),
        }
        transport.url = config.web_transport_url;
        if let Some(hashes) = config.server_certificate_hashes {
            let hashes =
                hashes.iter().map(|h| wasm_webtransport::parse_hash(h)).collect::<Result<Vec<_>, _>>();
            transport.certificate_hashes = Some(hashes.map_err(to_js)?);
        }
        if let Some(ms) = config.web_transport_timeout_ms {
            transport.timeout_ms = ms.max(1);
        }
        let client =
            Client::connect_in_browser(&config.url, credentials, options, transport).await.map_err(to_js)?;
        let mut events = client.events();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = events.next().await {
                let _ = on_event.call1(&JsValue::NULL, &JsValue::from_str(&event_json(&event)));
            }
        });
        Ok(WasmClient { client })
    }

    /// Any op but `auth` and `send`, as the JSON of its request (`{"op":"room.get",…}`);
    /// resolves to the JSON of its `ok` answer. `join` keeps the room joined across
    /// reconnects; `invite.accept` joins the room too.
    pub async fn request(&self, op: String) -> Result<String, JsValue> {
        let ok = match op_from_json(&op).map_err(to_js)? {
            Op::InviteAccept { room } => {
                return self.client.invite_accept(&room).await.map(|ok| json!(ok).to_string()).map_err(to_js);
            }
            op => self.client.request(op).await.map_err(to_js)?,
        };
        Ok(serde_json::to_string(&ok).unwrap_or_default())
    }

    /// Sends a message through the outbox (stored exactly once, retried across
    /// reconnects): the JSON of a `send` request whose `cid` may be left out. Resolves to
    /// the JSON of its `SendOk`.
    pub async fn send(&self, request: String) -> Result<String, JsValue> {
        let request: SendRequest =
            serde_json::from_str(&request).map_err(|e| invalid(format!("send: {e}")))?;
        let message = Outgoing {
            room: request.room,
            kind: request.kind,
            text: request.text,
            client_ts: request.client_ts,
            reply_to: request.reply_to,
            file: request.file,
            cid: request.cid,
            encryption: request.encryption,
            thread: request.thread,
            also_to_room: request.also_to_room,
        };
        let sent = self.client.send_message(message).await.map_err(to_js)?;
        Ok(json!(sent).to_string())
    }

    /// Uploads a file to a room; resolves to the JSON of the stored file (`FileRef`).
    pub async fn upload(&self, room: String, name: String, bytes: Vec<u8>) -> Result<String, JsValue> {
        let room = RoomId::parse(&room).map_err(|e| to_js(e.into()))?;
        let file = self.client.upload(&room, &name, bytes).await.map_err(to_js)?;
        Ok(json!(file).to_string())
    }

    /// Downloads a shared file's bytes.
    pub async fn download(&self, file_id: String) -> Result<Vec<u8>, JsValue> {
        self.client.download(&file_id).await.map_err(to_js)
    }

    /// One of the server's HTTP routes under `/v1/` with this client's access token
    /// (renewed once if refused): resolves to the answer's JSON text, rejects with the
    /// route's error. The package's report and export methods build on it.
    pub async fn route(&self, method: String, path: String, body: Option<String>) -> Result<String, JsValue> {
        self.client.call_route(&method, &path, body.as_deref()).await.map_err(to_js)
    }

    /// Logs this session out and closes the client.
    pub async fn logout(&self) -> Result<(), JsValue> {
        self.client.logout().await.map_err(to_js)
    }

    /// Ends every session of the user, this one included, and closes the client.
    #[wasm_bindgen(js_name = logoutEverywhere)]
    pub async fn logout_everywhere(&self) -> Result<(), JsValue> {
        self.client.logout_everywhere().await.map_err(to_js)
    }

    /// Changes the password: every session ends and the client closes; resolves to the
    /// new session (`{"user_id","access_token","expires_in"}`: the refresh token stays
    /// out of the page).
    #[wasm_bindgen(js_name = changePassword)]
    pub async fn change_password(&self, current: String, new: String) -> Result<String, JsValue> {
        let session = self.client.change_password(&current, &new).await.map_err(to_js)?;
        Ok(json!({
            "user_id": session.user_id,
            "access_token": session.tokens.access_token,
            "expires_in": session.tokens.expires_in,
        })
        .to_string())
    }

    /// Deletes the account, given its password, and closes the client.
    #[wasm_bindgen(js_name = deleteAccount)]
    pub async fn delete_account(&self, password: String) -> Result<(), JsValue> {
        self.client.delete_account(&password).await.map_err(to_js)
    }

    /// Marks a joined room read up to `seq` (sent in the background, coalesced).
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, room: String, seq: f64) -> Result<(), JsValue> {
        let room = RoomId::parse(&room).map_err(|e| to_js(e.into()))?;
        self.client.mark_read(&room, seq as u64);
        Ok(())
    }

    /// The authenticated user's id.
    #[wasm_bindgen(js_name = userId)]
    pub fn user_id(&self) -> Option<String> {
        self.client.user_id().map(String::from)
    }

    /// The transport of the current (or last) connection: `webtransport` or `websocket`.
    pub fn transport(&self) -> Option<String> {
        self.client.platform().transport_in_use().map(str::to_owned)
    }

    /// Whether the socket is authenticated right now.
    #[wasm_bindgen(js_name = isConnected)]
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Closes the connection for good.
    pub fn close(&self) {
        self.client.close();
    }
}

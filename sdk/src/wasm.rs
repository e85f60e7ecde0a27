//! The browser transport: the browser's `WebSocket` and `fetch` through web-sys, timers
//! through `setTimeout`, and a small `#[wasm_bindgen]` API ([`PalaverClient`]) for web
//! pages.
//!
//! Browsers cannot set headers on a WebSocket, so the socket authenticates with the
//! `auth` op (as the core always does). The auth routes are called with `fetch`, which
//! needs the server to allow the page's origin (CORS) when the page is served from
//! another origin; pages that get their tokens elsewhere use `connectWithToken`.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::StreamExt as _;
use palaver_protocol::{Codec, RoomId, RoomKind};
use serde_json::json;
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::auth_route::AuthRoute;
use crate::client::{self, Client, ClientOptions, Session};
use crate::driver::{self, HttpRequest, Platform, Socket};
use crate::error::Error;
use crate::tokens::{Credentials, Tokens};

/// The browser platform: the page's `WebSocket`, `fetch` and timers.
#[derive(Debug, Clone)]
pub(crate) struct Browser;

fn js_error(context: &str, value: &JsValue) -> Error {
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

pub(crate) struct BrowserSocket {
    ws: WebSocket,
    rx: mpsc::UnboundedReceiver<Incoming>,
    _handlers: Handlers,
}

impl Drop for BrowserSocket {
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

    async fn close(&mut self) {
        let _ = self.ws.close();
    }
}

impl Platform for Browser {
    type Socket = BrowserSocket;

    async fn connect(&self, url: String, codec: Codec) -> Result<BrowserSocket, Error> {
        let ws = WebSocket::new_with_str(&url, codec.subprotocol()).map_err(|e| js_error("WebSocket", &e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, mut rx) = mpsc::unbounded();
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
        match rx.next().await {
            Some(Incoming::Open) => {}
            Some(Incoming::Closed(reason)) => return Err(Error::Transport(reason)),
            _ => return Err(Error::Transport("WebSocket failed to open".into())),
        }
        if ws.protocol() != codec.subprotocol() {
            return Err(Error::Transport(format!("the server chose subprotocol {:?}", ws.protocol())));
        }
        Ok(BrowserSocket { ws, rx, _handlers: handlers })
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

    /// [`Client::connect`] with options.
    pub async fn connect_with(
        url: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        client::start(Browser, url, credentials, options, random_seed(), |platform, setup| {
            wasm_bindgen_futures::spawn_local(driver::run(platform, setup));
        })
        .await
    }

    /// Registers an account with `fetch` (no socket).
    pub async fn register(url: &str, username: &str, password: &str) -> Result<Session, Error> {
        let credentials = Credentials::register(username, password);
        client::auth_call(&Browser, url, AuthRoute::Register, &credentials, None).await
    }

    /// Logs in with `fetch` (no socket).
    pub async fn login(url: &str, username: &str, password: &str) -> Result<Session, Error> {
        let credentials = Credentials::password(username, password);
        client::auth_call(&Browser, url, AuthRoute::Login, &credentials, None).await
    }
}

fn to_js(error: Error) -> JsValue {
    let code = error.code().map(|c| c.as_str());
    let value = json!({ "message": error.to_string(), "code": code });
    js_sys::JSON::parse(&value.to_string()).unwrap_or_else(|_| JsValue::from_str(&error.to_string()))
}

fn json_to_js(value: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

fn room_id(room: &str) -> Result<RoomId, JsValue> {
    RoomId::parse(room).map_err(|e| to_js(e.into()))
}

/// The SDK for JavaScript: a connected client whose events go to a callback.
#[wasm_bindgen]
pub struct PalaverClient {
    client: Client,
    listener: Rc<RefCell<Option<js_sys::Function>>>,
}

#[wasm_bindgen]
impl PalaverClient {
    /// Connects with an access token obtained elsewhere (e.g. by the page's backend).
    #[wasm_bindgen(js_name = connectWithToken)]
    pub async fn connect_with_token(url: String, access_token: String) -> Result<PalaverClient, JsValue> {
        Self::start(url, Credentials::tokens(Tokens::access_only(access_token))).await
    }

    /// Logs in with a username and password (the server must allow the page's origin).
    #[wasm_bindgen(js_name = connectWithPassword)]
    pub async fn connect_with_password(
        url: String,
        username: String,
        password: String,
    ) -> Result<PalaverClient, JsValue> {
        Self::start(url, Credentials::password(username, password)).await
    }

    async fn start(url: String, credentials: Credentials) -> Result<PalaverClient, JsValue> {
        let client = Client::connect(&url, credentials).await.map_err(to_js)?;
        let listener: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
        let mut events = client.events();
        let target = listener.clone();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = events.next().await {
                let value = event.to_json();
                let callback = target.borrow().clone();
                if let Some(callback) = callback {
                    let _ = callback.call1(&JsValue::NULL, &json_to_js(&value));
                }
            }
        });
        Ok(PalaverClient { client, listener })
    }

    /// Sets the function called with every event, as `ClientEvent::to_json` writes it:
    /// `{type: "message", message: {...}}`, `typing`, `receipt`, `reaction`, `edit`,
    /// `delete`, `member`, `invite`, `friend`, `presence`, `connected`, `disconnected`, …).
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: js_sys::Function) {
        *self.listener.borrow_mut() = Some(callback);
    }

    /// The authenticated user's id.
    #[wasm_bindgen(js_name = userId)]
    pub fn user_id(&self) -> Option<String> {
        self.client.user_id().map(String::from)
    }

    /// Creates a public room; resolves to its id.
    #[wasm_bindgen(js_name = createRoom)]
    pub async fn create_room(&self, name: String) -> Result<String, JsValue> {
        let room = self.client.create_room(&name, RoomKind::Public).await.map_err(to_js)?;
        Ok(room.room_id.into())
    }

    /// Joins a room (replaying everything after `since` when given); resolves to the
    /// room's newest seq.
    pub async fn join(&self, room: String, since: Option<f64>) -> Result<f64, JsValue> {
        let since = since.map(|s| s as u64);
        let ok = self.client.join_since(&room_id(&room)?, since).await.map_err(to_js)?;
        Ok(ok.last_seq as f64)
    }

    /// Leaves a room.
    pub async fn leave(&self, room: String) -> Result<(), JsValue> {
        self.client.leave(&room_id(&room)?).await.map_err(to_js)
    }

    /// Sends a text message; resolves to its seq once stored (retried across reconnects).
    pub async fn send(&self, room: String, text: String) -> Result<f64, JsValue> {
        let ok = self.client.send(&room_id(&room)?, &text).await.map_err(to_js)?;
        Ok(ok.seq as f64)
    }

    /// A page of history, newest first, as an array of message objects.
    pub async fn history(
        &self,
        room: String,
        before: Option<f64>,
        limit: Option<u32>,
    ) -> Result<JsValue, JsValue> {
        let page =
            self.client.history(&room_id(&room)?, before.map(|b| b as u64), limit).await.map_err(to_js)?;
        Ok(json_to_js(&json!(page)))
    }

    /// Tells the room the user is typing.
    #[wasm_bindgen(js_name = typingStart)]
    pub async fn typing_start(&self, room: String) -> Result<(), JsValue> {
        self.client.typing_start(&room_id(&room)?).await.map_err(to_js)
    }

    /// Marks a room read up to `seq`.
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, room: String, seq: f64) -> Result<(), JsValue> {
        self.client.mark_read(&room_id(&room)?, seq as u64);
        Ok(())
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.client.close();
    }
}

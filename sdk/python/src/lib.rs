//! `palaver._native`: the Rust client SDK (`palaver-sdk`) as a Python extension module.
//!
//! It holds no client logic of its own: every call goes to a [`palaver_sdk::Client`] (the
//! same sans-IO core, reconnect, resume and exactly-once send as in Rust), run on one
//! tokio runtime, and every async call returns an asyncio awaitable ([`awaitable`]). Values cross the boundary as the protocol's JSON (`docs/PROTOCOL.md`):
//! ops in, `ok` bodies and [`ClientEvent::to_json`] events out. The `palaver` Python
//! package turns those into typed objects and is the API to use; this module is its
//! engine and is not meant to be called directly.

mod awaitable;

use std::borrow::Cow;
use std::sync::Arc;

use palaver_sdk::protocol::{ClientMsgId, Codec, FileRef, MessageKind, Op, RoomId};
use palaver_sdk::{
    Client, ClientEvent, ClientOptions, Credentials, Error, Events, Outgoing, TlsTrust, Tokens,
};
use pyo3::exceptions::{PyException, PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;

use crate::awaitable::awaitable;
use serde::Deserialize;

pyo3::create_exception!(
    _native,
    NativeError,
    PyException,
    "An SDK error. Its one argument is the error as JSON: {\"code\": <protocol error code or null>, \"message\": …, \"retry_after_ms\"?: …}."
);

/// The SDK error as the [`NativeError`] the Python package turns into `PalaverError`.
fn py_err(error: Error) -> PyErr {
    let mut json = error.to_json();
    if let Error::Server { retry_after_ms: Some(ms), .. } = error {
        json["retry_after_ms"] = ms.into();
    }
    json["transient"] = error.is_transient().into();
    NativeError::new_err(json.to_string())
}

/// Malformed input from the Python side (a bug of the package, or a bad identifier).
fn value_error(what: &str, error: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {error}"))
}

fn parse<'a, T: Deserialize<'a>>(what: &str, json: &'a str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| value_error(what, e))
}

fn to_json(value: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| value_error("encoding an answer", e))
}

/// How to authenticate, as the package sends it.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CredentialsArg {
    Password { username: String, password: String },
    Register { username: String, password: String },
    Tokens { access_token: String, refresh_token: Option<String>, expires_in: Option<u64> },
}

impl From<CredentialsArg> for Credentials {
    fn from(arg: CredentialsArg) -> Self {
        match arg {
            CredentialsArg::Password { username, password } => Credentials::password(username, password),
            CredentialsArg::Register { username, password } => Credentials::register(username, password),
            CredentialsArg::Tokens { access_token, refresh_token, expires_in } => {
                Credentials::tokens(Tokens { access_token, refresh_token, expires_in })
            }
        }
    }
}

/// Connection options, as the package sends them (absent: the SDK's default).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct OptionsArg {
    codec: Option<String>,
    retry_first_connect_ms: Option<u64>,
    event_buffer: Option<usize>,
    fallback_urls: Vec<String>,
    trust_pem: Option<String>,
    request_timeout_ms: Option<u64>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
}

impl OptionsArg {
    fn into_options(self) -> PyResult<ClientOptions> {
        let codec = match self.codec.as_deref() {
            None | Some("json") => Codec::Json,
            Some("rkyv") => Codec::Rkyv,
            Some(other) => return Err(value_error("codec", format!("{other:?} is not json or rkyv"))),
        };
        let mut options = ClientOptions::with_codec(codec).failing_over_to(self.fallback_urls);
        if let Some(ms) = self.retry_first_connect_ms {
            options = options.retrying_first_connect_for(ms);
        }
        if let Some(events) = self.event_buffer {
            options = options.buffering_events(events);
        }
        if let Some(pem) = self.trust_pem {
            options = options.trusting(TlsTrust::CertificatePem(pem));
        }
        if let Some(ms) = self.request_timeout_ms {
            options.core.request_timeout_ms = ms;
        }
        if let Some(ms) = self.backoff_initial_ms {
            options.core.backoff_initial_ms = ms;
        }
        if let Some(ms) = self.backoff_max_ms {
            options.core.backoff_max_ms = ms;
        }
        Ok(options)
    }
}

/// A message to send, as the package sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArg {
    room: RoomId,
    text: String,
    #[serde(default)]
    kind: Option<MessageKind>,
    #[serde(default)]
    reply_to: Option<u64>,
    #[serde(default)]
    client_ts: Option<u64>,
    #[serde(default)]
    file: Option<FileRef>,
    #[serde(default)]
    cid: Option<ClientMsgId>,
}

impl From<SendArg> for Outgoing {
    fn from(arg: SendArg) -> Self {
        let mut message = Outgoing::text(arg.room, arg.text);
        message.kind =
            arg.kind.unwrap_or(if arg.file.is_some() { MessageKind::File } else { MessageKind::Text });
        message.reply_to = arg.reply_to;
        message.client_ts = arg.client_ts;
        message.file = arg.file.map(Box::new);
        message.cid = arg.cid;
        message
    }
}

fn room_id(room: &str) -> PyResult<RoomId> {
    RoomId::parse(room).map_err(|e| value_error("room", e))
}

/// A connected client (see `palaver.Client`).
#[pyclass(frozen, module = "palaver._native")]
struct NativeClient {
    client: Client,
}

#[pymethods]
impl NativeClient {
    /// Connects (`credentials` and `options` as JSON); resolves to a `NativeClient`.
    #[staticmethod]
    fn connect<'py>(
        py: Python<'py>,
        url: String,
        credentials: &str,
        options: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let credentials: Credentials = parse::<CredentialsArg>("credentials", credentials)?.into();
        let options = parse::<OptionsArg>("options", options)?.into_options()?;
        awaitable(py, async move {
            let client = Client::connect_with(&url, credentials, options).await.map_err(py_err)?;
            Ok(NativeClient { client })
        })
    }

    /// Registers an account over HTTP; resolves to `{"user_id", "tokens"}` as JSON.
    #[staticmethod]
    fn register<'py>(
        py: Python<'py>,
        url: String,
        username: String,
        password: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, async move {
            let session = Client::register(&url, &username, &password).await.map_err(py_err)?;
            to_json(&serde_json::json!({ "user_id": session.user_id, "tokens": session.tokens }))
        })
    }

    /// Logs in over HTTP; resolves to `{"user_id", "tokens"}` as JSON.
    #[staticmethod]
    fn login<'py>(
        py: Python<'py>,
        url: String,
        username: String,
        password: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, async move {
            let session = Client::login(&url, &username, &password).await.map_err(py_err)?;
            to_json(&serde_json::json!({ "user_id": session.user_id, "tokens": session.tokens }))
        })
    }

    /// Any op (`{"op": …, fields…}` as JSON); resolves to its `ok` body as JSON. `join`
    /// and `leave` go through the client's room tracking like the Rust methods.
    fn request<'py>(&self, py: Python<'py>, op: &str) -> PyResult<Bound<'py, PyAny>> {
        let op: Op = parse("op", op)?;
        let client = self.client.clone();
        awaitable(py, async move {
            let ok = client.request(op).await.map_err(py_err)?;
            to_json(&ok)
        })
    }

    /// Sends a message through the outbox (exactly once); resolves to `{"seq","ts","duplicate"?}`.
    fn send<'py>(&self, py: Python<'py>, message: &str) -> PyResult<Bound<'py, PyAny>> {
        let message: Outgoing = parse::<SendArg>("message", message)?.into();
        let client = self.client.clone();
        awaitable(py, async move {
            let sent = client.send_message(message).await.map_err(py_err)?;
            to_json(&sent)
        })
    }

    /// Uploads a file to a room; resolves to its `FileRef` as JSON.
    fn upload<'py>(
        &self,
        py: Python<'py>,
        room: &str,
        name: String,
        data: Cow<'_, [u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (room, data, client) = (room_id(room)?, data.into_owned(), self.client.clone());
        awaitable(py, async move {
            let file = client.upload(&room, &name, data).await.map_err(py_err)?;
            to_json(&file)
        })
    }

    /// Downloads a shared file; resolves to its bytes.
    fn download<'py>(&self, py: Python<'py>, file_id: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        awaitable(py, async move { client.download(&file_id).await.map_err(py_err) })
    }

    /// Marks a joined room read up to `seq` (sent in the background, coalesced).
    fn mark_read(&self, room: &str, seq: u64) -> PyResult<()> {
        self.client.mark_read(&room_id(room)?, seq);
        Ok(())
    }

    /// A new event stream (the first one starts at the first `connected`).
    fn events(&self) -> NativeEvents {
        NativeEvents { events: Arc::new(tokio::sync::Mutex::new(self.client.events())) }
    }

    /// The authenticated user's id.
    fn user_id(&self) -> Option<String> {
        self.client.user_id().map(String::from)
    }

    /// The newest tokens as JSON.
    fn tokens(&self) -> PyResult<Option<String>> {
        self.client.tokens().map(|t| to_json(&t)).transpose()
    }

    /// Whether the socket is authenticated right now.
    fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Closes the client; pending calls fail and event streams end.
    fn close(&self) {
        self.client.close();
    }
}

/// An event stream (see `palaver.Events`): an async iterator of events as JSON.
#[pyclass(frozen, module = "palaver._native")]
struct NativeEvents {
    events: Arc<tokio::sync::Mutex<Events>>,
}

#[pymethods]
impl NativeEvents {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Resolves to the next event as JSON; raises `StopAsyncIteration` once the client is
    /// closed.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = self.events.clone();
        awaitable(py, async move {
            match events.lock().await.next().await {
                Some(event) => Ok(event.to_json().to_string()),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}

/// The extension module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(awaitable::_settle, module)?)?;
    module.add_function(wrap_pyfunction!(awaitable::_quiesce, module)?)?;
    let quiesce = module.getattr("_quiesce")?;
    module.py().import("atexit")?.call_method1("register", (quiesce,))?;
    module.add_class::<NativeClient>()?;
    module.add_class::<NativeEvents>()?;
    module.add("NativeError", module.py().get_type::<NativeError>())?;
    module.add("EVENT_KINDS", ClientEvent::KINDS.to_vec())?;
    Ok(())
}

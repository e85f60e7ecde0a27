//! The browser's `WebTransport` (HTTP/3 over QUIC), reached through `js_sys::Reflect`
//! so the build needs no unstable web-sys bindings. One session carries Palaver frames
//! like a raw QUIC connection: the first bidirectional stream the page opens is the
//! control stream (requests, replies, events not tied to a room), each behind a `u32`
//! little-endian length; server-opened unidirectional streams carry room events the same
//! way, and datagrams carry one frame each (typing). Everything the server sends comes
//! out of [`WebTransportSocket::recv`] in arrival order per stream.

use std::cell::Cell;
use std::rc::Rc;

use futures_channel::mpsc;
use futures_util::StreamExt as _;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::Error;
use crate::length_prefixed::{FrameSplitter, length_prefixed};
use crate::wasm::js_error;

/// The largest frame read from the server.
const MAX_FRAME_BYTES: usize = 16 << 20;

fn get(target: &JsValue, key: &str) -> Result<JsValue, Error> {
    Reflect::get(target, &JsValue::from_str(key)).map_err(|e| js_error(key, &e))
}

fn method(target: &JsValue, name: &str) -> Result<Function, Error> {
    get(target, name)?
        .dyn_into::<Function>()
        .map_err(|_| Error::Transport(format!("{name} is not a function")))
}

async fn settle(promise: JsValue, context: &str) -> Result<JsValue, Error> {
    let promise =
        promise.dyn_into::<Promise>().map_err(|_| Error::Transport(format!("{context}: not a promise")))?;
    JsFuture::from(promise).await.map_err(|e| js_error(context, &e))
}

/// Whether the page has `WebTransport`.
pub(crate) fn available() -> bool {
    Reflect::get(&js_sys::global(), &JsValue::from_str("WebTransport")).is_ok_and(|c| c.is_function())
}

enum Arrived {
    Frame(Vec<u8>),
    Closed(String),
}

/// An open session and its control stream's writer.
pub(crate) struct WebTransportSocket {
    transport: JsValue,
    writer: JsValue,
    rx: mpsc::UnboundedReceiver<Arrived>,
    closed: Rc<Cell<bool>>,
}

impl Drop for WebTransportSocket {
    fn drop(&mut self) {
        self.close_now();
    }
}

impl WebTransportSocket {
    /// Opens a session at `url` (with `serverCertificateHashes` when `hashes` is not
    /// empty) and its control stream; fails when `ready` rejects or `timeout` fires first.
    pub(crate) async fn open(
        url: &str,
        hashes: &[Vec<u8>],
        timeout: impl std::future::Future<Output = ()>,
    ) -> Result<WebTransportSocket, Error> {
        let constructor = get(&js_sys::global(), "WebTransport")?
            .dyn_into::<Function>()
            .map_err(|_| Error::Transport("this browser has no WebTransport".into()))?;
        let options = Object::new();
        if !hashes.is_empty() {
            let list = Array::new();
            for hash in hashes {
                let entry = Object::new();
                Reflect::set(&entry, &"algorithm".into(), &"sha-256".into())
                    .map_err(|e| js_error("hash", &e))?;
                Reflect::set(&entry, &"value".into(), &Uint8Array::from(hash.as_slice()))
                    .map_err(|e| js_error("hash", &e))?;
                list.push(&entry);
            }
            Reflect::set(&options, &"serverCertificateHashes".into(), &list)
                .map_err(|e| js_error("options", &e))?;
        }
        let arguments = Array::of2(&JsValue::from_str(url), &options);
        let transport =
            Reflect::construct(&constructor, &arguments).map_err(|e| js_error("WebTransport", &e))?;
        let closed = Rc::new(Cell::new(false));
        let (tx, rx) = mpsc::unbounded();
        // `closed` settles once, however the session ends; its rejection is handled here.
        {
            let (tx, closed) = (tx.clone(), closed.clone());
            let ended = get(&transport, "closed")?;
            wasm_bindgen_futures::spawn_local(async move {
                let reason = match settle(ended, "WebTransport closed").await {
                    Ok(info) => format!(
                        "session closed ({})",
                        get(&info, "reason").ok().and_then(|r| r.as_string()).unwrap_or_default()
                    ),
                    Err(e) => e.to_string(),
                };
                closed.set(true);
                let _ = tx.unbounded_send(Arrived::Closed(reason));
            });
        }
        let mut socket = WebTransportSocket { transport, writer: JsValue::UNDEFINED, rx, closed };
        let opened = {
            let opening = socket.open_control_stream(tx);
            futures_util::pin_mut!(opening, timeout);
            match futures_util::future::select(opening, timeout).await {
                futures_util::future::Either::Left((result, _)) => result,
                futures_util::future::Either::Right(((), _)) => {
                    Err(Error::Transport("WebTransport: no session before the timeout (UDP blocked?)".into()))
                }
            }
        };
        opened.map(|()| socket)
    }

    async fn open_control_stream(&mut self, tx: mpsc::UnboundedSender<Arrived>) -> Result<(), Error> {
        settle(get(&self.transport, "ready")?, "WebTransport ready").await?;
        let create = method(&self.transport, "createBidirectionalStream")?;
        let stream = create.call0(&self.transport).map_err(|e| js_error("createBidirectionalStream", &e))?;
        let stream = settle(stream, "createBidirectionalStream").await?;
        let writable = get(&stream, "writable")?;
        self.writer =
            method(&writable, "getWriter")?.call0(&writable).map_err(|e| js_error("getWriter", &e))?;
        spawn_stream_reader(get(&stream, "readable")?, tx.clone());
        spawn_incoming_streams(get(&self.transport, "incomingUnidirectionalStreams")?, tx.clone());
        let datagrams = get(&self.transport, "datagrams")?;
        spawn_datagram_reader(get(&datagrams, "readable")?, tx);
        Ok(())
    }

    /// Writes one frame on the control stream (behind its length), waiting while the
    /// stream is flow-controlled.
    pub(crate) async fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        let bytes = Uint8Array::from(length_prefixed(frame).as_slice());
        let written =
            method(&self.writer, "write")?.call1(&self.writer, &bytes).map_err(|e| js_error("write", &e))?;
        settle(written, "WebTransport write").await.map(|_| ())
    }

    /// The next frame from the server; an error saying how the session ended, once it
    /// did.
    pub(crate) async fn recv(&mut self) -> Option<Result<Vec<u8>, Error>> {
        match self.rx.next().await? {
            Arrived::Frame(frame) => Some(Ok(frame)),
            Arrived::Closed(reason) => Some(Err(Error::Transport(reason))),
        }
    }

    fn close_now(&mut self) {
        if !self.closed.replace(true)
            && let Ok(close) = method(&self.transport, "close")
        {
            let _ = close.call0(&self.transport);
        }
    }

    /// Closes the session.
    pub(crate) fn close(&mut self) {
        self.close_now();
    }
}

/// Reads a `ReadableStream`'s chunks through its reader until it ends.
async fn read_chunks(stream: JsValue, each: &mut dyn FnMut(Vec<u8>) -> bool) -> Result<(), Error> {
    let reader = method(&stream, "getReader")?.call0(&stream).map_err(|e| js_error("getReader", &e))?;
    let read = method(&reader, "read")?;
    loop {
        let next = settle(read.call0(&reader).map_err(|e| js_error("read", &e))?, "read").await?;
        if get(&next, "done")?.is_truthy() {
            return Ok(());
        }
        let value = get(&next, "value")?;
        let bytes = value.dyn_into::<Uint8Array>().map(|a| a.to_vec()).unwrap_or_default();
        if !each(bytes) {
            let _ = method(&reader, "cancel").map(|cancel| cancel.call0(&reader));
            return Ok(());
        }
    }
}

/// A stream of length-prefixed frames into `tx`; ends the session's reading on a
/// malformed length.
fn spawn_stream_reader(stream: JsValue, tx: mpsc::UnboundedSender<Arrived>) {
    wasm_bindgen_futures::spawn_local(async move {
        let mut splitter = FrameSplitter::default();
        let result = read_chunks(stream, &mut |bytes| match splitter.push(&bytes, MAX_FRAME_BYTES) {
            Ok(frames) => frames.into_iter().all(|f| tx.unbounded_send(Arrived::Frame(f)).is_ok()),
            Err(reason) => {
                let _ = tx.unbounded_send(Arrived::Closed(reason));
                false
            }
        })
        .await;
        if let Err(e) = result {
            let _ = tx.unbounded_send(Arrived::Closed(e.to_string()));
        }
    });
}

/// Every unidirectional stream the server opens (a room's events) read like the control
/// stream.
fn spawn_incoming_streams(streams: JsValue, tx: mpsc::UnboundedSender<Arrived>) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = read_values(streams, &mut |stream| {
            spawn_stream_reader(stream, tx.clone());
            !tx.is_closed()
        })
        .await;
    });
}

/// Datagrams, one frame each (no length prefix).
fn spawn_datagram_reader(datagrams: JsValue, tx: mpsc::UnboundedSender<Arrived>) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = read_chunks(datagrams, &mut |bytes| tx.unbounded_send(Arrived::Frame(bytes)).is_ok()).await;
    });
}

/// Reads a `ReadableStream` of objects (not bytes).
async fn read_values(stream: JsValue, each: &mut dyn FnMut(JsValue) -> bool) -> Result<(), Error> {
    let reader = method(&stream, "getReader")?.call0(&stream).map_err(|e| js_error("getReader", &e))?;
    let read = method(&reader, "read")?;
    loop {
        let next = settle(read.call0(&reader).map_err(|e| js_error("read", &e))?, "read").await?;
        if get(&next, "done")?.is_truthy() || !each(get(&next, "value")?) {
            return Ok(());
        }
    }
}

/// Reads a hex SHA-256 hash (64 digits).
pub(crate) fn parse_hash(hex: &str) -> Result<Vec<u8>, Error> {
    let invalid = || Error::Invalid(format!("certificate hash {hex:?}: 64 hexadecimal digits"));
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(invalid());
    }
    (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid())).collect()
}

//! Frames on the wire, from the generator's side: encoding requests with the protocol
//! crate, and reading server frames — fully (set-up) or only as far as the hot path needs
//! (is it a message event and what is its `client_ts`; is it a reply, ok or error).
//!
//! The hot path reads JSON events by looking for the trailing `"client_ts":N` instead of
//! parsing the whole object, and rkyv frames through validated access (bytecheck) without
//! deserializing them, so the generator spends little per delivery.

use anyhow::anyhow;
use palaver_protocol::{ClientFrame, Codec, ErrorBody, Event, ReplyBody, ServerFrame};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::cli::Target;

/// The encoding a target speaks.
pub fn codec(target: Target) -> Codec {
    match target {
        Target::PalaverRkyv | Target::PalaverRkyvTls | Target::PalaverQuicRkyv => Codec::Rkyv,
        Target::PalaverJson
        | Target::PalaverJsonTls
        | Target::PalaverQuicJson
        | Target::WsBaseline
        | Target::Socketio => Codec::Json,
    }
}

/// Encodes a request as the WebSocket message the target expects.
pub fn encode(codec: Codec, frame: &ClientFrame) -> anyhow::Result<WsMessage> {
    let bytes = codec.encode_client(frame)?;
    Ok(if codec.is_text() {
        WsMessage::Text(String::from_utf8(bytes)?.into())
    } else {
        WsMessage::Binary(bytes.into())
    })
}

/// Fully decodes a server frame (set-up path).
pub fn decode(codec: Codec, message: &WsMessage) -> anyhow::Result<Option<ServerFrame>> {
    let bytes: &[u8] = match message {
        WsMessage::Text(t) => t.as_bytes(),
        WsMessage::Binary(b) => b,
        WsMessage::Close(c) => return Err(anyhow!("socket closed by the server: {c:?}")),
        _ => return Ok(None),
    };
    Ok(Some(codec.decode_server(bytes).map_err(|e| anyhow!("undecodable server frame: {e}"))?))
}

/// What the hot path needs to know about a server frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A `message` event: its `seq`, and its `client_ts` when it carries one.
    Message { client_ts: Option<u64>, seq: u64 },
    /// A successful reply.
    Ok { re: u64 },
    /// A failed reply, with its error code.
    Err { re: u64, code: String },
    /// An engine.io ping (Socket.io): the socket must answer with a pong.
    EnginePing,
    /// Another event, a ping, a pong: nothing to count.
    Ignored,
    /// The server closed the socket.
    Closed,
    /// A frame that could not be read.
    Undecodable(String),
}

/// Classifies a frame cheaply.
pub fn classify(message: &WsMessage) -> Incoming {
    match message {
        WsMessage::Text(t) => classify_json(t.as_str()),
        WsMessage::Binary(b) => classify_rkyv(b),
        WsMessage::Close(_) => Incoming::Closed,
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Incoming::Ignored,
    }
}

/// Classifies a frame's payload: text (JSON) or binary (rkyv).
pub fn classify_payload(text: bool, payload: &[u8]) -> Incoming {
    if !text {
        return classify_rkyv(payload);
    }
    match std::str::from_utf8(payload) {
        Ok(text) => classify_json(text),
        Err(e) => Incoming::Undecodable(format!("text frame: {e}")),
    }
}

const CLIENT_TS_KEY: &str = "\"client_ts\":";
const SEQ_KEY: &str = "\"seq\":";

fn classify_json(text: &str) -> Incoming {
    if text.starts_with("{\"ev\":\"message\"") {
        // Both Palaver and the ws baseline put `client_ts` last; search from the end so a
        // message text cannot be mistaken for it.
        let client_ts = text.rfind(CLIENT_TS_KEY).and_then(|i| leading_u64(&text[i + CLIENT_TS_KEY.len()..]));
        // `seq` follows `room` (an id, no quotes inside), before any text: the first match.
        let seq = text.find(SEQ_KEY).and_then(|i| leading_u64(&text[i + SEQ_KEY.len()..])).unwrap_or(0);
        return Incoming::Message { client_ts, seq };
    }
    if text.starts_with("{\"ev\":") {
        return Incoming::Ignored;
    }
    #[derive(Deserialize)]
    struct Reply<'a> {
        re: Option<u64>,
        #[serde(borrow)]
        err: Option<ReplyErr<'a>>,
    }
    #[derive(Deserialize)]
    struct ReplyErr<'a> {
        #[serde(borrow)]
        code: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_str::<Reply<'_>>(text) {
        Ok(Reply { re, err: None }) => Incoming::Ok { re: re.unwrap_or(0) },
        Ok(Reply { re, err: Some(e) }) => Incoming::Err { re: re.unwrap_or(0), code: e.code.into_owned() },
        Err(e) => Incoming::Undecodable(format!("json: {e}")),
    }
}

fn leading_u64(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

type ArchivedFrame = <ServerFrame as rkyv::Archive>::Archived;
type ArchivedEvent = <Event as rkyv::Archive>::Archived;
type ArchivedReply = <ReplyBody as rkyv::Archive>::Archived;

fn classify_rkyv(bytes: &[u8]) -> Incoming {
    let frame = match rkyv::access::<ArchivedFrame, rkyv::rancor::BoxedError>(bytes) {
        Ok(frame) => frame,
        Err(e) => return Incoming::Undecodable(format!("rkyv: {e}")),
    };
    match frame {
        ArchivedFrame::Event(ArchivedEvent::Message(m)) => Incoming::Message {
            client_ts: m.client_ts.as_ref().map(|t| t.to_native()),
            seq: m.seq.to_native(),
        },
        // Ephemeral events (typing) carry nothing the load generator measures.
        ArchivedFrame::Event(_) => Incoming::Ignored,
        ArchivedFrame::Reply { re, body } => match body {
            ArchivedReply::Ok(_) => Incoming::Ok { re: re.to_native() },
            ArchivedReply::Err(err) => {
                let code = rkyv::deserialize::<ErrorBody, rkyv::rancor::BoxedError>(err)
                    .map(|b| b.code.as_str().to_string())
                    .unwrap_or_else(|e| format!("undecodable error: {e}"));
                Incoming::Err { re: re.to_native(), code }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use palaver_protocol::{
        ClientMsgId, ErrorCode, Message, MessageKind, OkBody, RoomId, SendOk, ServerFrame, UserId,
    };

    use super::*;

    fn event(client_ts: Option<u64>) -> ServerFrame {
        ServerFrame::Event(Event::Message(Message {
            room: RoomId::parse("r_abc").unwrap(),
            seq: 7,
            ts: 1,
            sender: UserId::parse("u_abc").unwrap(),
            cid: ClientMsgId::parse("c-1").unwrap(),
            kind: MessageKind::Text,
            text: "\"client_ts\":5 tricky".into(),
            client_ts,
            reactions: Vec::new(),
            reply_to: None,
            reply: None,
            mentions: Vec::new(),
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
        }))
    }

    fn as_ws(codec: Codec, frame: &ServerFrame) -> WsMessage {
        let bytes = codec.encode_server(frame).unwrap();
        if codec.is_text() {
            WsMessage::Text(String::from_utf8(bytes).unwrap().into())
        } else {
            WsMessage::Binary(bytes.into())
        }
    }

    #[test]
    fn both_codecs_classify_events_and_replies() {
        for codec in Codec::ALL {
            assert_eq!(
                classify(&as_ws(codec, &event(Some(1_764_000_000_123_456)))),
                Incoming::Message { client_ts: Some(1_764_000_000_123_456), seq: 7 }
            );
            assert_eq!(classify(&as_ws(codec, &event(None))), Incoming::Message { client_ts: None, seq: 7 });
            let ok = ServerFrame::ok(3, OkBody::Sent(SendOk { seq: 1, ts: 2, duplicate: false }));
            assert_eq!(classify(&as_ws(codec, &ok)), Incoming::Ok { re: 3 });
            let err = ServerFrame::err(4, ErrorBody::new(ErrorCode::RateLimited, "slow down"));
            assert_eq!(classify(&as_ws(codec, &err)), Incoming::Err { re: 4, code: "rate_limited".into() });
        }
    }

    #[test]
    fn baseline_json_shapes_classify() {
        let ev = r#"{"ev":"message","room":"r_1","seq":1,"ts":2,"sender":"u_1","cid":"c","kind":"text","text":"x","client_ts":42}"#;
        assert_eq!(classify_json(ev), Incoming::Message { client_ts: Some(42), seq: 1 });
        assert_eq!(
            classify_json(r#"{"re":null,"err":{"code":"invalid","message":"not json"}}"#),
            Incoming::Err { re: 0, code: "invalid".into() }
        );
        assert!(matches!(classify_json("garbage"), Incoming::Undecodable(_)));
    }
}

//! Socket.io v4 over its WebSocket transport, spoken directly (no socket.io client
//! library): the engine.io v4 packet framing and the socket.io packets the baseline uses.
//!
//! Each WebSocket text message is one engine.io packet: a type digit, then its data.
//! `0{json}` open (the server's handshake), `2` ping (answered with `3` pong), `1` close,
//! `4…` a socket.io packet: `40{auth}` connect the default namespace (answered `40{"sid"}`
//! or `44{"message"}`), `42N["event",data]` an event asking for ack N, `43N[data]` the
//! ack. The baseline's events and acks are listed in `loadtest/references/README.md`.
//!
//! What it is not: a general socket.io client (no namespaces, no binary packets, no
//! long-polling).

use serde_json::{Value, json};

use crate::wire::Incoming;

/// The WebSocket path of the engine.io v4 transport.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// The engine.io pong, the answer to a ping (`2`).
pub const PONG: &str = "3";

/// `40{"token":…}`: connects the default namespace with the handshake's `auth`.
pub fn connect_packet(token: &str) -> String {
    format!("40{}", json!({ "token": token }))
}

/// `42N["name",data]`: an event asking for ack `N`.
pub fn event_packet(ack: u64, name: &str, data: &Value) -> String {
    format!("42{ack}{}", json!([name, data]))
}

/// A fully read packet (set-up path).
#[derive(Debug, PartialEq)]
pub enum Packet {
    /// `0{…}`: the engine.io handshake.
    Open,
    /// `40{…}`: the namespace is connected.
    Connected,
    /// `44{…}`: the namespace refused the connection (the middleware's error).
    ConnectError(String),
    /// `2`: an engine.io ping.
    Ping,
    /// `1` or `41`: closed.
    Close,
    /// `42[name, data]`.
    Event { name: String, data: Value },
    /// `43N[data]`.
    Ack { id: u64, data: Value },
    /// Anything else (noop, upgrade, binary packets).
    Other,
}

/// Reads a packet fully.
pub fn parse(text: &str) -> anyhow::Result<Packet> {
    Ok(match text.as_bytes().first() {
        Some(b'0') => Packet::Open,
        Some(b'1') => Packet::Close,
        Some(b'2') => Packet::Ping,
        Some(b'4') => {
            let rest = &text[1..];
            match rest.as_bytes().first() {
                Some(b'0') => Packet::Connected,
                Some(b'1') => Packet::Close,
                Some(b'4') => {
                    let message = serde_json::from_str::<Value>(&rest[1..])
                        .ok()
                        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_else(|| rest[1..].to_string());
                    Packet::ConnectError(message)
                }
                Some(b'2') => {
                    let (_, body) = split_id(&rest[1..]);
                    let mut array: Vec<Value> = serde_json::from_str(body)?;
                    if array.is_empty() {
                        anyhow::bail!("empty socket.io event");
                    }
                    let data = if array.len() > 1 { array.swap_remove(1) } else { Value::Null };
                    let name = array.first().and_then(Value::as_str).unwrap_or_default().to_string();
                    Packet::Event { name, data }
                }
                Some(b'3') => {
                    let (id, body) = split_id(&rest[1..]);
                    let mut array: Vec<Value> = serde_json::from_str(body)?;
                    let data = if array.is_empty() { Value::Null } else { array.swap_remove(0) };
                    Packet::Ack { id: id.unwrap_or(0), data }
                }
                _ => Packet::Other,
            }
        }
        _ => Packet::Other,
    })
}

/// Splits the optional decimal id off the front of a packet body.
fn split_id(s: &str) -> (Option<u64>, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    (s[..digits].parse().ok(), &s[digits..])
}

const NEW_MESSAGE: &str = "42[\"new-message\",";
const CLIENT_TS_KEY: &str = "\"clientTs\":";
const SEQ_KEY: &str = "\"seq\":";

/// Classifies a packet cheaply (hot path): `new-message` events by their `seq` and
/// trailing `clientTs`, acks by their id and whether they carry an `error`.
pub fn classify(text: &str) -> Incoming {
    if let Some(rest) = text.strip_prefix(NEW_MESSAGE) {
        // `room` (an id) comes before `seq`, and `clientTs` is the last field: search the
        // ends so a message text cannot be mistaken for either.
        let seq = rest.find(SEQ_KEY).and_then(|i| leading_u64(&rest[i + SEQ_KEY.len()..])).unwrap_or(0);
        let client_ts = rest.rfind(CLIENT_TS_KEY).and_then(|i| leading_u64(&rest[i + CLIENT_TS_KEY.len()..]));
        return Incoming::Message { client_ts, seq };
    }
    if let Some(rest) = text.strip_prefix("43") {
        let (id, body) = split_id(rest);
        let re = id.unwrap_or(0);
        if body.starts_with("[{\"error\":") {
            let code = serde_json::from_str::<Vec<Value>>(body)
                .ok()
                .and_then(|a| {
                    a.first().and_then(|v| v.get("error")).and_then(Value::as_str).map(str::to_string)
                })
                .unwrap_or_else(|| "error".to_string());
            return Incoming::Err { re, code };
        }
        return Incoming::Ok { re };
    }
    match text {
        "2" => Incoming::EnginePing,
        "1" | "41" => Incoming::Closed,
        _ if text.starts_with("44") => Incoming::Err { re: 0, code: "connect_error".into() },
        _ => Incoming::Ignored,
    }
}

fn leading_u64(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_built_as_socket_io_expects() {
        assert_eq!(connect_packet("t.k"), r#"40{"token":"t.k"}"#);
        assert_eq!(
            event_packet(7, "join-room", &json!({"roomId": "r_1"})),
            r#"427["join-room",{"roomId":"r_1"}]"#
        );
    }

    #[test]
    fn baseline_packets_parse() {
        assert_eq!(parse(r#"0{"sid":"x","pingInterval":25000}"#).unwrap(), Packet::Open);
        assert_eq!(parse(r#"40{"sid":"y"}"#).unwrap(), Packet::Connected);
        assert_eq!(
            parse(r#"44{"message":"Authentication error"}"#).unwrap(),
            Packet::ConnectError("Authentication error".into())
        );
        assert_eq!(parse("2").unwrap(), Packet::Ping);
        assert_eq!(
            parse(r#"4312[{"ok":true,"lastSeq":3}]"#).unwrap(),
            Packet::Ack { id: 12, data: json!({"ok": true, "lastSeq": 3}) }
        );
        assert_eq!(
            parse(r#"42["error",{"message":"Permission denied"}]"#).unwrap(),
            Packet::Event { name: "error".into(), data: json!({"message": "Permission denied"}) }
        );
    }

    #[test]
    fn hot_path_classifies() {
        let ev = r#"42["new-message",{"room":"r_ab","seq":17,"ts":1,"sender":"u_1","cid":"c","kind":"text","text":"\"seq\":3 \"clientTs\":5","clientTs":1764000000123456}]"#;
        assert_eq!(classify(ev), Incoming::Message { client_ts: Some(1_764_000_000_123_456), seq: 17 });
        assert_eq!(classify(r#"439[{"seq":4}]"#), Incoming::Ok { re: 9 });
        assert_eq!(
            classify(r#"4310[{"error":"Permission denied"}]"#),
            Incoming::Err { re: 10, code: "Permission denied".into() }
        );
        assert_eq!(classify("2"), Incoming::EnginePing);
        assert_eq!(classify(r#"42["user-typing",{}]"#), Incoming::Ignored);
    }
}

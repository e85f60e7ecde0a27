//! The two codecs. JSON for anything that speaks WebSocket text; rkyv for native and
//! latency-sensitive clients, read through `bytecheck` validation (never unchecked
//! access on network bytes). Both check identifiers through their constructors (see
//! `ids`), so a frame either codec decodes holds only valid identifiers.

// `BoxedError` rather than `rancor::Error`, which keeps no message in release builds: a
// client told why its frame was refused can fix it.
use rkyv::rancor::BoxedError;

use crate::frames::{
    ArchivedClientFrame, ArchivedServerFrame, ClientFrame, FileRef, MessageKind, Op, ServerFrame,
};
use crate::{ClientMsgId, Encryption, RoomId};

/// A frame encoding, chosen per connection by WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `palaver.v1.json`: UTF-8 JSON in WebSocket text frames.
    Json,
    /// `palaver.v1.rkyv`: rkyv archives in WebSocket binary frames (and on QUIC).
    Rkyv,
}

/// A frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The request id, when it could be read despite the error (so the reply can carry `re`).
    pub id: Option<u64>,
    /// What was wrong, for the error reply.
    pub message: String,
}

/// A frame could not be encoded (a bug, never the peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(String);

impl Codec {
    /// Both codecs, in the order the server prefers them.
    pub const ALL: [Codec; 2] = [Codec::Rkyv, Codec::Json];

    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => "palaver.v1.json",
            Codec::Rkyv => "palaver.v1.rkyv",
        }
    }

    /// The codec for a WebSocket subprotocol name.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.subprotocol() == name)
    }

    /// Whether frames travel as WebSocket text (else binary).
    pub fn is_text(self) -> bool {
        matches!(self, Codec::Json)
    }

    /// Encodes a server frame.
    pub fn encode_server(self, frame: &ServerFrame) -> Result<Vec<u8>, EncodeError> {
        match self {
            Codec::Json => serde_json::to_vec(frame).map_err(|e| EncodeError(e.to_string())),
            Codec::Rkyv => rkyv::api::high::to_bytes_in::<_, BoxedError>(frame, Vec::new())
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Encodes a server frame into `out`, replacing what it held: a caller that reuses
    /// one buffer encodes without allocating once the buffer has grown to its frames.
    pub fn encode_server_in(self, frame: &ServerFrame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.clear();
        match self {
            Codec::Json => serde_json::to_writer(&mut *out, frame).map_err(|e| EncodeError(e.to_string())),
            Codec::Rkyv => rkyv::api::high::to_bytes_in::<_, BoxedError>(frame, &mut *out)
                .map(drop)
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Encodes a client frame.
    pub fn encode_client(self, frame: &ClientFrame) -> Result<Vec<u8>, EncodeError> {
        match self {
            Codec::Json => serde_json::to_vec(frame).map_err(|e| EncodeError(e.to_string())),
            Codec::Rkyv => rkyv::api::high::to_bytes_in::<_, BoxedError>(frame, Vec::new())
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Decodes and validates a client frame (identifiers included).
    pub fn decode_client(self, bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
        match self {
            Codec::Json => match JsonSend::read(bytes) {
                Some(frame) => Ok(frame),
                None => serde_json::from_slice::<ClientFrame>(bytes).map_err(|e| DecodeError {
                    id: json_request_id(bytes),
                    message: format!("malformed frame: {e}"),
                }),
            },
            Codec::Rkyv => {
                let archived = rkyv::access::<ArchivedClientFrame, BoxedError>(bytes)
                    .map_err(|e| malformed(bytes, &e))?;
                let id = archived.id.to_native();
                rkyv::deserialize::<ClientFrame, BoxedError>(archived)
                    .map_err(|e| DecodeError { id: Some(id), ..malformed(bytes, &e) })
            }
        }
    }

    /// Decodes and validates a server frame (the client side of the contract).
    pub fn decode_server(self, bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
        match self {
            Codec::Json => serde_json::from_slice::<ServerFrame>(bytes)
                .map_err(|e| DecodeError { id: None, message: format!("malformed frame: {e}") }),
            Codec::Rkyv => {
                let archived = rkyv::access::<ArchivedServerFrame, BoxedError>(bytes)
                    .map_err(|e| malformed(bytes, &e))?;
                rkyv::deserialize::<ServerFrame, BoxedError>(archived).map_err(|e| malformed(bytes, &e))
            }
        }
    }
}

/// An rkyv frame that failed validation or deserialization.
fn malformed(frame: &[u8], e: &BoxedError) -> DecodeError {
    let hint = if frame.trim_ascii_start().starts_with(b"{") {
        " (this looks like a JSON frame: this connection speaks palaver.v1.rkyv; JSON takes \
         the WebSocket subprotocol palaver.v1.json, or the QUIC ALPN palaver/1+json)"
    } else {
        ""
    };
    DecodeError {
        id: None,
        message: format!("malformed frame: {}{hint}", addresses_as_offsets(&e.to_string(), frame)),
    }
}

/// rkyv's validation errors name memory addresses (`ptr 0x0000…`, the only hexadecimal
/// numbers its messages print). The peer is told offsets into its frame instead, never
/// where the decoder's buffers live.
fn addresses_as_offsets(message: &str, frame: &[u8]) -> String {
    use std::fmt::Write as _;

    let start = frame.as_ptr().addr();
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let digits = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        match usize::from_str_radix(&after[..digits], 16) {
            Ok(address) if (start..=start + frame.len()).contains(&address) => {
                let _ = write!(out, "offset {}", address - start);
            }
            Ok(_) => out.push_str("an address outside the frame"),
            Err(_) => out.push_str(&rest[at..at + 2 + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A JSON `send` frame, the op nearly all traffic is, read in one pass. The general
/// reading of a [`ClientFrame`] buffers every field twice (`op` is an internally tagged
/// enum flattened into the frame) before it builds the op. Every field is the one of
/// [`Op::Send`] with the same rules, so a frame read here decodes to the same request;
/// anything it does not read (another op, an unknown field, any mistake) is decoded
/// the general way, which also words the error.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSend {
    id: u64,
    op: SendTag,
    room: RoomId,
    cid: ClientMsgId,
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

/// `"op": "send"`, and nothing else: another op stops [`JsonSend`] at its tag. Read as a
/// string only, as the general reading reads the tag (a derived unit enum would also take
/// `{"send": null}`).
enum SendTag {
    Send,
}

impl<'de> serde::Deserialize<'de> for SendTag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tag;
        impl serde::de::Visitor<'_> for Tag {
            type Value = SendTag;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the string \"send\"")
            }
            fn visit_str<E: serde::de::Error>(self, op: &str) -> Result<SendTag, E> {
                match op {
                    "send" => Ok(SendTag::Send),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_str(Tag)
    }
}

impl JsonSend {
    fn read(bytes: &[u8]) -> Option<ClientFrame> {
        // A frame is an object: the general reading (a flattened op) takes nothing else,
        // while a derived struct would also take the fields as an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        let JsonSend {
            id,
            op: SendTag::Send,
            room,
            cid,
            kind,
            text,
            client_ts,
            reply_to,
            file,
            encryption,
            thread,
            also_to_room,
        } = serde_json::from_slice(bytes).ok()?;
        let op =
            Op::Send { room, cid, kind, text, client_ts, reply_to, file, encryption, thread, also_to_room };
        Some(ClientFrame { id, op })
    }
}

/// Reads just `{"id": N}` out of a frame that failed to decode as a whole.
fn json_request_id(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_json::from_slice::<IdOnly>(bytes).ok().map(|f| f.id)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        ClientMsgId, ErrorBody, ErrorCode, Event, HistoryOk, JoinOk, Message, MessageKind, OkBody, Op,
        RoomId, RoomInfo, RoomKind, SendOk, UserId,
    };

    fn id_body() -> impl Strategy<Value = String> {
        "[0-9a-z]{1,40}"
    }
    fn room_id() -> impl Strategy<Value = RoomId> {
        id_body().prop_map(|b| RoomId::from_body(&b).unwrap())
    }
    fn cid() -> impl Strategy<Value = ClientMsgId> {
        "[!-~]{1,64}".prop_map(|s| ClientMsgId::parse(&s).unwrap())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            ".{0,200}".prop_map(|token| Op::Auth { token }),
            (".{0,100}", prop_oneof![Just(RoomKind::Public), Just(RoomKind::Private)])
                .prop_map(|(name, kind)| Op::RoomCreate { name, kind, topic: None, settings: None }),
            (room_id(), prop::option::of(".{0,20}"), any::<Option<u32>>(), any::<Option<bool>>()).prop_map(
                |(room, topic, max_members, file_sharing)| Op::RoomUpdate {
                    room,
                    name: None,
                    topic,
                    settings: Some(crate::RoomSettingsPatch {
                        max_members,
                        file_sharing,
                        slow_mode_secs: None,
                        invite_role: Some(crate::RoomRole::Moderator),
                        pin_role: Some(crate::RoomRole::Member),
                        mention_all_role: None,
                        retention: Some(crate::RoomRetention {
                            max_age_secs: std::num::NonZeroU32::new(86_400),
                            max_count: None,
                        }),
                    }),
                }
            ),
            (room_id(), id_body(), any::<u64>(), prop::option::of(".{0,20}")).prop_map(
                |(room, user, duration_secs, reason)| Op::Mute {
                    room,
                    user: UserId::from_body(&user).unwrap(),
                    duration_secs,
                    reason,
                }
            ),
            (room_id(), id_body()).prop_map(|(room, user)| Op::RoleSet {
                room,
                user: UserId::from_body(&user).unwrap(),
                role: crate::RoomRole::Admin,
            }),
            prop::collection::vec(id_body(), 0..5).prop_map(|users| Op::PresenceSubscribe {
                users: users.iter().map(|b| UserId::from_body(b).unwrap()).collect(),
            }),
            id_body().prop_map(|b| Op::FriendRequest { user: UserId::from_body(&b).unwrap() }),
            Just(Op::PresenceSet { status: crate::PresenceChoice::Away }),
            (room_id(), any::<Option<u64>>()).prop_map(|(room, since)| Op::Join { room, since }),
            room_id().prop_map(|room| Op::Leave { room }),
            (room_id(), cid(), ".{0,300}", any::<Option<u64>>()).prop_map(|(room, cid, text, client_ts)| {
                Op::Send {
                    room,
                    cid,
                    kind: MessageKind::Text,
                    text,
                    client_ts,
                    reply_to: client_ts.map(|t| t / 2),
                    file: None,
                    encryption: None,
                    thread: client_ts.map(|t| t / 3),
                    also_to_room: client_ts.is_some_and(|t| t % 2 == 0),
                }
            }),
            (
                room_id(),
                any::<Option<u64>>(),
                any::<Option<u64>>(),
                any::<Option<u32>>(),
                prop::option::of("[A-Za-z0-9_-]{0,16}")
            )
                .prop_map(|(room, before, after, limit, cursor)| Op::History {
                    room,
                    before,
                    after,
                    limit,
                    cursor,
                    threads: if limit.is_some() { crate::ThreadReplies::Exclude } else { Default::default() },
                }),
            (room_id(), any::<u64>(), any::<Option<u64>>(), any::<Option<u32>>()).prop_map(
                |(room, root, before, limit)| Op::ThreadHistory {
                    room,
                    root,
                    before,
                    after: None,
                    limit,
                    cursor: None
                }
            ),
            (room_id(), any::<Option<u32>>(), prop::option::of("[A-Za-z0-9_-]{0,16}"))
                .prop_map(|(room, limit, cursor)| Op::ThreadList { room, limit, cursor }),
            (room_id(), any::<u64>(), any::<u64>()).prop_map(|(room, root, seq)| Op::ThreadRead {
                room,
                root,
                seq
            }),
            Just(Op::Ping {}),
            (room_id(), any::<u64>(), any::<Option<u32>>(), prop::option::of("[A-Za-z0-9_-]{0,16}"))
                .prop_map(|(room, seq, limit, cursor)| Op::EditList { room, seq, limit, cursor }),
            (room_id(), any::<u64>()).prop_map(|(room, seq)| Op::Pin { room, seq }),
            (room_id(), cid(), room_id(), any::<u64>(), ".{0,50}").prop_map(
                |(room, cid, from_room, seq, text)| { Op::Forward { room, cid, from_room, seq, text } }
            ),
            (room_id(), any::<u64>(), any::<bool>(), any::<Option<u32>>()).prop_map(
                |(room, seq, delivered, limit)| Op::ReceiptList { room, seq, delivered, limit, cursor: None }
            ),
            (room_id(), any::<u64>()).prop_map(|(room, seq)| Op::Unpin { room, seq }),
            (room_id(), any::<Option<u32>>(), prop::option::of("[A-Za-z0-9_-]{0,16}"))
                .prop_map(|(room, limit, cursor)| Op::PinList { room, limit, cursor }),
            room_id().prop_map(|room| Op::TypingStart { room }),
            room_id().prop_map(|room| Op::TypingStop { room }),
            (room_id(), any::<Option<u64>>(), any::<Option<u64>>())
                .prop_map(|(room, delivered, read)| Op::Receipt { room, delivered, read }),
            (any::<Option<u32>>(), prop::option::of("[A-Za-z0-9_-]{0,16}"))
                .prop_map(|(limit, cursor)| Op::Sync { limit, cursor }),
            (prop::option::of("[a-z]{0,8}"), any::<Option<u32>>(), prop::option::of("[A-Za-z0-9_-]{0,16}"))
                .prop_map(|(query, limit, cursor)| Op::RoomList { query, limit, cursor }),
            id_body().prop_map(|b| Op::DmOpen { user: UserId::from_body(&b).unwrap() }),
            (room_id(), any::<u64>(), "[^ \\t\\n]{1,8}").prop_map(|(room, seq, emoji)| Op::React {
                room,
                seq,
                emoji
            }),
            (room_id(), any::<u64>(), "[^ \\t\\n]{1,8}").prop_map(|(room, seq, emoji)| Op::Unreact {
                room,
                seq,
                emoji
            }),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (room_id(), any::<u64>(), any::<u64>(), id_body(), cid(), ".{0,300}", any::<Option<u64>>()).prop_map(
            |(room, seq, ts, sender, cid, text, client_ts)| Message {
                room,
                seq,
                ts,
                sender: UserId::from_body(&sender).unwrap(),
                cid,
                kind: MessageKind::Text,
                text,
                client_ts,
                reactions: if seq % 3 == 0 {
                    vec![crate::ReactionSummary {
                        emoji: "👍".into(),
                        count: 1,
                        users: vec![UserId::from_body(&sender).unwrap()],
                    }]
                } else {
                    Vec::new()
                },
                reply_to: (seq % 5 == 0).then_some(seq / 2),
                reply: None,
                mentions: Vec::new(),
                file: (seq % 7 == 0).then(|| {
                    Box::new(crate::FileRef {
                        file_id: "f_1".into(),
                        name: "cat.png".into(),
                        size: seq,
                        content_type: "image/png".into(),
                        width: Some(640),
                        height: None,
                    })
                }),
                edited_at: (seq % 2 == 0).then_some(ts),
                deleted: seq % 11 == 0,
                system: (seq % 13 == 0).then(|| {
                    Box::new(crate::SystemNotice {
                        action: crate::SystemAction::Muted,
                        actor: UserId::from_body(&sender).unwrap(),
                        target: Some(UserId::from_body(&sender).unwrap()),
                        role: None,
                        until: Some(ts),
                        reason: Some("spam".into()),
                        seq: None,
                    })
                }),
                blocked: seq % 17 == 0,
                encryption: (seq % 19 == 0).then(|| {
                    Box::new(crate::Encryption {
                        algorithm: "m.olm.v1.curve25519-aes-sha2".into(),
                        sender_device: "DEV1".into(),
                        session_id: None,
                    })
                }),
                mention_all: (seq % 29 == 0).then_some(crate::MentionAll::Here),
                forward: (seq % 23 == 0).then(|| {
                    Box::new(crate::ForwardRef {
                        room: RoomId::from_body("src").unwrap(),
                        seq: seq / 2,
                        source: (seq % 2 == 0).then(|| {
                            Box::new(crate::ForwardedMessage {
                                sender: UserId::from_body(&sender).unwrap(),
                                ts,
                                kind: MessageKind::Text,
                                text: "original".into(),
                                file: None,
                                edited_at: None,
                                deleted: false,
                            })
                        }),
                    })
                }),
                thread: (seq % 31 == 0).then_some(seq / 3),
                also_to_room: seq % 62 == 0,
                thread_summary: (seq % 37 == 0)
                    .then(|| Box::new(crate::ThreadSummary { count: 3, last_seq: seq + 3, last_at: ts })),
            },
        )
    }

    fn server_frame() -> impl Strategy<Value = ServerFrame> {
        let room_info = (room_id(), ".{1,100}").prop_map(|(room_id, name)| RoomInfo {
            room_id,
            name,
            kind: RoomKind::Public,
            topic: String::new(),
        });
        prop_oneof![
            message().prop_map(|m| ServerFrame::Event(Event::Message(m))),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(re, delivered, read)| {
                ServerFrame::ok(re, OkBody::Receipt(crate::ReceiptOk { delivered, read }))
            }),
            (any::<u64>(), room_id(), prop::option::of(message()), any::<u64>()).prop_map(
                |(re, room_id, last_message, n)| {
                    let room =
                        RoomInfo { room_id, name: "r".into(), kind: RoomKind::Private, topic: "t".into() };
                    let summary = crate::RoomSummary {
                        room,
                        last_seq: n,
                        last_message,
                        delivered: n,
                        read: n / 2,
                        unread: n - n / 2,
                        mentions: n / 3,
                    };
                    ServerFrame::ok(re, OkBody::Sync(crate::SyncOk { rooms: vec![summary], next: None }))
                }
            ),
            (room_id(), id_body(), any::<u64>(), any::<u64>()).prop_map(|(room, user, delivered, read)| {
                ServerFrame::Event(Event::Receipt(crate::Receipt {
                    room,
                    user: UserId::from_body(&user).unwrap(),
                    delivered,
                    read,
                }))
            }),
            (room_id(), id_body(), any::<bool>(), any::<Option<u64>>()).prop_map(
                |(room, user, active, expires_in_ms)| {
                    ServerFrame::Event(Event::Typing(crate::Typing {
                        room,
                        user: UserId::from_body(&user).unwrap(),
                        active,
                        expires_in_ms,
                    }))
                }
            ),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(re, seq, ts, duplicate)| {
                ServerFrame::ok(re, OkBody::Sent(SendOk { seq, ts, duplicate }))
            }),
            (any::<u64>(), room_info, any::<u64>()).prop_map(|(re, room, last_seq)| {
                ServerFrame::ok(re, OkBody::Joined(JoinOk { room, last_seq, history_from: None }))
            }),
            (any::<u64>(), prop::collection::vec(message(), 0..5)).prop_map(|(re, messages)| {
                ServerFrame::ok(re, OkBody::History(HistoryOk { messages, next: None, history_from: None }))
            }),
            (any::<u64>(), ".{0,50}", any::<Option<u64>>()).prop_map(|(re, message, retry)| {
                ServerFrame::err(
                    re,
                    ErrorBody { code: ErrorCode::RateLimited, message, retry_after_ms: retry },
                )
            }),
        ]
    }

    proptest! {
        #[test]
        fn client_frames_round_trip_in_both_codecs(id in any::<u64>(), op in op()) {
            let frame = ClientFrame { id, op };
            for codec in Codec::ALL {
                let bytes = codec.encode_client(&frame).unwrap();
                prop_assert_eq!(codec.decode_client(&bytes).unwrap(), frame.clone());
            }
        }

        #[test]
        fn server_frames_round_trip_in_both_codecs(frame in server_frame()) {
            for codec in Codec::ALL {
                let bytes = codec.encode_server(&frame).unwrap();
                prop_assert_eq!(codec.decode_server(&bytes).unwrap(), frame.clone());
            }
        }

        #[test]
        fn encoding_into_a_used_buffer_gives_the_same_bytes(frame in server_frame(), earlier in server_frame()) {
            let mut buffer = Vec::new();
            for codec in Codec::ALL {
                codec.encode_server_in(&earlier, &mut buffer).unwrap();
                codec.encode_server_in(&frame, &mut buffer).unwrap();
                prop_assert_eq!(&buffer, &codec.encode_server(&frame).unwrap());
            }
        }

        #[test]
        fn json_frames_read_in_one_pass_decode_as_the_general_way(
            id in any::<u64>(),
            op in op(),
            damage in any::<(usize, u8, bool)>(),
        ) {
            let bytes = Codec::Json.encode_client(&ClientFrame { id, op }).unwrap();
            let mut damaged = bytes.clone();
            let (at, byte, replace) = (damage.0 % bytes.len(), damage.1, damage.2);
            if replace {
                damaged[at] = byte;
            } else {
                damaged.remove(at);
            }
            for bytes in [bytes, damaged] {
                let general = read_generally(&bytes);
                if let Some(read) = JsonSend::read(&bytes) {
                    prop_assert_eq!(Some(read), general.clone());
                }
                prop_assert_eq!(Codec::Json.decode_client(&bytes).ok(), general);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            for codec in Codec::ALL {
                let _ = codec.decode_client(&bytes);
                let _ = codec.decode_server(&bytes);
            }
        }
    }

    #[test]
    fn json_shapes_match_the_contract() {
        let frame = Codec::Json
            .decode_client(br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","kind":"text","text":"hello"}"#)
            .unwrap();
        assert_eq!(frame.id, 4);
        assert!(matches!(frame.op, Op::Send { ref text, .. } if text == "hello"));

        let ok = ServerFrame::ok(4, OkBody::Sent(SendOk { seq: 58, ts: 1, duplicate: false }));
        assert_eq!(
            String::from_utf8(Codec::Json.encode_server(&ok).unwrap()).unwrap(),
            r#"{"re":4,"ok":{"seq":58,"ts":1}}"#
        );
        let err = ServerFrame::err(6, ErrorBody::new(ErrorCode::Forbidden, "no"));
        assert_eq!(
            String::from_utf8(Codec::Json.encode_server(&err).unwrap()).unwrap(),
            r#"{"re":6,"err":{"code":"forbidden","message":"no"}}"#
        );
    }

    /// The general reading of a JSON client frame, which `decode_client` falls back to.
    fn read_generally(bytes: &[u8]) -> Option<ClientFrame> {
        serde_json::from_slice(bytes).ok()
    }

    #[test]
    fn json_sends_read_in_one_pass_as_the_general_way_reads_them() {
        let frames: [&[u8]; 6] = [
            br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","kind":"text","text":"hello"}"#,
            br#"{"text":"h\u00e9\"llo","cid":"c-1","room":"r_abc","op":"send","id":4}"#,
            br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","client_ts":null,"thread":3,"also_to_room":true}"#,
            br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","kind":"image","file":{"file_id":"f1","name":"a.png","content_type":"image/png","size":3}}"#,
            br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","kind":"encrypted","text":"x","encryption":{"algorithm":"a","sender_device":"d"}}"#,
            br#" { "id" : 4 , "op" : "send" , "room" : "r_abc" , "cid" : "c-1" } "#,
        ];
        for bytes in frames {
            let general = read_generally(bytes);
            assert!(general.is_some() || JsonSend::read(bytes).is_none());
            assert_eq!(JsonSend::read(bytes).or(general.clone()), general);
        }
        assert!(JsonSend::read(frames[0]).is_some() && JsonSend::read(frames[1]).is_some());
    }

    #[test]
    fn shapes_the_general_reading_refuses_are_refused_in_one_pass_too() {
        for bytes in [
            &br#"[4,"send","r_abc","c-1"]"#[..],
            br#" [4,"send","r_abc","c-1","text","hello"]"#,
            br#"{"id":4,"op":{"send":null},"room":"r_abc","cid":"c-1"}"#,
            br#"{"id":4,"op":["send"],"room":"r_abc","cid":"c-1"}"#,
        ] {
            assert_eq!(read_generally(bytes), None);
            assert!(JsonSend::read(bytes).is_none());
            assert!(Codec::Json.decode_client(bytes).is_err());
        }
    }

    #[test]
    fn json_sends_the_one_pass_cannot_read_get_the_general_error() {
        for (bytes, says) in [
            (
                &br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","colour":"red"}"#[..],
                "unknown field `colour`",
            ),
            (br#"{"id":4,"op":"send","room":"x_abc","cid":"c-1"}"#, "room id must start with"),
            (br#"{"id":4,"op":"send","room":"r_abc","cid":"c 1"}"#, "cid is malformed"),
            (br#"{"id":4,"op":"send","room":"r_abc"}"#, "missing field `cid`"),
            (br#"{"id":4,"op":"send","room":"r_abc","cid":"c-1","kind":"shout"}"#, "unknown variant `shout`"),
        ] {
            let err = Codec::Json.decode_client(bytes).unwrap_err();
            assert_eq!(err.id, Some(4), "{err}");
            assert!(err.message.starts_with("malformed frame: ") && err.message.contains(says), "{err}");
        }
    }

    #[test]
    fn json_decode_errors_keep_the_request_id_when_readable() {
        let err = Codec::Json.decode_client(br#"{"id":9,"op":"nope"}"#).unwrap_err();
        assert_eq!(err.id, Some(9));
        let err = Codec::Json.decode_client(br#"{"id":9,"op":"join","room":"x_1"}"#).unwrap_err();
        assert_eq!(err.id, Some(9));
        let err = Codec::Json.decode_client(b"\xff garbage").unwrap_err();
        assert_eq!(err.id, None);
    }

    #[test]
    fn untagged_json_ok_bodies_decode_as_the_right_variant() {
        // Shapes that could be confused: every answer must come back as itself, even empty.
        let bodies = [
            OkBody::Sync(crate::SyncOk { rooms: vec![], next: None }),
            OkBody::Sync(crate::SyncOk { rooms: vec![], next: Some("c".into()) }),
            OkBody::RoomList(crate::RoomListOk { results: vec![], next: None }),
            OkBody::History(HistoryOk { messages: vec![], next: None, history_from: None }),
            OkBody::History(HistoryOk {
                messages: vec![],
                next: Some("c".into()),
                history_from: std::num::NonZeroU64::new(3),
            }),
            OkBody::Sent(SendOk { seq: 1, ts: 2, duplicate: false }),
            OkBody::Edited(crate::EditOk { seq: 1, edited_at: 2 }),
            OkBody::Receipt(crate::ReceiptOk { delivered: 1, read: 1 }),
            OkBody::Reaction(crate::ReactionOk { seq: 1, emoji: "x".into(), count: 1 }),
            OkBody::Members(crate::MembersOk { members: vec![], next: None }),
            OkBody::Invites(crate::InvitesOk { invites: vec![], next: None }),
            OkBody::Users(crate::UsersOk { users: vec![] }),
            OkBody::Friends(crate::FriendsOk { friends: vec![], next: None }),
            OkBody::Blocked(crate::BlockedOk { blocked: vec![], next: None }),
            OkBody::PresenceList(crate::PresenceListOk { presence: vec![] }),
            OkBody::Profile(Box::new(crate::ProfileOk {
                profile: crate::Profile {
                    user_id: UserId::parse("u_a").unwrap(),
                    username: "ann".into(),
                    display_name: None,
                    avatar: None,
                    status_text: None,
                    share_read_receipts: None,
                    bot: false,
                },
                presence: None,
            })),
            OkBody::Friend(crate::FriendOk {
                friend: crate::FriendInfo {
                    user: UserId::parse("u_a").unwrap(),
                    username: "ann".into(),
                    state: crate::FriendState::Incoming,
                    since: 1,
                    presence: None,
                },
            }),
            OkBody::RoomDetails(crate::RoomDetailsOk {
                room: RoomInfo {
                    room_id: RoomId::parse("r_a").unwrap(),
                    name: "a".into(),
                    kind: RoomKind::Private,
                    topic: String::new(),
                },
                settings: crate::RoomSettings::default(),
                member_count: 1,
                role: None,
                history_from: None,
            }),
            OkBody::Room(crate::RoomOk {
                room: RoomInfo {
                    room_id: RoomId::parse("r_a").unwrap(),
                    name: "a".into(),
                    kind: RoomKind::Public,
                    topic: "t".into(),
                },
            }),
            OkBody::Empty(Default::default()),
        ];
        for body in bodies {
            let frame = ServerFrame::ok(1, body);
            let bytes = Codec::Json.encode_server(&frame).unwrap();
            assert_eq!(
                Codec::Json.decode_server(&bytes).unwrap(),
                frame,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn json_refuses_unknown_fields_in_ops() {
        assert!(Codec::Json.decode_client(br#"{"id":1,"op":"ping","extra":1}"#).is_err());
    }

    /// Encodes a frame whose identifier `valid` (which must occur once) is then overwritten
    /// in the archive with `invalid` of the same length: the bytes stay a well-formed
    /// archive, so only the identifier check can refuse them.
    fn with_identifier_replaced(mut bytes: Vec<u8>, valid: &str, invalid: &str) -> Vec<u8> {
        assert_eq!(valid.len(), invalid.len());
        let at = bytes.windows(valid.len()).position(|w| w == valid.as_bytes()).unwrap();
        bytes[at..at + valid.len()].copy_from_slice(invalid.as_bytes());
        bytes
    }

    #[test]
    fn rkyv_client_frames_with_invalid_identifiers_are_refused_with_a_reason() {
        let frame = ClientFrame { id: 3, op: Op::Leave { room: RoomId::parse("r_abc").unwrap() } };
        let bytes = Codec::Rkyv.encode_client(&frame).unwrap();
        assert_eq!(Codec::Rkyv.decode_client(&bytes).unwrap(), frame);

        let cases = [
            ("r_abc", "x_abc", "room id must start with \"r_\""),
            ("r_abc", "r_aBc", "room id is malformed: only 0-9 and a-z are allowed"),
            ("r_abc", "r_a\0c", "room id is malformed: only 0-9 and a-z are allowed"),
        ];
        for (valid, invalid, reason) in cases {
            let err = Codec::Rkyv
                .decode_client(&with_identifier_replaced(bytes.clone(), valid, invalid))
                .unwrap_err();
            assert_eq!(err.id, Some(3), "{invalid:?}");
            assert!(err.message.contains(reason), "{invalid:?}: {}", err.message);
        }
    }

    #[test]
    fn rkyv_client_frames_with_an_invalid_cid_or_user_are_refused() {
        let send = ClientFrame {
            id: 8,
            op: Op::Send {
                room: RoomId::parse("r_abc").unwrap(),
                cid: ClientMsgId::parse("c-1").unwrap(),
                kind: MessageKind::Text,
                text: "hello".into(),
                client_ts: None,
                reply_to: None,
                file: None,
                encryption: None,
                also_to_room: false,
                thread: None,
            },
        };
        let bytes = Codec::Rkyv.encode_client(&send).unwrap();
        let err = Codec::Rkyv.decode_client(&with_identifier_replaced(bytes, "c-1", "c 1")).unwrap_err();
        assert_eq!(err.id, Some(8));
        assert!(err.message.contains("cid is malformed"), "{}", err.message);

        let subscribe = ClientFrame {
            id: 9,
            op: Op::PresenceSubscribe {
                users: vec![UserId::parse("u_ann").unwrap(), UserId::parse("u_bob").unwrap()],
            },
        };
        let bytes = Codec::Rkyv.encode_client(&subscribe).unwrap();
        let err = Codec::Rkyv.decode_client(&with_identifier_replaced(bytes, "u_bob", "u_b-b")).unwrap_err();
        assert_eq!(err.id, Some(9));
        assert!(err.message.contains("user id is malformed"), "{}", err.message);
    }

    #[test]
    fn rkyv_server_frames_with_invalid_identifiers_are_refused_with_a_reason() {
        let typing = ServerFrame::Event(Event::Typing(crate::Typing {
            room: RoomId::parse("r_abc").unwrap(),
            user: UserId::parse("u_ann").unwrap(),
            active: true,
            expires_in_ms: None,
        }));
        let bytes = Codec::Rkyv.encode_server(&typing).unwrap();
        assert_eq!(Codec::Rkyv.decode_server(&bytes).unwrap(), typing);
        for (valid, invalid, reason) in [
            ("r_abc", "r_ab\0", "room id is malformed"),
            ("u_ann", "s_ann", "user id must start with \"u_\""),
        ] {
            let err = Codec::Rkyv
                .decode_server(&with_identifier_replaced(bytes.clone(), valid, invalid))
                .unwrap_err();
            assert!(err.message.contains(reason), "{invalid:?}: {}", err.message);
        }
    }

    #[test]
    fn rkyv_archives_that_fail_validation_say_why() {
        let frame = ClientFrame { id: 3, op: Op::Ping {} };
        let mut bytes = Codec::Rkyv.encode_client(&frame).unwrap();
        // The op's tag, right after the 8-byte request id: a discriminant no variant has.
        bytes[8] = 0xff;
        let err = Codec::Rkyv.decode_client(&bytes).unwrap_err();
        assert_eq!(err.id, None);
        assert_eq!(err.message, "malformed frame: invalid discriminant '255' for enum 'ArchivedOp'");

        // Too short for the root: the message names offsets in the frame, not addresses.
        let err = Codec::Rkyv.decode_server(b"\x01\x02").unwrap_err();
        assert!(err.message.starts_with("malformed frame: "), "{}", err.message);
        assert!(err.message.contains("in range offset 0..offset 2"), "{}", err.message);
        assert!(!err.message.contains("0x"), "{}", err.message);
    }

    #[test]
    fn addresses_in_decode_errors_become_offsets_in_the_frame() {
        let frame = [0u8; 16];
        let start = frame.as_ptr().addr();
        let message = format!("ptr {:#018x} size 4 in range {:#018x}..{:#x}", start + 12, start, usize::MAX);
        assert_eq!(
            addresses_as_offsets(&message, &frame),
            "ptr offset 12 size 4 in range offset 0..an address outside the frame"
        );
        assert_eq!(addresses_as_offsets("tag 0x and 0xzz", &frame), "tag 0x and 0xzz");
    }
}

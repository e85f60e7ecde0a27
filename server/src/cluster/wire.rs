//! What nodes send each other over NATS. JSON throughout (readable with `nats sub`);
//! server frames inside are in the protocol's own JSON codec.

use palaver_protocol::{Codec, RoomId, ServerFrame, UserId};
use palaver_storage::Write;
use serde::{Deserialize, Serialize};

use crate::mesh::{Reply, RoomAction, Subscribe};

/// Subject prefix of everything a cluster says.
pub const PREFIX: &str = "palaver";
/// The JetStream stream holding the cluster log.
pub const LOG_STREAM: &str = "PALAVER_LOG";
/// Heartbeats.
pub const HEARTBEATS: &str = "palaver.hb";
/// Graceful departures.
pub const DEPARTURES: &str = "palaver.leave";
/// Presence session changes.
pub const PRESENCE: &str = "palaver.presence";

/// Forwarded commands for `node`.
pub fn commands(node: &str) -> String {
    format!("{PREFIX}.cmd.{node}")
}

/// Notices for the sessions of users connected to `node`: events about them (an
/// invitation, a friendship, a report to moderate) and changes their sockets apply
/// (blocks, presence follows).
pub fn notices(node: &str) -> String {
    format!("{PREFIX}.notice.{node}")
}

/// A notice for one user's sessions on the receiving node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeEnvelope {
    pub user: UserId,
    /// The event, as a server frame in the protocol's JSON codec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<palaver_core::people::LocalEffect>,
}

/// Ephemeral events of `room` (room ids are `[a-z0-9_]`, valid subject tokens).
pub fn room_events(room: &RoomId) -> String {
    format!("{PREFIX}.ev.{room}")
}

/// Where `node` publishes its groups of writes in the log.
pub fn log_of_node(node: &str) -> String {
    format!("{PREFIX}.log.n.{node}")
}

/// Where a room's records go: one subject per room, so that each append can be made
/// conditional on the subject's last record (the room's fence).
pub fn log_of_room(room: &RoomId) -> String {
    format!("{PREFIX}.log.r.{room}")
}

/// The kinds of log subjects a trim removes old records of: rooms, nodes and pairs
/// (`r`, `n`, `p`). Usernames' (`u`) stay: each is the fence that keeps a name unique.
pub const TRIMMED_KINDS: [&str; 3] = ["r", "n", "p"];

/// Where a pair of users' friendship and block changes go (lower id first): one subject
/// per pair, so each change can be made conditional on the pair's last record.
pub fn log_of_pair(lower: &UserId, higher: &UserId) -> String {
    format!("{PREFIX}.log.p.{lower}.{higher}")
}

/// Where an account creation is published: one subject per username skeleton, so the
/// log itself refuses a second account of the same or a confusable name (expected last
/// sequence 0).
pub fn log_of_username(username: &str) -> String {
    let skeleton = palaver_storage::username_skeleton(username);
    let hex: String = skeleton.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}.log.u.{hex}")
}

/// A node's heartbeat or departure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Beat {
    pub node: String,
    pub incarnation: u64,
    pub ready: bool,
    /// The log position this node's replica has applied (the trimmer keeps what the
    /// slowest live node still needs).
    #[serde(default)]
    pub applied: u64,
    /// The trimmer is about to trim the log before this position (0: it is not).
    #[serde(default)]
    pub trim_before: u64,
}

/// The format of the cluster log's records this build writes and reads. A record of a
/// newer format is not skipped (the replica would silently diverge): replication stops
/// there until this node is upgraded.
pub const LOG_FORMAT: u32 = 1;

fn first_log_format() -> u32 {
    1
}

/// One record of the cluster log: writes one node applied as one atomic batch.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its format ([`LOG_FORMAT`]; absent in the first format's records).
    #[serde(default = "first_log_format")]
    pub format: u32,
    pub node: String,
    pub incarnation: u64,
    pub writes: Vec<Write>,
    /// An ownership epoch: the node claimed the room whose subject this is (no writes).
    #[serde(default)]
    pub claim: bool,
    /// The writer's serial number of the record (per incarnation, from 1; 0 in older
    /// records).
    #[serde(default)]
    pub serial: u64,
    /// A trim marker (on [`LOG_TRIMS`], no writes, incarnation 0): the log is trimmed
    /// before this position; a replica that has applied less cannot follow it.
    #[serde(default)]
    pub trimmed_before: u64,
}

/// Where trim markers go (never trimmed but to the last one).
pub const LOG_TRIMS: &str = "palaver.log.t";

/// A command forwarded to the room's owner.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedCommand {
    pub user: UserId,
    pub re: u64,
    pub action: RoomAction,
}

/// The owner's answer to a forwarded command.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedReply {
    /// `ServerFrame::Reply`, in the JSON codec.
    pub frame: String,
    pub subscribe: Option<Subscribe>,
    pub unsubscribe: Option<RoomId>,
    pub was_join: Option<RoomId>,
}

impl ForwardedReply {
    pub fn from_reply(reply: &Reply) -> Option<Self> {
        let frame = ServerFrame::Reply { re: reply.re, body: reply.body.clone() };
        Some(Self {
            frame: String::from_utf8(Codec::Json.encode_server(&frame).ok()?).ok()?,
            subscribe: reply.subscribe.clone(),
            unsubscribe: reply.unsubscribe.clone(),
            was_join: reply.was_join.clone(),
        })
    }

    /// The reply for connection `conn`.
    pub fn into_reply(self, conn: u64) -> Option<Reply> {
        let ServerFrame::Reply { re, body } = Codec::Json.decode_server(self.frame.as_bytes()).ok()? else {
            return None;
        };
        Some(Reply {
            conn,
            re,
            body,
            subscribe: self.subscribe,
            unsubscribe: self.unsubscribe,
            was_join: self.was_join,
        })
    }
}

/// An owner's event for other nodes' subscribers of a room.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoomEventEnvelope {
    pub from: String,
    pub room: RoomId,
    pub event: RoomEventBody,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RoomEventBody {
    /// A server frame (JSON codec) for live subscribers, not to `skip`'s own sockets.
    Ephemeral {
        skip: Option<UserId>,
        frame: String,
    },
    MemberGone {
        user: UserId,
    },
    RoomGone,
}

/// A user's first session on a node started (`up`) or its last one ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct PresenceChange {
    pub node: String,
    pub incarnation: u64,
    pub user: UserId,
    pub up: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_protocol::{ClientMsgId, Message, MessageKind};

    #[test]
    fn log_records_round_trip_every_stored_field() {
        let message = Message {
            room: RoomId::parse("r_one").unwrap(),
            seq: 7,
            ts: 1_700_000_000_000,
            sender: UserId::parse("u_alice").unwrap(),
            cid: ClientMsgId::parse("c-7").unwrap(),
            kind: MessageKind::Text,
            text: "héllo @bob".into(),
            client_ts: Some(5),
            reactions: Vec::new(),
            reply_to: Some(3),
            reply: None,
            mentions: vec![UserId::parse("u_bob").unwrap()],
            file: None,
            edited_at: Some(9),
            deleted: false,
            system: None,
            blocked: false,
            encryption: None,
            mention_all: None,
            forward: None,
            also_to_room: false,
            thread: None,
            thread_summary: None,
        };
        let record = LogRecord {
            format: LOG_FORMAT,
            node: "n1".into(),
            incarnation: 3,
            writes: vec![Write::AppendMessage(message.clone())],
            claim: false,
            serial: 1,
            trimmed_before: 0,
        };
        let back: LogRecord = serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        match &back.writes[..] {
            [Write::AppendMessage(m)] => assert_eq!(m, &message),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(log_of_username("ab"), "palaver.log.u.6162");
    }

    #[test]
    fn a_record_says_its_format_and_the_first_format_needs_none() {
        let record = LogRecord {
            format: LOG_FORMAT,
            node: "n1".into(),
            incarnation: 1,
            writes: Vec::new(),
            claim: false,
            serial: 1,
            trimmed_before: 0,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["format"], LOG_FORMAT);
        let old: LogRecord = serde_json::from_str(r#"{"node":"n1","incarnation":1,"writes":[]}"#).unwrap();
        assert_eq!(old.format, 1);
    }
}

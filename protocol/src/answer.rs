//! Which answer each op gets when it succeeds: one table, read by the JSON decoders (an
//! `ok` body carries no tag of its own, so a reader decodes it as the answer of the request
//! it answers) and by the TypeScript declarations' `Replies` map.

use crate::{Codec, DecodeError, OkBody, Op, ReplyBody, ServerFrame};

/// The kind of a successful answer: one per [`OkBody`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// `AuthOk`.
    Authed,
    /// `RoomOk`.
    Room,
    /// `JoinOk`.
    Joined,
    /// `Empty`.
    Empty,
    /// `SendOk`.
    Sent,
    /// `HistoryOk`.
    History,
    /// `ReceiptOk`.
    Receipt,
    /// `SyncOk`.
    Sync,
    /// `EditOk`.
    Edited,
    /// `EditsOk`.
    Edits,
    /// `PinsOk`.
    Pins,
    /// `ThreadHistoryOk`.
    ThreadHistory,
    /// `ThreadsOk`.
    Threads,
    /// `ThreadReadOk`.
    ThreadRead,
    /// `ReceiptListOk`.
    ReceiptList,
    /// `RoomListOk`.
    RoomList,
    /// `ReactionOk`.
    Reaction,
    /// `RoomDetailsOk`.
    RoomDetails,
    /// `MembersOk`.
    Members,
    /// `InvitesOk`.
    Invites,
    /// `ProfileOk`.
    Profile,
    /// `UsersOk`.
    Users,
    /// `FriendOk`.
    Friend,
    /// `FriendsOk`.
    Friends,
    /// `BlockedOk`.
    Blocked,
    /// `PresenceListOk`.
    PresenceList,
    /// `KeysUploadOk`.
    KeysUploaded,
    /// `DevicesOk`.
    Devices,
    /// `ClaimedOk`.
    Claimed,
    /// `SearchOk`.
    Search,
    /// `NotificationsOk`.
    Notifications,
}

/// Each op's answer, by op name, in the order of `docs/PROTOCOL.md` §3.5.
pub const ANSWERS: &[(&str, Answer)] = &[
    ("auth", Answer::Authed),
    ("room.create", Answer::Room),
    ("join", Answer::Joined),
    ("leave", Answer::Empty),
    ("send", Answer::Sent),
    ("history", Answer::History),
    ("thread.history", Answer::ThreadHistory),
    ("thread.list", Answer::Threads),
    ("thread.read", Answer::ThreadRead),
    ("ping", Answer::Empty),
    ("typing.start", Answer::Empty),
    ("typing.stop", Answer::Empty),
    ("receipt", Answer::Receipt),
    ("sync", Answer::Sync),
    ("edit", Answer::Edited),
    ("edit.list", Answer::Edits),
    ("pin", Answer::Sent),
    ("unpin", Answer::Sent),
    ("pin.list", Answer::Pins),
    ("receipt.list", Answer::ReceiptList),
    ("forward", Answer::Sent),
    ("delete", Answer::Empty),
    ("room.list", Answer::RoomList),
    ("dm.open", Answer::Room),
    ("react", Answer::Reaction),
    ("unreact", Answer::Reaction),
    ("room.get", Answer::RoomDetails),
    ("room.update", Answer::RoomDetails),
    ("room.delete", Answer::Empty),
    ("room.members", Answer::Members),
    ("room.invite", Answer::Empty),
    ("invite.list", Answer::Invites),
    ("invite.accept", Answer::Joined),
    ("invite.decline", Answer::Empty),
    ("kick", Answer::Sent),
    ("ban", Answer::Sent),
    ("unban", Answer::Sent),
    ("mute", Answer::Sent),
    ("unmute", Answer::Sent),
    ("role.set", Answer::Sent),
    ("room.transfer", Answer::Sent),
    ("user.get", Answer::Profile),
    ("user.update", Answer::Profile),
    ("user.search", Answer::Users),
    ("friend.request", Answer::Friend),
    ("friend.accept", Answer::Friend),
    ("friend.decline", Answer::Friend),
    ("friend.cancel", Answer::Friend),
    ("friend.remove", Answer::Friend),
    ("friend.list", Answer::Friends),
    ("block", Answer::Empty),
    ("unblock", Answer::Empty),
    ("block.list", Answer::Blocked),
    ("presence.set", Answer::Empty),
    ("presence.subscribe", Answer::PresenceList),
    ("presence.unsubscribe", Answer::Empty),
    ("keys.upload", Answer::KeysUploaded),
    ("keys.list", Answer::Devices),
    ("keys.claim", Answer::Claimed),
    ("search", Answer::Search),
    ("notifications.get", Answer::Notifications),
    ("notifications.set", Answer::Notifications),
    ("notifications.room", Answer::Notifications),
    ("push.subscribe", Answer::Empty),
    ("push.unsubscribe", Answer::Empty),
];

impl Answer {
    /// The answer of the op named `op`; `None` for a name this version does not know.
    pub fn of(op: &str) -> Option<Answer> {
        ANSWERS.iter().find(|(name, _)| *name == op).map(|(_, answer)| *answer)
    }

    /// The wire type's name (as the TypeScript declarations spell it).
    pub fn type_name(self) -> &'static str {
        match self {
            Answer::Authed => "AuthOk",
            Answer::Room => "RoomOk",
            Answer::Joined => "JoinOk",
            Answer::Empty => "Empty",
            Answer::Sent => "SendOk",
            Answer::History => "HistoryOk",
            Answer::Receipt => "ReceiptOk",
            Answer::Sync => "SyncOk",
            Answer::Edited => "EditOk",
            Answer::Edits => "EditsOk",
            Answer::Pins => "PinsOk",
            Answer::ThreadHistory => "ThreadHistoryOk",
            Answer::Threads => "ThreadsOk",
            Answer::ThreadRead => "ThreadReadOk",
            Answer::ReceiptList => "ReceiptListOk",
            Answer::RoomList => "RoomListOk",
            Answer::Reaction => "ReactionOk",
            Answer::RoomDetails => "RoomDetailsOk",
            Answer::Members => "MembersOk",
            Answer::Invites => "InvitesOk",
            Answer::Profile => "ProfileOk",
            Answer::Users => "UsersOk",
            Answer::Friend => "FriendOk",
            Answer::Friends => "FriendsOk",
            Answer::Blocked => "BlockedOk",
            Answer::PresenceList => "PresenceListOk",
            Answer::KeysUploaded => "KeysUploadOk",
            Answer::Devices => "DevicesOk",
            Answer::Claimed => "ClaimedOk",
            Answer::Search => "SearchOk",
            Answer::Notifications => "NotificationsOk",
        }
    }

    /// Reads a JSON `ok` body as this answer.
    pub fn decode_json(self, value: serde_json::Value) -> Result<OkBody, serde_json::Error> {
        Ok(match self {
            Answer::Authed => OkBody::Authed(serde_json::from_value(value)?),
            Answer::Room => OkBody::Room(serde_json::from_value(value)?),
            Answer::Joined => OkBody::Joined(serde_json::from_value(value)?),
            Answer::Empty => OkBody::Empty(serde_json::from_value(value)?),
            Answer::Sent => OkBody::Sent(serde_json::from_value(value)?),
            Answer::History => OkBody::History(serde_json::from_value(value)?),
            Answer::Receipt => OkBody::Receipt(serde_json::from_value(value)?),
            Answer::Sync => OkBody::Sync(serde_json::from_value(value)?),
            Answer::Edited => OkBody::Edited(serde_json::from_value(value)?),
            Answer::Edits => OkBody::Edits(serde_json::from_value(value)?),
            Answer::Pins => OkBody::Pins(serde_json::from_value(value)?),
            Answer::ThreadHistory => OkBody::ThreadHistory(Box::new(serde_json::from_value(value)?)),
            Answer::Threads => OkBody::Threads(serde_json::from_value(value)?),
            Answer::ThreadRead => OkBody::ThreadRead(serde_json::from_value(value)?),
            Answer::ReceiptList => OkBody::ReceiptList(serde_json::from_value(value)?),
            Answer::RoomList => OkBody::RoomList(serde_json::from_value(value)?),
            Answer::Reaction => OkBody::Reaction(serde_json::from_value(value)?),
            Answer::RoomDetails => OkBody::RoomDetails(serde_json::from_value(value)?),
            Answer::Members => OkBody::Members(serde_json::from_value(value)?),
            Answer::Invites => OkBody::Invites(serde_json::from_value(value)?),
            Answer::Profile => OkBody::Profile(Box::new(serde_json::from_value(value)?)),
            Answer::Users => OkBody::Users(serde_json::from_value(value)?),
            Answer::Friend => OkBody::Friend(serde_json::from_value(value)?),
            Answer::Friends => OkBody::Friends(serde_json::from_value(value)?),
            Answer::Blocked => OkBody::Blocked(serde_json::from_value(value)?),
            Answer::PresenceList => OkBody::PresenceList(serde_json::from_value(value)?),
            Answer::KeysUploaded => OkBody::KeysUploaded(serde_json::from_value(value)?),
            Answer::Devices => OkBody::Devices(serde_json::from_value(value)?),
            Answer::Claimed => OkBody::Claimed(serde_json::from_value(value)?),
            Answer::Search => OkBody::Search(serde_json::from_value(value)?),
            Answer::Notifications => OkBody::Notifications(serde_json::from_value(value)?),
        })
    }
}

impl Op {
    /// The answer this op gets when it succeeds.
    pub fn answer(&self) -> Option<Answer> {
        Answer::of(self.name())
    }
}

impl OkBody {
    /// The kind of answer this is.
    pub fn answer(&self) -> Answer {
        match self {
            OkBody::Authed(_) => Answer::Authed,
            OkBody::Room(_) => Answer::Room,
            OkBody::Joined(_) => Answer::Joined,
            OkBody::Empty(_) => Answer::Empty,
            OkBody::Sent(_) => Answer::Sent,
            OkBody::History(_) => Answer::History,
            OkBody::Receipt(_) => Answer::Receipt,
            OkBody::Sync(_) => Answer::Sync,
            OkBody::Edited(_) => Answer::Edited,
            OkBody::Edits(_) => Answer::Edits,
            OkBody::Pins(_) => Answer::Pins,
            OkBody::ThreadHistory(_) => Answer::ThreadHistory,
            OkBody::Threads(_) => Answer::Threads,
            OkBody::ThreadRead(_) => Answer::ThreadRead,
            OkBody::ReceiptList(_) => Answer::ReceiptList,
            OkBody::RoomList(_) => Answer::RoomList,
            OkBody::Reaction(_) => Answer::Reaction,
            OkBody::RoomDetails(_) => Answer::RoomDetails,
            OkBody::Members(_) => Answer::Members,
            OkBody::Invites(_) => Answer::Invites,
            OkBody::Profile(_) => Answer::Profile,
            OkBody::Users(_) => Answer::Users,
            OkBody::Friend(_) => Answer::Friend,
            OkBody::Friends(_) => Answer::Friends,
            OkBody::Blocked(_) => Answer::Blocked,
            OkBody::PresenceList(_) => Answer::PresenceList,
            OkBody::KeysUploaded(_) => Answer::KeysUploaded,
            OkBody::Devices(_) => Answer::Devices,
            OkBody::Claimed(_) => Answer::Claimed,
            OkBody::Search(_) => Answer::Search,
            OkBody::Notifications(_) => Answer::Notifications,
        }
    }
}

impl Codec {
    /// Decodes a server frame for a reader that knows its requests in flight: a JSON
    /// reply's `ok` body is read as the answer of the request it answers (`answer_of(re)`)
    /// instead of being guessed among the untagged shapes, and a reply to no request in
    /// flight is refused (nobody waits for it). rkyv bodies carry their variant.
    pub fn decode_server_answering(
        self,
        bytes: &[u8],
        answer_of: impl FnOnce(u64) -> Option<Answer>,
    ) -> Result<ServerFrame, DecodeError> {
        match self {
            Codec::Json => decode_json_server_answering(bytes, answer_of),
            Codec::Rkyv => self.decode_server(bytes),
        }
    }
}

/// [`Codec::decode_server_answering`] for JSON alone: a browser build links neither rkyv
/// nor the untagged guessing of `ok` bodies.
pub fn decode_json_server_answering(
    bytes: &[u8],
    answer_of: impl FnOnce(u64) -> Option<Answer>,
) -> Result<ServerFrame, DecodeError> {
    let malformed =
        |message: String| DecodeError { id: None, message: format!("malformed frame: {message}") };
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let object = value.as_object_mut().ok_or_else(|| malformed("expected an object".into()))?;
    if object.contains_key("ev") {
        return serde_json::from_value(value).map(ServerFrame::Event).map_err(|e| malformed(e.to_string()));
    }
    let re = object
        .get("re")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| malformed("a server frame has `ev` or a numeric `re`".into()))?;
    let body = match (object.remove("ok"), object.remove("err")) {
        (Some(ok), None) => {
            let answer =
                answer_of(re).ok_or_else(|| malformed(format!("a reply to {re}, no request in flight")))?;
            ReplyBody::Ok(answer.decode_json(ok).map_err(|e| malformed(e.to_string()))?)
        }
        (None, Some(err)) => {
            ReplyBody::Err(serde_json::from_value(err).map_err(|e| malformed(e.to_string()))?)
        }
        _ => return Err(malformed("a reply has exactly one of `ok` and `err`".into())),
    };
    Ok(ServerFrame::Reply { re, body })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::{Empty, Event, RoomId, SendOk, Typing, UserId};

    #[test]
    fn a_json_reply_decodes_as_the_answer_of_its_request() {
        // `{}` is an `Empty` answer to a `leave`, never a shape guessed from other answers.
        let frame = Codec::Json.decode_server_answering(br#"{"re":7,"ok":{}}"#, |re| {
            assert_eq!(re, 7);
            Answer::of("leave")
        });
        assert_eq!(frame.unwrap(), ServerFrame::ok(7, OkBody::Empty(Empty {})));
        let sent = br#"{"re":8,"ok":{"seq":3,"ts":10,"duplicate":false}}"#;
        let frame = Codec::Json.decode_server_answering(sent, |_| Answer::of("send")).unwrap();
        assert!(matches!(
            frame,
            ServerFrame::Reply { re: 8, body: ReplyBody::Ok(OkBody::Sent(SendOk { seq: 3, .. })) }
        ));
        // A body that is not the request's answer is an error, not another variant.
        assert!(Codec::Json.decode_server_answering(sent, |_| Answer::of("history")).is_err());
        // A reply to no request in flight is refused; errors and events need no request.
        assert!(Codec::Json.decode_server_answering(sent, |_| None).is_err());
        let err = br#"{"re":9,"err":{"code":"invalid","message":"no"}}"#;
        assert!(Codec::Json.decode_server_answering(err, |_| None).is_ok());
        let event = Codec::Json.encode_server(&ServerFrame::Event(Event::Typing(Typing {
            room: RoomId::parse("r_a").unwrap(),
            user: UserId::parse("u_b").unwrap(),
            active: true,
            expires_in_ms: None,
        })));
        assert!(Codec::Json.decode_server_answering(&event.unwrap(), |_| None).is_ok());
    }

    #[test]
    fn every_body_names_its_own_answer() {
        for (op, answer) in ANSWERS {
            assert_eq!(Answer::of(op), Some(*answer));
            assert!(answer.type_name().ends_with("Ok") || *answer == Answer::Empty, "{op}");
        }
        assert_eq!(OkBody::Empty(Empty {}).answer(), Answer::Empty);
        assert_eq!(Op::Ping {}.answer(), Some(Answer::Empty));
    }
}

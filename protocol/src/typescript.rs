//! The wire types as TypeScript declarations, for the JavaScript package
//! (`sdk/js/src/protocol.ts`). They are derived (`ts_rs::TS`) from the same Rust types and
//! serde attributes that fix the JSON shapes, so a changed type changes its declaration;
//! a test fails while the checked-in file differs from [`declarations`].
//!
//! Integers are declared `number`: every integer on the wire (seqs, timestamps in ms,
//! counts) stays below 2^53, where JSON numbers are exact in JavaScript.

use ts_rs::{Config, TS};

use crate::{
    AuthOk, BlockedOk, ClaimedKey, ClaimedOk, ClientMsgId, Delete, DeviceKeys, DevicesOk, Edit, EditOk,
    EditVersion, EditsOk, Empty, Encryption, ErrorBody, ErrorCode, Event, FileRef, ForwardRef,
    ForwardedMessage, FriendInfo, FriendOk, FriendState, FriendsOk, HistoryOk, InviteInfo, InvitesOk, JoinOk,
    KeysUploadOk, MemberChange, MemberEvent, MemberInfo, MemberReceipt, MembersOk, MentionAll, Message,
    MessageKind, NotificationSettings, NotificationsOk, NotifyLevel, OkBody, OneTimeKey, Op, PinInfo, PinsOk,
    PresenceChoice, PresenceInfo, PresenceListOk, PresenceStatus, Profile, ProfileOk, Reaction, ReactionOk,
    ReactionSummary, Receipt, ReceiptListOk, ReceiptOk, ReplyPreview, ReportNotice, RoomDetailsOk, RoomId,
    RoomInfo, RoomKind, RoomListOk, RoomNotifications, RoomOk, RoomRetention, RoomRole, RoomSettings,
    RoomSettingsPatch, RoomSummary, SearchHit, SearchOk, SearchOrder, SendOk, SessionId, SyncOk,
    SystemAction, SystemNotice, ThreadEvent, ThreadHistoryOk, ThreadInfo, ThreadReadOk, ThreadReplies,
    ThreadSummary, ThreadsOk, Typing, UserId, UsersOk,
};

/// The type of each op's `ok` answer (its [`OkBody`] variant's type), by op name: what
/// `docs/PROTOCOL.md` §3.5 lists, and what the SDKs unpack.
pub use crate::answer::ANSWERS;

/// One exported declaration, with its doc comment.
fn declaration<T: TS + ?Sized>(config: &Config) -> String {
    let mut out = String::new();
    if let Some(docs) = T::docs() {
        out.push_str(&docs);
        if !docs.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str("export ");
    out.push_str(&T::decl(config));
    out.push('\n');
    out
}

/// The op names of the `Op` union, in declaration order.
pub fn op_names() -> Vec<String> {
    names_after(&Op::decl(&config()), "\"op\": \"")
}

/// The event names of the `Event` union, in declaration order.
pub fn event_names() -> Vec<String> {
    names_after(&Event::decl(&config()), "\"ev\": \"")
}

fn names_after(declaration: &str, marker: &str) -> Vec<String> {
    declaration.split(marker).skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect()
}

fn config() -> Config {
    Config::new().with_large_int("number")
}

/// The whole `protocol.ts`: every wire type, then the unions a client programs against —
/// `Op` (requests, by `op`), `Event` (by `ev`), `Reply` (answers, by `op`) and
/// `ServerFrame` — and the `Replies` map from an op's name to its answer.
pub fn declarations() -> String {
    let config = config();
    let mut out = String::from(
        "// The Palaver wire types, generated from the Rust types of palaver-protocol\n\
         // (protocol/src/typescript.rs). Do not edit: regenerate with\n\
         // `PALAVER_BLESS=1 cargo test -p palaver-e2e --test sdk_js_types`.\n\n",
    );
    macro_rules! declare {
        ($($t:ty),* $(,)?) => {
            $(out.push_str(&declaration::<$t>(&config));)*
        };
    }
    declare!(
        UserId,
        RoomId,
        SessionId,
        ClientMsgId,
        Op,
        Event,
        OkBody,
        ErrorBody,
        ErrorCode,
        AuthOk,
        RoomOk,
        JoinOk,
        SendOk,
        HistoryOk,
        ReceiptOk,
        SyncOk,
        RoomSummary,
        EditOk,
        EditsOk,
        EditVersion,
        PinsOk,
        PinInfo,
        ThreadHistoryOk,
        ThreadsOk,
        ThreadInfo,
        ThreadReadOk,
        ThreadEvent,
        ThreadSummary,
        ThreadReplies,
        ReceiptListOk,
        MemberReceipt,
        RoomListOk,
        ReactionOk,
        RoomDetailsOk,
        MembersOk,
        MemberInfo,
        InvitesOk,
        InviteInfo,
        ReportNotice,
        ProfileOk,
        Profile,
        UsersOk,
        FriendOk,
        FriendsOk,
        FriendInfo,
        FriendState,
        BlockedOk,
        PresenceListOk,
        PresenceInfo,
        PresenceStatus,
        PresenceChoice,
        KeysUploadOk,
        DevicesOk,
        DeviceKeys,
        ClaimedOk,
        ClaimedKey,
        OneTimeKey,
        Encryption,
        SearchOk,
        SearchHit,
        SearchOrder,
        NotificationsOk,
        NotificationSettings,
        RoomNotifications,
        NotifyLevel,
        Empty,
        RoomInfo,
        RoomKind,
        RoomRole,
        RoomSettings,
        RoomRetention,
        RoomSettingsPatch,
        Message,
        MessageKind,
        FileRef,
        ReplyPreview,
        ForwardRef,
        ForwardedMessage,
        MentionAll,
        ReactionSummary,
        SystemNotice,
        SystemAction,
        Typing,
        Receipt,
        Reaction,
        Edit,
        Delete,
        MemberEvent,
        MemberChange,
    );
    out.push_str(
        "/** A request from a client: `{\"id\":N,\"op\":\"…\",…}`; the answer's `re` is its `id`. */\n\
         export type ClientFrame = { id: number } & Op;\n\n\
         /** A frame from the server: the answer to one request (`re` is its `id`), or an event. */\n\
         export type ServerFrame = { re: number, ok: OkBody } | { re: number, err: ErrorBody } | Event;\n\n\
         /** The name of an op. */\n\
         export type OpName = Op[\"op\"];\n\n\
         /** The request of one op. */\n\
         export type Request<O extends OpName = OpName> = Extract<Op, { op: O }>;\n\n\
         /** The name of an event. */\n\
         export type EventName = Event[\"ev\"];\n\n\
         /** The `ok` answer of each op. */\n\
         export interface Replies {\n",
    );
    for (op, answer) in ANSWERS {
        out.push_str(&format!("  \"{op}\": {},\n", answer.type_name()));
    }
    out.push_str(
        "}\n\n\
         /** Every op's answer, by `op`. */\n\
         export type Reply = { [O in OpName]: { op: O, ok: Replies[O] } }[OpName];\n",
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn every_op_has_exactly_one_answer_type_and_it_is_declared() {
        let ops = op_names();
        assert_eq!(ops.len(), ANSWERS.len(), "ops {ops:?}");
        let text = declarations();
        for op in &ops {
            let answers: Vec<_> = ANSWERS.iter().filter(|(name, _)| name == op).collect();
            assert_eq!(answers.len(), 1, "{op} needs one entry in ANSWERS");
            let name = answers[0].1.type_name();
            assert!(text.contains(&format!("export type {name} = ")), "{name} declared");
        }
    }

    #[test]
    fn the_unions_are_discriminated_and_integers_are_numbers() {
        assert!(op_names().contains(&"room.create".to_owned()));
        assert_eq!(event_names().len(), 13);
        let text = declarations();
        assert!(!text.contains("bigint"), "{text}");
        assert!(text.contains("export type ClientFrame = { id: number } & Op;"), "{text}");
    }
}

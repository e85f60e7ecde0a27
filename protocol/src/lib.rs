//! The Palaver wire contract: every frame a client and a server exchange, the validated
//! identifiers they carry, the size limits, and the two codecs over the same types —
//! JSON (`palaver.v1.json`, WebSocket text frames) and rkyv (`palaver.v1.rkyv`, binary
//! frames checked in place with bytecheck, then deserialized into the same owned types).
//!
//! This crate is pure: no I/O, no clock, no runtime. It builds for `wasm32-unknown-unknown`
//! so the SDK can use it in a browser. The server and the SDK both speak through it, so
//! a frame means the same thing on both ends. `docs/PROTOCOL.md` is its prose twin.
//!
//! ```
//! use palaver_protocol::{ClientFrame, Codec, Op};
//!
//! let bytes = br#"{"id":1,"op":"auth","token":"abc"}"#;
//! let frame = Codec::Json.decode_client(bytes).unwrap();
//! assert_eq!(frame, ClientFrame { id: 1, op: Op::Auth { token: "abc".into() } });
//! ```

mod answer;
mod codec;
mod error;
mod frames;
mod ids;
mod keys;
pub mod limits;
mod notifications;
pub mod paging;
mod people;
mod pins;
mod rooms;
mod text;
mod threads;
pub mod typescript;

pub use answer::{ANSWERS, Answer, decode_json_server_answering};
pub use codec::{Codec, DecodeError, EncodeError};
pub use error::{ErrorBody, ErrorCode};
pub use frames::{
    AuthOk, ClientFrame, Delete, Edit, EditOk, EditVersion, EditsOk, Empty, Event, FileRef, ForwardRef,
    ForwardedMessage, HistoryOk, JoinOk, MemberReceipt, MentionAll, Message, MessageKind, OkBody, Op,
    Reaction, ReactionOk, ReactionSummary, Receipt, ReceiptListOk, ReceiptOk, ReplyBody, ReplyPreview,
    RoomInfo, RoomKind, RoomListOk, RoomOk, RoomSummary, SearchHit, SearchOk, SearchOrder, SendOk,
    ServerFrame, SyncOk, Typing,
};
pub use ids::{ClientMsgId, IdError, RoomId, SessionId, UserId, Username};
pub use keys::{ClaimedKey, ClaimedOk, DeviceKeys, DevicesOk, Encryption, KeysUploadOk, OneTimeKey};
pub use notifications::{NotificationSettings, NotificationsOk, NotifyLevel, RoomNotifications};
pub use people::{
    BlockedOk, FriendInfo, FriendOk, FriendState, FriendsOk, PresenceChoice, PresenceInfo, PresenceListOk,
    PresenceStatus, Profile, ProfileOk, UsersOk,
};
pub use pins::{PinInfo, PinsOk};
pub use rooms::{
    InviteInfo, InvitesOk, MemberChange, MemberEvent, MemberInfo, MembersOk, ReportNotice, RoomDetailsOk,
    RoomRetention, RoomRole, RoomSettings, RoomSettingsPatch, SystemAction, SystemNotice,
};
pub use text::{Emoji, MessageText, RoomName, TextError, check_name, is_bidi_control};
pub use threads::{
    ThreadEvent, ThreadHistoryOk, ThreadInfo, ThreadReadOk, ThreadReplies, ThreadSummary, ThreadsOk,
};

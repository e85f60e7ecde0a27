// The Palaver wire types, generated from the Rust types of palaver-protocol
// (protocol/src/typescript.rs). Do not edit: regenerate with
// `PALAVER_BLESS=1 cargo test -p palaver-e2e --test sdk_js_types`.

/**
 * A user account, `u_…`.
 */
export type UserId = string;
/**
 * A room, `r_…`.
 */
export type RoomId = string;
/**
 * One authenticated connection, `s_…`.
 */
export type SessionId = string;
/**
 * The client's idempotency key for a send: 1..=64 printable ASCII characters, no spaces.
 */
export type ClientMsgId = string;
/**
 * Every operation a client may request.
 */
export type Op = { "op": "auth", 
/**
 * An access JWT from `/v1/auth/login`, `/register` or `/refresh`.
 */
token: string, } | { "op": "room.create", 
/**
 * Display name, 1..=100 characters.
 */
name: string, 
/**
 * `public` or `private`.
 */
kind: RoomKind, 
/**
 * Topic or description, up to 500 characters.
 */
topic?: string | null, 
/**
 * Settings other than the defaults.
 */
settings?: RoomSettingsPatch | null, } | { "op": "join", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The last seq the client holds; messages after it are replayed first, in order.
 */
since?: number | null, } | { "op": "leave", 
/**
 * The room.
 */
room: RoomId, } | { "op": "send", 
/**
 * The room.
 */
room: RoomId, 
/**
 * Idempotency key: resending the same `cid` returns the first send's seq.
 */
cid: ClientMsgId, 
/**
 * The message kind.
 */
kind: MessageKind, 
/**
 * The body (for `image` and `file`: an optional caption).
 */
text: string, 
/**
 * Optional client timestamp (ms since the Unix epoch), echoed in the event.
 */
client_ts?: number | null, 
/**
 * The seq of the message in the same room this one replies to.
 */
reply_to?: number | null, 
/**
 * With `image` and `file`: the stored file it shares.
 */
file?: FileRef | null, 
/**
 * With `encrypted`: how `text` (the ciphertext) was encrypted.
 */
encryption?: Encryption | null, 
/**
 * A thread reply: the seq of the thread's root in the same room.
 */
thread?: number | null, 
/**
 * With `thread`: the reply is also part of the room's own timeline.
 */
also_to_room?: boolean, } | { "op": "forward", 
/**
 * Where to.
 */
room: RoomId, 
/**
 * Idempotency key, as for `send`.
 */
cid: ClientMsgId, 
/**
 * The original's room.
 */
from_room: RoomId, 
/**
 * The original's seq.
 */
seq: number, 
/**
 * A comment (may be empty).
 */
text: string, } | { "op": "history", 
/**
 * The room.
 */
room: RoomId, 
/**
 * Only messages with seq below this, newest first.
 */
before?: number | null, 
/**
 * Only messages with seq above this, oldest first (not with `before`).
 */
after?: number | null, 
/**
 * Page size, 1..=100 (default 50).
 */
limit?: number | null, 
/**
 * The previous page's `next`: continues in its direction (not with `before` or
 * `after`).
 */
cursor?: string | null, 
/**
 * Whether thread replies not sent to the room are in the page (default: they are).
 */
threads?: ThreadReplies, } | { "op": "thread.history", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The thread's root.
 */
root: number, 
/**
 * Only replies with seq below this, newest first.
 */
before?: number | null, 
/**
 * Only replies with seq above this, oldest first (not with `before`).
 */
after?: number | null, 
/**
 * Page size, 1..=100 (default 50).
 */
limit?: number | null, 
/**
 * The previous page's `next` (not with `before` or `after`).
 */
cursor?: string | null, } | { "op": "thread.list", 
/**
 * The room.
 */
room: RoomId, 
/**
 * Page size, 1..=100 (default 50).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "thread.read", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The thread's root.
 */
root: number, 
/**
 * The newest reply read.
 */
seq: number, } | { "op": "ping", } | { "op": "typing.start", 
/**
 * The room.
 */
room: RoomId, } | { "op": "typing.stop", 
/**
 * The room.
 */
room: RoomId, } | { "op": "receipt", 
/**
 * The room.
 */
room: RoomId, 
/**
 * Highest seq delivered to this device.
 */
delivered?: number | null, 
/**
 * Highest seq the user has read.
 */
read?: number | null, } | { "op": "sync", 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "edit", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * The new text.
 */
text: string, } | { "op": "edit.list", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "pin", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, } | { "op": "unpin", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, } | { "op": "pin.list", 
/**
 * The room.
 */
room: RoomId, 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "receipt.list", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * List deliveries instead of reads (rooms of a bounded size only).
 */
delivered?: boolean, 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "delete", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, } | { "op": "room.list", 
/**
 * Only rooms whose name contains this (case-insensitive).
 */
query?: string | null, 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "dm.open", 
/**
 * The other user.
 */
user: UserId, } | { "op": "react", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * The emoji (any short Unicode string without spaces or control characters).
 */
emoji: string, } | { "op": "unreact", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * The emoji.
 */
emoji: string, } | { "op": "room.get", 
/**
 * The room.
 */
room: RoomId, } | { "op": "room.update", 
/**
 * The room.
 */
room: RoomId, 
/**
 * New name.
 */
name?: string | null, 
/**
 * New topic (empty clears it).
 */
topic?: string | null, 
/**
 * Settings to change.
 */
settings?: RoomSettingsPatch | null, } | { "op": "room.delete", 
/**
 * The room.
 */
room: RoomId, } | { "op": "room.members", 
/**
 * The room.
 */
room: RoomId, 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "room.invite", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The invitee.
 */
user: UserId, } | { "op": "invite.list", 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "invite.accept", 
/**
 * The room.
 */
room: RoomId, } | { "op": "invite.decline", 
/**
 * The room.
 */
room: RoomId, } | { "op": "kick", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The member.
 */
user: UserId, 
/**
 * Shown in the room's notice.
 */
reason?: string | null, } | { "op": "ban", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The user.
 */
user: UserId, 
/**
 * Shown in the room's notice.
 */
reason?: string | null, } | { "op": "unban", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The user.
 */
user: UserId, } | { "op": "mute", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The member.
 */
user: UserId, 
/**
 * How long, 1 s to 366 days.
 */
duration_secs: number, 
/**
 * Shown in the room's notice.
 */
reason?: string | null, } | { "op": "unmute", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The member.
 */
user: UserId, } | { "op": "role.set", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The member.
 */
user: UserId, 
/**
 * The new role.
 */
role: RoomRole, } | { "op": "room.transfer", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The new owner.
 */
user: UserId, } | { "op": "user.get", 
/**
 * The user.
 */
user: UserId, } | { "op": "user.update", 
/**
 * Display name, up to 64 characters.
 */
display_name?: string | null, 
/**
 * A file id or an `https://` URL, up to 512 bytes.
 */
avatar?: string | null, 
/**
 * Status text, up to 140 characters.
 */
status_text?: string | null, 
/**
 * Whether others see how far the caller has read (`receipt.list`, `room.members`,
 * `receipt` events); on until turned off.
 */
share_read_receipts?: boolean | null, } | { "op": "user.search", 
/**
 * At least one character.
 */
prefix: string, 
/**
 * Page size, 1..=50 (default 20).
 */
limit?: number | null, } | { "op": "friend.request", 
/**
 * The user.
 */
user: UserId, } | { "op": "friend.accept", 
/**
 * Who asked.
 */
user: UserId, } | { "op": "friend.decline", 
/**
 * Who asked.
 */
user: UserId, } | { "op": "friend.cancel", 
/**
 * Who was asked.
 */
user: UserId, } | { "op": "friend.remove", 
/**
 * The friend.
 */
user: UserId, } | { "op": "friend.list", 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "block", 
/**
 * The user.
 */
user: UserId, } | { "op": "unblock", 
/**
 * The user.
 */
user: UserId, } | { "op": "block.list", 
/**
 * Page size (see `paging::sizes`).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "presence.set", 
/**
 * The choice.
 */
status: PresenceChoice, } | { "op": "presence.subscribe", 
/**
 * Up to 500 users, each a friend or someone sharing a room with the caller.
 */
users: Array<UserId>, } | { "op": "presence.unsubscribe", 
/**
 * The users.
 */
users: Array<UserId>, } | { "op": "keys.upload", 
/**
 * The device (1–64 of `[A-Za-z0-9_-]`), chosen by the client.
 */
device_id: string, 
/**
 * Its public identity key; fixed for the device once published.
 */
identity_key: string, 
/**
 * Its public signing key, if any; fixed too.
 */
signing_key?: string | null, 
/**
 * New one-time prekeys (at most 100 per upload).
 */
one_time_keys: Array<OneTimeKey>, } | { "op": "keys.list", 
/**
 * The user.
 */
user: UserId, } | { "op": "search", 
/**
 * Words (all must match), `"exact phrases"`, `pre*` prefixes; 1–512 bytes.
 */
query: string, 
/**
 * Only this room.
 */
room?: RoomId | null, 
/**
 * Only messages from this sender.
 */
from?: UserId | null, 
/**
 * Only messages stored before this time (ms since the Unix epoch).
 */
before?: number | null, 
/**
 * Only messages stored after this time (ms since the Unix epoch).
 */
after?: number | null, 
/**
 * `relevance` (default) or `newest`.
 */
order?: SearchOrder | null, 
/**
 * Hits per page, 1–50 (default 20).
 */
limit?: number | null, 
/**
 * The previous page's `next`.
 */
cursor?: string | null, } | { "op": "keys.claim", 
/**
 * The user.
 */
user: UserId, 
/**
 * Only this device.
 */
device_id?: string | null, } | { "op": "notifications.get", } | { "op": "notifications.set", 
/**
 * The level of rooms without their own.
 */
level?: NotifyLevel | null, 
/**
 * Replaces the keyword list (at most 50 words of 1..=64 characters).
 */
keywords?: Array<string> | null, } | { "op": "notifications.room", 
/**
 * The room.
 */
room: RoomId, 
/**
 * The room's level; absent: the account's.
 */
level?: NotifyLevel | null, 
/**
 * Mute the room.
 */
muted?: boolean, 
/**
 * When the mute ends (ms since the Unix epoch); absent: when it is lifted.
 */
muted_until?: number | null, } | { "op": "push.subscribe", 
/**
 * The push service's URL for the subscription (`https://`).
 */
endpoint: string, 
/**
 * The browser's P-256 public key, base64url.
 */
p256dh: string, 
/**
 * The authentication secret, base64url.
 */
auth: string, } | { "op": "push.unsubscribe", 
/**
 * The subscription's endpoint.
 */
endpoint: string, };
/**
 * Events the server pushes.
 */
export type Event = { "ev": "message" } & Message | { "ev": "typing" } & Typing | { "ev": "receipt" } & Receipt | { "ev": "reaction" } & Reaction | { "ev": "edit" } & Edit | { "ev": "delete" } & Delete | { "ev": "thread" } & ThreadEvent | { "ev": "member" } & MemberEvent | { "ev": "invite" } & InviteInfo | { "ev": "friend" } & FriendInfo | { "ev": "presence" } & PresenceInfo | { "ev": "report" } & ReportNotice | { "ev": "notifications" } & NotificationsOk;
/**
 * The payload of a successful reply; its shape depends on the op. In JSON it is the
 * bare object (no tag): clients know which op they asked. Decoding tries the variants
 * in order, most specific first, and tolerates fields added by later versions.
 */
export type OkBody = RoomDetailsOk | JoinOk | RoomOk | SendOk | ThreadHistoryOk | HistoryOk | AuthOk | ReceiptOk | ReactionOk | EditsOk | PinsOk | ThreadsOk | ThreadReadOk | ReceiptListOk | EditOk | RoomListOk | SyncOk | MembersOk | InvitesOk | ProfileOk | UsersOk | FriendOk | FriendsOk | BlockedOk | PresenceListOk | KeysUploadOk | DevicesOk | ClaimedOk | SearchOk | NotificationsOk | Empty;
/**
 * The body of a failed reply: `{"code","message","retry_after_ms"?}`.
 */
export type ErrorBody = { 
/**
 * The error code.
 */
code: ErrorCode, 
/**
 * A human-readable explanation (not for matching on).
 */
message: string, 
/**
 * With `rate_limited`: how long to wait before retrying.
 */
retry_after_ms?: number | null, };
/**
 * The closed set of error codes a reply may carry. Every failure a client can cause maps
 * to exactly one of these; `internal` is reserved for the server's own faults.
 */
export type ErrorCode = "unauthorized" | "forbidden" | "not_found" | "invalid" | "conflict" | "too_large" | "rate_limited" | "unavailable" | "internal" | "unknown";
/**
 * Answer to `auth`.
 */
export type AuthOk = { 
/**
 * The authenticated user.
 */
user_id: UserId, 
/**
 * This connection's session.
 */
session_id: SessionId, };
/**
 * Answer to `room.create`.
 */
export type RoomOk = { 
/**
 * The new room.
 */
room: RoomInfo, };
/**
 * Answer to `join`.
 */
export type JoinOk = { 
/**
 * The room.
 */
room: RoomInfo, 
/**
 * The newest seq at the time of joining (0 for an empty room).
 */
last_seq: number, 
/**
 * The oldest seq the room still keeps, when retention removed older messages
 * (absent: history starts at seq 1). A `since` below `history_from - 1` resumes
 * here: the messages in between were removed on purpose.
 */
history_from?: number | null, };
/**
 * Answer to `send`.
 */
export type SendOk = { 
/**
 * The stored message's seq.
 */
seq: number, 
/**
 * The stored message's server timestamp.
 */
ts: number, 
/**
 * True when this `cid` had already been stored: nothing new was written.
 */
duplicate?: boolean, };
/**
 * Answer to `history`.
 */
export type HistoryOk = { 
/**
 * Newest first (a page backwards), or oldest first (a page forwards from `after`).
 */
messages: Array<Message>, 
/**
 * Pass as `cursor` for the next page in the same direction; absent when there is
 * none (forwards: the newest message is in this page).
 */
next?: string | null, 
/**
 * The oldest seq the room still keeps, when retention removed older messages
 * (absent: history starts at seq 1): no page goes below it.
 */
history_from?: number | null, };
/**
 * Answer to `receipt`: the caller's watermarks in the room after the update.
 */
export type ReceiptOk = { 
/**
 * Highest seq delivered to one of the user's devices.
 */
delivered: number, 
/**
 * Highest seq the user has read.
 */
read: number, };
/**
 * Answer to `sync`.
 */
export type SyncOk = { 
/**
 * A page of the rooms the caller is a member of, by room id.
 */
rooms: Array<RoomSummary>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * One room in a `sync` answer.
 */
export type RoomSummary = { 
/**
 * The room.
 */
room: RoomInfo, 
/**
 * The newest stored seq (0 for an empty room).
 */
last_seq: number, 
/**
 * The newest stored message, if any.
 */
last_message?: Message | null, 
/**
 * The caller's delivered watermark.
 */
delivered: number, 
/**
 * The caller's read watermark.
 */
read: number, 
/**
 * Messages after the read watermark (`last_seq - read`): the caller's own messages
 * count as read.
 */
unread: number, 
/**
 * Messages after the read watermark that mention the caller.
 */
mentions: number, };
/**
 * Answer to `edit`.
 */
export type EditOk = { 
/**
 * The message.
 */
seq: number, 
/**
 * When the edit was stored.
 */
edited_at: number, };
/**
 * Answer to `edit.list`.
 */
export type EditsOk = { 
/**
 * The message.
 */
seq: number, 
/**
 * Its earlier texts, oldest first.
 */
versions: Array<EditVersion>, 
/**
 * Whether the reader blocked the message's sender (shown, flagged, as in `history`).
 */
blocked?: boolean, 
/**
 * The cursor of the following page; absent on the last.
 */
next?: string | null, };
/**
 * One earlier text of an edited message.
 */
export type EditVersion = { 
/**
 * The text the message had.
 */
text: string, 
/**
 * When an edit replaced it (ms since the Unix epoch).
 */
replaced_at: number, };
/**
 * Answer to `pin.list`.
 */
export type PinsOk = { 
/**
 * The pinned messages, the most recently pinned first.
 */
pins: Array<PinInfo>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * One pinned message.
 */
export type PinInfo = { 
/**
 * Who pinned it.
 */
pinned_by: UserId, 
/**
 * When (ms since the Unix epoch).
 */
pinned_at: number, 
/**
 * The message, as `history` shows it.
 */
message: Message, };
/**
 * Answer to `thread.history`.
 */
export type ThreadHistoryOk = { 
/**
 * The thread's root, as `history` shows it.
 */
root: Message, 
/**
 * Replies: newest first (backwards), or oldest first (forwards from `after`).
 */
messages: Array<Message>, 
/**
 * Pass as `cursor` for the next page in the same direction; absent when there is none.
 */
next?: string | null, };
/**
 * Answer to `thread.list`.
 */
export type ThreadsOk = { 
/**
 * The threads, the most recently replied to first.
 */
threads: Array<ThreadInfo>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * One thread of `thread.list`.
 */
export type ThreadInfo = { 
/**
 * The root, as `history` shows it (with its `thread_summary`).
 */
root: Message, 
/**
 * The caller's read mark in the thread (0: none).
 */
read: number, 
/**
 * Replies after the caller's read mark (counted up to 1000; the caller's own reply
 * moves their mark).
 */
unread: number, };
/**
 * Answer to `thread.read`.
 */
export type ThreadReadOk = { 
/**
 * The thread's root.
 */
root: number, 
/**
 * The caller's read mark now.
 */
read: number, 
/**
 * Replies still unread after it.
 */
unread: number, };
/**
 * The `thread` event: a root's summary after a reply was stored or deleted.
 */
export type ThreadEvent = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * The thread's root.
 */
root: number, 
/**
 * Its replies now.
 */
summary: ThreadSummary, };
/**
 * A root's replies so far (deleted replies do not count).
 */
export type ThreadSummary = { 
/**
 * How many replies.
 */
count: number, 
/**
 * The newest reply's seq (0 with none).
 */
last_seq: number, 
/**
 * The newest reply's time, ms since the Unix epoch (0 with none).
 */
last_at: number, };
/**
 * What `history` shows of thread replies that were not also sent to the room.
 */
export type ThreadReplies = "include" | "exclude";
/**
 * Answer to `receipt.list`.
 */
export type ReceiptListOk = { 
/**
 * The message.
 */
seq: number, 
/**
 * Members who read it (or had it delivered), by user id.
 */
receipts: Array<MemberReceipt>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * One member's watermarks, in `receipt.list`.
 */
export type MemberReceipt = { 
/**
 * The member.
 */
user: UserId, 
/**
 * The highest seq delivered to one of their devices.
 */
delivered: number, 
/**
 * The highest seq they read; absent when they do not share read receipts.
 */
read?: number | null, };
/**
 * Answer to `room.list`.
 */
export type RoomListOk = { 
/**
 * Public rooms, by room id. (Not named `rooms`: JSON replies are untagged, and
 * `sync` answers `{"rooms":[…]}`.)
 */
results: Array<RoomInfo>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * Answer to `react` and `unreact`: the emoji's count on the message afterwards.
 */
export type ReactionOk = { 
/**
 * The message.
 */
seq: number, 
/**
 * The emoji.
 */
emoji: string, 
/**
 * Users reacting with this emoji now.
 */
count: number, };
/**
 * Answer to `room.get` and `room.update`.
 */
export type RoomDetailsOk = { 
/**
 * The room.
 */
room: RoomInfo, 
/**
 * Its settings.
 */
settings: RoomSettings, 
/**
 * How many members it has.
 */
member_count: number, 
/**
 * The caller's role, when a member.
 */
role?: RoomRole | null, 
/**
 * The oldest seq the room still keeps, when retention removed older messages
 * (absent: history starts at seq 1).
 */
history_from?: number | null, };
/**
 * Answer to `room.members`.
 */
export type MembersOk = { 
/**
 * Members by user id.
 */
members: Array<MemberInfo>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * One member in `room.members`.
 */
export type MemberInfo = { 
/**
 * The member.
 */
user: UserId, 
/**
 * Their username.
 */
username: string, 
/**
 * Their role.
 */
role: RoomRole, 
/**
 * While muted: when the mute ends, ms since the Unix epoch.
 */
muted_until?: number | null, 
/**
 * Online, away or offline (invisible members show as offline).
 */
presence: PresenceStatus, 
/**
 * The highest seq they read: shown to members, for members who share read receipts.
 */
read?: number | null, };
/**
 * Answer to `invite.list`.
 */
export type InvitesOk = { 
/**
 * The caller's pending invitations, by room id.
 */
invites: Array<InviteInfo>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * A pending invitation (the `invite` event, and `invite.list` entries).
 */
export type InviteInfo = { 
/**
 * The room invited to.
 */
room: RoomInfo, 
/**
 * Who invited.
 */
by: UserId, 
/**
 * When, ms since the Unix epoch.
 */
invited_at: number, };
/**
 * A message was reported to the receiver, a moderator of its room or an admin (the
 * `report` event). The report routes (`/v1/rooms/{room}/reports`, `/v1/admin/reports`)
 * list it with the reported text.
 */
export type ReportNotice = { 
/**
 * The report's id (`rp_…`).
 */
report_id: string, 
/**
 * The room of the reported message.
 */
room: RoomId, 
/**
 * The reported message's seq.
 */
seq: number, 
/**
 * Who reported it.
 */
reporter: UserId, 
/**
 * Why, in the reporter's words.
 */
reason?: string | null, 
/**
 * When, ms since the Unix epoch.
 */
at: number, };
/**
 * Answer to `user.get` and `user.update`.
 */
export type ProfileOk = { 
/**
 * The profile.
 */
profile: Profile, 
/**
 * Their presence, when the caller may see it (a friend, or someone sharing a room).
 */
presence?: PresenceInfo | null, };
/**
 * A user's public profile.
 */
export type Profile = { 
/**
 * The user.
 */
user_id: UserId, 
/**
 * Their username.
 */
username: string, 
/**
 * Display name, if set.
 */
display_name?: string | null, 
/**
 * Avatar: a file id or an `https://` URL, if set.
 */
avatar?: string | null, 
/**
 * Status text, if set.
 */
status_text?: string | null, 
/**
 * Whether the user shares how far they read: only in their own profile.
 */
share_read_receipts?: boolean | null, 
/**
 * A bot: an account a product's backend acts as (clients show it as one).
 */
bot?: boolean, };
/**
 * Answer to `user.search`.
 */
export type UsersOk = { 
/**
 * Matching profiles, by username.
 */
users: Array<Profile>, };
/**
 * Answer to `friend.request`, `friend.accept`, `friend.decline`, `friend.cancel`, `friend.remove`.
 */
export type FriendOk = { 
/**
 * The friendship afterwards.
 */
friend: FriendInfo, };
/**
 * Answer to `friend.list`.
 */
export type FriendsOk = { 
/**
 * Friends and pending requests both ways, by user id.
 */
friends: Array<FriendInfo>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * One friendship (the `friend` event, `friend.*` answers and `friend.list` entries),
 * seen from the receiver's side.
 */
export type FriendInfo = { 
/**
 * The other user.
 */
user: UserId, 
/**
 * Their username.
 */
username: string, 
/**
 * Where it stands now.
 */
state: FriendState, 
/**
 * When it last changed, ms since the Unix epoch.
 */
since: number, 
/**
 * With `friends` (in `friend.list`): their presence.
 */
presence?: PresenceInfo | null, };
/**
 * Where a friendship stands, seen from one side.
 */
export type FriendState = "none" | "outgoing" | "incoming" | "friends";
/**
 * Answer to `block.list`.
 */
export type BlockedOk = { 
/**
 * Users the caller blocked (visible to the caller alone).
 */
blocked: Array<UserId>, 
/**
 * Pass as `cursor` for the next page; absent on the last page.
 */
next?: string | null, };
/**
 * Answer to `presence.subscribe`: the current presence of each user subscribed to.
 */
export type PresenceListOk = { 
/**
 * One entry per user.
 */
presence: Array<PresenceInfo>, };
/**
 * A user's presence (the `presence` event, and entries of answers).
 */
export type PresenceInfo = { 
/**
 * Whose.
 */
user: UserId, 
/**
 * Online, away or offline.
 */
status: PresenceStatus, 
/**
 * When offline: when their last session ended, ms since the Unix epoch (absent if
 * never seen).
 */
last_seen?: number | null, };
/**
 * Whether someone is around, as others see it.
 */
export type PresenceStatus = "online" | "away" | "offline";
/**
 * What a user asks others to see (`presence.set`).
 */
export type PresenceChoice = "online" | "away" | "invisible";
/**
 * Answer to `keys.upload`.
 */
export type KeysUploadOk = { 
/**
 * The device's unclaimed one-time prekeys after the upload.
 */
one_time_key_count: number, };
/**
 * Answer to `keys.list`.
 */
export type DevicesOk = { 
/**
 * The user's devices, by device id.
 */
devices: Array<DeviceKeys>, };
/**
 * A device's public keys as the directory lists them.
 */
export type DeviceKeys = { 
/**
 * The device's id (chosen by the client, unique per user).
 */
device_id: string, 
/**
 * The device's public identity key (base64, e.g. Curve25519).
 */
identity_key: string, 
/**
 * The device's public signing key (base64, e.g. Ed25519), if it has one.
 */
signing_key?: string | null, 
/**
 * One-time prekeys still unclaimed.
 */
one_time_key_count: number, };
/**
 * Answer to `keys.claim`.
 */
export type ClaimedOk = { 
/**
 * One entry per device of the user (or the one device asked for).
 */
claimed: Array<ClaimedKey>, };
/**
 * One device's keys handed out by `keys.claim`.
 */
export type ClaimedKey = { 
/**
 * The device.
 */
device_id: string, 
/**
 * Its identity key.
 */
identity_key: string, 
/**
 * Its signing key, if any.
 */
signing_key?: string | null, 
/**
 * A one-time prekey, now removed from the directory (absent when the device has none
 * left: the client then falls back to what its algorithm allows, or asks later).
 */
one_time_key?: OneTimeKey | null, 
/**
 * The device's unclaimed one-time prekeys after this claim: 0 means exhausted.
 */
one_time_key_count: number, };
/**
 * A one-time prekey (public half).
 */
export type OneTimeKey = { 
/**
 * The key's id, unique per device.
 */
key_id: string, 
/**
 * The public key (base64).
 */
key: string, };
/**
 * How an `encrypted` message was encrypted: enough for the receiving device to pick the
 * session that decrypts it. Opaque to the server.
 */
export type Encryption = { 
/**
 * The algorithm, e.g. `m.olm.v1.curve25519-aes-sha2` or `m.megolm.v1.aes-sha2`.
 */
algorithm: string, 
/**
 * The sending device.
 */
sender_device: string, 
/**
 * The sender's session (Megolm), when the algorithm has one.
 */
session_id?: string | null, };
/**
 * Answer to `search`.
 */
export type SearchOk = { 
/**
 * Hits, in the requested order.
 */
hits: Array<SearchHit>, 
/**
 * Pass as `cursor` for the next page; absent on the last one.
 */
next?: string | null, };
/**
 * One `search` hit.
 */
export type SearchHit = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * When it was stored.
 */
ts: number, 
/**
 * Who sent it.
 */
sender: UserId, 
/**
 * Up to about 150 characters around the match, HTML-escaped, matches in `<b>…</b>`.
 */
snippet: string, 
/**
 * Relevance (0 in `newest` order).
 */
score: number, 
/**
 * A thread reply: its thread's root (open the thread with `thread.history`).
 */
thread?: number | null, };
/**
 * How `search` orders its hits.
 */
export type SearchOrder = "relevance" | "newest";
/**
 * Answer to `notifications.get`, `notifications.set` and `notifications.room`.
 */
export type NotificationsOk = { 
/**
 * The settings now.
 */
notifications: NotificationSettings, };
/**
 * A user's notification settings, the same on every device.
 */
export type NotificationSettings = { 
/**
 * The level of rooms without their own (direct rooms: `all` unless set).
 */
level: NotifyLevel, 
/**
 * Words that count as a mention of the user: case-insensitive, whole words, never
 * matched inside end-to-end encrypted messages.
 */
keywords?: Array<string>, 
/**
 * Rooms with their own setting, by room id.
 */
rooms?: Array<RoomNotifications>, };
/**
 * One room's setting, overriding the account's defaults.
 */
export type RoomNotifications = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * The room's level; absent: the account's (`level` for rooms, `all` for direct rooms).
 */
level?: NotifyLevel | null, 
/**
 * Muted: no push, and the room counts no mentions.
 */
muted?: boolean, 
/**
 * When a mute ends (ms since the Unix epoch); absent: when it is lifted.
 */
muted_until?: number | null, };
/**
 * Which messages of a room notify the user.
 */
export type NotifyLevel = "all" | "mentions" | "none";
/**
 * `{}`.
 */
export type Empty = Record<symbol, never>;
/**
 * A room as clients see it.
 */
export type RoomInfo = { 
/**
 * The room's id.
 */
room_id: RoomId, 
/**
 * Display name.
 */
name: string, 
/**
 * Public or private.
 */
kind: RoomKind, 
/**
 * Topic or description (absent when empty).
 */
topic?: string, };
/**
 * Who may join a room.
 */
export type RoomKind = "public" | "private" | "direct";
/**
 * A member's role. Ordered by power: `owner > admin > moderator > member`.
 */
export type RoomRole = "member" | "moderator" | "admin" | "owner";
/**
 * A room's settings, as stored and reported.
 */
export type RoomSettings = { 
/**
 * Most members the room admits.
 */
max_members: number, 
/**
 * Whether members may send `image` and `file` messages.
 */
file_sharing: boolean, 
/**
 * Seconds a member must wait between two messages (0: off; moderators are exempt).
 */
slow_mode_secs: number, 
/**
 * The least role that may invite.
 */
invite_role: RoomRole, 
/**
 * The least role that may pin and unpin messages (direct rooms: both users).
 */
pin_role: RoomRole, 
/**
 * The least role whose `@everyone` and `@here` mention the room (direct rooms: both
 * users).
 */
mention_all_role: RoomRole, 
/**
 * How long the room keeps its messages (absent: the server's default applies).
 */
retention?: RoomRetention | null, };
/**
 * How long a room keeps its messages: older ones, or those beyond the newest
 * `max_count`, are removed in the background and history then starts at a later seq.
 * A limit left out is no limit of that kind.
 */
export type RoomRetention = { 
/**
 * Messages older than this many seconds are removed
 * (1..=[`crate::limits::MAX_RETENTION_AGE_SECS`]).
 */
max_age_secs?: number | null, 
/**
 * Only the newest this many messages are kept
 * (1..=[`crate::limits::MAX_RETENTION_COUNT`]).
 */
max_count?: number | null, };
/**
 * A partial change to [`RoomSettings`]: absent fields keep their value.
 */
export type RoomSettingsPatch = { 
/**
 * New member limit (not below the current member count).
 */
max_members?: number | null, 
/**
 * Allow or forbid files.
 */
file_sharing?: boolean | null, 
/**
 * New slow mode, in seconds (0 turns it off).
 */
slow_mode_secs?: number | null, 
/**
 * New least role that may invite.
 */
invite_role?: RoomRole | null, 
/**
 * New least role that may pin and unpin.
 */
pin_role?: RoomRole | null, 
/**
 * New least role whose `@everyone` and `@here` mention the room.
 */
mention_all_role?: RoomRole | null, 
/**
 * The room's own retention; `{}` drops it, so the server's default applies again.
 */
retention?: RoomRetention | null, };
/**
 * A stored message, as delivered live (`message` event) and by `history`.
 */
export type Message = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * Position in the room: 1, 2, 3, … with no gaps.
 */
seq: number, 
/**
 * Server time when stored, ms since the Unix epoch.
 */
ts: number, 
/**
 * Who sent it.
 */
sender: UserId, 
/**
 * The sender's idempotency key.
 */
cid: ClientMsgId, 
/**
 * The kind of message.
 */
kind: MessageKind, 
/**
 * The body, exactly as sent.
 */
text: string, 
/**
 * The sender's own timestamp, when it gave one.
 */
client_ts?: number | null, 
/**
 * Reactions, aggregated per emoji (in `history`; live `message` events have none).
 */
reactions?: Array<ReactionSummary>, 
/**
 * The message this one replies to.
 */
reply_to?: number | null, 
/**
 * In `history`: enough of the parent to show it. (Boxed: an absent preview costs a
 * plain message's archive a few bytes instead of the whole struct.)
 */
reply?: ReplyPreview | null, 
/**
 * Users mentioned with `@username` (members of the room only).
 */
mentions?: Array<UserId>, 
/**
 * With `image` and `file`: the shared file. (Boxed, like `reply`.)
 */
file?: FileRef | null, 
/**
 * When the text was last edited, ms since the Unix epoch.
 */
edited_at?: number | null, 
/**
 * A tombstone: the message was deleted, its content is gone, its seq stays.
 */
deleted?: boolean, 
/**
 * With kind `system`: what happened, structured (`text` has it in words).
 */
system?: SystemNotice | null, 
/**
 * The receiver has blocked the sender: clients hide the message (or fold it away).
 */
blocked?: boolean, 
/**
 * With kind `encrypted`: how `text` was encrypted.
 */
encryption?: Encryption | null, 
/**
 * The message mentions the whole room (`@everyone`) or its members online
 * (`@here`): set when its sender had the room's `mention_all_role`.
 */
mention_all?: MentionAll | null, 
/**
 * A forwarded message: where it came from (and, in `history`, what it said, for
 * readers who may read the room it came from).
 */
forward?: ForwardRef | null, 
/**
 * A thread reply: the seq of its thread's root.
 */
thread?: number | null, 
/**
 * A thread reply that is also part of the room's own timeline.
 */
also_to_room?: boolean, 
/**
 * A thread's root, in `history` and the thread ops: its replies so far.
 */
thread_summary?: ThreadSummary | null, };
/**
 * What a message carries.
 */
export type MessageKind = "text" | "image" | "file" | "system" | "encrypted";
/**
 * A stored file shared in a message.
 */
export type FileRef = { 
/**
 * The file's id, from the upload.
 */
file_id: string, 
/**
 * Display name (sanitized by clients before use as a download name).
 */
name: string, 
/**
 * Size in bytes.
 */
size: number, 
/**
 * Content type, `type/subtype`.
 */
content_type: string, 
/**
 * Image width in pixels, when known.
 */
width?: number | null, 
/**
 * Image height in pixels, when known.
 */
height?: number | null, };
/**
 * What a reply shows of the message it answers.
 */
export type ReplyPreview = { 
/**
 * The parent's seq.
 */
seq: number, 
/**
 * The parent's sender.
 */
sender: UserId, 
/**
 * The start of the parent's text (empty when deleted).
 */
excerpt: string, 
/**
 * True when the parent has been deleted.
 */
deleted?: boolean, };
/**
 * Where a forwarded message came from.
 */
export type ForwardRef = { 
/**
 * The room of the original.
 */
room: RoomId, 
/**
 * Its seq there.
 */
seq: number, 
/**
 * The original, in `history`, for a reader who may read its room; never in live
 * events.
 */
source?: ForwardedMessage | null, };
/**
 * What a forwarded message's original says, as its room holds it now.
 */
export type ForwardedMessage = { 
/**
 * Who wrote it.
 */
sender: UserId, 
/**
 * When it was stored.
 */
ts: number, 
/**
 * Its kind.
 */
kind: MessageKind, 
/**
 * Its text (empty once deleted).
 */
text: string, 
/**
 * Its file, for `image` and `file`.
 */
file?: FileRef | null, 
/**
 * When it was last edited.
 */
edited_at?: number | null, 
/**
 * The original was deleted: its content is gone.
 */
deleted?: boolean, };
/**
 * A mention of many members at once.
 */
export type MentionAll = "everyone" | "here";
/**
 * All reactions with one emoji on a message.
 */
export type ReactionSummary = { 
/**
 * The emoji.
 */
emoji: string, 
/**
 * How many users reacted with it.
 */
count: number, 
/**
 * Who (at most 50, oldest first by user id order).
 */
users: Array<UserId>, };
/**
 * The structured part of a `system` message.
 */
export type SystemNotice = { 
/**
 * What happened.
 */
action: SystemAction, 
/**
 * Who did it ([`UserId::system`] for an announcement).
 */
actor: UserId, 
/**
 * To whom, for actions on a member.
 */
target?: UserId | null, 
/**
 * With `role_changed`: the new role.
 */
role?: RoomRole | null, 
/**
 * With `muted`: when the mute ends, ms since the Unix epoch.
 */
until?: number | null, 
/**
 * The moderator's reason, if given.
 */
reason?: string | null, 
/**
 * With `pinned` and `unpinned`: the message.
 */
seq?: number | null, };
/**
 * What a `system` message records: a moderation or governance action, a pin, or an
 * announcement.
 */
export type SystemAction = "kicked" | "banned" | "unbanned" | "muted" | "unmuted" | "role_changed" | "ownership_transferred" | "settings_changed" | "room_deleted" | "pinned" | "unpinned" | "announcement";
/**
 * The `typing` event.
 */
export type Typing = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * Who is (or was) typing.
 */
user: UserId, 
/**
 * True while typing; false once stopped, timed out, or a message was sent.
 */
active: boolean, 
/**
 * With `active`: the indicator lapses by itself after this long unless renewed.
 */
expires_in_ms?: number | null, };
/**
 * The `receipt` event.
 */
export type Receipt = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * Whose watermarks.
 */
user: UserId, 
/**
 * Highest seq delivered to one of their devices.
 */
delivered: number, 
/**
 * Highest seq they have read.
 */
read: number, };
/**
 * The `reaction` event.
 */
export type Reaction = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * The emoji.
 */
emoji: string, 
/**
 * Who reacted (or un-reacted).
 */
user: UserId, 
/**
 * Added (true) or removed (false).
 */
added: boolean, 
/**
 * Users reacting with this emoji now.
 */
count: number, };
/**
 * The `edit` event.
 */
export type Edit = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * The new text.
 */
text: string, 
/**
 * When it was edited.
 */
edited_at: number, };
/**
 * The `delete` event.
 */
export type Delete = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * The message.
 */
seq: number, 
/**
 * Who deleted it (the sender, or a moderator).
 */
by: UserId, };
/**
 * The `member` event: someone joined or left. Kicks, bans and role changes arrive as
 * `system` messages in the room's log instead, so they are stored and replayed.
 */
export type MemberEvent = { 
/**
 * The room.
 */
room: RoomId, 
/**
 * Who.
 */
user: UserId, 
/**
 * Joined or left.
 */
change: MemberChange, 
/**
 * Their role (after joining).
 */
role: RoomRole, };
/**
 * What changed in a `member` event.
 */
export type MemberChange = "joined" | "left";
/** A request from a client: `{"id":N,"op":"…",…}`; the answer's `re` is its `id`. */
export type ClientFrame = { id: number } & Op;

/** A frame from the server: the answer to one request (`re` is its `id`), or an event. */
export type ServerFrame = { re: number, ok: OkBody } | { re: number, err: ErrorBody } | Event;

/** The name of an op. */
export type OpName = Op["op"];

/** The request of one op. */
export type Request<O extends OpName = OpName> = Extract<Op, { op: O }>;

/** The name of an event. */
export type EventName = Event["ev"];

/** The `ok` answer of each op. */
export interface Replies {
  "auth": AuthOk,
  "room.create": RoomOk,
  "join": JoinOk,
  "leave": Empty,
  "send": SendOk,
  "history": HistoryOk,
  "thread.history": ThreadHistoryOk,
  "thread.list": ThreadsOk,
  "thread.read": ThreadReadOk,
  "ping": Empty,
  "typing.start": Empty,
  "typing.stop": Empty,
  "receipt": ReceiptOk,
  "sync": SyncOk,
  "edit": EditOk,
  "edit.list": EditsOk,
  "pin": SendOk,
  "unpin": SendOk,
  "pin.list": PinsOk,
  "receipt.list": ReceiptListOk,
  "forward": SendOk,
  "delete": Empty,
  "room.list": RoomListOk,
  "dm.open": RoomOk,
  "react": ReactionOk,
  "unreact": ReactionOk,
  "room.get": RoomDetailsOk,
  "room.update": RoomDetailsOk,
  "room.delete": Empty,
  "room.members": MembersOk,
  "room.invite": Empty,
  "invite.list": InvitesOk,
  "invite.accept": JoinOk,
  "invite.decline": Empty,
  "kick": SendOk,
  "ban": SendOk,
  "unban": SendOk,
  "mute": SendOk,
  "unmute": SendOk,
  "role.set": SendOk,
  "room.transfer": SendOk,
  "user.get": ProfileOk,
  "user.update": ProfileOk,
  "user.search": UsersOk,
  "friend.request": FriendOk,
  "friend.accept": FriendOk,
  "friend.decline": FriendOk,
  "friend.cancel": FriendOk,
  "friend.remove": FriendOk,
  "friend.list": FriendsOk,
  "block": Empty,
  "unblock": Empty,
  "block.list": BlockedOk,
  "presence.set": Empty,
  "presence.subscribe": PresenceListOk,
  "presence.unsubscribe": Empty,
  "keys.upload": KeysUploadOk,
  "keys.list": DevicesOk,
  "keys.claim": ClaimedOk,
  "search": SearchOk,
  "notifications.get": NotificationsOk,
  "notifications.set": NotificationsOk,
  "notifications.room": NotificationsOk,
  "push.subscribe": Empty,
  "push.unsubscribe": Empty,
}

/** Every op's answer, by `op`. */
export type Reply = { [O in OpName]: { op: O, ok: Replies[O] } }[OpName];

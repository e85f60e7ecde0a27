"""The data the server sends, as typed objects: messages, rooms, files, search hits, and
one class per event (`docs/PROTOCOL.md` §3.6 and the connection's own events).

Every class is a frozen dataclass built from the protocol's JSON; fields the server adds in
later versions are ignored, so an older package keeps working against a newer server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional, TypeVar

T = TypeVar("T")


def _build(cls: type[T], data: Optional[Mapping[str, Any]]) -> Optional[T]:
    """`cls` from a JSON object: unknown keys dropped, nested objects built by `_NESTED`."""
    if data is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in data.items() if k in names}
    for name, convert in getattr(cls, "_NESTED", {}).items():
        if values.get(name) is not None:
            values[name] = convert(values[name])
    return cls(**values)


def _each(cls: type[T]) -> Callable[[list], list[T]]:
    return lambda items: [_build(cls, item) for item in items]


def _one(cls: type[T]) -> Callable[[Mapping[str, Any]], Optional[T]]:
    return lambda item: _build(cls, item)


class PalaverError(Exception):
    """A call failed: the server refused it (`code` is the protocol's error code, e.g.
    `"forbidden"`), or the client could not do it (`code` is `None`: unreachable server,
    timeout, closed client…)."""

    def __init__(
        self,
        message: str,
        code: Optional[str] = None,
        retry_after_ms: Optional[int] = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        #: With `rate_limited`: how long to wait before retrying.
        self.retry_after_ms = retry_after_ms
        #: Whether trying again later may succeed.
        self.transient = transient

    def __repr__(self) -> str:
        return f"PalaverError({self.message!r}, code={self.code!r})"


@dataclass(frozen=True)
class FileRef:
    """A shared file: what an upload returns and what `image`/`file` messages carry."""

    file_id: str
    name: str
    size: int
    content_type: str
    width: Optional[int] = None
    height: Optional[int] = None


@dataclass(frozen=True)
class ReactionCount:
    """One emoji's reactions on a message (in `history`)."""

    emoji: str
    count: int
    users: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplyPreview:
    """What a reply shows of the message it answers (in `history`)."""

    seq: int
    sender: str
    excerpt: str
    deleted: bool = False


@dataclass(frozen=True)
class SystemNotice:
    """The structured part of a `system` message (a moderation or governance action; a
    pin: `seq` is the message pinned or unpinned; or an `announcement` posted by the
    operator's backend: `actor` is `u_system` and the message's `text` is the
    announcement)."""

    action: str
    actor: str
    target: Optional[str] = None
    role: Optional[str] = None
    until: Optional[int] = None
    reason: Optional[str] = None
    seq: Optional[int] = None


@dataclass(frozen=True)
class Encryption:
    """How an `encrypted` message's text was encrypted."""

    algorithm: str
    sender_device: str
    session_id: Optional[str] = None


@dataclass(frozen=True)
class Message:
    """A stored message: as an event, each seq of a joined room once, in order."""

    room: str
    seq: int
    ts: int
    sender: str
    cid: str
    kind: str
    text: str
    client_ts: Optional[int] = None
    reactions: list[ReactionCount] = field(default_factory=list)
    reply_to: Optional[int] = None
    reply: Optional[ReplyPreview] = None
    mentions: list[str] = field(default_factory=list)
    file: Optional[FileRef] = None
    edited_at: Optional[int] = None
    deleted: bool = False
    system: Optional[SystemNotice] = None
    blocked: bool = False
    encryption: Optional[Encryption] = None
    # `"everyone"` or `"here"` when the message mentions the room.
    mention_all: Optional[str] = None
    # A forward's original: `{"room", "seq", "source"?}` (`source` in history, for readers
    # of the original's room).
    forward: Optional[dict] = None
    # A thread reply: its root's seq (with `also_to_room` when also in the room's timeline).
    thread: Optional[int] = None
    also_to_room: bool = False
    # A thread's root: `{"count", "last_seq", "last_at"}` of its live replies.
    thread_summary: Optional[dict] = None

    _NESTED: ClassVar[dict] = {
        "reactions": _each(ReactionCount),
        "reply": _one(ReplyPreview),
        "file": _one(FileRef),
        "system": _one(SystemNotice),
        "encryption": _one(Encryption),
    }


@dataclass(frozen=True)
class RoomInfo:
    """A room: id, name, kind (`public`, `private` or `direct`), topic."""

    room_id: str
    name: str
    kind: str
    topic: str = ""


@dataclass(frozen=True)
class Joined:
    """The answer to `join`: the room and its newest seq."""

    room: RoomInfo
    last_seq: int

    _NESTED: ClassVar[dict] = {"room": _one(RoomInfo)}


@dataclass(frozen=True)
class Sent:
    """The answer to `send`: the message is stored durably as `seq`."""

    seq: int
    ts: int
    #: The message had been stored before (a retry of the same `cid`).
    duplicate: bool = False


@dataclass(frozen=True)
class SearchHit:
    """One search hit; `snippet` is HTML-escaped with matches in `<b>…</b>`."""

    room: str
    seq: int
    ts: int
    sender: str
    snippet: str
    score: float


@dataclass(frozen=True)
class SearchPage:
    """One page of search hits; pass `next` as `cursor` for the next page (`None` on the
    last one)."""

    hits: list[SearchHit]
    next: Optional[str] = None

    _NESTED: ClassVar[dict] = {"hits": _each(SearchHit)}


@dataclass(frozen=True)
class PresenceInfo:
    """A user's presence: `online`, `away` or `offline` (with `last_seen`, ms)."""

    user: str
    status: str
    last_seen: Optional[int] = None


@dataclass(frozen=True)
class Profile:
    """A user's public profile."""

    user_id: str
    username: str
    display_name: Optional[str] = None
    avatar: Optional[str] = None
    status_text: Optional[str] = None
    share_read_receipts: Optional[bool] = None
    bot: bool = False

    @property
    def shown_name(self) -> str:
        """The display name, else the username."""
        return self.display_name or self.username


@dataclass(frozen=True)
class RoomSummary:
    """One of the user's rooms in `sync`: its newest message and unread counts."""

    room: RoomInfo
    last_seq: int
    unread: int
    mentions: int = 0
    last_message: Optional[Message] = None
    delivered: int = 0
    read: int = 0

    _NESTED: ClassVar[dict] = {"room": _one(RoomInfo), "last_message": _one(Message)}


@dataclass(frozen=True)
class Tokens:
    """An access token and the single-use refresh token that renews it. Store the newest
    (see the `Tokens` event) to resume a session later with `Credentials.tokens`."""

    access_token: str
    refresh_token: Optional[str] = None
    expires_in: Optional[int] = None


@dataclass(frozen=True)
class Session:
    """An account session from `register` or `login`."""

    user_id: str
    tokens: Tokens

    _NESTED: ClassVar[dict] = {"tokens": _one(Tokens)}


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Typing:
    """Someone started (`active`) or stopped typing in a joined room."""

    room: str
    user: str
    active: bool
    expires_in_ms: Optional[int] = None


@dataclass(frozen=True)
class Receipt:
    """A member's delivered/read watermarks moved."""

    room: str
    user: str
    delivered: int
    read: int


@dataclass(frozen=True)
class Reaction:
    """A reaction was added (`added`) or removed; `count` is the emoji's count now."""

    room: str
    seq: int
    emoji: str
    user: str
    added: bool
    count: int


@dataclass(frozen=True)
class Edit:
    """A message's text was edited."""

    room: str
    seq: int
    text: str
    edited_at: int


@dataclass(frozen=True)
class Delete:
    """A message was deleted (now a tombstone)."""

    room: str
    seq: int
    by: str


@dataclass(frozen=True)
class Thread:
    """A thread's summary changed: `summary` is `{"count", "last_seq", "last_at"}`."""

    room: str
    root: int
    summary: dict


@dataclass(frozen=True)
class Member:
    """Someone joined or left a joined room (`change`: `joined` or `left`)."""

    room: str
    user: str
    change: str
    role: str


@dataclass(frozen=True)
class Invite:
    """The user was invited to a room."""

    room: RoomInfo
    by: str
    invited_at: int

    _NESTED: ClassVar[dict] = {"room": _one(RoomInfo)}


@dataclass(frozen=True)
class Friend:
    """A friendship of the user changed (`state`: `none`, `outgoing`, `incoming`,
    `friends`)."""

    user: str
    username: str
    state: str
    since: int
    presence: Optional[PresenceInfo] = None

    _NESTED: ClassVar[dict] = {"presence": _one(PresenceInfo)}


@dataclass(frozen=True)
class Presence:
    """A followed user's presence changed (also sent for each subscribed user after a
    reconnect)."""

    user: str
    status: str
    last_seen: Optional[int] = None


@dataclass(frozen=True)
class Report:
    """A message was reported in a room the user moderates (or, to an admin, in any
    room)."""

    report_id: str
    room: str
    seq: int
    reporter: str
    at: int
    reason: Optional[str] = None


@dataclass(frozen=True)
class RoomNotifications:
    """One room's own notification setting: its level (`None`: the account's) and a mute
    (`muted_until`: when it ends, ms since the Unix epoch; `None`: until lifted)."""

    room: str
    level: Optional[str] = None
    muted: bool = False
    muted_until: Optional[int] = None


@dataclass(frozen=True)
class NotificationSettings:
    """The user's notification settings, the same on every device: the level of rooms
    without their own (`all`, `mentions`, `none`), keywords that count as mentions, and
    rooms with their own setting. Also the event sent when they change."""

    level: str = "mentions"
    keywords: list[str] = field(default_factory=list)
    rooms: list[RoomNotifications] = field(default_factory=list)

    _NESTED: ClassVar[dict] = {"rooms": _each(RoomNotifications)}


@dataclass(frozen=True)
class Connected:
    """The socket is authenticated and every room re-joined."""

    user_id: str
    session_id: str


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped; the client reconnects by itself after `retry_in_ms`."""

    reason: str
    retry_in_ms: int


@dataclass(frozen=True)
class TokensChanged:
    """New tokens: store them if the app keeps sessions (refresh tokens rotate)."""

    tokens: Tokens


@dataclass(frozen=True)
class RoomReset:
    """The server holds fewer messages of a room than the client had seen."""

    room: str
    last_seq: int


@dataclass(frozen=True)
class RoomLost:
    """A joined room could not be re-joined after a reconnect (deleted, access lost)."""

    room: str
    error: PalaverError


@dataclass(frozen=True)
class Lagged:
    """This event stream fell behind and lost its `missed` oldest events (messages among
    them are still in `history`)."""

    missed: int


@dataclass(frozen=True)
class Closed:
    """The client stopped for good (`error` is `None` when closed by the app)."""

    error: Optional[PalaverError] = None


@dataclass(frozen=True)
class UnknownEvent:
    """An event this package version does not know (from a newer SDK core)."""

    kind: str
    data: dict


def _error(data: Optional[Mapping[str, Any]]) -> Optional[PalaverError]:
    if data is None:
        return None
    return PalaverError(
        data.get("message", ""),
        data.get("code"),
        data.get("retry_after_ms"),
        bool(data.get("transient", False)),
    )


#: How each event kind of the SDK core becomes an object.
_EVENTS: dict[str, Callable[[dict], Any]] = {
    "message": lambda e: _build(Message, e["message"]),
    "typing": lambda e: _build(Typing, e["typing"]),
    "receipt": lambda e: _build(Receipt, e["receipt"]),
    "reaction": lambda e: _build(Reaction, e["reaction"]),
    "edit": lambda e: _build(Edit, e["edit"]),
    "delete": lambda e: _build(Delete, e["delete"]),
    "thread": lambda e: _build(Thread, e["thread"]),
    "member": lambda e: _build(Member, e["member"]),
    "invite": lambda e: _build(Invite, e["invite"]),
    "friend": lambda e: _build(Friend, e["friend"]),
    "presence": lambda e: _build(Presence, e["presence"]),
    "report": lambda e: _build(Report, e["report"]),
    "notifications": lambda e: _build(NotificationSettings, e["notifications"]),
    "connected": lambda e: Connected(e["user_id"], e["session_id"]),
    "disconnected": lambda e: Disconnected(e["reason"], e["retry_in_ms"]),
    "tokens": lambda e: TokensChanged(_build(Tokens, e["tokens"])),
    "room_reset": lambda e: RoomReset(e["room"], e["last_seq"]),
    "room_lost": lambda e: RoomLost(e["room"], _error(e["error"])),
    "lagged": lambda e: Lagged(e["missed"]),
    "closed": lambda e: Closed(_error(e.get("error"))),
}

#: Every event class.
Event = (
    Message | Typing | Receipt | Reaction | Edit | Delete | Thread | Member | Invite | Friend | Presence
    | Report | NotificationSettings
    | Connected | Disconnected | TokensChanged | RoomReset | RoomLost | Lagged | Closed | UnknownEvent
)


def event_from_json(data: dict) -> Event:
    """The typed event for an event of the SDK core (`ClientEvent::to_json`)."""
    make = _EVENTS.get(data.get("type", ""))
    if make is None:
        return UnknownEvent(data.get("type", ""), data)
    return make(data)

"""`Client`, `Credentials` and `Events`: the asyncio API over the Rust SDK."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional, Sequence

from . import _native
from .types import (
    Event,
    FileRef,
    Joined,
    Message,
    NotificationSettings,
    PalaverError,
    PresenceInfo,
    Profile,
    RoomInfo,
    RoomSummary,
    SearchPage,
    Sent,
    Session,
    Tokens,
    _build,
    event_from_json,
)


def _error(native: _native.NativeError) -> PalaverError:
    data = json.loads(native.args[0])
    return PalaverError(
        data.get("message", ""),
        data.get("code"),
        data.get("retry_after_ms"),
        bool(data.get("transient", False)),
    )


async def _await(awaitable: Any) -> Any:
    """Awaits a native call, raising its errors as `PalaverError`."""
    try:
        return await awaitable
    except _native.NativeError as native:
        raise _error(native) from None


def _fields(**fields: Any) -> dict:
    """The op fields that were given (absent ones are omitted, never sent as null)."""
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Credentials:
    """How a client gets its tokens: `password` logs in to an existing account,
    `register` creates it first (then logs in with it on later reconnects), `tokens`
    resumes a session stored earlier."""

    _json: dict

    @staticmethod
    def password(username: str, password: str) -> "Credentials":
        return Credentials({"kind": "password", "username": username, "password": password})

    @staticmethod
    def register(username: str, password: str) -> "Credentials":
        return Credentials({"kind": "register", "username": username, "password": password})

    @staticmethod
    def tokens(tokens: Tokens) -> "Credentials":
        return Credentials(
            {
                "kind": "tokens",
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_in": tokens.expires_in,
            }
        )

    def __repr__(self) -> str:
        return f"Credentials({self._json['kind']}, ***)"


class Events:
    """An async iterator over a client's events, each a typed object (`Message`,
    `Typing`, …, `Connected`, `Disconnected`, `Lagged`, `Closed`). Ends when the client
    is closed. Each stream has its own bounded buffer: a stream read too slowly loses its
    oldest events and then yields `Lagged(missed)`; it never slows the client."""

    def __init__(self, native: _native.NativeEvents) -> None:
        self._native = native

    def __aiter__(self) -> "Events":
        return self

    async def __anext__(self) -> Event:
        return event_from_json(json.loads(await _await(self._native.__anext__())))

    async def next_message(self) -> Optional[Message]:
        """The next `Message`, skipping other events; `None` once the client is closed."""
        async for event in self:
            if isinstance(event, Message):
                return event
        return None


class Client:
    """A connected Palaver client that does not drop messages and does not repeat them:
    after a dropped connection it reconnects with backoff, re-joins its rooms with
    `since` and re-sends unacknowledged messages with their original `cid`, so events
    continue with no gap and no duplicate, and every message is stored exactly once.

    Create it with `await Client.connect(...)`. Every method is a coroutine unless noted;
    failures raise `PalaverError`."""

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native

    # ------------------------------------------------------------ connecting

    @classmethod
    async def connect(
        cls,
        url: str,
        credentials: Credentials,
        *,
        codec: str = "json",
        retry_first_connect_for: Optional[float] = None,
        event_buffer: Optional[int] = None,
        fallback_urls: Sequence[str] = (),
        trust_pem: Optional[str] = None,
        request_timeout: Optional[float] = None,
        backoff_initial: Optional[float] = None,
        backoff_max: Optional[float] = None,
    ) -> "Client":
        """Logs in (or registers, or uses stored tokens), opens the socket and
        authenticates it; returns once connected.

        `url` is the server's base URL (`http://127.0.0.1:8080`; `https://` too, trusting
        the system's roots or `trust_pem`). A first connection that fails for a passing
        reason (server not up yet) is retried with backoff for `retry_first_connect_for`
        seconds (default 30; `0` fails at once); refused credentials fail at once. The
        first `events()` stream starts right after this connection's `Connected`.
        Durations are in seconds."""

        def ms(seconds: Optional[float]) -> Optional[int]:
            return None if seconds is None else int(seconds * 1000)

        options = _fields(
            codec=codec,
            retry_first_connect_ms=ms(retry_first_connect_for),
            event_buffer=event_buffer,
            fallback_urls=list(fallback_urls),
            trust_pem=trust_pem,
            request_timeout_ms=ms(request_timeout),
            backoff_initial_ms=ms(backoff_initial),
            backoff_max_ms=ms(backoff_max),
        )
        native = await _await(
            _native.NativeClient.connect(url, json.dumps(credentials._json), json.dumps(options))
        )
        return cls(native)

    @staticmethod
    async def register(url: str, username: str, password: str) -> Session:
        """Creates an account over HTTP (no socket)."""
        return _build(Session, json.loads(await _await(_native.NativeClient.register(url, username, password))))

    @staticmethod
    async def login(url: str, username: str, password: str) -> Session:
        """Logs in over HTTP (no socket)."""
        return _build(Session, json.loads(await _await(_native.NativeClient.login(url, username, password))))

    def events(self) -> Events:
        """A stream of this client's events (not a coroutine). The first call returns
        the stream that started at the first `Connected`, so nothing is missed between
        `connect` and this call; later calls start when they are made."""
        return Events(self._native.events())

    @property
    def user_id(self) -> Optional[str]:
        """The authenticated user's id."""
        return self._native.user_id()

    @property
    def tokens(self) -> Optional[Tokens]:
        """The newest tokens (store them to resume later: refresh tokens rotate)."""
        raw = self._native.tokens()
        return None if raw is None else _build(Tokens, json.loads(raw))

    @property
    def is_connected(self) -> bool:
        """Whether the socket is authenticated right now."""
        return self._native.is_connected()

    def close(self) -> None:
        """Closes the client (not a coroutine): pending calls fail, event streams end."""
        self._native.close()

    async def request(self, op: str, **fields: Any) -> dict:
        """Any op of `docs/PROTOCOL.md` §3.5 with its fields; returns its `ok` body as a
        dict. Waits for the connection and is repeated after a drop (every op but
        `room.create` is safe to repeat)."""
        return json.loads(await _await(self._native.request(json.dumps({"op": op, **_fields(**fields)}))))

    async def ping(self) -> None:
        """A round trip through the server."""
        await self.request("ping")

    # ------------------------------------------------------------ rooms

    async def create_room(self, name: str, kind: str = "public", *, topic: Optional[str] = None) -> RoomInfo:
        """Creates a room (`public` or `private`); the caller owns it. Not repeated after
        a dropped connection (it may or may not have happened)."""
        return _build(RoomInfo, (await self.request("room.create", name=name, kind=kind, topic=topic))["room"])

    async def join(self, room: str, *, since: Optional[int] = None) -> Joined:
        """Follows a room from now on, or from after `since` (its messages after that seq
        are replayed first: resume a stored position with it). Stays joined across
        reconnects."""
        return _build(Joined, await self.request("join", room=room, since=since))

    async def leave(self, room: str) -> None:
        """Leaves a room: its events stop and the membership ends."""
        await self.request("leave", room=room)

    async def room_list(self, query: Optional[str] = None, *, cursor: Optional[str] = None,
                        limit: Optional[int] = None) -> tuple[list[RoomInfo], Optional[str]]:
        """One page of public rooms (optionally whose name contains `query`) and the
        `cursor` of the next page (`None` on the last one)."""
        body = await self.request("room.list", query=query, cursor=cursor, limit=limit)
        return [_build(RoomInfo, r) for r in body["results"]], body.get("next")

    async def dm_open(self, user: str) -> RoomInfo:
        """The direct-message room with another user (created once)."""
        return _build(RoomInfo, (await self.request("dm.open", user=user))["room"])

    async def sync(self) -> list[RoomSummary]:
        """The user's rooms with their newest message and unread counts (every page)."""
        rooms: list[RoomSummary] = []
        cursor: Optional[str] = None
        while True:
            body = await self.request("sync", cursor=cursor)
            rooms.extend(_build(RoomSummary, r) for r in body["rooms"])
            cursor = body.get("next")
            if cursor is None:
                return rooms

    async def room_invite(self, room: str, user: str) -> None:
        """Invites a user to a room."""
        await self.request("room.invite", room=room, user=user)

    async def invite_accept(self, room: str) -> Joined:
        """Accepts an invitation and follows the room like `join`."""
        await self.request("invite.accept", room=room)
        return await self.join(room)

    # ------------------------------------------------------------ messages

    async def send(self, room: str, text: str, *, reply_to: Optional[int] = None,
                   client_ts: Optional[int] = None) -> Sent:
        """Sends a text message; returns once it is durably stored. Survives reconnects
        (re-sent with the same `cid` until acknowledged): stored exactly once."""
        message = _fields(room=room, text=text, reply_to=reply_to, client_ts=client_ts)
        return _build(Sent, json.loads(await _await(self._native.send(json.dumps(message)))))

    async def upload(self, room: str, name: str, data: bytes) -> FileRef:
        """Uploads a file to a room (members only; the type is found from the bytes)."""
        return _build(FileRef, json.loads(await _await(self._native.upload(room, name, data))))

    async def send_file(self, room: str, name: str, data: bytes, text: str = "") -> tuple[FileRef, Sent]:
        """Uploads a file and shares it in the room (an `image` or `file` message)."""
        file = await self.upload(room, name, data)
        kind = "image" if file.content_type.startswith("image/") else "file"
        message = {"room": room, "text": text, "kind": kind, "file": _file_json(file)}
        sent = _build(Sent, json.loads(await _await(self._native.send(json.dumps(message)))))
        return file, sent

    async def download(self, file_id: str) -> bytes:
        """A shared file's bytes (members of its room only)."""
        return await _await(self._native.download(file_id))

    async def history(self, room: str, *, before: Optional[int] = None, limit: Optional[int] = None) -> list[Message]:
        """One page of a room's messages before seq `before` (default: the newest),
        newest first, `limit` 1–100 (default 50)."""
        body = await self.request("history", room=room, before=before, limit=limit)
        return [_build(Message, m) for m in body["messages"]]

    async def history_pages(self, room: str, page_size: int = 50, *,
                            after: Optional[int] = None) -> AsyncIterator[list[Message]]:
        """Every message of a room one page at a time, following the cursors: newest
        first, or, with `after`, oldest first from the message after that seq."""
        body = await self.request("history", room=room, after=after, limit=page_size)
        while True:
            page = [_build(Message, m) for m in body["messages"]]
            if page:
                yield page
            if body.get("next") is None:
                return
            body = await self.request("history", room=room, cursor=body["next"], limit=page_size)

    async def search(self, text: str, *, room: Optional[str] = None, sender: Optional[str] = None,
                     before: Optional[int] = None, after: Optional[int] = None, order: Optional[str] = None,
                     limit: Optional[int] = None, cursor: Optional[str] = None) -> SearchPage:
        """One page of a full-text search of the user's rooms: only in `room`, only by
        `sender`, only stored `before`/`after` a time (ms), `order` `"relevance"`
        (default) or `"newest"`, `limit` 1–50, `cursor` = the previous page's `next`."""
        body = await self.request("search", query=text, room=room, **{"from": sender}, before=before,
                                  after=after, order=order, limit=limit, cursor=cursor)
        return _build(SearchPage, body)

    async def search_pages(self, text: str, **filters: Any) -> AsyncIterator[SearchPage]:
        """Every page of a search (same filters as `search`), following the cursors."""
        cursor = None
        while True:
            page = await self.search(text, cursor=cursor, **filters)
            if page.hits:
                yield page
            if page.next is None:
                return
            cursor = page.next

    async def edit(self, room: str, seq: int, text: str) -> None:
        """Edits one of the user's messages."""
        await self.request("edit", room=room, seq=seq, text=text)

    async def edit_list(self, room: str, seq: int, *, limit: Optional[int] = None,
                        cursor: Optional[str] = None) -> dict[str, Any]:
        """One page of a message's earlier texts, oldest first (room members only):
        `{"seq", "versions": [{"text", "replaced_at"}], "blocked"?, "next"?}`."""
        return await self.request("edit.list", room=room, seq=seq, limit=limit, cursor=cursor)

    async def receipt_list(self, room: str, seq: int, *, delivered: bool = False, limit: Optional[int] = None,
                           cursor: Optional[str] = None) -> dict[str, Any]:
        """One page of the members who read message `seq` (or, `delivered=True`, had it
        delivered): `{"seq", "receipts": [{"user", "delivered", "read"?}], "next"?}`."""
        return await self.request("receipt.list", room=room, seq=seq, delivered=delivered or None, limit=limit,
                                  cursor=cursor)

    async def forward(self, room: str, from_room: str, seq: int, text: str = "", *,
                      cid: Optional[str] = None) -> dict[str, Any]:
        """Forwards message `seq` of `from_room` (a room the user may read) into `room`
        with a comment; `cid` is the idempotency key (a new one when not given).
        Returns `{"seq", "ts"}`."""
        return await self.request("forward", room=room, cid=cid or f"fwd-{uuid.uuid4()}", from_room=from_room,
                                  seq=seq, text=text)

    async def pin(self, room: str, seq: int) -> None:
        """Pins a message (the room's `pin_role` and above)."""
        await self.request("pin", room=room, seq=seq)

    async def unpin(self, room: str, seq: int) -> None:
        """Unpins a message."""
        await self.request("unpin", room=room, seq=seq)

    async def pin_list(self, room: str, *, limit: Optional[int] = None,
                       cursor: Optional[str] = None) -> dict[str, Any]:
        """One page of a room's pinned messages, the most recently pinned first:
        `{"pins": [{"pinned_by", "pinned_at", "message"}], "next"?}`."""
        return await self.request("pin.list", room=room, limit=limit, cursor=cursor)

    async def delete(self, room: str, seq: int) -> None:
        """Deletes a message (a tombstone stays)."""
        await self.request("delete", room=room, seq=seq)

    async def react(self, room: str, seq: int, emoji: str) -> None:
        """Adds the user's reaction to a message."""
        await self.request("react", room=room, seq=seq, emoji=emoji)

    async def unreact(self, room: str, seq: int, emoji: str) -> None:
        """Removes the user's reaction."""
        await self.request("unreact", room=room, seq=seq, emoji=emoji)

    async def typing(self, room: str, active: bool = True) -> None:
        """Tells the room the user is (or stopped) typing."""
        await self.request("typing.start" if active else "typing.stop", room=room)

    def mark_read(self, room: str, seq: int) -> None:
        """Marks a joined room read up to `seq` (not a coroutine: sent in the background,
        coalesced, re-sent after a reconnect)."""
        self._native.mark_read(room, seq)

    # ------------------------------------------------------------ people

    async def user_get(self, user: str) -> Profile:
        """A user's profile."""
        return _build(Profile, (await self.request("user.get", user=user))["profile"])

    async def user_update(self, *, display_name: Optional[str] = None, avatar: Optional[str] = None,
                          status_text: Optional[str] = None,
                          share_read_receipts: Optional[bool] = None) -> Profile:
        """Changes the user's profile (`None` keeps a field, `""` clears it) and whether
        others see how far the user has read."""
        body = await self.request("user.update", display_name=display_name, avatar=avatar, status_text=status_text,
                                  share_read_receipts=share_read_receipts)
        return _build(Profile, body["profile"])

    async def notifications(self) -> NotificationSettings:
        """The user's notification settings (the same on every device)."""
        return _build(NotificationSettings, (await self.request("notifications.get"))["notifications"])

    async def set_notifications(self, *, level: Optional[str] = None,
                                keywords: Optional[list[str]] = None) -> NotificationSettings:
        """Changes the level of rooms without their own (`all`, `mentions`, `none`) and
        the keywords that count as mentions; `None` keeps either."""
        body = await self.request("notifications.set", level=level, keywords=keywords)
        return _build(NotificationSettings, body["notifications"])

    async def set_room_notifications(self, room: str, *, level: Optional[str] = None, muted: bool = False,
                                     muted_until: Optional[int] = None) -> NotificationSettings:
        """Replaces one room's setting: its level (`None`: the account's) and a mute
        (`muted_until` in ms since the Unix epoch; `None`: until lifted). With only
        `room`, the room follows the account's settings again."""
        body = await self.request("notifications.room", room=room, level=level, muted=muted,
                                  muted_until=muted_until)
        return _build(NotificationSettings, body["notifications"])

    async def push_subscribe(self, endpoint: str, p256dh: str, auth: str) -> None:
        """Registers a Web Push subscription: while no socket of the user is connected,
        messages their notification settings select are pushed to it."""
        await self.request("push.subscribe", endpoint=endpoint, p256dh=p256dh, auth=auth)

    async def push_unsubscribe(self, endpoint: str) -> None:
        """Forgets a Web Push subscription."""
        await self.request("push.unsubscribe", endpoint=endpoint)

    async def friend_request(self, user: str) -> None:
        """Asks a user to be friends (accepted at once if they already asked)."""
        await self.request("friend.request", user=user)

    async def friend_accept(self, user: str) -> None:
        """Accepts a user's friend request."""
        await self.request("friend.accept", user=user)

    async def presence_set(self, status: str) -> None:
        """`online`, `away` or `invisible`."""
        await self.request("presence.set", status=status)

    async def presence_subscribe(self, users: Sequence[str]) -> list[PresenceInfo]:
        """Follows users' presence; returns it now, then changes arrive as `Presence`
        events (renewed after every reconnect)."""
        body = await self.request("presence.subscribe", users=list(users))
        return [_build(PresenceInfo, p) for p in body["presence"]]

    async def presence_unsubscribe(self, users: Sequence[str]) -> None:
        """Stops following users' presence."""
        await self.request("presence.unsubscribe", users=list(users))


def _file_json(file: FileRef) -> dict:
    return _fields(
        file_id=file.file_id,
        name=file.name,
        size=file.size,
        content_type=file.content_type,
        width=file.width,
        height=file.height,
    )

"""The `palaver` Python package against a real server, driven by tests/sdk_python.rs.

Usage: python sdk_client.py URL

Chats between two clients, checks typed events, history, search, files, presence and
profiles, then resumes across a server `kill -9`: it prints `KILL` and waits for the
driving test to kill and restart the server and answer `RESTARTED` on stdin. Prints
`ALL CHECKS PASSED` at the end; any failed check exits non-zero.
"""

import asyncio
import struct
import sys

import palaver
from palaver import Client, Credentials, Message, PalaverError

URL = sys.argv[1]
PASSWORD = "password-123"
WAIT = 15


def png(width: int, height: int) -> bytes:
    """A small PNG header: enough for the server to recognise and size it."""
    ihdr = struct.pack(">II", width, height) + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + ihdr + bytes(4 + 64)


async def next_of(events: palaver.Events, kind: type, check=lambda e: True):
    """The next event of `kind` that passes `check` (others are skipped)."""

    async def find():
        async for event in events:
            if isinstance(event, kind) and check(event):
                return event
        raise AssertionError(f"the stream ended before a {kind.__name__}")

    return await asyncio.wait_for(find(), WAIT)


async def until(what: str, probe):
    """Polls `probe()` until it returns something truthy."""
    for _ in range(200):
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def chat_and_everything_else():
    alice = await Client.connect(URL, Credentials.register("alice", PASSWORD), backoff_initial=0.05, backoff_max=0.5)
    bob = await Client.connect(URL, Credentials.register("bob", PASSWORD), codec="rkyv")
    alice_events, bob_events = alice.events(), bob.events()
    assert alice.user_id.startswith("u_") and alice.is_connected
    assert alice.tokens.refresh_token

    # Rooms and messages, with typed answers.
    room = await alice.create_room("general", "public", topic="all things")
    assert isinstance(room, palaver.RoomInfo) and room.kind == "public" and room.topic == "all things"
    joined = await alice.join(room.room_id)
    assert joined.last_seq == 0 and joined.room.room_id == room.room_id
    await bob.join(room.room_id)
    member = await next_of(alice_events, palaver.Member, lambda m: m.user == bob.user_id)
    assert member.change == "joined"
    sent = await alice.send(room.room_id, "hello bob 👋")
    assert isinstance(sent, palaver.Sent) and sent.seq == 1 and not sent.duplicate
    reply = await bob.send(room.room_id, "hi alice", reply_to=1)
    for events in (alice_events, bob_events):
        first = await next_of(events, Message)
        second = await next_of(events, Message)
        assert (first.seq, first.text, first.sender) == (1, "hello bob 👋", alice.user_id), first
        assert (second.seq, second.reply_to) == (reply.seq, 1), second

    # Ephemeral events: typing, reactions, edits, deletes.
    await bob.typing(room.room_id)
    typing = await next_of(alice_events, palaver.Typing)
    assert typing.active and typing.user == bob.user_id
    await bob.react(room.room_id, 1, "👍")
    reaction = await next_of(alice_events, palaver.Reaction)
    assert (reaction.emoji, reaction.added, reaction.count) == ("👍", True, 1)
    await alice.edit(room.room_id, 1, "hello bob (edited)")
    edit = await next_of(bob_events, palaver.Edit)
    assert edit.text == "hello bob (edited)"
    await bob.delete(room.room_id, 2)
    delete = await next_of(alice_events, palaver.Delete)
    assert (delete.seq, delete.by) == (2, bob.user_id)

    # History and its pages: newest first, tombstones and aggregates included.
    page = await alice.history(room.room_id)
    assert [m.seq for m in page] == [2, 1]
    assert page[0].deleted and page[1].edited_at is not None
    assert page[1].reactions[0].emoji == "👍" and page[1].reactions[0].users == [bob.user_id]
    paged = [m.seq async for p in alice.history_pages(room.room_id, page_size=1) for m in p]
    assert paged == [2, 1], paged
    forward = [m.seq async for p in alice.history_pages(room.room_id, page_size=1, after=0) for m in p]
    assert forward == [1, 2], forward

    # Files: upload, share, download; refusals are typed errors.
    file, shared = await alice.send_file(room.room_id, "chart.png", png(320, 200), "the chart")
    assert (file.content_type, file.width, file.height) == ("image/png", 320, 200)
    image = await next_of(bob_events, Message, lambda m: m.kind == "image")
    assert image.seq == shared.seq and image.file.file_id == file.file_id and image.text == "the chart"
    assert await bob.download(file.file_id) == png(320, 200)
    notes = await alice.upload(room.room_id, "notes.txt", "übung macht den meister\n".encode())
    assert notes.content_type == "text/plain"
    try:
        await alice.upload(room.room_id, "a.out", b"\x7fELF\x02\x01\x01" + bytes(100))
        raise AssertionError("an executable was accepted")
    except PalaverError as error:
        assert error.code == "invalid", error

    # Search with filters and pages (the index commits about twice a second).
    for i in range(6):
        await (alice if i % 2 == 0 else bob).send(room.room_id, f"release notes part {i}")
    found = await until("six hits", lambda: _hits(alice, "release", limit=50, length=6))
    assert all(h.room == room.room_id for h in found.hits)
    by_bob = await alice.search("release", sender=bob.user_id, limit=50)
    assert len(by_bob.hits) == 3 and all(h.sender == bob.user_id for h in by_bob.hits)
    pages = [p async for p in alice.search_pages("release", order="newest", limit=4)]
    assert [len(p.hits) for p in pages] == [4, 2], pages
    hits = [h for p in pages for h in p.hits]
    assert all(a.ts >= b.ts for a, b in zip(hits, hits[1:])), "newest first"
    try:
        await alice.search("release", limit=500)
        raise AssertionError("a bad limit was accepted")
    except PalaverError as error:
        assert error.code == "invalid"

    # Notification settings: the same on every device, typed.
    settings = await alice.set_notifications(level="all", keywords=["release"])
    assert (settings.level, settings.keywords) == ("all", ["release"])
    changed = await next_of(alice_events, palaver.NotificationSettings)
    assert changed == settings
    muted = await alice.set_room_notifications(room.room_id, level="none", muted=True)
    assert muted.rooms == [palaver.RoomNotifications(room.room_id, "none", True, None)]
    assert await alice.notifications() == muted
    try:
        await alice.set_notifications(keywords=[""])
        raise AssertionError("an empty keyword was accepted")
    except PalaverError as error:
        assert error.code == "invalid"

    # People: display names, presence follows, invitations, friends.
    profile = await bob.user_update(display_name="Bobby")
    assert profile.shown_name == "Bobby"
    assert (await alice.user_get(bob.user_id)).display_name == "Bobby"
    snapshot = await alice.presence_subscribe([bob.user_id])
    assert snapshot[0].status == "online"
    await bob.presence_set("away")
    away = await next_of(alice_events, palaver.Presence, lambda p: p.user == bob.user_id)
    assert away.status == "away"
    club = await alice.create_room("club", "private")
    await alice.room_invite(club.room_id, bob.user_id)
    invite = await next_of(bob_events, palaver.Invite)
    assert invite.room.room_id == club.room_id and invite.by == alice.user_id
    assert (await bob.invite_accept(club.room_id)).room.name == "club"
    await alice.friend_request(bob.user_id)
    friend = await next_of(bob_events, palaver.Friend)
    assert (friend.state, friend.username) == ("incoming", "alice")
    summary = {s.room.room_id: s for s in await bob.sync()}
    assert summary[room.room_id].last_seq >= 9

    # Anything else: the generic request.
    listed = await alice.request("room.list", query="gener")
    assert any(r["room_id"] == room.room_id for r in listed["results"])

    # Errors: wrong password and taken usernames are refused at once, typed.
    for credentials, code in [
        (Credentials.password("alice", "wrong-password"), "unauthorized"),
        (Credentials.register("alice", PASSWORD), "conflict"),
    ]:
        try:
            await Client.connect(URL, credentials)
            raise AssertionError(f"{credentials} was accepted")
        except PalaverError as error:
            assert error.code == code, error
    bob.close()
    assert isinstance(await next_of(bob_events, palaver.Closed), palaver.Closed)
    return alice, alice_events, room.room_id


async def _hits(client: Client, text: str, limit: int, length: int):
    page = await client.search(text, limit=limit)
    return page if len(page.hits) == length else None


async def resume_across_a_crash(alice: Client, alice_events: palaver.Events, room: str):
    """Sends stream on while the server is killed and restarted: every message is stored
    once and seen once, in order; a session stored as tokens resumes from its position."""
    carol = await Client.connect(URL, Credentials.register("carol", PASSWORD), backoff_initial=0.05, backoff_max=0.5)
    carol_events = carol.events()
    await carol.join(room)
    start = (await alice.history(room, limit=1))[0].seq
    total = 60

    async def send_all():
        return await asyncio.gather(*(alice.send(room, f"m{i:02}") for i in range(total)))

    sending = asyncio.ensure_future(send_all())
    seen = []
    while len(seen) < 10:
        seen.append((await next_of(carol_events, Message)).seq)
    print("KILL", flush=True)
    answer = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    assert answer.strip() == "RESTARTED", answer
    while len(seen) < total:
        seen.append((await next_of(carol_events, Message)).seq)
    sent = await asyncio.wait_for(sending, WAIT * 2)
    assert seen == list(range(start + 1, start + total + 1)), seen
    assert sorted(s.seq for s in sent) == seen, "every send acknowledged with its own seq"
    stored = [m.text async for p in alice.history_pages(room, page_size=100) for m in p if m.text.startswith("m")]
    assert sorted(stored) == [f"m{i:02}" for i in range(total)], "each stored exactly once"

    # A new process would resume from stored tokens and the last seq it had.
    tokens, last = carol.tokens, seen[-20]
    carol.close()
    await alice.send(room, "while carol was away")
    again = await Client.connect(URL, Credentials.tokens(tokens))
    events = again.events()
    await again.join(room, since=last)
    replayed = [(await next_of(events, Message)).seq for _ in range(20)]
    assert replayed == list(range(last + 1, last + 21)), replayed
    again.close()
    alice.close()


async def main():
    assert set(palaver._native.EVENT_KINDS) == set(palaver.types._EVENTS), "every SDK event has a Python class"
    alice, alice_events, room = await chat_and_everything_else()
    await resume_across_a_crash(alice, alice_events, room)
    print("ALL CHECKS PASSED", flush=True)


asyncio.run(main())

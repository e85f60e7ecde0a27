"""An outside Palaver client written only from docs/PROTOCOL.md, using `websockets`.

Usage: python3 chat_client.py HOST:PORT   (exits non-zero on the first failed check)
"""
import asyncio
import json
import sys
import urllib.error
import urllib.request
import uuid

import websockets

BASE = sys.argv[1]


def post(path, body):
    request = urllib.request.Request(
        f"http://{BASE}{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Client:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    @classmethod
    async def open(cls, token):
        ws = await websockets.connect(f"ws://{BASE}/v1/ws", subprotocols=["palaver.v1.json"], max_size=4 << 20)
        assert ws.subprotocol == "palaver.v1.json"
        client = cls(ws)
        ok = await client.ok("auth", token=token)
        assert ok["user_id"].startswith("u_") and ok["session_id"].startswith("s_"), ok
        return client

    async def request(self, op, **fields):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "op": op, **fields}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if "ev" in frame:
                self.events.append(frame)
            elif frame["re"] == self.next_id:
                return frame

    async def ok(self, op, **fields):
        frame = await self.request(op, **fields)
        assert "ok" in frame, f"{op} failed: {frame}"
        return frame["ok"]

    async def message(self):
        """The next `message` event; other events (member, typing, …) are skipped."""
        while True:
            while not self.events:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
                assert "ev" in frame, frame
                self.events.append(frame)
            event = self.events.pop(0)
            if event["ev"] == "message":
                return event


async def main():
    status, alice = post("/v1/auth/register", {"username": "py_alice", "password": "s3cret-pass"})
    assert status == 201 and alice["user_id"].startswith("u_"), (status, alice)
    status, _ = post("/v1/auth/register", {"username": "py_alice", "password": "s3cret-pass"})
    assert status == 409, status
    post("/v1/auth/register", {"username": "py_bob", "password": "s3cret-pass"})
    status, bob = post("/v1/auth/login", {"username": "py_bob", "password": "s3cret-pass"})
    assert status == 200, status
    status, wrong = post("/v1/auth/login", {"username": "py_bob", "password": "nope-nope"})
    assert status == 401 and wrong["error"]["code"] == "unauthorized", wrong

    a = await Client.open(alice["access_token"])
    b = await Client.open(bob["access_token"])
    room = (await a.ok("room.create", name="python room ☕", kind="public"))["room"]
    assert room["kind"] == "public" and room["name"] == "python room ☕"
    rid = room["room_id"]
    assert (await a.ok("join", room=rid))["last_seq"] == 0
    assert (await b.ok("join", room=rid))["last_seq"] == 0

    cid = str(uuid.uuid4())
    sent = await a.ok("send", room=rid, cid=cid, kind="text", text="hello from python", client_ts=123)
    assert sent["seq"] == 1 and "ts" in sent, sent
    again = await a.ok("send", room=rid, cid=cid, kind="text", text="hello from python")
    assert again["seq"] == 1 and again.get("duplicate") is True, again
    event = await b.message()
    assert event["ev"] == "message" and event["seq"] == 1 and event["text"] == "hello from python", event
    assert event["sender"] == alice["user_id"] and event["client_ts"] == 123, event

    for i in range(2, 8):
        await b.ok("send", room=rid, cid=str(uuid.uuid4()), text=f"bob {i}")
    page = (await a.ok("history", room=rid, limit=3))["messages"]
    assert [m["seq"] for m in page] == [7, 6, 5], page
    page = (await a.ok("history", room=rid, before=5, limit=10))["messages"]
    assert [m["seq"] for m in page] == [4, 3, 2, 1], page

    bad = await a.request("send", room=rid, cid="x", text="x" * 2001)
    assert bad["err"]["code"] == "too_large", bad
    await a.ws.send("this is not json")
    garbage = json.loads(await a.ws.recv())
    assert garbage["err"]["code"] == "invalid", garbage
    await a.ok("ping")

    # Resume: bob drops, misses messages, and rejoins with since.
    await b.ws.close()
    for i in range(8, 11):
        await a.ok("send", room=rid, cid=str(uuid.uuid4()), text=f"missed {i}")
    b = await Client.open(bob["access_token"])
    assert (await b.ok("join", room=rid, since=7))["last_seq"] == 10
    replayed = [(await b.message())["seq"] for _ in range(3)]
    assert replayed == [8, 9, 10], replayed

    private = (await a.ok("room.create", name="secret", kind="private"))["room"]["room_id"]
    refused = await b.request("join", room=private)
    assert refused["err"]["code"] == "forbidden", refused
    print("ALL CHECKS PASSED")


asyncio.run(main())

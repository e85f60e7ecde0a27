"""Clients that negotiate permessage-deflate (as `websockets` and browsers do by default)
and clients that do not, chatting in one room: everyone must see the same messages.

Usage: python3 deflate_clients.py HOST:PORT   (exits non-zero on the first failed check)
"""
import asyncio
import json
import sys
import urllib.request
import uuid

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate

BASE = sys.argv[1]


def post(path, body):
    request = urllib.request.Request(
        f"http://{BASE}{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def account(name):
    post("/v1/auth/register", {"username": name, "password": "s3cret-pass"})
    return post("/v1/auth/login", {"username": name, "password": "s3cret-pass"})["access_token"]


class Client:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    @classmethod
    async def open(cls, token, **options):
        ws = await websockets.connect(
            f"ws://{BASE}/v1/ws", subprotocols=["palaver.v1.json"], max_size=4 << 20,
            additional_headers={"authorization": f"Bearer {token}"}, **options)
        return cls(ws)

    def deflate(self):
        """The negotiated permessage-deflate, if any."""
        found = [e for e in self.ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
        return found[0] if found else None

    async def ok(self, op, **fields):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "op": op, **fields}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if "ev" in frame:
                self.events.append(frame)
            elif frame["re"] == self.next_id:
                assert "ok" in frame, f"{op} failed: {frame}"
                return frame["ok"]

    async def message(self):
        while True:
            while not self.events:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
                if "ev" in frame:
                    self.events.append(frame)
            event = self.events.pop(0)
            if event["ev"] == "message":
                return event


async def main():
    # Browser-like: permessage-deflate offered with client_max_window_bits.
    deflating = await Client.open(account("py_deflate"))
    negotiated = deflating.deflate()
    assert negotiated is not None, "permessage-deflate was not negotiated"
    # The server compresses each message on its own and asks the same of the client.
    assert negotiated.remote_no_context_takeover and negotiated.local_no_context_takeover, vars(negotiated)
    plain = await Client.open(account("py_plain"), compression=None)
    assert plain.deflate() is None
    # A client whose decompressor keeps only a 256-byte window.
    narrow = await Client.open(
        account("py_narrow"), compression=None,
        extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=8)])
    assert narrow.deflate() is not None and narrow.deflate().remote_max_window_bits == 8

    room = (await deflating.ok("room.create", name="deflate room", kind="public"))["room"]["room_id"]
    for client in (deflating, plain, narrow):
        await client.ok("join", room=room)

    # Short and long texts, from a compressing and a plain sender; the long one repeats
    # itself 300 bytes back, beyond the narrow client's window.
    block = "".join(chr(0x61 + (i * 7919) % 26) for i in range(300))
    texts = [
        ("hi", deflating),
        ("a chat-sized line: " + "lorem ipsum dolor sit amet " * 4, plain),
        ("κόσμε ☕ " + block * 6, deflating),
        (block * 6, plain),
    ]
    for text, sender in texts:
        sent = await sender.ok("send", room=room, cid=str(uuid.uuid4()), text=text)
        seen = [await client.message() for client in (deflating, plain, narrow)]
        for event in seen:
            assert event["seq"] == sent["seq"] and event["text"] == text, (event, text)
        assert seen[0] == seen[1] == seen[2], seen
    for client in (deflating, plain, narrow):
        await client.ws.close()
    print("ALL CHECKS PASSED")


asyncio.run(main())

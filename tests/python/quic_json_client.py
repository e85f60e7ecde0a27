"""An outside Palaver client over QUIC, written from docs/PROTOCOL.md §7.3 alone, using
`aioquic`: ALPN palaver/1+json, one bidirectional stream, each JSON frame behind its
length as a u32 little-endian.

Usage: python3 quic_json_client.py HTTP_HOST:PORT QUIC_HOST:PORT CERT_PEM
(exits non-zero on the first failed check)
"""
import asyncio
import json
import ssl
import struct
import sys
import urllib.request
import uuid

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived

HTTP, QUIC, CERT = sys.argv[1], sys.argv[2], sys.argv[3]


def register(username):
    request = urllib.request.Request(
        f"http://{HTTP}/v1/auth/register",
        data=json.dumps({"username": username, "password": "password-123"}).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Palaver(QuicConnectionProtocol):
    """One stream; frames are parsed as they arrive and queued."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stream = None
        self.buffer = b""
        self.frames = asyncio.Queue()
        self.next_id = 0
        self.events = []

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived) and event.stream_id == self.stream:
            self.buffer += event.data
            while len(self.buffer) >= 4:
                (length,) = struct.unpack("<I", self.buffer[:4])
                if len(self.buffer) < 4 + length:
                    break
                self.frames.put_nowait(json.loads(self.buffer[4:4 + length]))
                self.buffer = self.buffer[4 + length:]

    def send_frame(self, frame):
        if self.stream is None:
            self.stream = self._quic.get_next_available_stream_id()
        payload = json.dumps(frame).encode()
        self._quic.send_stream_data(self.stream, struct.pack("<I", len(payload)) + payload)
        self.transmit()

    async def request(self, op, **fields):
        self.next_id += 1
        self.send_frame({"id": self.next_id, "op": op, **fields})
        while True:
            frame = await asyncio.wait_for(self.frames.get(), 10)
            if "ev" in frame:
                self.events.append(frame)
            elif frame.get("re") == self.next_id:
                return frame

    async def ok(self, op, **fields):
        frame = await self.request(op, **fields)
        assert "ok" in frame, f"{op} failed: {frame}"
        return frame["ok"]

    async def event(self, name):
        while True:
            for i, frame in enumerate(self.events):
                if frame["ev"] == name:
                    return self.events.pop(i)
            self.events.append(await asyncio.wait_for(self.frames.get(), 10))


async def session(token, run):
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["palaver/1+json"])
    configuration.load_verify_locations(CERT)
    configuration.server_name = "localhost"
    host, port = QUIC.rsplit(":", 1)
    async with connect(host, int(port), configuration=configuration, create_protocol=Palaver) as client:
        assert client._quic.tls.alpn_negotiated == "palaver/1+json"
        authed = await client.ok("auth", token=token)
        assert authed["user_id"].startswith("u_"), authed
        return await run(client)


async def main():
    suffix = uuid.uuid4().hex[:8]
    alice = register(f"qalice{suffix}")
    bob = register(f"qbob{suffix}")
    joined = asyncio.Event()
    room_ready = asyncio.get_running_loop().create_future()

    async def as_alice(client):
        room = (await client.ok("room.create", name="over quic", kind="public"))["room"]
        await client.ok("join", room=room["room_id"])
        room_ready.set_result(room["room_id"])
        await asyncio.wait_for(joined.wait(), 10)
        sent = await client.ok("send", room=room["room_id"], cid=str(uuid.uuid4()), kind="text",
                               text="hello over QUIC ☕")
        assert sent["seq"] >= 1, sent
        # Errors are JSON too, and name what was wrong.
        bad = await client.request("send", room=room["room_id"], cid="x", kind="text", text="")
        assert "err" in bad and bad["err"]["code"] == "invalid", bad
        return sent["seq"]

    async def as_bob(client):
        room = await asyncio.wait_for(room_ready, 10)
        await client.ok("join", room=room)
        joined.set()
        event = await client.event("message")
        assert event["text"] == "hello over QUIC ☕", event
        return event["seq"]

    sent, seen = await asyncio.gather(session(alice["access_token"], as_alice),
                                      session(bob["access_token"], as_bob))
    assert sent == seen, (sent, seen)
    print("ALL CHECKS PASSED")


asyncio.run(main())

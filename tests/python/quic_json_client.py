"""An outside Palaver client over QUIC, written from docs/PROTOCOL.md §7.3 alone, using
`aioquic`: ALPN palaver/1+json; the client's bidirectional stream carries requests and
replies, the server's unidirectional streams carry each room's events, datagrams carry
`typing`; on streams each JSON frame is behind its length as a u32 little-endian.

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
from aioquic.quic.events import DatagramFrameReceived, StreamDataReceived

HTTP, QUIC, CERT = sys.argv[1], sys.argv[2], sys.argv[3]


def register(username):
    request = urllib.request.Request(
        f"http://{HTTP}/v1/auth/register",
        data=json.dumps({"username": username, "password": "password-123"}).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def server_uni(stream_id):
    """Stream ids whose two low bits are 0b11 are unidirectional streams the server opened."""
    return stream_id & 3 == 3


class Palaver(QuicConnectionProtocol):
    """Frames from every stream are parsed as they arrive and queued with where they came
    from: the control stream, a server stream (by id), or a datagram."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stream = None
        self.buffers = {}
        self.frames = asyncio.Queue()
        self.next_id = 0
        self.events = []
        self.came_on = {}

    def quic_event_received(self, event):
        if isinstance(event, DatagramFrameReceived):
            self.frames.put_nowait(("datagram", json.loads(event.data)))
        elif isinstance(event, StreamDataReceived):
            if event.stream_id != self.stream and not server_uni(event.stream_id):
                return
            buffer = self.buffers.get(event.stream_id, b"") + event.data
            while len(buffer) >= 4:
                (length,) = struct.unpack("<I", buffer[:4])
                if len(buffer) < 4 + length:
                    break
                self.frames.put_nowait((event.stream_id, json.loads(buffer[4:4 + length])))
                buffer = buffer[4 + length:]
            self.buffers[event.stream_id] = buffer

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
            came_on, frame = await asyncio.wait_for(self.frames.get(), 10)
            if "ev" in frame:
                self.events.append((came_on, frame))
            elif frame.get("re") == self.next_id:
                assert came_on == self.stream, f"a reply on {came_on}: {frame}"
                return frame

    async def ok(self, op, **fields):
        frame = await self.request(op, **fields)
        assert "ok" in frame, f"{op} failed: {frame}"
        return frame["ok"]

    async def event(self, name):
        """The next event called `name`, and where it came from."""
        while True:
            for i, (came_on, frame) in enumerate(self.events):
                if frame["ev"] == name:
                    self.events.pop(i)
                    return came_on, frame
            self.events.append(await asyncio.wait_for(self.frames.get(), 10))

    def send_datagram(self, frame):
        self._quic.send_datagram_frame(json.dumps(frame).encode())
        self.transmit()


async def session(token, run):
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["palaver/1+json"],
                                      max_datagram_frame_size=65536)
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
    typing_seen = asyncio.Event()
    room_ready = asyncio.get_running_loop().create_future()

    async def as_alice(client):
        room = (await client.ok("room.create", name="over quic", kind="public"))["room"]
        await client.ok("join", room=room["room_id"])
        room_ready.set_result(room["room_id"])
        await asyncio.wait_for(joined.wait(), 10)
        sent = await client.ok("send", room=room["room_id"], cid=str(uuid.uuid4()), kind="text",
                               text="hello over QUIC ☕")
        assert sent["seq"] >= 1, sent
        # typing as a datagram: no reply comes; Bob sees it (as a datagram too).
        client.send_datagram({"id": 0, "op": "typing.start", "room": room["room_id"]})
        await asyncio.wait_for(typing_seen.wait(), 10)
        # Errors are JSON too, and name what was wrong.
        bad = await client.request("send", room=room["room_id"], cid="x", kind="text", text="")
        assert "err" in bad and bad["err"]["code"] == "invalid", bad
        return sent["seq"]

    async def as_bob(client):
        room = await asyncio.wait_for(room_ready, 10)
        await client.ok("join", room=room)
        joined.set()
        came_on, event = await client.event("message")
        assert event["text"] == "hello over QUIC ☕", event
        assert server_uni(came_on), f"a room event on stream {came_on}"
        came_on, typing = await client.event("typing")
        assert came_on == "datagram" and typing["active"] is True, (came_on, typing)
        assert typing["room"] == event["room"], typing
        typing_seen.set()
        return event["seq"]

    async def resume_bob(client):
        # A new connection resumes the room from seq 0: the message is replayed on the
        # room's stream.
        room = room_ready.result()
        await client.ok("join", room=room, since=0)
        came_on, event = await client.event("message")
        assert server_uni(came_on) and event["text"] == "hello over QUIC ☕", (came_on, event)
        return event["seq"]

    sent, seen = await asyncio.gather(session(alice["access_token"], as_alice),
                                      session(bob["access_token"], as_bob))
    assert sent == seen, (sent, seen)
    replayed = await session(bob["access_token"], resume_bob)
    assert replayed == sent, (replayed, sent)
    print("ALL CHECKS PASSED")


asyncio.run(main())

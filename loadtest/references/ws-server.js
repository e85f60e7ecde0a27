// The fastest common Node option: the `ws` package, speaking Palaver's JSON protocol
// (docs/PROTOCOL.md: auth, room.create, join with since, send with cid, history),
// in memory, each event serialized once per broadcast.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');
const c = require('./common');

const server = http.createServer(c.httpHandler);
const wss = new WebSocketServer({ server, path: '/v1/ws', maxPayload: 1 << 20,
  handleProtocols: (ps) => (ps.has('palaver.v1.json') ? 'palaver.v1.json' : false) });
const subscribers = new Map(); // room id -> Set<ws>

function reply(ws, id, ok) { ws.send(JSON.stringify({ re: id, ok })); }
function fail(ws, id, code, message) { ws.send(JSON.stringify({ re: id, err: { code, message } })); }

wss.on('connection', (ws) => {
  ws.rooms = new Set();
  ws.on('message', (data, isBinary) => {
    let f;
    try { f = JSON.parse(data); } catch { return fail(ws, null, 'invalid', 'not json'); }
    const id = f.id;
    if (!ws.userId && f.op !== 'auth') return fail(ws, id, 'unauthorized', 'auth first');
    switch (f.op) {
      case 'auth':
        try { ws.userId = c.verify(f.token); } catch { return fail(ws, id, 'unauthorized', 'bad token'); }
        return reply(ws, id, { user_id: ws.userId, session_id: 's_' + id });
      case 'room.create': {
        const room = c.createRoom(String(f.name || 'room'), f.kind === 'private' ? 'private' : 'public', ws.userId);
        return reply(ws, id, { room: { room_id: room.id, name: room.name, kind: room.kind } });
      }
      case 'join': {
        const room = c.rooms.get(f.room);
        if (!room) return fail(ws, id, 'not_found', 'no such room');
        if (room.kind === 'private' && !room.members.has(ws.userId)) return fail(ws, id, 'forbidden', 'private');
        room.members.add(ws.userId);
        if (!subscribers.has(room.id)) subscribers.set(room.id, new Set());
        subscribers.get(room.id).add(ws);
        ws.rooms.add(room.id);
        reply(ws, id, { room: { room_id: room.id, name: room.name, kind: room.kind }, last_seq: room.seq });
        if (Number.isInteger(f.since)) for (const m of room.messages) if (m.seq > f.since) ws.send(JSON.stringify({ ev: 'message', ...m }));
        return;
      }
      case 'send': {
        const room = c.rooms.get(f.room);
        if (!room) return fail(ws, id, 'not_found', 'no such room');
        if (!room.members.has(ws.userId)) return fail(ws, id, 'forbidden', 'not a member');
        if (typeof f.text !== 'string') return fail(ws, id, 'invalid', 'text');
        if (f.text.length > 2000) return fail(ws, id, 'too_large', 'text too long');
        const [msg, isNew] = c.store(room, ws.userId, f.cid, f.kind || 'text', f.text);
        if (!isNew) return reply(ws, id, { seq: msg, ts: 0 });
        reply(ws, id, { seq: msg.seq, ts: msg.ts });
        const event = JSON.stringify({ ev: 'message', ...msg, client_ts: f.client_ts });
        for (const s of subscribers.get(room.id) || []) s.send(event);
        return;
      }
      case 'history': {
        const room = c.rooms.get(f.room);
        if (!room) return fail(ws, id, 'not_found', 'no such room');
        if (!room.members.has(ws.userId)) return fail(ws, id, 'forbidden', 'not a member');
        const before = Number.isInteger(f.before) ? f.before : Infinity;
        const limit = Math.min(Number(f.limit) || 50, 200);
        const out = [];
        for (let i = room.messages.length - 1; i >= 0 && out.length < limit; i--) if (room.messages[i].seq < before) out.push(room.messages[i]);
        return reply(ws, id, { messages: out });
      }
      default:
        return fail(ws, id, 'invalid', 'unknown op');
    }
  });
  ws.on('close', () => { for (const r of ws.rooms) subscribers.get(r)?.delete(ws); });
});

c.listen(server, 'ws-baseline');

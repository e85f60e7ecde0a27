// The usual Node chat stack, in memory: Socket.io v4 with JWT handshake auth, rooms, and
// 'send-message' broadcast to the room as 'new-message' (MongoDB replaced by arrays,
// which only flatters this baseline). Events:
//   'create-room' {name, kind}          ack {roomId}
//   'join-room'   {roomId}              ack {ok, lastSeq}
//   'send-message' {roomId, content, type, cid, clientTs}  ack {seq}; room gets 'new-message'
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const c = require('./common');

const server = http.createServer(c.httpHandler);
const io = new Server(server, { serveClient: false, maxHttpBufferSize: 1e6, cors: { origin: '*' } });

io.use((socket, next) => {
  try { socket.userId = c.verify(socket.handshake.auth.token); next(); }
  catch { next(new Error('Authentication error')); }
});

io.on('connection', (socket) => {
  socket.on('create-room', (d, ack) => {
    const room = c.createRoom(String(d?.name || 'room'), d?.kind === 'private' ? 'private' : 'public', socket.userId);
    socket.join(room.id);
    if (typeof ack === 'function') ack({ roomId: room.id });
  });
  socket.on('join-room', (d, ack) => {
    const room = c.rooms.get(d?.roomId);
    if (!room || (room.kind === 'private' && !room.members.has(socket.userId))) {
      if (typeof ack === 'function') ack({ error: 'Permission denied' });
      return;
    }
    room.members.add(socket.userId);
    socket.join(room.id);
    if (typeof ack === 'function') ack({ ok: true, lastSeq: room.seq });
  });
  socket.on('send-message', (d, ack) => {
    const room = c.rooms.get(d?.roomId);
    if (!room || !room.members.has(socket.userId) || typeof d.content !== 'string' || d.content.length > 2000) {
      if (typeof ack === 'function') ack({ error: 'Permission denied' });
      return socket.emit('error', { message: 'Permission denied' });
    }
    const [msg, isNew] = c.store(room, socket.userId, d.cid, d.type || 'text', d.content);
    if (isNew) io.to(room.id).emit('new-message', { ...msg, clientTs: d.clientTs });
    if (typeof ack === 'function') ack({ seq: isNew ? msg.seq : msg });
  });
  socket.on('typing-start', (d) => socket.to(d?.roomId).emit('user-typing', { userId: socket.userId }));
  socket.on('typing-stop', (d) => socket.to(d?.roomId).emit('user-stopped-typing', { userId: socket.userId }));
});

c.listen(server, 'socketio-baseline');

// The web example: the Palaver SDK compiled to WebAssembly (wasm-bindgen --target web
// writes ./pkg). Query parameters: server (base URL of the Palaver server, default this
// page's origin), token (an access token; without one a login form is shown, which needs
// the server to allow this page's origin), room (a room id; without one a room is made).
import init, { PalaverClient } from './pkg/palaver_sdk.js';

const params = new URLSearchParams(location.search);
const status = document.getElementById('status');
const list = document.getElementById('messages');
const text = document.getElementById('text');
const sendButton = document.getElementById('send');

function setStatus(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

// Messages are plain text: textContent only, never markup.
function show(message) {
  if (list.querySelector(`li[data-seq="${message.seq}"]`)) return;
  const item = document.createElement('li');
  item.dataset.seq = String(message.seq);
  const seq = document.createElement('span');
  seq.className = 'seq';
  seq.textContent = `#${message.seq}`;
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = message.sender;
  item.append(seq, sender, document.createTextNode(message.text));
  list.append(item);
}

async function start(connect, roomId) {
  setStatus('connecting', 'connecting…');
  const client = await connect();
  client.onEvent((event) => {
    switch (event.type) {
      case 'message': show(event.message); client.markRead(event.message.room, event.message.seq); break;
      case 'disconnected': setStatus('reconnecting', `reconnecting: ${event.reason}`); break;
      case 'connected': if (status.dataset.state === 'reconnecting') setStatus('joined', `in ${roomId} as ${client.userId()}`); break;
      case 'closed': setStatus('closed', 'closed'); break;
    }
  });
  if (!roomId) roomId = await client.createRoom('web example');
  await client.join(roomId, 0);
  setStatus('joined', `in ${roomId} as ${client.userId()}`);
  text.disabled = false;
  sendButton.disabled = false;
  document.getElementById('composer').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = text.value;
    if (!body.trim()) return;
    text.value = '';
    try {
      await client.send(roomId, body);
    } catch (err) {
      setStatus('error', `send failed: ${err.message ?? err}`);
    }
  });
}

async function main() {
  await init();
  const server = params.get('server') || location.origin;
  const token = params.get('token');
  if (token) {
    await start(() => PalaverClient.connectWithToken(server, token), params.get('room'));
    return;
  }
  const form = document.getElementById('login');
  form.hidden = false;
  setStatus('login', 'log in');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    form.hidden = true;
    const user = document.getElementById('username').value;
    const password = document.getElementById('password').value;
    const room = document.getElementById('room').value || params.get('room');
    start(() => PalaverClient.connectWithPassword(server, user, password), room)
      .catch((err) => setStatus('error', `error: ${err.message ?? err}`));
  });
}

main().catch((err) => setStatus('error', `error: ${err.message ?? err}`));

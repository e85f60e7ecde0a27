// The built-in chat page: plain JavaScript on the JSON protocol (docs/PROTOCOL.md), the
// way any client can talk to Palaver — register or log in over HTTP, one WebSocket with
// the `palaver.v1.json` subprotocol, requests with ids and answers with `re`, events with
// `ev`. Tokens live in this page's memory only: a reload means signing in again.
"use strict";

const $ = (id) => document.getElementById(id);

const session = {
  username: "",
  userId: "",
  access: "",
  refresh: "",
  expiresAt: 0,
};
const link = { ws: null, nextId: 1, pending: new Map(), backoff: 500, timer: 0 };
const view = {
  room: "",
  lastSeq: new Map(), // room -> newest seq shown
  readSent: new Map(), // room -> read watermark sent
  names: new Map(), // user id -> username
  reads: new Map(), // user id -> read watermark in the current room
  typing: new Map(), // user id -> timer clearing the indicator
  typingSentAt: 0,
};

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function showError(error) {
  $("error").textContent = error ? String(error.message ?? error) : "";
}

// ------------------------------------------------------------------ accounts

async function authRoute(route, body) {
  const answer = await fetch(`/v1/auth/${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const error = new Error(json.error?.message ?? `HTTP ${answer.status}`);
    error.code = json.error?.code;
    throw error;
  }
  return json;
}

function keepTokens(json) {
  session.access = json.access_token;
  session.refresh = json.refresh_token;
  session.expiresAt = Date.now() + (json.expires_in ?? 900) * 1000;
}

// An access token good for a while: refreshed (refresh tokens are single use, and only
// `connect` asks, one at a time) when the current one is about to expire.
async function accessToken() {
  if (Date.now() < session.expiresAt - 10_000) return session.access;
  keepTokens(await authRoute("refresh", { refresh_token: session.refresh }));
  return session.access;
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const route = event.submitter?.value === "register" ? "register" : "login";
  const username = $("username").value.trim();
  $("sign-in-error").textContent = "";
  try {
    const json = await authRoute(route, { username, password: $("password").value });
    keepTokens(json);
    session.username = username.toLowerCase();
    session.userId = json.user_id;
    view.names.set(json.user_id, session.username);
    $("sign-in").hidden = true;
    $("chat").hidden = false;
    connect();
  } catch (error) {
    $("sign-in-error").textContent = error.message;
  }
});

// ------------------------------------------------------------------ the socket

function connect() {
  clearTimeout(link.timer);
  setStatus("connecting", "connecting…");
  accessToken().then(open, (error) => {
    if (error.code === "unauthorized") {
      // The session is over (the refresh token was refused): sign in again.
      setStatus("signed-out", "signed out: please sign in again");
      $("chat").hidden = true;
      $("sign-in").hidden = false;
    } else {
      reconnectLater();
    }
  });
}

function open(token) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/ws`, "palaver.v1.json");
  link.ws = ws;
  ws.onmessage = (event) => onFrame(JSON.parse(event.data));
  ws.onclose = () => {
    if (link.ws !== ws) return;
    link.ws = null;
    for (const { reject } of link.pending.values()) reject(new Error("connection lost"));
    link.pending.clear();
    reconnectLater();
  };
  ws.onopen = async () => {
    try {
      await call({ op: "auth", token });
      link.backoff = 500;
      setStatus("connected", `signed in as ${session.username}`);
      showError(null);
      await loadRooms();
      if (view.room) await enterRoom(view.room);
    } catch (error) {
      showError(error);
      ws.close();
    }
  };
}

function reconnectLater() {
  setStatus("reconnecting", "reconnecting…");
  link.timer = setTimeout(connect, link.backoff);
  link.backoff = Math.min(link.backoff * 2, 10_000);
}

// One request: resolves with its `ok`, rejects with its `err`.
function call(request) {
  return new Promise((resolve, reject) => {
    if (!link.ws || link.ws.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected"));
      return;
    }
    const id = link.nextId++;
    link.pending.set(id, { resolve, reject });
    link.ws.send(JSON.stringify({ id, ...request }));
  });
}

function onFrame(frame) {
  if ("re" in frame) {
    const waiting = link.pending.get(frame.re);
    if (!waiting) return;
    link.pending.delete(frame.re);
    if (frame.ok) waiting.resolve(frame.ok);
    else waiting.reject(new Error(frame.err?.message ?? "refused"));
    return;
  }
  switch (frame.ev) {
    case "message":
      showMessage(frame);
      break;
    case "typing":
      showTyping(frame);
      break;
    case "receipt":
      if (frame.room === view.room && frame.user !== session.userId) {
        view.reads.set(frame.user, Math.max(view.reads.get(frame.user) ?? 0, frame.read));
        showReceipts();
      }
      break;
    case "presence":
      for (const item of $("members").querySelectorAll("li")) {
        if (item.dataset.user === frame.user) item.dataset.presence = frame.status;
      }
      break;
    case "member":
      if (frame.room === view.room) loadMembers(view.room).catch(showError);
      break;
    case "thread":
      if (frame.room === view.room) showThreadSummary(frame.root, frame.summary);
      break;
  }
}

// ------------------------------------------------------------------ rooms

async function loadRooms() {
  const { results } = await call({ op: "room.list", limit: 100 });
  const list = $("rooms");
  list.replaceChildren();
  for (const room of results) {
    const item = document.createElement("li");
    item.dataset.room = room.room_id;
    if (room.room_id === view.room) item.dataset.current = "";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = room.name;
    button.addEventListener("click", () => switchRoom(room.room_id));
    item.append(button);
    list.append(item);
  }
}

$("refresh-rooms").addEventListener("click", () => loadRooms().catch(showError));

$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const { room } = await call({ op: "room.create", name: $("new-room").value.trim(), kind: "public" });
    $("new-room").value = "";
    await switchRoom(room.room_id);
    await loadRooms();
  } catch (error) {
    showError(error);
  }
});

async function switchRoom(room) {
  if (view.room && view.room !== room) call({ op: "leave", room: view.room }).catch(() => {});
  view.room = room;
  view.reads.clear();
  view.typing.clear();
  $("messages").replaceChildren();
  $("typing").textContent = "";
  view.lastSeq.delete(room);
  for (const item of $("rooms").querySelectorAll("li")) {
    if (item.dataset.room === room) item.dataset.current = "";
    else delete item.dataset.current;
  }
  try {
    await enterRoom(room);
  } catch (error) {
    showError(error);
  }
}

// Joins the room: the first time with its latest page of history, after a reconnect with
// `since` (the server replays what was missed, in order).
async function enterRoom(room) {
  const since = view.lastSeq.get(room);
  const joined = await call(since === undefined ? { op: "join", room } : { op: "join", room, since });
  $("room-title").textContent = joined.room.name;
  $("room-title").dataset.room = room;
  if (since === undefined) {
    const { messages } = await call({ op: "history", room, limit: 50 });
    for (const message of messages.reverse()) showMessage(message);
    if (!view.lastSeq.has(room)) view.lastSeq.set(room, joined.last_seq);
  }
  $("text").disabled = false;
  $("send").disabled = false;
  await loadMembers(room);
  markRead();
}

async function loadMembers(room) {
  const { members } = await call({ op: "room.members", room, limit: 100 });
  const list = $("members");
  list.replaceChildren();
  for (const member of members) {
    view.names.set(member.user, member.username);
    const item = document.createElement("li");
    item.dataset.user = member.user;
    item.dataset.presence = member.presence;
    item.textContent = member.username;
    list.append(item);
  }
  const others = members.map((m) => m.user).filter((u) => u !== session.userId);
  if (others.length) {
    const { presence } = await call({ op: "presence.subscribe", users: others });
    for (const info of presence) onFrame({ ev: "presence", ...info });
  }
  for (const item of $("messages").querySelectorAll(".sender")) {
    item.textContent = view.names.get(item.dataset.user) ?? item.dataset.user;
  }
}

// ------------------------------------------------------------------ messages

function showMessage(message) {
  if (message.room !== view.room) return;
  const list = $("messages");
  const existing = list.querySelector(`li[data-seq="${message.seq}"]`);
  const item = existing ?? document.createElement("li");
  item.dataset.seq = String(message.seq);
  item.dataset.sender = message.sender;
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.dataset.user = message.sender;
  sender.textContent = view.names.get(message.sender) ?? message.sender;
  const body = document.createElement("span");
  body.className = "text";
  // Text only, never markup.
  if (message.deleted) body.textContent = "(deleted)";
  else if (message.kind === "system") body.className = "text system";
  if (!message.deleted) {
    body.textContent = message.file ? `${message.text} [${message.kind}: ${message.file.name}]` : message.text;
  }
  // A thread reply names its root; a root shows how many replies it has.
  if (message.thread) body.textContent = `(in thread #${message.thread}) ${body.textContent}`;
  const thread = document.createElement("span");
  thread.className = "thread";
  const receipt = document.createElement("span");
  receipt.className = "receipt";
  item.replaceChildren(sender, body, thread, receipt);
  if (message.thread_summary) showThreadSummary(message.seq, message.thread_summary, item);
  if (!existing) {
    const later = [...list.children].find((li) => Number(li.dataset.seq) > message.seq);
    list.insertBefore(item, later ?? null);
  }
  if (message.seq > (view.lastSeq.get(message.room) ?? 0)) view.lastSeq.set(message.room, message.seq);
  item.scrollIntoView({ block: "nearest" });
  // A message ends its sender's typing.
  clearTyping(message.sender);
  showReceipts();
  markRead();
}

function showThreadSummary(root, summary, item) {
  const target = item ?? $("messages").querySelector(`li[data-seq="${root}"]`);
  const label = target?.querySelector(".thread");
  if (!label) return;
  label.textContent = summary.count ? ` · ${summary.count} ${summary.count === 1 ? "reply" : "replies"}` : "";
}

// Tells the room how far this user has read, when the page is in view.
function markRead() {
  const room = view.room;
  const seq = view.lastSeq.get(room) ?? 0;
  if (!room || !seq || document.visibilityState !== "visible" || seq <= (view.readSent.get(room) ?? 0)) return;
  view.readSent.set(room, seq);
  call({ op: "receipt", room, read: seq }).catch(() => view.readSent.delete(room));
}

document.addEventListener("visibilitychange", markRead);

// Under each of this user's messages: who has read it.
function showReceipts() {
  for (const item of $("messages").children) {
    if (item.dataset.sender !== session.userId) continue;
    const readers = [...view.reads]
      .filter(([, read]) => read >= Number(item.dataset.seq))
      .map(([user]) => view.names.get(user) ?? user);
    item.querySelector(".receipt").textContent = readers.length ? `✓ read by ${readers.join(", ")}` : "";
  }
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !view.room) return;
  $("text").value = "";
  view.typingSentAt = 0;
  try {
    await call({ op: "send", room: view.room, cid: newCid(), text });
    showError(null);
  } catch (error) {
    $("text").value = text;
    showError(error);
  }
});

function newCid() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ typing

// While the user types, the room hears `typing.start` at most every 3 s (the server lets
// an indicator lapse after a few seconds without one).
$("text").addEventListener("input", () => {
  if (!view.room || !$("text").value) return;
  const now = Date.now();
  if (now - view.typingSentAt < 3_000) return;
  view.typingSentAt = now;
  call({ op: "typing.start", room: view.room }).catch(() => {});
});

function showTyping(event) {
  if (event.room !== view.room || event.user === session.userId) return;
  clearTyping(event.user);
  if (event.active) {
    view.typing.set(event.user, setTimeout(() => clearTyping(event.user), event.expires_in_ms ?? 6_000));
  }
  renderTyping();
}

function clearTyping(user) {
  clearTimeout(view.typing.get(user));
  if (view.typing.delete(user)) renderTyping();
}

function renderTyping() {
  const names = [...view.typing.keys()].map((user) => view.names.get(user) ?? user);
  $("typing").textContent =
    names.length === 0 ? "" : `${names.join(" and ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

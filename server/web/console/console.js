// The admin console: plain JavaScript on the admin routes (docs/PROTOCOL.md, "The admin
// console"). The session lives in HttpOnly cookies this script cannot read; what it
// keeps is the anti-forgery token, sent as X-CSRF-Token with every change. Everything
// shown is set as text, never as markup: names, reasons and notes come from users.
"use strict";

const $ = (id) => document.getElementById(id);
const STATS_EVERY_MS = 2000;

const state = {
  csrf: "",
  statsTimer: 0,
  lastStats: null, // { at, messages, deliveries }
  pages: { users: null, rooms: null, reports: null, audit: null }, // next cursors
};

// ------------------------------------------------------------------ requests

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

async function send(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = state.csrf;
  const answer = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await answer.json().catch(() => ({}));
  return { status: answer.status, json };
}

// A request with the session's cookie; an expired access token is refreshed once.
async function api(method, path, body) {
  let answer = await send(method, path, body);
  if (answer.status === 401 && (await refreshSession())) {
    answer = await send(method, path, body);
  }
  if (answer.status === 401) {
    signedOut("Your session ended; sign in again.");
  }
  if (answer.status >= 400) throw new ApiError(answer.status, answer.json);
  return answer.json;
}

async function refreshSession() {
  const answer = await fetch("/admin/session/refresh", { method: "POST", credentials: "same-origin" });
  if (!answer.ok) return false;
  const json = await answer.json();
  state.csrf = json.csrf_token;
  return true;
}

function showError(error) {
  $("error").textContent = error ? String(error.message ?? error) : "";
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// ------------------------------------------------------------------ session

function signedIn(session) {
  state.csrf = session.csrf_token;
  $("who").dataset.state = "signed-in";
  $("who").textContent = `signed in as ${session.username}`;
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("console").hidden = false;
  showError("");
  pollStats();
  loadUsers(false);
}

function signedOut(reason) {
  state.csrf = "";
  clearTimeout(state.statsTimer);
  state.lastStats = null;
  $("who").dataset.state = "signed-out";
  $("who").textContent = "not signed in";
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = reason ?? "";
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  const answer = await fetch("/admin/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ username: $("username").value.trim().toLowerCase(), password: $("password").value }),
  });
  const json = await answer.json().catch(() => ({}));
  $("password").value = "";
  if (!answer.ok) {
    $("sign-in-error").textContent = json.error?.message ?? `HTTP ${answer.status}`;
    return;
  }
  signedIn(json);
});

$("sign-out").addEventListener("click", async () => {
  try {
    await api("POST", "/admin/session/logout");
  } catch (error) {
    showError(error);
  }
  signedOut("Signed out.");
});

// ------------------------------------------------------------------ live counts

async function pollStats() {
  clearTimeout(state.statsTimer);
  try {
    const stats = await api("GET", "/v1/admin/stats");
    const now = Date.now();
    $("stat-connections").textContent = stats.connections;
    $("stat-open-sockets").textContent = stats.open_sockets;
    $("stat-messages").textContent = stats.messages_stored;
    $("stat-deliveries").textContent = stats.deliveries;
    $("stat-storage").textContent = stats.storage_writable ? "writable" : "refusing writes";
    $("stat-cluster").textContent = stats.cluster
      ? `node ${stats.cluster.node}, ${stats.cluster.live_nodes} live`
      : "single node";
    const last = state.lastStats;
    if (last) {
      const seconds = Math.max((now - last.at) / 1000, 0.001);
      $("stat-message-rate").textContent = ((stats.messages_stored - last.messages) / seconds).toFixed(1);
      $("stat-delivery-rate").textContent = ((stats.deliveries - last.deliveries) / seconds).toFixed(1);
    }
    state.lastStats = { at: now, messages: stats.messages_stored, deliveries: stats.deliveries };
    $("stats").dataset.updated = String(now);
  } catch (error) {
    if (error.status !== 401) showError(error);
  }
  if (state.csrf) state.statsTimer = setTimeout(pollStats, STATS_EVERY_MS);
}

// ------------------------------------------------------------------ tables

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  row.append(td);
  return td;
}

function actionCell(row, label, action, className) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  if (className) button.className = className;
  button.addEventListener("click", () => action(button));
  td.append(button);
  row.append(td);
  return button;
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "");

// Runs a change; on success reloads `reload`, on failure shows why.
async function change(method, path, body, reload) {
  showError("");
  try {
    await api(method, path, body);
    await reload();
  } catch (error) {
    showError(error);
  }
}

// A button that asks for a second click before it acts.
function confirming(button, label, action) {
  if (button.dataset.confirm) return action();
  button.dataset.confirm = "1";
  button.textContent = label;
}

// ------------------------------------------------------------------ users

async function loadUsers(more) {
  const after = more ? state.pages.users : null;
  try {
    const page = await api("GET", `/v1/admin/users${query({ prefix: $("user-prefix").value.trim().toLowerCase(), after })}`);
    const rows = $("user-rows");
    if (!more) rows.replaceChildren();
    for (const user of page.users) rows.append(userRow(user));
    state.pages.users = page.next;
    $("users-more").hidden = !page.next;
  } catch (error) {
    showError(error);
  }
}

function userRow(user) {
  const row = document.createElement("tr");
  row.dataset.userId = user.user_id;
  row.dataset.username = user.username;
  if (user.suspended) row.dataset.suspended = "";
  cell(row, user.username);
  cell(row, user.user_id, "id");
  cell(row, when(user.created_ms));
  cell(row, user.admin ? "admin" : "user");
  cell(row, String(user.connections_on_this_node));
  const status = user.suspended
    ? `suspended ${when(user.suspended.at)}${user.suspended.reason ? `: ${user.suspended.reason}` : ""}`
    : "active";
  cell(row, status, "status");
  const path = `/v1/admin/users/${encodeURIComponent(user.user_id)}`;
  if (user.suspended) {
    actionCell(row, "Unsuspend", () => change("POST", `${path}/unsuspend`, undefined, () => loadUsers(false)), "unsuspend");
  } else if (!user.admin) {
    actionCell(row, "Suspend", (button) => confirming(button, "Confirm suspend", () => {
      const reason = $("suspend-reason").value.trim();
      return change("POST", `${path}/suspend`, reason ? { reason } : {}, () => loadUsers(false));
    }), "suspend danger");
  } else {
    cell(row, "");
  }
  return row;
}

$("user-search").addEventListener("submit", (event) => {
  event.preventDefault();
  loadUsers(false);
});
$("users-more").addEventListener("click", () => loadUsers(true));

// ------------------------------------------------------------------ rooms

async function loadRooms(more) {
  const after = more ? state.pages.rooms : null;
  try {
    const page = await api("GET", `/v1/admin/rooms${query({ query: $("room-query").value.trim(), after })}`);
    const rows = $("room-rows");
    if (!more) rows.replaceChildren();
    for (const room of page.rooms) rows.append(roomRow(room));
    state.pages.rooms = page.next;
    $("rooms-more").hidden = !page.next;
  } catch (error) {
    showError(error);
  }
}

function roomRow(room) {
  const row = document.createElement("tr");
  row.dataset.roomId = room.room_id;
  row.dataset.name = room.name;
  cell(row, room.name);
  cell(row, room.room_id, "id");
  cell(row, room.kind);
  cell(row, room.owner, "id");
  cell(row, String(room.members));
  cell(row, String(room.last_seq));
  cell(row, when(room.created_ms));
  const path = `/v1/admin/rooms/${encodeURIComponent(room.room_id)}/delete`;
  actionCell(row, "Delete", (button) => confirming(button, "Confirm delete", () =>
    change("POST", path, undefined, () => loadRooms(false))), "delete danger");
  return row;
}

$("room-search").addEventListener("submit", (event) => {
  event.preventDefault();
  loadRooms(false);
});
$("rooms-more").addEventListener("click", () => loadRooms(true));

// ------------------------------------------------------------------ reports

async function loadReports(more) {
  const after = more ? state.pages.reports : null;
  try {
    const open = $("open-only").checked ? "true" : "false";
    const page = await api("GET", `/v1/admin/reports${query({ open, after })}`);
    const rows = $("report-rows");
    if (!more) rows.replaceChildren();
    for (const report of page.reports) rows.append(reportRow(report));
    state.pages.reports = page.next;
    $("reports-more").hidden = !page.next;
  } catch (error) {
    showError(error);
  }
}

function reportRow(report) {
  const row = document.createElement("tr");
  row.dataset.reportId = report.report_id;
  cell(row, when(report.at));
  cell(row, report.room, "id");
  cell(row, `#${report.seq} from ${report.sender}: ${report.text}`);
  cell(row, report.reporter, "id");
  cell(row, report.reason ?? "");
  if (report.resolved) {
    row.dataset.resolved = "";
    const note = report.resolved.note ? `: ${report.resolved.note}` : "";
    cell(row, `resolved ${when(report.resolved.at)}${note}`, "status");
    cell(row, "");
  } else {
    cell(row, "open", "status");
    const path = `/v1/reports/${encodeURIComponent(report.report_id)}/resolve`;
    actionCell(row, "Resolve", () => {
      const note = $("resolve-note").value.trim();
      return change("POST", path, note ? { note } : {}, () => loadReports(false));
    }, "resolve");
  }
  return row;
}

$("report-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadReports(false);
});
$("reports-more").addEventListener("click", () => loadReports(true));

// ------------------------------------------------------------------ API keys

async function loadKeys() {
  try {
    const page = await api("GET", "/v1/admin/api-keys");
    $("key-rows").replaceChildren(...page.api_keys.map(keyRow));
  } catch (error) {
    showError(error);
  }
}

function keyRow(key) {
  const row = document.createElement("tr");
  row.dataset.keyId = key.key_id;
  row.dataset.name = key.name;
  if (key.revoked_ms) row.dataset.revoked = "";
  cell(row, key.name);
  cell(row, key.key_id, "id");
  cell(row, key.scopes.join(", "));
  cell(row, key.bot ?? "", "id");
  cell(row, when(key.created_ms));
  cell(row, key.revoked_ms ? `revoked ${when(key.revoked_ms)}` : "active", "status");
  if (key.revoked_ms) {
    cell(row, "");
  } else {
    const path = `/v1/admin/api-keys/${encodeURIComponent(key.key_id)}/revoke`;
    actionCell(row, "Revoke", (button) => confirming(button, "Confirm revoke", () =>
      change("POST", path, undefined, loadKeys)), "revoke danger");
  }
  return row;
}

$("key-create").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const scopes = [...document.querySelectorAll('#key-create input[name="scope"]:checked')].map((box) => box.value);
  try {
    const made = await api("POST", "/v1/admin/api-keys", { name: $("key-name").value.trim(), scopes });
    $("new-key-value").textContent = made.key;
    $("new-key").hidden = false;
    $("key-name").value = "";
    await loadKeys();
  } catch (error) {
    showError(error);
  }
});

// ------------------------------------------------------------------ audit log

async function loadAudit(more) {
  const after = more ? state.pages.audit : null;
  try {
    const page = await api("GET", `/v1/admin/audit${query({ after, limit: 100 })}`);
    const rows = $("audit-rows");
    if (!more) rows.replaceChildren();
    for (const entry of page.entries) rows.append(auditRow(entry));
    state.pages.audit = page.next;
    $("audit-more").hidden = !page.next;
  } catch (error) {
    showError(error);
  }
}

function auditRow(entry) {
  const row = document.createElement("tr");
  row.dataset.action = entry.action;
  cell(row, when(entry.at));
  cell(row, entry.admin ?? "operator", "id");
  cell(row, entry.action);
  const { id, at, admin, action, ...details } = entry;
  cell(row, Object.entries(details).map(([key, value]) => `${key}: ${value}`).join(", "));
  return row;
}

$("audit-more").addEventListener("click", () => loadAudit(true));

// ------------------------------------------------------------------ tabs and start

const loaders = { users: loadUsers, rooms: loadRooms, reports: loadReports, keys: loadKeys, audit: loadAudit };

for (const tab of document.querySelectorAll("#tabs button")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#tabs button")) {
      other.setAttribute("aria-pressed", String(other === tab));
    }
    for (const section of document.querySelectorAll("section.tab")) {
      section.hidden = section.id !== tab.dataset.tab;
    }
    showError("");
    $("new-key").hidden = true;
    loaders[tab.dataset.tab](false);
  });
}

(async () => {
  const answer = await send("GET", "/admin/session");
  if (answer.status === 200) return signedIn(answer.json);
  if (answer.status === 401 && (await refreshSession())) {
    const again = await send("GET", "/admin/session");
    if (again.status === 200) return signedIn(again.json);
  }
  signedOut();
})();

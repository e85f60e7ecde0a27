// @palaver/client: the Palaver chat client for web pages — the Rust SDK's client core
// (resume without gaps or duplicates, exactly-once send, reconnect with backoff, token
// renewal) compiled to WebAssembly, with every op of the protocol as a typed method.
//
// The wire types (`Message`, `RoomInfo`, the `Op` and `Event` unions, `Replies`, …) are
// generated from the Rust protocol crate into ./protocol.ts.

import initWasm, { WasmClient } from "./wasm/palaver.js";
import type {
  ClientMsgId,
  ErrorCode,
  FileRef,
  MemberEvent,
  Message,
  MessageKind,
  NotificationSettings,
  OneTimeKey,
  OpName,
  PresenceChoice,
  PresenceInfo,
  Receipt,
  Reaction,
  Replies,
  Request,
  RoomId,
  RoomKind,
  RoomRole,
  RoomSettingsPatch,
  SearchOrder,
  SessionId,
  Typing,
  UserId,
  Edit,
  Delete,
  InviteInfo,
  ReportNotice,
  FriendInfo,
  ThreadEvent,
} from "./protocol.js";

export type * from "./protocol.js";

/** What an error is about: a protocol error code when the server refused (plus
 * `unauthorized` when no usable access token can be had any more), else what went wrong
 * on this side. */
export type ErrorName =
  | ErrorCode
  | "timeout"
  | "connection_lost"
  | "closed"
  | "transport"
  | "http"
  | "unexpected_reply"
  | "codec"
  | "crypto";

/** An error as events carry it. */
export interface ErrorInfo {
  code: ErrorName;
  message: string;
  retry_after_ms?: number;
}

/** Every failure of this package: `code` says what kind. */
export class PalaverError extends Error {
  readonly code: ErrorName;
  /** With `rate_limited`: how long to wait before trying again. */
  readonly retryAfterMs?: number;

  constructor(code: ErrorName, message: string, retryAfterMs?: number) {
    super(message);
    this.name = "PalaverError";
    this.code = code;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

function rethrow(error: unknown): never {
  if (error instanceof PalaverError) throw error;
  const e = error as { code?: ErrorName; message?: string; retryAfterMs?: number };
  throw new PalaverError(e?.code ?? "transport", e?.message ?? String(error), e?.retryAfterMs);
}

/** Where the client stands. `unauthorized` and `closed` are final. */
export type ConnectionState = "connected" | "reconnecting" | "unauthorized" | "closed";

/** What the client tells the page: every server event (`message`, `typing`, …, with
 * its body under a key named like its type) and the connection's own changes. */
export type ClientEvent =
  | { type: "message"; message: Message }
  | { type: "typing"; typing: Typing }
  | { type: "receipt"; receipt: Receipt }
  | { type: "reaction"; reaction: Reaction }
  | { type: "edit"; edit: Edit }
  | { type: "delete"; delete: Delete }
  | { type: "thread"; thread: ThreadEvent }
  | { type: "member"; member: MemberEvent }
  | { type: "invite"; invite: InviteInfo }
  | { type: "friend"; friend: FriendInfo }
  | { type: "presence"; presence: PresenceInfo }
  | { type: "report"; report: ReportNotice }
  /** The user's notification settings changed (on this device or another). */
  | { type: "notifications"; notifications: NotificationSettings }
  /** Authenticated, and every joined room re-joined. */
  | { type: "connected"; user_id: UserId; session_id: SessionId }
  /** The connection dropped; the client reconnects by itself. */
  | { type: "disconnected"; reason: string; retry_in_ms: number }
  /** A new access token is in use (the refresh token is never handed out). */
  | { type: "tokens"; tokens: { access_token: string; expires_in?: number | null } }
  /** The server holds fewer messages of a room than the client saw. */
  | { type: "room_reset"; room: RoomId; last_seq: number }
  /** A joined room could not be re-joined after a reconnect. */
  | { type: "room_lost"; room: RoomId; error: ErrorInfo }
  /** Events were dropped because the page did not keep up. */
  | { type: "lagged"; missed: number }
  /** The client stopped for good: closed by the page, or unauthorized. */
  | { type: "closed"; error: ErrorInfo | null };

/** The name of a client event. */
export type ClientEventType = ClientEvent["type"];

/** The event of one type. */
export type ClientEventOf<T extends ClientEventType> = Extract<ClientEvent, { type: T }>;

/** Gives an access token: a string; `null` or `undefined` when the user is signed out
 * (the client then stops, `unauthorized`); throwing or rejecting is a failure, retried
 * with backoff a bounded number of times (`maxTokenFailures`). */
export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

/** How to connect. Give one way to get access tokens: `getToken` (every token from the
 * page's backend), `token` with `onTokenExpired` (the first token, then renewals),
 * `token` alone (no renewal: the client stops `unauthorized` once it expires and the
 * connection must be re-opened), or `username` and `password` (the server must allow the
 * page's origin, `--cors-origins`). */
export interface ConnectOptions {
  /** The server's base URL, `http(s)://host:port` (WebSocket and HTTP on one port). */
  url: string;
  /** Called for the first token, shortly before each token expires, and whenever the
   * server refuses one (e.g. it expired while the server was down). */
  getToken?: TokenProvider;
  /** The first access token. */
  token?: string;
  /** With `token`: called for every later token (like `getToken`). */
  onTokenExpired?: TokenProvider;
  /** Log in with a password (kept in memory for re-logins; the refresh token too). */
  username?: string;
  password?: string;
  /** With `username` and `password`: create the account first. */
  register?: boolean;
  /** Every event (also `client.on`). */
  onEvent?: (event: ClientEvent) => void;
  /** Every change of `client.state`. */
  onStateChange?: (state: ConnectionState, error: ErrorInfo | null) => void;
  /** Failed attempts in a row at a usable access token before the client stops,
   * `unauthorized` (default 8; attempts back off from 250 ms to 30 s). */
  maxTokenFailures?: number;
  /** How long a request may wait for its answer, offline time included (default 15 s). */
  requestTimeoutMs?: number;
  /** How long opening a socket or an HTTP call may take (default 10 s). */
  connectTimeoutMs?: number;
  /** How long the first connection keeps trying (default 30 s; 0: fail at once). */
  firstConnectRetryMs?: number;
  /** `"auto"` (default): WebTransport when the browser has it, falling back to WebSocket
   * when it fails or does not open in time; `"websocket"`: WebSocket only. */
  transport?: "auto" | "websocket";
  /** The WebTransport session's URL (default: the server's QUIC port from
   * `GET /v1/webtransport/certificate-hashes`, path `/v1/webtransport?codec=json`). */
  webTransportUrl?: string;
  /** SHA-256 hashes (64 hex digits) of the certificates WebTransport accepts (default:
   * the server's route, which lists its development certificates; none with an
   * operator's certificate, checked by web PKI). */
  serverCertificateHashes?: string[];
  /** How long a WebTransport session may take to open before WebSocket is used
   * (default 3 s). */
  webTransportTimeoutMs?: number;
  /** Where the WebAssembly module is (default: next to this file, as bundlers and
   * import maps serve it). */
  wasm?: string | URL | Response | BufferSource | WebAssembly.Module;
}

/** An account session from `register` or `login`. */
export interface Session {
  user_id: UserId;
  access_token: string;
  expires_in: number;
}

/** A reported message, as the room's moderators and the admins see it. */
export interface Report {
  report_id: string;
  room: RoomId;
  seq: number;
  sender: UserId;
  /** The message's text when it was reported. */
  text: string;
  reporter: UserId;
  reason?: string | null;
  at: number;
  resolved?: { by: UserId; at: number; note?: string | null } | null;
}

/** A page of reports; `next` (or `null` on the last) continues as `after`. */
export interface ReportPage {
  reports: Report[];
  next: string | null;
}

/** A message to send, with every option; the `cid` (idempotency key) is generated
 * unless given. */
export type OutgoingMessage = Omit<Request<"send">, "op" | "cid" | "kind" | "text"> & {
  cid?: ClientMsgId;
  kind?: MessageKind;
  text?: string;
};

/** A search: the words, and filters and paging. */
export type SearchQuery = Omit<Request<"search">, "op">;

/** The fields of an op's request besides `op` and the ones named in `K`. */
type Rest<O extends OpName, K extends string = never> = Partial<Omit<Request<O>, "op" | K>>;

let wasmReady: Promise<unknown> | null = null;

/** Loads the WebAssembly module (once). `connect` does it; call it earlier to load
 * sooner, or to load from somewhere else. */
export function init(wasm?: ConnectOptions["wasm"]): Promise<unknown> {
  wasmReady ??= wasm === undefined ? initWasm() : initWasm({ module_or_path: wasm });
  return wasmReady;
}

async function authCall(url: string, route: string, body: object): Promise<Session> {
  let answer: Response;
  try {
    answer = await fetch(`${url.replace(/\/+$/, "")}/v1/auth/${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new PalaverError("transport", `${route}: ${(e as Error).message ?? e}`);
  }
  const json = await answer.json().catch(() => null);
  if (!answer.ok) {
    const error = json?.error;
    throw new PalaverError(error?.code ?? "http", error?.message ?? `HTTP ${answer.status}`, error?.retry_after_ms);
  }
  // The refresh token stays out of the page: a page that keeps sessions does so in its
  // backend.
  return { user_id: json.user_id, access_token: json.access_token, expires_in: json.expires_in };
}

/** Creates an account (`POST /v1/auth/register`). */
export function register(url: string, username: string, password: string): Promise<Session> {
  return authCall(url, "register", { username, password });
}

/** Logs in (`POST /v1/auth/login`). */
export function login(url: string, username: string, password: string): Promise<Session> {
  return authCall(url, "login", { username, password });
}

type Listener = (event: ClientEvent) => void;

/** A connected client. Reconnecting is automatic: requests wait for the connection,
 * messages are re-sent with their `cid` until stored (exactly once), joined rooms are
 * re-joined with `since` so no message is missed or repeated, and access tokens are
 * renewed as `ConnectOptions` says. */
export class PalaverClient {
  readonly #inner: WasmClient;
  readonly #listeners: Map<string, Set<Listener>>;
  readonly #stateListeners: Set<(state: ConnectionState, error: ErrorInfo | null) => void>;
  #state: ConnectionState = "connected";
  #error: ErrorInfo | null = null;

  private constructor(
    inner: WasmClient,
    listeners: Map<string, Set<Listener>>,
    stateListeners: Set<(state: ConnectionState, error: ErrorInfo | null) => void>,
  ) {
    this.#inner = inner;
    this.#listeners = listeners;
    this.#stateListeners = stateListeners;
  }

  /** Connects; resolves once the first connection is authenticated. Rejects with a
   * `PalaverError` when it cannot be (`unauthorized`, or the server stayed unreachable
   * for `firstConnectRetryMs`). */
  static async connect(options: ConnectOptions): Promise<PalaverClient> {
    await init(options.wasm);
    const listeners = new Map<string, Set<Listener>>();
    const stateListeners = new Set<(state: ConnectionState, error: ErrorInfo | null) => void>();
    if (options.onEvent) listeners.set("*", new Set([options.onEvent]));
    if (options.onStateChange) stateListeners.add(options.onStateChange);
    let client: PalaverClient | null = null;
    const early: ClientEvent[] = [];
    const onEvent = (json: string) => {
      const event = JSON.parse(json) as ClientEvent;
      if (client) client.#dispatch(event);
      else early.push(event);
    };
    if (options.onTokenExpired && options.token === undefined) {
      throw new PalaverError("invalid", "onTokenExpired renews a `token`: give the first one too");
    }
    const renew = options.getToken ?? options.onTokenExpired;
    const config = {
      url: options.url,
      token: options.token,
      username: options.username,
      password: options.password,
      register: options.register ?? false,
      maxTokenFailures: options.maxTokenFailures,
      requestTimeoutMs: options.requestTimeoutMs,
      connectTimeoutMs: options.connectTimeoutMs,
      firstConnectRetryMs: options.firstConnectRetryMs,
      transport: options.transport,
      webTransportUrl: options.webTransportUrl,
      serverCertificateHashes: options.serverCertificateHashes,
      webTransportTimeoutMs: options.webTransportTimeoutMs,
    };
    let inner: WasmClient;
    try {
      inner = await WasmClient.connect(JSON.stringify(config), renew, onEvent);
    } catch (e) {
      rethrow(e);
    }
    client = new PalaverClient(inner, listeners, stateListeners);
    for (const event of early.splice(0)) client.#dispatch(event);
    return client;
  }

  #dispatch(event: ClientEvent): void {
    switch (event.type) {
      case "connected":
        this.#setState("connected", null);
        break;
      case "disconnected":
        this.#setState("reconnecting", null);
        break;
      case "closed":
        this.#setState(event.error?.code === "unauthorized" ? "unauthorized" : "closed", event.error);
        break;
    }
    for (const key of [event.type, "*"]) {
      for (const listener of this.#listeners.get(key) ?? []) {
        try {
          listener(event);
        } catch (e) {
          // A failing listener must not stop the others (nor the client).
          setTimeout(() => {
            throw e;
          });
        }
      }
    }
  }

  #setState(state: ConnectionState, error: ErrorInfo | null): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#error = error;
    for (const listener of this.#stateListeners) listener(state, error);
  }

  /** Where the client stands now. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Why the client stopped, once `state` is `unauthorized` or `closed` by a failure. */
  get error(): ErrorInfo | null {
    return this.#error;
  }

  /** The signed-in user. */
  get userId(): UserId {
    return this.#inner.userId() ?? "";
  }

  /** Calls `handler` with every event of `type` (`"*"`: every event); returns a function
   * that stops it. */
  on<T extends ClientEventType>(type: T, handler: (event: ClientEventOf<T>) => void): () => void;
  on(type: "*", handler: (event: ClientEvent) => void): () => void;
  on(type: string, handler: Listener): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Calls `handler` on every change of `state`; returns a function that stops it. */
  onStateChange(handler: (state: ConnectionState, error: ErrorInfo | null) => void): () => void {
    this.#stateListeners.add(handler);
    return () => this.#stateListeners.delete(handler);
  }

  /** Any op (but `auth`, which the client does itself) with its wire fields; resolves
   * to its `ok` answer, typed by op. `send` goes through the outbox (`cid` optional);
   * `join` keeps the room joined across reconnects. */
  async request<R extends Exclude<Request, { op: "auth" }>>(request: R): Promise<Replies[R["op"]]> {
    try {
      if (request.op === "send") {
        return JSON.parse(await this.#inner.send(JSON.stringify(request)));
      }
      return JSON.parse(await this.#inner.request(JSON.stringify(request)));
    } catch (e) {
      rethrow(e);
    }
  }

  #op<O extends Exclude<OpName, "auth" | "send">>(request: Request<O>): Promise<Replies[O]> {
    return this.request(request as Exclude<Request, { op: "auth" }>) as Promise<Replies[O]>;
  }

  // ---------------------------------------------------------------- messages

  /** Sends a text message; resolves once it is stored (`seq`), whatever the network
   * does meanwhile. */
  send(room: RoomId, text: string, options: Omit<OutgoingMessage, "room" | "text"> = {}): Promise<Replies["send"]> {
    return this.sendMessage({ ...options, room, text });
  }

  /** Sends a message with every option (kind, reply, file, client timestamp, cid). */
  async sendMessage(message: OutgoingMessage): Promise<Replies["send"]> {
    try {
      return JSON.parse(await this.#inner.send(JSON.stringify({ op: "send", ...message })));
    } catch (e) {
      rethrow(e);
    }
  }

  /** Uploads a file to a room (`POST /v1/files`): its id, size, the type the server
   * found in the bytes, an image's size. */
  async upload(room: RoomId, data: Blob | ArrayBuffer | Uint8Array, name?: string): Promise<FileRef> {
    const bytes = await toBytes(data);
    try {
      return JSON.parse(await this.#inner.upload(room, name ?? fileName(data), bytes));
    } catch (e) {
      rethrow(e);
    }
  }

  /** Uploads a file and shares it: a message of kind `image` (for images) or `file`,
   * with `caption` as its text. */
  async sendFile(
    room: RoomId,
    data: Blob | ArrayBuffer | Uint8Array,
    options: { name?: string; caption?: string } = {},
  ): Promise<{ file: FileRef; sent: Replies["send"] }> {
    const file = await this.upload(room, data, options.name);
    const kind: MessageKind = file.content_type.startsWith("image/") ? "image" : "file";
    const sent = await this.sendMessage({ room, kind, text: options.caption ?? "", file });
    return { file, sent };
  }

  /** A shared file's bytes (members of its room only). */
  async download(fileId: string): Promise<Uint8Array> {
    try {
      return await this.#inner.download(fileId);
    } catch (e) {
      rethrow(e);
    }
  }

  // ---------------------------------------------------------------- reports

  /** Reports someone else's message to the room's moderators and the admins
   * (`POST /v1/reports`): 10 at once, then one a minute (`rate_limited`). */
  async report(room: RoomId, seq: number, reason?: string): Promise<Report> {
    const answer = await this.#route("POST", "/v1/reports", { room, seq, reason: reason ?? null });
    return answer.report as Report;
  }

  /** A page of a room's reports, oldest first (its moderators and the admins only);
   * `next` continues as `after`. */
  async roomReports(room: RoomId, options: { openOnly?: boolean; after?: string } = {}): Promise<ReportPage> {
    const query = new URLSearchParams({ open: String(options.openOnly ?? false) });
    if (options.after !== undefined) query.set("after", options.after);
    const path = `/v1/rooms/${encodeURIComponent(room)}/reports?${query}`;
    return (await this.#route("GET", path)) as unknown as ReportPage;
  }

  /** Resolves a report, with an optional note. */
  async resolveReport(reportId: string, note?: string): Promise<Report> {
    const path = `/v1/reports/${encodeURIComponent(reportId)}/resolve`;
    const answer = await this.#route("POST", path, { note: note ?? null });
    return answer.report as Report;
  }

  // ---------------------------------------------------------------- the account

  /** Everything the server stores about the user (`GET /v1/account/export`): the
   * account, profile, rooms, friends, blocks, devices, files, reports made and the
   * first 1,000 messages sent. Three at once, then one a minute (`rate_limited`). */
  exportAccount(): Promise<Record<string, unknown>> {
    return this.#route("GET", "/v1/account/export");
  }

  /** An HTTP route of the server with the client's access token: its JSON answer. */
  async #route(method: "GET" | "POST", path: string, body?: object): Promise<Record<string, unknown>> {
    try {
      return JSON.parse(await this.#inner.route(method, path, body === undefined ? undefined : JSON.stringify(body)));
    } catch (e) {
      rethrow(e);
    }
  }

  /** Logs this session out: its tokens are refused from now on. Closes the client. */
  async logout(): Promise<void> {
    try {
      await this.#inner.logout();
    } catch (e) {
      rethrow(e);
    }
  }

  /** Ends every session of the user, on every device, this one included. Closes the
   * client. */
  async logoutEverywhere(): Promise<void> {
    try {
      await this.#inner.logoutEverywhere();
    } catch (e) {
      rethrow(e);
    }
  }

  /** Changes the password (`forbidden` when `current` is wrong). Every session ends,
   * this one included: the client closes, and the new session's access token is
   * returned (connect again with it). */
  async changePassword(current: string, next: string): Promise<Session> {
    try {
      return JSON.parse(await this.#inner.changePassword(current, next));
    } catch (e) {
      rethrow(e);
    }
  }

  /** Deletes the account, given its password (`forbidden` when wrong): sessions end,
   * rooms it owns are deleted and the others left; its messages stay. Closes the
   * client. */
  async deleteAccount(password: string): Promise<void> {
    try {
      await this.#inner.deleteAccount(password);
    } catch (e) {
      rethrow(e);
    }
  }

  /** A page of history: newest first (from `before`, or the newest), or oldest first
   * after `after`; `next` continues. */
  history(room: RoomId, options: Rest<"history", "room"> = {}): Promise<Replies["history"]> {
    return this.#op({ op: "history", room, ...options });
  }

  /** Replies in the thread of message `root`, stored exactly once like `send`; with
   * `alsoToRoom` the reply is also part of the room's own timeline. */
  replyInThread(
    room: RoomId,
    root: number,
    text: string,
    options: { alsoToRoom?: boolean } = {},
  ): Promise<Replies["send"]> {
    return this.sendMessage({ room, text, thread: root, also_to_room: options.alsoToRoom ?? false });
  }

  /** A page of the thread of message `root`: its replies newest first (or oldest first
   * after `after`), with the root; `next` continues. */
  threadHistory(
    room: RoomId,
    root: number,
    options: Rest<"thread.history", "room" | "root"> = {},
  ): Promise<Replies["thread.history"]> {
    return this.#op({ op: "thread.history", room, root, ...options });
  }

  /** A page of a room's threads, the most recently replied to first, each with the
   * user's read mark and unread count; `next` continues. */
  threadList(room: RoomId, options: Rest<"thread.list", "room"> = {}): Promise<Replies["thread.list"]> {
    return this.#op({ op: "thread.list", room, ...options });
  }

  /** Marks the thread of message `root` read up to reply `seq` (never back). */
  threadRead(room: RoomId, root: number, seq: number): Promise<Replies["thread.read"]> {
    return this.#op({ op: "thread.read", room, root, seq });
  }

  /** Replaces the text of one of the user's messages. */
  edit(room: RoomId, seq: number, text: string): Promise<Replies["edit"]> {
    return this.#op({ op: "edit", room, seq, text });
  }

  /** A page of a message's earlier texts, oldest first (room members only); `next`
   * continues. */
  editList(
    room: RoomId,
    seq: number,
    options: Rest<"edit.list", "room" | "seq"> = {},
  ): Promise<Replies["edit.list"]> {
    return this.#op({ op: "edit.list", room, seq, ...options });
  }

  /** Pins a message (the room's `pin_role` and above); answers with the seq of the
   * `system` notice that records it. */
  pin(room: RoomId, seq: number): Promise<Replies["pin"]> {
    return this.#op({ op: "pin", room, seq });
  }

  /** Unpins a message. */
  unpin(room: RoomId, seq: number): Promise<Replies["unpin"]> {
    return this.#op({ op: "unpin", room, seq });
  }

  /** A page of a room's pinned messages, the most recently pinned first; `next` continues. */
  pinList(room: RoomId, options: Rest<"pin.list", "room"> = {}): Promise<Replies["pin.list"]> {
    return this.#op({ op: "pin.list", room, ...options });
  }

  /** A page of the members who read a message (or, with `delivered: true`, had it
   * delivered: rooms of at most 100 members); `next` continues. */
  receiptList(
    room: RoomId,
    seq: number,
    options: Rest<"receipt.list", "room" | "seq"> = {},
  ): Promise<Replies["receipt.list"]> {
    return this.#op({ op: "receipt.list", room, seq, ...options });
  }

  /** Forwards message `seq` of `fromRoom` (a room the user may read) into `room`, with a
   * comment; `cid` is the idempotency key (retry with the same one). Readers see the
   * original only if they may read `fromRoom`. */
  forward(
    room: RoomId,
    cid: ClientMsgId,
    fromRoom: RoomId,
    seq: number,
    text = "",
  ): Promise<Replies["forward"]> {
    return this.#op({ op: "forward", room, cid, from_room: fromRoom, seq, text });
  }

  /** Deletes a message (its seq stays, as a tombstone). */
  deleteMessage(room: RoomId, seq: number): Promise<Replies["delete"]> {
    return this.#op({ op: "delete", room, seq });
  }

  /** Adds the user's reaction to a message. */
  react(room: RoomId, seq: number, emoji: string): Promise<Replies["react"]> {
    return this.#op({ op: "react", room, seq, emoji });
  }

  /** Removes the user's reaction. */
  unreact(room: RoomId, seq: number, emoji: string): Promise<Replies["unreact"]> {
    return this.#op({ op: "unreact", room, seq, emoji });
  }

  /** Full-text search of the messages in the user's rooms. */
  search(query: string | SearchQuery, order?: SearchOrder): Promise<Replies["search"]> {
    const request = typeof query === "string" ? { query, order } : query;
    return this.#op({ op: "search", ...request });
  }

  // ---------------------------------------------------------------- typing and receipts

  /** The user is typing in a room (renew every few seconds while typing). */
  typingStart(room: RoomId): Promise<Replies["typing.start"]> {
    return this.#op({ op: "typing.start", room });
  }

  /** The user stopped typing. */
  typingStop(room: RoomId): Promise<Replies["typing.stop"]> {
    return this.#op({ op: "typing.stop", room });
  }

  /** Marks a joined room read up to `seq`: sent in the background, coalesced, and sent
   * again after a reconnect. */
  markRead(room: RoomId, seq: number): void {
    try {
      this.#inner.markRead(room, seq);
    } catch (e) {
      rethrow(e);
    }
  }

  /** Moves the user's watermarks now; resolves to them. */
  receipt(room: RoomId, marks: Rest<"receipt", "room">): Promise<Replies["receipt"]> {
    return this.#op({ op: "receipt", room, ...marks });
  }

  /** The user's rooms with their last message and unread counts (a page). */
  sync(options: Rest<"sync"> = {}): Promise<Replies["sync"]> {
    return this.#op({ op: "sync", ...options });
  }

  // ---------------------------------------------------------------- rooms

  /** Creates a room (public unless `kind` says otherwise); the user owns it. */
  createRoom(name: string, options: Rest<"room.create", "name" | "kind"> & { kind?: RoomKind } = {}): Promise<Replies["room.create"]> {
    return this.#op({ op: "room.create", name, ...options, kind: options.kind ?? "public" });
  }

  /** Joins a room (replaying the messages after `since` first); it stays joined across
   * reconnects. */
  join(room: RoomId, options: Rest<"join", "room"> = {}): Promise<Replies["join"]> {
    return this.#op({ op: "join", room, ...options });
  }

  /** Leaves a room. */
  leave(room: RoomId): Promise<Replies["leave"]> {
    return this.#op({ op: "leave", room });
  }

  /** Public rooms, optionally by name. */
  roomList(options: Rest<"room.list"> = {}): Promise<Replies["room.list"]> {
    return this.#op({ op: "room.list", ...options });
  }

  /** The direct-message room with another user (the same one every time). */
  dmOpen(user: UserId): Promise<Replies["dm.open"]> {
    return this.#op({ op: "dm.open", user });
  }

  /** A room's details. */
  roomGet(room: RoomId): Promise<Replies["room.get"]> {
    return this.#op({ op: "room.get", room });
  }

  /** Renames a room, or changes its topic or settings. */
  roomUpdate(room: RoomId, changes: Rest<"room.update", "room">): Promise<Replies["room.update"]> {
    return this.#op({ op: "room.update", room, ...changes });
  }

  /** Deletes a room (the owner only). */
  roomDelete(room: RoomId): Promise<Replies["room.delete"]> {
    return this.#op({ op: "room.delete", room });
  }

  /** A page of a room's members. */
  roomMembers(room: RoomId, options: Rest<"room.members", "room"> = {}): Promise<Replies["room.members"]> {
    return this.#op({ op: "room.members", room, ...options });
  }

  /** Invites a user to a room. */
  roomInvite(room: RoomId, user: UserId): Promise<Replies["room.invite"]> {
    return this.#op({ op: "room.invite", room, user });
  }

  /** The user's pending invitations (a page). */
  inviteList(options: Rest<"invite.list"> = {}): Promise<Replies["invite.list"]> {
    return this.#op({ op: "invite.list", ...options });
  }

  /** Accepts an invitation: joins the room (and keeps it joined). */
  inviteAccept(room: RoomId): Promise<Replies["invite.accept"]> {
    return this.#op({ op: "invite.accept", room });
  }

  /** Declines an invitation. */
  inviteDecline(room: RoomId): Promise<Replies["invite.decline"]> {
    return this.#op({ op: "invite.decline", room });
  }

  // ---------------------------------------------------------------- moderation

  /** Removes a member (who may come back). */
  kick(room: RoomId, user: UserId, reason?: string): Promise<Replies["kick"]> {
    return this.#op({ op: "kick", room, user, reason });
  }

  /** Removes a member (or an outsider) for good. */
  ban(room: RoomId, user: UserId, reason?: string): Promise<Replies["ban"]> {
    return this.#op({ op: "ban", room, user, reason });
  }

  /** Lifts a ban. */
  unban(room: RoomId, user: UserId): Promise<Replies["unban"]> {
    return this.#op({ op: "unban", room, user });
  }

  /** Stops a member from sending for `duration_secs`. */
  mute(room: RoomId, user: UserId, duration_secs: number, reason?: string): Promise<Replies["mute"]> {
    return this.#op({ op: "mute", room, user, duration_secs, reason });
  }

  /** Lifts a mute early. */
  unmute(room: RoomId, user: UserId): Promise<Replies["unmute"]> {
    return this.#op({ op: "unmute", room, user });
  }

  /** Sets a member's role. */
  roleSet(room: RoomId, user: UserId, role: RoomRole): Promise<Replies["role.set"]> {
    return this.#op({ op: "role.set", room, user, role });
  }

  /** Hands the room to another member. */
  roomTransfer(room: RoomId, user: UserId): Promise<Replies["room.transfer"]> {
    return this.#op({ op: "room.transfer", room, user });
  }

  // ---------------------------------------------------------------- people

  /** A user's profile (and presence, when the user may see it). */
  userGet(user: UserId): Promise<Replies["user.get"]> {
    return this.#op({ op: "user.get", user });
  }

  /** Changes the user's profile: absent fields are kept, empty strings clear. */
  userUpdate(changes: Rest<"user.update">): Promise<Replies["user.update"]> {
    return this.#op({ op: "user.update", ...changes });
  }

  /** The user's notification settings (the same on every device). */
  notifications(): Promise<Replies["notifications.get"]> {
    return this.#op({ op: "notifications.get" });
  }

  /** Changes the level of rooms without their own and the keywords that count as
   * mentions; absent fields are kept. */
  setNotifications(changes: Rest<"notifications.set">): Promise<Replies["notifications.set"]> {
    return this.#op({ op: "notifications.set", ...changes });
  }

  /** Replaces one room's setting (its level, a mute and when it ends); with only the
   * room, it follows the account's settings again. */
  setRoomNotifications(
    room: RoomId,
    setting: Rest<"notifications.room", "room"> = {},
  ): Promise<Replies["notifications.room"]> {
    return this.#op({ op: "notifications.room", room, ...setting });
  }

  /** Registers a Web Push subscription (`PushSubscription.toJSON()`): while none of
   * the user's sockets is connected, messages their settings select are pushed to it.
   * A subscription without an endpoint or its `p256dh` and `auth` keys is `invalid`. */
  pushSubscribe(subscription: {
    endpoint?: string;
    keys?: Record<string, string>;
  }): Promise<Replies["push.subscribe"]> {
    const { endpoint, keys } = subscription;
    if (!endpoint || !keys?.p256dh || !keys.auth) {
      return Promise.reject(new PalaverError("invalid", "a push subscription needs endpoint, keys.p256dh and keys.auth"));
    }
    return this.#op({ op: "push.subscribe", endpoint, p256dh: keys.p256dh, auth: keys.auth });
  }

  /** Forgets a Web Push subscription. */
  pushUnsubscribe(endpoint: string): Promise<Replies["push.unsubscribe"]> {
    return this.#op({ op: "push.unsubscribe", endpoint });
  }

  /** Users whose username starts with `prefix`. */
  userSearch(prefix: string, limit?: number): Promise<Replies["user.search"]> {
    return this.#op({ op: "user.search", prefix, limit });
  }

  /** Asks a user to be friends. */
  friendRequest(user: UserId): Promise<Replies["friend.request"]> {
    return this.#op({ op: "friend.request", user });
  }

  /** Accepts a friend request. */
  friendAccept(user: UserId): Promise<Replies["friend.accept"]> {
    return this.#op({ op: "friend.accept", user });
  }

  /** Declines a friend request. */
  friendDecline(user: UserId): Promise<Replies["friend.decline"]> {
    return this.#op({ op: "friend.decline", user });
  }

  /** Withdraws the user's own request. */
  friendCancel(user: UserId): Promise<Replies["friend.cancel"]> {
    return this.#op({ op: "friend.cancel", user });
  }

  /** Ends a friendship. */
  friendRemove(user: UserId): Promise<Replies["friend.remove"]> {
    return this.#op({ op: "friend.remove", user });
  }

  /** Friends and pending requests (a page). */
  friendList(options: Rest<"friend.list"> = {}): Promise<Replies["friend.list"]> {
    return this.#op({ op: "friend.list", ...options });
  }

  /** Blocks a user. */
  block(user: UserId): Promise<Replies["block"]> {
    return this.#op({ op: "block", user });
  }

  /** Lifts a block. */
  unblock(user: UserId): Promise<Replies["unblock"]> {
    return this.#op({ op: "unblock", user });
  }

  /** The users the user blocked (a page). */
  blockList(options: Rest<"block.list"> = {}): Promise<Replies["block.list"]> {
    return this.#op({ op: "block.list", ...options });
  }

  // ---------------------------------------------------------------- presence

  /** Chooses online, away or invisible. */
  presenceSet(status: PresenceChoice): Promise<Replies["presence.set"]> {
    return this.#op({ op: "presence.set", status });
  }

  /** Follows users' presence (renewed after every reconnect); resolves to their
   * presence now. Changes arrive as `presence` events. */
  presenceSubscribe(users: UserId[]): Promise<Replies["presence.subscribe"]> {
    return this.#op({ op: "presence.subscribe", users });
  }

  /** Stops following users' presence. */
  presenceUnsubscribe(users: UserId[]): Promise<Replies["presence.unsubscribe"]> {
    return this.#op({ op: "presence.unsubscribe", users });
  }

  // ---------------------------------------------------------------- end-to-end encryption keys

  /** Publishes a device's public keys and one-time prekeys. */
  keysUpload(
    device_id: string,
    identity_key: string,
    options: { signing_key?: string; one_time_keys?: OneTimeKey[] } = {},
  ): Promise<Replies["keys.upload"]> {
    return this.#op({ op: "keys.upload", device_id, identity_key, signing_key: options.signing_key, one_time_keys: options.one_time_keys ?? [] });
  }

  /** A user's devices and their public keys. */
  keysList(user: UserId): Promise<Replies["keys.list"]> {
    return this.#op({ op: "keys.list", user });
  }

  /** Claims one one-time key of each of a user's devices (or of one). */
  keysClaim(user: UserId, device_id?: string): Promise<Replies["keys.claim"]> {
    return this.#op({ op: "keys.claim", user, device_id });
  }

  // ---------------------------------------------------------------- connection

  /** A round trip through the server. */
  ping(): Promise<Replies["ping"]> {
    return this.#op({ op: "ping" });
  }

  /** The transport of the current (or last) connection. */
  get transport(): "webtransport" | "websocket" | null {
    return (this.#inner.transport() ?? null) as "webtransport" | "websocket" | null;
  }

  /** Whether the socket is authenticated right now. */
  get connected(): boolean {
    return this.#inner.isConnected();
  }

  /** Closes the connection for good: pending requests fail with `closed`. */
  close(): void {
    this.#inner.close();
  }
}

async function toBytes(data: Blob | ArrayBuffer | Uint8Array): Promise<Uint8Array> {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(await data.arrayBuffer());
}

function fileName(data: Blob | ArrayBuffer | Uint8Array): string {
  return typeof File !== "undefined" && data instanceof File ? data.name : "";
}

// Courier's JavaScript SDK: the HTTP API and the MQTT-over-WebSocket stream of a Courier server,
// for browsers, Node (18+) and React Native — any runtime with fetch and an MQTT.js client,
// which the app passes in. The web app at `/` is built on it; sdk/js/README.md and docs/web.md
// describe it and docs/protocol.md is the contract it speaks.
//
//   import mqtt from "mqtt";                                // or the browser build, mqtt.esm.js
//   import { Api, Client } from "@courier-chat/sdk";
//   const api = new Api();                                  // same origin as the page
//   const session = await api.logIn("alice", "secret-password", "Firefox on Linux");
//   const client = new Client(session, { mqtt, api });
//   client.addEventListener("update", (e) => show(e.detail)); // every update once, in order
//   client.connect();
//   const entry = client.send(convId, { kind: "text", text: "hi" }); // queued, then sent
//   const ack = await entry.done;                           // { msg, conv, seq, ts, cmid }
//
// The client is offline-first: `send` puts the message in an outbox kept in `storage`
// (localStorage by default) and returns at once; the outbox goes out, each message with its
// `cmid`, whenever the client is connected, and again after every reconnect until the server
// answers. The server stores a `cmid` once, so a message typed while offline, or whose answer
// was lost with the connection, is delivered exactly once. Updates come as `update` events,
// each once and in `useq` order across reconnects and page reloads: the client keeps its
// cursor in `storage`, syncs after connecting and when a push leaves a gap, and acks what it
// handed over.

// React Native has no EventTarget or CustomEvent: a small stand-in where they are missing.
const EventBase =
  globalThis.EventTarget ??
  class {
    #listeners = new Map();
    addEventListener(type, f) {
      if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
      this.#listeners.get(type).add(f);
    }
    removeEventListener(type, f) {
      this.#listeners.get(type)?.delete(f);
    }
    dispatchEvent(event) {
      for (const f of [...(this.#listeners.get(event.type) ?? [])]) f.call(this, event);
      return true;
    }
  };

/** An event of `type` carrying `detail` (a CustomEvent where the runtime has them). */
function event(type, detail) {
  return typeof CustomEvent === "function" ? new CustomEvent(type, { detail }) : { type, detail };
}

/**
 * What a log-in answers (docs/protocol.md, `POST /v1/sessions`); keep it: one device per install.
 * @typedef {object} Session
 * @property {string} user the user's id
 * @property {string} device the device's id (also its MQTT client id and user name)
 * @property {string} token the device's token (its MQTT password, and the HTTP bearer)
 * @property {{ tcp: string, ws: string, tls?: string }} mqtt where to connect: `ws` is
 *   `ws://…/mqtt` or, with TLS on, `wss://…/mqtt`
 * @property {string} [username]
 */

/**
 * A message's content as sent (docs/protocol.md, "send"): `{ kind: "text", text }`,
 * `{ kind: "image", attachments: [{ file }] }`, …
 * @typedef {{ kind: string, text?: string, caption?: string, attachments?: { file: string }[],
 *   mentions?: string[], reply_to?: string, [field: string]: any }} Content
 */

/**
 * The server's answer to a send.
 * @typedef {{ msg: string, conv: string, seq: number, ts: number, cmid: string }} SendResult
 */

/**
 * A message in the outbox: `state` is `sending` until the server answers (`sent`) or refuses
 * it for good (`failed`); `done` settles then.
 * @typedef {{ cmid: string, conv: string, content: Content, created: number,
 *   state: "sending" | "sent" | "failed", done: Promise<SendResult> }} OutboxEntry
 */

/**
 * An update on the device's `in` stream (docs/protocol.md, "Updates"): its `type`
 * (`message`, `receipt`, `edit`, `delete`, `reaction`, `member`, `settings`, …), its `useq`,
 * and the fields of its type.
 * @typedef {{ type: string, useq: number, [field: string]: any }} Update
 */

/**
 * Where the client keeps its cursor and outbox: `localStorage`, `memoryStorage()`, or any
 * object with these synchronous methods.
 * @typedef {{ getItem(key: string): string | null, setItem(key: string, value: string): void,
 *   removeItem(key: string): void }} KeyValueStorage
 */

/** An error the server answered with (`code` as in docs/protocol.md), or a local one:
 * `timeout` (no answer in time), `disconnected` (not connected), `network` (HTTP failed). */
export class CourierError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [details]
   * @param {number} [status] the HTTP status, for HTTP errors
   */
  constructor(code, message, details, status) {
    super(message);
    this.name = "CourierError";
    this.code = code;
    this.details = details;
    this.status = status;
  }

  /** Whether trying the same request again later may succeed. */
  get retryable() {
    return ["timeout", "disconnected", "network", "unavailable", "internal", "rate_limited"].includes(this.code);
  }
}

/** The HTTP API (docs/protocol.md, "HTTP API" and "Media"). Methods marked 🔒 need `token`. */
export class Api {
  /**
   * @param {string} [base] the server's HTTP address; the page's own origin when empty
   * @param {string} [token] a device token, for the 🔒 routes
   */
  constructor(base = "", token = null) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
  }

  /**
   * Any route: `method` and `path` (`/v1/…`), with `body` as JSON. Resolves to the answer's
   * JSON (`null` for 204); rejects with a CourierError carrying the server's code.
   * @param {string} method
   * @param {string} path
   * @param {object} [body]
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new CourierError("network", String(e));
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: reported below by status.
    }
    if (!res.ok) {
      const err = json && json.error;
      throw new CourierError(
        err ? err.code : "http_" + res.status,
        err ? err.message : text || res.statusText,
        err && err.details,
        res.status,
      );
    }
    return json;
  }

  /**
   * Registers a user: `{ user }`.
   * @param {string} username
   * @param {string} password
   * @returns {Promise<{ user: string }>}
   */
  signUp(username, password) {
    return this.request("POST", "/v1/users", { username, password });
  }

  /**
   * Logs in as a new device. Also keeps the token for this Api's later calls.
   * @param {string} username
   * @param {string} password
   * @param {string} [deviceName] shown in the user's device list
   * @param {string} [platform] `web`, `ios`, `android`, …
   * @returns {Promise<Session>}
   */
  async logIn(username, password, deviceName = "web", platform = "web") {
    const s = await this.request("POST", "/v1/sessions", {
      username,
      password,
      device_name: deviceName,
      platform,
    });
    this.token = s.token;
    return { ...s, username };
  }

  /** 🔒 Profiles (`[{ user, username, display_name?, avatar?, deleted? }]`) for those names
   * (or ids) that exist. */
  users({ names = [], ids = [] }) {
    const q = names.length ? `names=${names.map(encodeURIComponent).join(",")}` : `ids=${ids.join(",")}`;
    return this.request("GET", `/v1/users?${q}`);
  }

  /** 🔒 The caller's profile: `{ user, username, display_name?, avatar? }`. */
  me() {
    return this.request("GET", "/v1/me");
  }

  /** 🔒 Sets the fields given (`display_name`, `avatar`: a processed image's file id; `null`
   * clears one) and returns the profile. */
  changeProfile(change) {
    return this.request("PATCH", "/v1/me", change);
  }

  /** 🔒 The image at a profile's `avatar` address, as a Blob. */
  async avatarBlob(avatar) {
    return this.#blob(avatar);
  }

  /** 🔒 Deletes the caller's account (its password, again). Every device is signed out. */
  deleteAccount(password) {
    return this.request("DELETE", "/v1/me", { password });
  }

  /** 🔒 A new password; every other device is signed out. */
  changePassword(old, password) {
    return this.request("POST", "/v1/me/password", { old, new: password });
  }

  /** 🔒 Blocks a user: no direct messages either way, no typing or presence, their group
   * messages hidden. */
  block(user) {
    return this.request("POST", "/v1/blocks", { user });
  }

  /** 🔒 Lifts a block. */
  unblock(user) {
    return this.request("DELETE", `/v1/blocks/${encodeURIComponent(user)}`);
  }

  /** 🔒 The users the caller blocked: `[{ user, username, since }]`. */
  blocks() {
    return this.request("GET", "/v1/blocks");
  }

  /** 🔒 Reports a user or a message to the server's operators: `{ user?, msg?, reason:
   * "spam"|"abuse"|"other", note? }`. */
  report(report) {
    return this.request("POST", "/v1/reports", report);
  }

  /** 🔒 The caller's account settings: `{ group_adds }`. */
  settings() {
    return this.request("GET", "/v1/me/settings");
  }

  /** 🔒 Changes account settings (the fields given) and returns them all. */
  changeSettings(change) {
    return this.request("PATCH", "/v1/me/settings", change);
  }

  /** 🔒 The caller's active devices. */
  devices() {
    return this.request("GET", "/v1/devices");
  }

  /** 🔒 Revokes one of the caller's devices (log out: revoke the current one). */
  revokeDevice(id) {
    return this.request("DELETE", `/v1/devices/${encodeURIComponent(id)}`);
  }

  /** 🔒 One page of the list: pinned first, then the most recently active.
   * `{ conversations, next_before? }`; `archived: true` lists the archived ones. */
  conversationsPage({ before, limit = 100, archived = false } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set("before", before);
    if (archived) q.set("archived", "true");
    return this.request("GET", `/v1/conversations?${q}`);
  }

  /** 🔒 Every conversation that is not archived, in list order (page by page). */
  async conversations({ archived = false } = {}) {
    const all = [];
    let before;
    for (;;) {
      const page = await this.conversationsPage({ before, archived });
      all.push(...page.conversations);
      if (!page.next_before) return all;
      before = page.next_before;
    }
  }

  /** 🔒 The caller's own settings for a conversation: any of `muted_until` (ms, -1 for
   * always, null to unmute), `pinned`, `archived`, `marked_unread`. */
  conversationSettings(id, patch) {
    return this.request("PATCH", `/v1/conversations/${encodeURIComponent(id)}/settings`, patch);
  }

  /** 🔒 Group admins: a new `title` and/or `avatar` (an image file id; null clears). */
  changeGroup(id, change) {
    return this.request("PATCH", `/v1/conversations/${encodeURIComponent(id)}`, change);
  }

  /** 🔒 Group admins: `role` is "admin" or "member". */
  setRole(id, user, role) {
    return this.request("PATCH", `/v1/conversations/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`, { role });
  }

  /** 🔒 Leaves a group (or, for admins, removes `user`). */
  removeMember(id, user) {
    return this.request("DELETE", `/v1/conversations/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`);
  }

  /** 🔒 Messages holding every word of `q`, newest first: `{ messages, next_before? }`. */
  search(q, { conv, before, limit = 20 } = {}) {
    const p = new URLSearchParams({ q, limit: String(limit) });
    if (conv) p.set("conv", conv);
    if (before) p.set("before", before);
    return this.request("GET", `/v1/search?${p}`);
  }

  /** 🔒 One conversation. */
  conversation(id) {
    return this.request("GET", `/v1/conversations/${encodeURIComponent(id)}`);
  }

  /** 🔒 The direct conversation with `user` (created, or the existing one). */
  direct(user) {
    return this.request("POST", "/v1/conversations", { kind: "direct", members: [user] });
  }

  /** 🔒 A new group; the caller is its admin. */
  group(title, members) {
    return this.request("POST", "/v1/conversations", { kind: "group", members, title });
  }

  /** 🔒 A page of history, newest first: `{ messages, next_before? }`. */
  history(conv, { before, limit = 50 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before !== undefined && before !== null) q.set("before", String(before));
    return this.request("GET", `/v1/conversations/${encodeURIComponent(conv)}/messages?${q}`);
  }

  /** 🔒 A media file's description. */
  mediaInfo(file) {
    return this.request("GET", `/v1/media/${encodeURIComponent(file)}/info`);
  }

  /** 🔒 The bytes of a file (`which`: null for the original, or `thumb`, `preview`, `poster`)
   * as a Blob. Downloads need the token, so a page shows them through blob: URLs. */
  async mediaBlob(file, which = null) {
    return this.#blob(`/v1/media/${encodeURIComponent(file)}` + (which ? `/${which}` : ""));
  }

  async #blob(path) {
    let res;
    try {
      res = await fetch(this.base + path, { headers: { Authorization: `Bearer ${this.token}` } });
    } catch (e) {
      throw new CourierError("network", String(e));
    }
    if (!res.ok) throw new CourierError(res.status === 404 ? "not_found" : "http_" + res.status, res.statusText, undefined, res.status);
    return res.blob();
  }

  /**
   * 🔒 Uploads a File or Blob with tus (resumable: an interrupted upload goes on from the
   * server's offset) and resolves to its media file (`{ id, mime, class, size, … }`).
   * @param {Blob} file
   * @param {{ tus: object, name?: string, keepMetadata?: boolean, onProgress?: (sent: number, total: number) => void }} options
   *   `tus` is tus-js-client (the page loads it as `tus.min.js`); `keepMetadata` stores an
   *   image as uploaded, EXIF (GPS) included, instead of stripped
   */
  upload(file, { tus, name, keepMetadata, onProgress } = {}) {
    return new Promise((resolve, reject) => {
      const metadata = { filename: name || file.name || "file" };
      if (keepMetadata) metadata.keep_metadata = "true";
      const up = new tus.Upload(file, {
        endpoint: this.base + "/v1/uploads",
        headers: { Authorization: `Bearer ${this.token}` },
        metadata,
        chunkSize: 8 << 20,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
        removeFingerprintOnSuccess: true,
        onProgress: (sent, total) => onProgress && onProgress(sent, total),
        onError: (e) => {
          const status = e.originalResponse && e.originalResponse.getStatus();
          let code = "network";
          try {
            code = JSON.parse(e.originalResponse.getBody()).error.code;
          } catch {
            if (status === 413) code = "payload_too_large";
            if (status === 415) code = "unsupported_media";
          }
          reject(new CourierError(code, String(e.message || e), undefined, status));
        },
        onSuccess: async () => {
          try {
            // Courier's own GET on the upload answers with the file it became.
            const here = typeof location !== "undefined" ? location.href : this.base;
            const path = new URL(up.url, here).pathname;
            const done = await this.request("GET", path);
            resolve(done.file);
          } catch (e) {
            reject(e);
          }
        },
      });
      up.findPreviousUploads().then((previous) => {
        if (previous.length) up.resumeFromPreviousUpload(previous[0]);
        up.start();
      });
    });
  }
}

let counter = 0;
/** A fresh id for a request or a cmid: unique per device. */
export function newId(prefix = "") {
  counter += 1;
  const rand = Math.random().toString(36).slice(2, 10);
  return `${prefix}${Date.now().toString(36)}-${counter.toString(36)}-${rand}`;
}

/** A Storage kept in memory (for runtimes without localStorage, and for tests). */
export const memoryStorage = () => {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
};

/**
 * One device's live connection.
 *
 * Events (`addEventListener(name, (e) => e.detail …)`):
 * - `status` `{ connected }`: the MQTT connection came up or went down.
 * - `update`: an update (docs/protocol.md "Updates"), each once, in `useq` order.
 * - `typing` `{ conv, user, on }` and `presence` `{ user, online, last_seen }`: ephemeral events.
 * - `outbox` `{ entry }`: an outbox entry changed (`entry.state`: `sending`, `sent`, `failed`).
 * - `reset` `{ floor }`: the device was away longer than the server keeps its log
 *   (`cursor_expired`): reload conversations and history; updates continue after `floor`.
 * - `unauthorized`: the server refused the device's token (revoked): log in again.
 */
export class Client extends EventBase {
  /**
   * @param {Session} session
   * @param {{ mqtt: { connect: Function }, api?: Api, storage?: KeyValueStorage, wsUrl?: string,
   *           requestTimeout?: number, watchNetwork?: boolean }} options
   *   `mqtt` is MQTT.js (`mqtt.esm.js`); `wsUrl` overrides the session's WebSocket address;
   *   `watchNetwork` (default true in browsers) drops the connection at once when the browser
   *   goes offline and reconnects as soon as it is back
   */
  constructor(session, options) {
    super();
    this.session = session;
    this.mqttLib = options.mqtt;
    this.api = options.api || new Api("", session.token);
    this.storage = options.storage || (typeof localStorage !== "undefined" ? localStorage : memoryStorage());
    this.wsUrl = options.wsUrl || session.mqtt.ws;
    this.requestTimeout = options.requestTimeout || 10000;
    this.watchNetwork =
      options.watchNetwork ?? (typeof window !== "undefined" && typeof window.addEventListener === "function");
    const base = `u/${session.user}/d/${session.device}`;
    this.topics = { req: `${base}/req/`, in: `${base}/in`, rsp: `${base}/rsp`, eph: `${base}/eph`, presence: `${base}/presence` };
    this.key = `courier:${session.device}:`;
    /** Highest useq handed over with nothing missing below it. */
    this.cursor = Number(this.storage.getItem(this.key + "cursor") || 0);
    this.held = new Map(); // useq → update, pushed ahead of a gap
    this.waiting = new Map(); // request id → { resolve, reject, timer }
    this.outbox = JSON.parse(this.storage.getItem(this.key + "outbox") || "[]").map((e) => ({ ...e, state: "sending" }));
    for (const e of this.outbox) this.#track(e);
    this.connected = false;
    this.syncing = null;
    this.gapTimer = null;
    this.ackTimer = null;
    this.acked = this.cursor;
  }

  /** Connects, and keeps reconnecting (every second) until `close`. */
  connect() {
    const will = { topic: this.topics.presence, payload: '{"online":false}', qos: 1, retain: false };
    this.mqtt = this.mqttLib.connect(this.wsUrl, {
      clientId: this.session.device,
      username: this.session.device,
      password: this.session.token,
      protocolVersion: 4,
      clean: true,
      keepalive: 20,
      reconnectPeriod: 1000,
      connectTimeout: 10000,
      queueQoSZero: false,
      will,
    });
    this.mqtt.on("connect", () => this.#onConnect());
    this.mqtt.on("close", () => this.#onClose());
    this.mqtt.on("message", (topic, payload) => this.#onMessage(topic, payload));
    this.mqtt.on("error", (e) => {
      // CONNACK 4 (bad user name or password) / 5 (not authorised): the token is dead.
      if (e && (e.code === 4 || e.code === 5 || e.code === 134 || e.code === 135)) {
        this.dispatchEvent(event("unauthorized"));
        this.close();
      }
    });
    if (this.watchNetwork) {
      this.offline = () => this.mqtt && this.mqtt.stream && this.mqtt.stream.destroy();
      this.online = () => this.mqtt && !this.mqtt.connected && !this.mqtt.disconnecting && this.mqtt.reconnect();
      window.addEventListener("offline", this.offline);
      window.addEventListener("online", this.online);
    }
  }

  /** Says it is going away (presence) and disconnects for good. */
  close() {
    if (this.watchNetwork && this.offline) {
      window.removeEventListener("offline", this.offline);
      window.removeEventListener("online", this.online);
    }
    if (!this.mqtt) return;
    const m = this.mqtt;
    this.mqtt = null;
    if (m.connected) m.publish(this.topics.presence, '{"online":false}', { qos: 0 });
    m.end(false);
    this.#setConnected(false);
  }

  /**
   * Queues a message for `conv` and sends it whenever connected. `content` is the message's
   * fields (`{ kind: "text", text }`, `{ kind: "image", attachments: [{ file }] }`, …).
   * Returns the outbox entry: `{ cmid, conv, content, state, done }`, where `done` resolves to
   * the server's answer (`{ msg, conv, seq, ts, cmid }`) or rejects with a CourierError the
   * server will keep giving (e.g. `not_member`, `invalid_message`).
   * @param {string} conv
   * @param {Content} content
   * @returns {OutboxEntry}
   */
  send(conv, content) {
    const entry = { cmid: newId("c"), conv, content, created: Date.now(), state: "sending" };
    this.outbox.push(entry);
    this.#saveOutbox();
    this.#track(entry);
    this.dispatchEvent(event("outbox", { entry }));
    if (this.connected) this.#transmit(entry);
    return entry;
  }

  /**
   * Marks `conv` read up to `seq` (blue ticks for the senders).
   * @param {string} conv
   * @param {number} seq
   * @returns {Promise<any>}
   */
  read(conv, seq) {
    return this.request("read", { conv, seq });
  }

  /**
   * Says the user started (`on`) or stopped typing in `conv`. Fire and forget.
   * @param {string} conv
   * @param {boolean} on
   */
  typing(conv, on) {
    if (this.connected) this.mqtt.publish(this.topics.req + "typing", JSON.stringify({ conv, on }), { qos: 0 });
  }

  /**
   * Edits one of the user's text messages.
   * @param {string} msg
   * @param {string} text
   * @returns {Promise<any>}
   */
  edit(msg, text) {
    return this.request("edit", { msg, text });
  }

  /**
   * Deletes a message for `"me"` or `"everyone"`.
   * @param {string} msg
   * @param {"me" | "everyone"} [forWhom]
   * @returns {Promise<any>}
   */
  delete(msg, forWhom = "me") {
    return this.request("delete", { msg, for: forWhom });
  }

  /**
   * Adds (`on`) or removes a reaction.
   * @param {string} msg
   * @param {string} emoji
   * @param {boolean} [on]
   * @returns {Promise<any>}
   */
  react(msg, emoji, on = true) {
    return this.request("react", { msg, emoji, on });
  }

  /**
   * Any request op (docs/protocol.md "Ops"): resolves to its `result`.
   * @param {string} op
   * @param {object} body
   * @returns {Promise<any>}
   */
  request(op, body) {
    if (!this.connected) return Promise.reject(new CourierError("disconnected", "not connected"));
    const id = newId("r");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new CourierError("timeout", `no answer to ${op} within ${this.requestTimeout} ms`));
      }, this.requestTimeout);
      this.waiting.set(id, { resolve, reject, timer });
      this.mqtt.publish(this.topics.req + op, JSON.stringify({ ...body, id }), { qos: 1 });
    });
  }

  #track(entry) {
    entry.done = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    // Nobody has to listen: a refused message is also an `outbox` event.
    entry.done.catch(() => {});
  }

  #saveOutbox() {
    const keep = this.outbox.map(({ cmid, conv, content, created }) => ({ cmid, conv, content, created }));
    this.storage.setItem(this.key + "outbox", JSON.stringify(keep));
  }

  async #transmit(entry) {
    if (entry.inflight) return;
    entry.inflight = true;
    try {
      const result = await this.request("send", { conv: entry.conv, cmid: entry.cmid, ...entry.content });
      this.#settle(entry, "sent", result);
      entry.resolve(result);
    } catch (e) {
      entry.inflight = false;
      if (!(e instanceof CourierError) || e.retryable) {
        // Goes again: after the server's delay, on the next connect, or now on a timeout.
        const wait = e.code === "rate_limited" ? (e.details && e.details.retry_after_ms) || 1000 : e.code === "disconnected" ? null : 500;
        if (wait !== null) setTimeout(() => this.connected && this.#transmit(entry), wait);
        return;
      }
      entry.error = e;
      this.#settle(entry, "failed");
      entry.reject(e);
    }
  }

  #settle(entry, state, result) {
    entry.state = state;
    entry.result = result;
    this.outbox = this.outbox.filter((e) => e !== entry);
    this.#saveOutbox();
    this.dispatchEvent(event("outbox", { entry }));
  }

  #setConnected(up) {
    if (this.connected === up) return;
    this.connected = up;
    this.dispatchEvent(event("status", { connected: up }));
  }

  #onConnect() {
    const t = this.topics;
    this.mqtt.subscribe({ [t.in]: { qos: 1 }, [t.rsp]: { qos: 1 }, [t.eph]: { qos: 0 } }, (err) => {
      if (err || !this.mqtt) return;
      this.mqtt.publish(t.presence, '{"online":true}', { qos: 1 });
      this.#setConnected(true);
      // Connect, subscribe, then sync: nothing pushed in between is missed.
      this.#catchUp();
      for (const e of this.outbox) this.#transmit(e);
    });
  }

  #onClose() {
    this.#setConnected(false);
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new CourierError("disconnected", "the connection closed before the answer"));
      this.waiting.delete(id);
    }
  }

  #onMessage(topic, payload) {
    let body;
    try {
      body = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    if (topic === this.topics.rsp) {
      const w = this.waiting.get(body.id);
      if (!w) return;
      this.waiting.delete(body.id);
      clearTimeout(w.timer);
      if (body.ok) w.resolve(body.result);
      else w.reject(new CourierError(body.error.code, body.error.message, body.error.details));
    } else if (topic === this.topics.in) {
      this.#hold(body);
      this.#drain();
      if (this.held.size && !this.gapTimer) {
        // A gap: pushes may come out of order; if it does not fill soon, sync.
        this.gapTimer = setTimeout(() => {
          this.gapTimer = null;
          if (this.held.size) this.#catchUp();
        }, 500);
      }
    } else if (topic === this.topics.eph) {
      if (body.type === "typing" || body.type === "presence") {
        this.dispatchEvent(event(body.type, body));
      }
    }
  }

  #hold(update) {
    if (typeof update.useq === "number" && update.useq > this.cursor) this.held.set(update.useq, update);
  }

  #drain() {
    let moved = false;
    while (this.held.has(this.cursor + 1)) {
      const u = this.held.get(this.cursor + 1);
      this.held.delete(this.cursor + 1);
      this.cursor += 1;
      moved = true;
      try {
        this.dispatchEvent(event("update", u));
      } catch (e) {
        console.error("update handler", e);
      }
    }
    if (moved) {
      this.storage.setItem(this.key + "cursor", String(this.cursor));
      if (!this.ackTimer) this.ackTimer = setTimeout(() => this.#ack(), 150);
    }
  }

  #ack() {
    this.ackTimer = null;
    if (this.cursor <= this.acked || !this.connected) return;
    const useq = this.cursor;
    this.request("ack", { useq }).then(
      () => (this.acked = Math.max(this.acked, useq)),
      () => {}, // acked on the next connect's catch-up instead
    );
  }

  /** Syncs until the server has nothing more after the cursor; one run at a time. */
  #catchUp() {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        for (;;) {
          let page;
          try {
            page = await this.request("sync", { after: this.cursor, limit: 500 });
          } catch (e) {
            if (e.code === "cursor_expired") {
              this.cursor = e.details.floor;
              this.held.clear();
              this.storage.setItem(this.key + "cursor", String(this.cursor));
              this.dispatchEvent(event("reset", { floor: this.cursor }));
              continue;
            }
            return; // disconnected or timed out: the next connect syncs again
          }
          for (const u of page.updates) this.#hold(u);
          this.#drain();
          if (!page.more) break;
        }
      } while (this.syncAgain);
      if (this.cursor > this.acked) this.#ack();
    })().finally(() => {
      this.syncing = null;
    });
    return this.syncing;
  }
}

/** A fresh id for a request or a cmid: unique per device. */
export function newId(prefix?: string): string;
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
    constructor(code: string, message: string, details?: object, status?: number);
    code: string;
    details: any;
    status: number;
    /** Whether trying the same request again later may succeed. */
    get retryable(): boolean;
}
/** The HTTP API (docs/protocol.md, "HTTP API" and "Media"). Methods marked 🔒 need `token`. */
export class Api {
    /**
     * @param {string} [base] the server's HTTP address; the page's own origin when empty
     * @param {string} [token] a device token, for the 🔒 routes
     */
    constructor(base?: string, token?: string);
    base: string;
    token: string;
    /**
     * Any route: `method` and `path` (`/v1/…`), with `body` as JSON. Resolves to the answer's
     * JSON (`null` for 204); rejects with a CourierError carrying the server's code.
     * @param {string} method
     * @param {string} path
     * @param {object} [body]
     * @returns {Promise<any>}
     */
    request(method: string, path: string, body?: object): Promise<any>;
    /**
     * Registers a user: `{ user }`.
     * @param {string} username
     * @param {string} password
     * @returns {Promise<{ user: string }>}
     */
    signUp(username: string, password: string): Promise<{
        user: string;
    }>;
    /**
     * Logs in as a new device. Also keeps the token for this Api's later calls.
     * @param {string} username
     * @param {string} password
     * @param {string} [deviceName] shown in the user's device list
     * @param {string} [platform] `web`, `ios`, `android`, …
     * @returns {Promise<Session>}
     */
    logIn(username: string, password: string, deviceName?: string, platform?: string): Promise<Session>;
    /** 🔒 Profiles (`[{ user, username, display_name?, avatar?, deleted? }]`) for those names
     * (or ids) that exist. */
    users({ names, ids }: {
        names?: any[];
        ids?: any[];
    }): Promise<any>;
    /** 🔒 The caller's profile: `{ user, username, display_name?, avatar? }`. */
    me(): Promise<any>;
    /** 🔒 Sets the fields given (`display_name`, `avatar`: a processed image's file id; `null`
     * clears one) and returns the profile. */
    changeProfile(change: any): Promise<any>;
    /** 🔒 The image at a profile's `avatar` address, as a Blob. */
    avatarBlob(avatar: any): Promise<Blob>;
    /** 🔒 Deletes the caller's account (its password, again). Every device is signed out. */
    deleteAccount(password: any): Promise<any>;
    /** 🔒 A new password; every other device is signed out. */
    changePassword(old: any, password: any): Promise<any>;
    /** 🔒 Blocks a user: no direct messages either way, no typing or presence, their group
     * messages hidden. */
    block(user: any): Promise<any>;
    /** 🔒 Lifts a block. */
    unblock(user: any): Promise<any>;
    /** 🔒 The users the caller blocked: `[{ user, username, since }]`. */
    blocks(): Promise<any>;
    /** 🔒 Reports a user or a message to the server's operators: `{ user?, msg?, reason:
     * "spam"|"abuse"|"other", note? }`. */
    report(report: any): Promise<any>;
    /** 🔒 The caller's account settings: `{ group_adds }`. */
    settings(): Promise<any>;
    /** 🔒 Changes account settings (the fields given) and returns them all. */
    changeSettings(change: any): Promise<any>;
    /** 🔒 The caller's active devices. */
    devices(): Promise<any>;
    /** 🔒 Revokes one of the caller's devices (log out: revoke the current one). */
    revokeDevice(id: any): Promise<any>;
    /** 🔒 One page of the list: pinned first, then the most recently active.
     * `{ conversations, next_before? }`; `archived: true` lists the archived ones. */
    conversationsPage({ before, limit, archived }?: {
        limit?: number;
        archived?: boolean;
    }): Promise<any>;
    /** 🔒 Every conversation that is not archived, in list order (page by page). */
    conversations({ archived }?: {
        archived?: boolean;
    }): Promise<any[]>;
    /** 🔒 The caller's own settings for a conversation: any of `muted_until` (ms, -1 for
     * always, null to unmute), `pinned`, `archived`, `marked_unread`. */
    conversationSettings(id: any, patch: any): Promise<any>;
    /** 🔒 Group admins: a new `title` and/or `avatar` (an image file id; null clears). */
    changeGroup(id: any, change: any): Promise<any>;
    /** 🔒 Group admins: `role` is "admin" or "member". */
    setRole(id: any, user: any, role: any): Promise<any>;
    /** 🔒 Leaves a group (or, for admins, removes `user`). */
    removeMember(id: any, user: any): Promise<any>;
    /** 🔒 Messages holding every word of `q`, newest first: `{ messages, next_before? }`. */
    search(q: any, { conv, before, limit }?: {
        limit?: number;
    }): Promise<any>;
    /** 🔒 One conversation. */
    conversation(id: any): Promise<any>;
    /** 🔒 The direct conversation with `user` (created, or the existing one). */
    direct(user: any): Promise<any>;
    /** 🔒 A new group; the caller is its admin. */
    group(title: any, members: any): Promise<any>;
    /** 🔒 A page of history, newest first: `{ messages, next_before? }`. */
    history(conv: any, { before, limit }?: {
        limit?: number;
    }): Promise<any>;
    /** 🔒 A media file's description. */
    mediaInfo(file: any): Promise<any>;
    /** 🔒 The bytes of a file (`which`: null for the original, or `thumb`, `preview`, `poster`)
     * as a Blob. Downloads need the token, so a page shows them through blob: URLs. */
    mediaBlob(file: any, which?: any): Promise<Blob>;
    /**
     * 🔒 Uploads a File or Blob with tus (resumable: an interrupted upload goes on from the
     * server's offset) and resolves to its media file (`{ id, mime, class, size, … }`).
     * @param {Blob} file
     * @param {{ tus: object, name?: string, keepMetadata?: boolean, onProgress?: (sent: number, total: number) => void }} options
     *   `tus` is tus-js-client (the page loads it as `tus.min.js`); `keepMetadata` stores an
     *   image as uploaded, EXIF (GPS) included, instead of stripped
     */
    upload(file: Blob, { tus, name, keepMetadata, onProgress }?: {
        tus: object;
        name?: string;
        keepMetadata?: boolean;
        onProgress?: (sent: number, total: number) => void;
    }): Promise<any>;
    #private;
}
export function memoryStorage(): {
    getItem: (k: any) => any;
    setItem: (k: any, v: any) => Map<any, any>;
    removeItem: (k: any) => boolean;
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
export class Client extends EventTarget {
    /**
     * @param {Session} session
     * @param {{ mqtt: { connect: Function }, api?: Api, storage?: KeyValueStorage, wsUrl?: string,
     *           requestTimeout?: number, watchNetwork?: boolean }} options
     *   `mqtt` is MQTT.js (`mqtt.esm.js`); `wsUrl` overrides the session's WebSocket address;
     *   `watchNetwork` (default true in browsers) drops the connection at once when the browser
     *   goes offline and reconnects as soon as it is back
     */
    constructor(session: Session, options: {
        mqtt: {
            connect: Function;
        };
        api?: Api;
        storage?: KeyValueStorage;
        wsUrl?: string;
        requestTimeout?: number;
        watchNetwork?: boolean;
    });
    session: Session;
    mqttLib: {
        connect: Function;
    };
    api: Api;
    storage: {
        getItem: (k: any) => any;
        setItem: (k: any, v: any) => Map<any, any>;
        removeItem: (k: any) => boolean;
    } | KeyValueStorage;
    wsUrl: string;
    requestTimeout: number;
    watchNetwork: boolean;
    topics: {
        req: string;
        in: string;
        rsp: string;
        eph: string;
        presence: string;
    };
    key: string;
    /** Highest useq handed over with nothing missing below it. */
    cursor: number;
    held: Map<any, any>;
    waiting: Map<any, any>;
    outbox: any;
    connected: boolean;
    syncing: any;
    gapTimer: any;
    ackTimer: NodeJS.Timeout;
    acked: number;
    /** Connects, and keeps reconnecting (every second) until `close`. */
    connect(): void;
    mqtt: any;
    offline: () => any;
    online: () => any;
    /** Says it is going away (presence) and disconnects for good. */
    close(): void;
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
    send(conv: string, content: Content): OutboxEntry;
    /**
     * Marks `conv` read up to `seq` (blue ticks for the senders).
     * @param {string} conv
     * @param {number} seq
     * @returns {Promise<any>}
     */
    read(conv: string, seq: number): Promise<any>;
    /**
     * Says the user started (`on`) or stopped typing in `conv`. Fire and forget.
     * @param {string} conv
     * @param {boolean} on
     */
    typing(conv: string, on: boolean): void;
    /**
     * Edits one of the user's text messages.
     * @param {string} msg
     * @param {string} text
     * @returns {Promise<any>}
     */
    edit(msg: string, text: string): Promise<any>;
    /**
     * Deletes a message for `"me"` or `"everyone"`.
     * @param {string} msg
     * @param {"me" | "everyone"} [forWhom]
     * @returns {Promise<any>}
     */
    delete(msg: string, forWhom?: "me" | "everyone"): Promise<any>;
    /**
     * Adds (`on`) or removes a reaction.
     * @param {string} msg
     * @param {string} emoji
     * @param {boolean} [on]
     * @returns {Promise<any>}
     */
    react(msg: string, emoji: string, on?: boolean): Promise<any>;
    /**
     * Any request op (docs/protocol.md "Ops"): resolves to its `result`.
     * @param {string} op
     * @param {object} body
     * @returns {Promise<any>}
     */
    request(op: string, body: object): Promise<any>;
    syncAgain: boolean;
    #private;
}
/**
 * What a log-in answers (docs/protocol.md, `POST /v1/sessions`); keep it: one device per install.
 */
export type Session = {
    /**
     * the user's id
     */
    user: string;
    /**
     * the device's id (also its MQTT client id and user name)
     */
    device: string;
    /**
     * the device's token (its MQTT password, and the HTTP bearer)
     */
    token: string;
    /**
     * where to connect: `ws` is
     * `ws://…/mqtt` or, with TLS on, `wss://…/mqtt`
     */
    mqtt: {
        tcp: string;
        ws: string;
        tls?: string;
    };
    username?: string;
};
/**
 * A message's content as sent (docs/protocol.md, "send"): `{ kind: "text", text }`,
 * `{ kind: "image", attachments: [{ file }] }`, …
 */
export type Content = {
    kind: string;
    text?: string;
    caption?: string;
    attachments?: {
        file: string;
    }[];
    mentions?: string[];
    reply_to?: string;
    [field: string]: any;
};
/**
 * The server's answer to a send.
 */
export type SendResult = {
    msg: string;
    conv: string;
    seq: number;
    ts: number;
    cmid: string;
};
/**
 * A message in the outbox: `state` is `sending` until the server answers (`sent`) or refuses
 * it for good (`failed`); `done` settles then.
 */
export type OutboxEntry = {
    cmid: string;
    conv: string;
    content: Content;
    created: number;
    state: "sending" | "sent" | "failed";
    done: Promise<SendResult>;
};
/**
 * An update on the device's `in` stream (docs/protocol.md, "Updates"): its `type`
 * (`message`, `receipt`, `edit`, `delete`, `reaction`, `member`, `settings`, …), its `useq`,
 * and the fields of its type.
 */
export type Update = {
    type: string;
    useq: number;
    [field: string]: any;
};
/**
 * Where the client keeps its cursor and outbox: `localStorage`, `memoryStorage()`, or any
 * object with these synchronous methods.
 */
export type KeyValueStorage = {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
    removeItem(key: string): void;
};

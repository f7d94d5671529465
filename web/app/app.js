// The web chat served at `/`: a page over Courier's JS SDK (courier.js) and nothing else of the
// server's. State lives in memory, rebuilt from the HTTP API on load and kept current by the
// SDK's ordered update stream; the SDK keeps the outbox and the stream cursor in localStorage.

import mqtt from "/web/mqtt.esm.js";
import { Api, Client, CourierError } from "/web/courier.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "courier:session";

/** Builds an element; children are nodes or text (never parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const state = {
  api: null,
  client: null,
  me: null, // session: { user, device, token, username, mqtt }
  convs: new Map(), // id → conversation (server object) + { lastMsg, typing: Map user → timer }
  msgs: new Map(), // conv → { bySeq: Map seq → msg, nextBefore, loaded, loading }
  people: new Map(), // user id → profile: { user, username, display_name?, avatar?, deleted? }
  avatars: new Map(), // avatar address → Promise<blob: URL>
  blocked: new Set(), // user ids this user blocked
  presence: new Map(), // user id → { online, last_seen }
  files: new Map(), // file id → latest facts from `media` updates
  blobs: new Map(), // "file/which" → Promise<blob: URL>
  uploads: new Map(), // local id → { conv, name, sent, total, error }
  open: null,
  showArchived: false, // the list shows the archived conversations instead
  mentionPicks: new Map(), // "@Name" typed through the autocomplete → user id
  found: null, // the message a search result opened, shown marked
};

// ---------- start, log in, log out ----------

async function start() {
  const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  if (!saved) return showLogin();
  state.me = saved;
  state.api = new Api("", saved.token);
  try {
    await loadConversations();
    listingFresh = true;
  } catch (e) {
    if (e instanceof CourierError && e.status === 401) {
      forget();
      return showLogin("Your session ended; log in again.");
    }
    // Offline at load: show what the outbox holds and keep trying through the client.
  }
  showMain();
}

function showLogin(message = "") {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const action = ev.submitter ? ev.submitter.value : "login";
  const username = form.username.value.trim();
  const password = form.password.value;
  const api = new Api();
  $("login-error").textContent = "";
  try {
    if (action === "signup") await api.signUp(username, password);
    const device = `${browserName()} (web)`;
    const s = await api.logIn(username, password, device, "web");
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    location.reload();
  } catch (e) {
    const words = {
      bad_credentials: "Wrong username or password.",
      username_taken: "That username is taken.",
      rate_limited: "Too many attempts; wait a minute.",
      network: "Cannot reach the server.",
    };
    $("login-error").textContent = words[e.code] || e.message;
  }
});

function browserName() {
  const ua = navigator.userAgent;
  return /Firefox/.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrome/.test(ua) ? "Chrome" : /Safari/.test(ua) ? "Safari" : "Browser";
}

function forget() {
  if (state.me) {
    for (const k of ["cursor", "outbox"]) localStorage.removeItem(`courier:${state.me.device}:${k}`);
  }
  localStorage.removeItem(SESSION_KEY);
}

$("log-out").addEventListener("click", async () => {
  try {
    await state.api.revokeDevice(state.me.device);
  } catch {
    // Offline: the device stays listed until revoked from another one.
  }
  if (state.client) state.client.close();
  forget();
  location.reload();
});

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("me-name").textContent = state.me.username;
  state.api.me().then(setMe, () => {});
  state.api.settings().then((s) => ($("group-adds").value = s.group_adds), () => {});
  state.api.blocks().then(
    (list) => {
      state.blocked = new Set(list.map((b) => b.user));
      renderHead();
    },
    () => {},
  );
  renderList();
  document.addEventListener("visibilitychange", markRead);
  claimConnection(false);
}

/** One tab per browser holds the device's connection (a second one would take the MQTT
 * client id over, and the two would push each other off): the others offer "Use here". */
function claimConnection(steal) {
  if (!navigator.locks) return startClient();
  navigator.locks
    .request(`courier:${state.me.device}`, steal ? { steal: true } : { ifAvailable: true }, async (lock) => {
      if (!lock) return elsewhere(true);
      elsewhere(false);
      startClient();
      // Held for the life of the page, or until another tab steals it.
      await new Promise(() => {});
    })
    .catch(() => {
      // Stolen by another tab.
      stopClient();
      elsewhere(true);
    });
}

function elsewhere(yes) {
  $("elsewhere").hidden = !yes;
  $("composer").classList.toggle("disabled", yes);
}

$("use-here").addEventListener("click", () => claimConnection(true));

$("group-adds").addEventListener("change", async (ev) => {
  const select = ev.target;
  try {
    const s = await state.api.changeSettings({ group_adds: select.value });
    select.value = s.group_adds;
  } catch {
    // Offline or refused: show what the server still has.
    state.api.settings().then((s) => (select.value = s.group_adds), () => {});
  }
});

function startClient() {
  // Served over HTTPS, the page may only open wss://: same host and port, TLS in front.
  const wsUrl = location.protocol === "https:" ? state.me.mqtt.ws.replace(/^ws:/, "wss:") : undefined;
  const client = new Client(state.me, { mqtt, api: state.api, wsUrl });
  state.client = client;
  client.addEventListener("status", (e) => setOnline(e.detail.connected));
  client.addEventListener("update", (e) => onUpdate(e.detail));
  client.addEventListener("typing", (e) => onTyping(e.detail));
  client.addEventListener("presence", (e) => {
    state.presence.set(e.detail.user, e.detail);
    renderList();
    renderHead();
  });
  client.addEventListener("outbox", (e) => onOutbox(e.detail.entry));
  client.addEventListener("reset", () => loadConversations().then(() => reloadOpen()));
  client.addEventListener("unauthorized", () => {
    forget();
    showLogin("This device was logged out; log in again.");
  });
  client.connect();
  if (state.open) renderMessages();
}

function stopClient() {
  if (!state.client) return;
  state.client.close();
  state.client = null;
  setOnline(false);
  $("offline-banner").hidden = true;
}

/** Set when the listing was just loaded (at start), so the first connect need not reload it. */
let listingFresh = false;

function setOnline(up) {
  $("status-dot").dataset.state = up ? "online" : "offline";
  $("status-dot").title = up ? "connected" : "offline";
  $("offline-banner").hidden = up;
  // On a reconnect, whatever changed while away came through the stream; the listing's
  // counts are exact.
  if (up && !listingFresh) loadConversations().catch(() => {});
  if (up) listingFresh = false;
}

// ---------- conversations ----------

async function loadConversations() {
  const list = await state.api.conversations();
  const ids = new Set();
  for (const c of list) {
    ids.add(c.id);
    mergeConv(c);
  }
  for (const id of [...state.convs.keys()]) if (!ids.has(id)) state.convs.delete(id);
  await resolveNames(list.flatMap((c) => c.members));
  renderList();
  renderHead();
}

function mergeConv(c) {
  const old = state.convs.get(c.id);
  const conv = { ...c, lastMsg: old ? old.lastMsg : null, typing: old ? old.typing : new Map() };
  conv.receipts = new Map((c.receipts || []).map((r) => [r.user, r]));
  if (old && old.receipts) {
    // Receipts only grow: keep whichever is further along.
    for (const [u, r] of old.receipts) {
      const n = conv.receipts.get(u);
      if (n) conv.receipts.set(u, { user: u, delivered_seq: Math.max(n.delivered_seq, r.delivered_seq), read_seq: Math.max(n.read_seq, r.read_seq) });
    }
  }
  for (const p of c.presence || []) state.presence.set(p.user, p);
  for (const p of c.profiles || []) state.people.set(p.user, p);
  state.convs.set(c.id, conv);
  // The listing's newest message, for the preview line and the order.
  if (c.last_message) noteLast(c.last_message);
  return conv;
}

async function resolveNames(users) {
  const missing = [...new Set(users)].filter((u) => !state.people.has(u));
  for (let i = 0; i < missing.length; i += 100) {
    const found = await state.api.users({ ids: missing.slice(i, i + 100) });
    for (const f of found) state.people.set(f.user, f);
  }
}

/** What a user is called here: their display name, else their username. */
function nameOf(u) {
  const p = state.people.get(u);
  if (!p) return u;
  if (p.deleted) return "Deleted account";
  return p.display_name || p.username;
}

/** Shows `p`'s avatar in `img` (hidden when there is none). Avatars need the token, so they
 * are fetched once per address and shown through blob: URLs. */
function showAvatar(img, p) {
  if (!p || !p.avatar) {
    img.hidden = true;
    img.removeAttribute("src");
    return;
  }
  if (!state.avatars.has(p.avatar)) {
    const url = state.api.avatarBlob(p.avatar).then((b) => URL.createObjectURL(b));
    url.catch(() => state.avatars.delete(p.avatar));
    state.avatars.set(p.avatar, url);
  }
  state.avatars.get(p.avatar).then(
    (url) => {
      img.src = url;
      img.hidden = false;
    },
    () => (img.hidden = true),
  );
}

/** This user's own profile, as the header shows it. */
function setMe(p) {
  state.people.set(p.user, p);
  $("me-name").textContent = p.display_name || p.username;
  showAvatar($("me-avatar"), p);
}

/** The other member of a direct conversation. */
const otherOf = (c) => (c && c.kind === "direct" ? c.members.find((m) => m !== state.me.user) : null);

function titleOf(c) {
  if (c.kind === "group") return c.title || c.members.map(nameOf).join(", ");
  const other = c.members.find((m) => m !== state.me.user);
  return nameOf(other || state.me.user);
}

function noteLast(m) {
  const c = state.convs.get(m.conv);
  if (c && (!c.lastMsg || c.lastMsg.seq <= m.seq)) c.lastMsg = m;
}

function seenText(user) {
  const person = state.people.get(user);
  if (person && person.deleted) return "";
  const p = state.presence.get(user);
  if (!p) return "";
  if (p.online) return "online";
  if (!p.last_seen) return "";
  const d = new Date(p.last_seen);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `last seen ${today ? time : d.toLocaleDateString() + " " + time}`;
}

function typingText(c) {
  const who = [...c.typing.keys()].map(nameOf);
  if (!who.length) return "";
  return c.kind === "group" ? `${who.join(", ")} typing…` : "typing…";
}

/** What a system line says: who did what. */
function systemText(m) {
  const by = m.sender === state.me.user ? "You" : nameOf(m.sender);
  const who = (m.users || []).map((u) => (u === state.me.user ? "you" : nameOf(u))).join(", ");
  switch (m.event) {
    case "created": return `${by} created the group`;
    case "added": return `${by} added ${who}`;
    case "removed": return `${by} removed ${who}`;
    case "left": return `${by} left`;
    case "title_changed": return m.title ? `${by} named the group "${m.title}"` : `${by} removed the group's name`;
    case "avatar_changed": return `${by} changed the group's picture`;
    case "role_changed": return m.role === "admin" ? `${who} ${who === "you" ? "are" : "is"} now an admin` : `${who} ${who === "you" ? "are" : "is"} no longer an admin`;
    default: return `${by} changed the group`;
  }
}

function preview(m) {
  // A message hidden because its sender is blocked shows nothing at all.
  if (!m || m.hidden) return "";
  if (m.kind === "system") return systemText(m);
  const who = m.sender === state.me.user ? "You: " : "";
  if (m.deleted) return who + "message deleted";
  const kinds = { image: "📷 Photo", video: "🎬 Video", voice: "🎤 Voice message", file: "📄 File", sticker: "Sticker", location: "📍 Location", contact: "👤 Contact" };
  return who + (m.text || kinds[m.kind] || m.kind);
}

function activity(c) {
  return Math.max(c.activity || c.created_at, c.lastMsg ? c.lastMsg.ts : 0);
}

function renderList() {
  const ul = $("conv-list");
  ul.replaceChildren();
  // As the server lists them: pinned first, then the most recently active.
  $("show-archived").classList.toggle("on", state.showArchived);
  const convs = [...state.convs.values()]
    .filter((c) => !!c.archived === state.showArchived)
    .sort((a, b) => Number(!!b.pinned) - Number(!!a.pinned) || activity(b) - activity(a));
  for (const c of convs) {
    const other = otherOf(c);
    const typing = typingText(c);
    const seen = other ? seenText(other) : `${c.members.length} members`;
    const pic = el("img", { class: "avatar", alt: "", hidden: true, "data-testid": "conv-avatar" });
    if (other) showAvatar(pic, state.people.get(other));
    ul.append(
      el(
        "li",
        { class: "conv" + (c.id === state.open ? " open" : ""), "data-testid": "conv", "data-conv": c.id, onclick: () => openConv(c.id) },
        pic,
        el(
          "div",
          { class: "body" },
          el("div", { class: "name", "data-testid": "conv-name" }, titleOf(c)),
          el("div", { class: "last" + (typing ? " typing" : ""), "data-testid": "conv-last" }, typing || preview(c.lastMsg)),
          el("div", { class: "seen" + (seen === "online" ? " online" : ""), "data-testid": "conv-seen" }, seen),
        ),
        el(
          "span",
          { class: "marks" },
          c.pinned ? el("span", { "data-testid": "pinned", title: "pinned" }, "📌") : null,
          isMuted(c) ? el("span", { "data-testid": "muted", title: "muted" }, "🔕") : null,
          c.mentioned ? el("span", { class: "mentioned", "data-testid": "mentioned", title: "you were mentioned" }, "@") : null,
        ),
        c.unread > 0 || c.marked_unread ? el("span", { class: "unread", "data-testid": "unread" }, c.unread > 0 ? String(c.unread) : "•") : null,
      ),
    );
  }
}

const isMuted = (c) => c.muted_until === -1 || (c.muted_until && c.muted_until > Date.now());

// ---------- one conversation ----------

async function openConv(id) {
  state.open = id;
  $("no-chat").hidden = true;
  document.querySelector(".chat-head").hidden = false;
  $("messages").hidden = false;
  $("composer").hidden = false;
  renderList();
  renderHead();
  const box = msgBox(id);
  renderMessages({ bottom: true });
  if (!box.loaded) await loadOlder(id);
  renderMessages({ bottom: true });
  markRead();
  $("text").focus();
}

function reloadOpen() {
  state.msgs.clear();
  if (state.open) openConv(state.open);
}

function msgBox(conv) {
  if (!state.msgs.has(conv)) state.msgs.set(conv, { bySeq: new Map(), nextBefore: undefined, loaded: false, loading: false });
  return state.msgs.get(conv);
}

async function loadOlder(conv) {
  const box = msgBox(conv);
  if (box.loading || (box.loaded && box.nextBefore === undefined)) return;
  box.loading = true;
  try {
    const page = await state.api.history(conv, { before: box.nextBefore, limit: 40 });
    for (const m of page.messages) if (!box.bySeq.has(m.seq)) box.bySeq.set(m.seq, m);
    box.nextBefore = page.next_before ?? undefined;
    box.loaded = true;
    await resolveNames(page.messages.map((m) => m.sender));
  } catch {
    // Offline: the page stays as it is; opening again retries.
  } finally {
    box.loading = false;
  }
}

$("messages").addEventListener("scroll", async () => {
  const list = $("messages");
  if (list.scrollTop > 60 || !state.open) return;
  const box = msgBox(state.open);
  if (!box.loaded || box.nextBefore === undefined || box.loading) return;
  const fromBottom = list.scrollHeight - list.scrollTop;
  await loadOlder(state.open);
  renderMessages();
  list.scrollTop = list.scrollHeight - fromBottom;
});

function renderHead() {
  const c = state.convs.get(state.open);
  if (!c) return;
  $("chat-title").textContent = titleOf(c);
  const typing = typingText(c);
  const other = otherOf(c);
  $("chat-sub").textContent = typing || (other ? seenText(other) : c.members.map(nameOf).join(", "));
  $("chat-sub").classList.toggle("typing", !!typing);
  const person = other && state.people.get(other);
  const gone = !!(person && person.deleted);
  showAvatar($("chat-avatar"), other ? person : null);
  const blocked = !!other && state.blocked.has(other);
  $("block").hidden = !other || gone;
  $("block").textContent = blocked ? "Unblock" : "Block";
  $("report").hidden = !other || gone;
  $("pin").textContent = c.pinned ? "Unpin" : "Pin";
  $("mute").textContent = isMuted(c) ? "Unmute" : "Mute";
  $("archive").textContent = c.archived ? "Unarchive" : "Archive";
  $("group-settings").hidden = c.kind !== "group";
  const banner = gone ? "This account was deleted: you can read this chat, not write to it." : blocked ? `You blocked ${nameOf(other)}. Unblock to send messages.` : "";
  $("blocked-banner").textContent = banner;
  $("blocked-banner").hidden = !banner;
  $("composer").classList.toggle("disabled", !!banner || !$("elsewhere").hidden);
}

let toastTimer = null;
function toast(text) {
  $("toast").textContent = text;
  $("toast").hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => ($("toast").hidden = true), 5000);
}

/** ✓ stored, ✓✓ on a device of every other member, blue ✓✓ read by every other member. */
function tickState(c, seq) {
  const others = c.members.filter((m) => m !== state.me.user);
  if (!others.length) return "read";
  const r = (u) => c.receipts.get(u) || { delivered_seq: 0, read_seq: 0 };
  if (others.every((u) => r(u).read_seq >= seq)) return "read";
  if (others.every((u) => r(u).delivered_seq >= seq)) return "delivered";
  return "sent";
}

const TICKS = { sending: "…", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "! not sent" };

function renderMessages({ bottom = false } = {}) {
  const list = $("messages");
  const conv = state.convs.get(state.open);
  if (!conv) return;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const box = msgBox(state.open);
  const nodes = [];
  if (box.loaded && box.nextBefore !== undefined) nodes.push(el("div", { class: "older" }, "scroll up for older messages"));
  const seqs = [...box.bySeq.keys()].sort((a, b) => a - b);
  const shownCmids = new Set();
  for (const s of seqs) {
    const m = box.bySeq.get(s);
    if (m.deleted === "me") continue;
    if (m.kind === "system") {
      nodes.push(el("div", { class: "system-line", "data-testid": "system-line", "data-seq": m.seq }, systemText(m)));
      continue;
    }
    if (m.sender === state.me.user) shownCmids.add(m.cmid);
    nodes.push(messageNode(conv, m));
  }
  for (const entry of state.client ? state.client.outbox.concat(failedEntries) : []) {
    if (entry.conv !== state.open || shownCmids.has(entry.cmid)) continue;
    nodes.push(pendingNode(entry));
  }
  for (const [id, u] of state.uploads) if (u.conv === state.open) nodes.push(uploadNode(id, u));
  list.replaceChildren(...nodes);
  if (bottom || atBottom) list.scrollTop = list.scrollHeight;
}

const failedEntries = [];

function messageNode(c, m) {
  const mine = m.sender === state.me.user;
  const ticks = mine ? tickState(c, m.seq) : null;
  const time = new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return el(
    "div",
    { class: `msg${mine ? " mine" : ""}${m.deleted ? " deleted" : ""}${m.id === state.found ? " found" : ""}`, "data-testid": "message", "data-seq": m.seq, "data-cmid": m.cmid, "data-msg": m.id, "data-found": m.id === state.found ? "true" : null },
    c.kind === "group" && !mine ? el("div", { class: "who" }, m.sender_deleted ? "Deleted account" : nameOf(m.sender)) : null,
    m.deleted ? el("div", { class: "text" }, "message deleted") : content(m),
    el(
      "div",
      { class: "meta" },
      m.edited_at ? "edited · " : "",
      time,
      mine ? el("span", { class: "ticks", "data-testid": "ticks", "data-state": ticks }, TICKS[ticks]) : null,
    ),
  );
}

function pendingNode(entry) {
  const failed = entry.state === "failed";
  const m = { ...entry.content, sender: state.me.user, cmid: entry.cmid };
  return el(
    "div",
    { class: `msg mine${failed ? " failed" : ""}`, "data-testid": "message", "data-cmid": entry.cmid, title: failed ? entry.error.message : "" },
    content(m),
    failed ? el("div", { class: "error", "data-testid": "send-error" }, sendError(entry.error)) : null,
    el("div", { class: "meta" }, el("span", { class: "ticks", "data-testid": "ticks", "data-state": failed ? "failed" : "sending" }, TICKS[failed ? "failed" : "sending"])),
  );
}

/** Why a message was not sent, in words. */
function sendError(e) {
  if (!e) return "Not sent.";
  const words = {
    blocked: "Not sent: you can't message this person.",
    rate_limited: "Not sent: too many messages at once; wait a moment.",
    not_member: "Not sent: you are no longer in this conversation.",
  };
  return words[e.code] || `Not sent: ${e.message}`;
}

function uploadNode(id, u) {
  const dismiss = () => {
    state.uploads.delete(id);
    renderMessages();
  };
  return el(
    "div",
    { class: "msg mine" + (u.error ? " failed" : ""), "data-testid": "upload", title: u.error ? "click to dismiss" : "", onclick: u.error ? dismiss : null },
    el("div", { class: "text" }, u.name),
    u.error ? el("div", { class: "error" }, u.error) : el("progress", { max: u.total || 1, value: u.sent, "data-testid": "upload-progress" }),
  );
}

function content(m) {
  const parts = [];
  const atts = m.attachments || [];
  for (const a of atts) parts.push(attachmentNode(m.kind, a));
  if (m.text) parts.push(el("div", { class: "text", "data-testid": "text" }, ...withMentions(m)));
  if (m.kind === "sticker") parts.push(el("div", { class: "text" }, `[sticker ${m.sticker}]`));
  if (m.kind === "location") parts.push(el("div", { class: "text" }, `📍 ${m.location.name || ""} ${m.location.lat}, ${m.location.lng}`));
  if (m.kind === "contact") parts.push(el("div", { class: "text" }, `👤 ${m.contact.name}`));
  if (m.reactions && m.reactions.length) {
    const chips = m.reactions.map((r) => el("span", { class: "reaction", title: r.users.map(nameOf).join(", ") }, `${r.emoji} ${r.users.length}`));
    parts.push(el("div", { class: "reactions", "data-testid": "reactions" }, chips));
  }
  return parts;
}

function facts(a) {
  return { ...a, ...(state.files.get(a.file) || {}) };
}

function attachmentNode(kind, att) {
  const a = facts(att);
  if (kind === "image" || kind === "video") {
    const which = kind === "image" ? "thumb" : "poster";
    const ready = a.status === "ready";
    const img = el("img", { class: "media", "data-testid": kind === "image" ? "thumb" : "poster", alt: a.name || kind, hidden: true });
    const holder = el("div", { class: "media placeholder", "data-testid": "media-pending" }, a.status === "failed" ? "could not process" : ready ? "loading…" : "processing…");
    if (ready) {
      blobUrl(a.file, which).then(
        (url) => {
          img.src = url;
          img.hidden = false;
          holder.remove();
        },
        () => (holder.textContent = "unavailable"),
      );
    }
    const wrap = el("div", { class: "media-wrap", onclick: () => view(kind, a) }, img, holder, kind === "video" ? el("span", { class: "play", "data-testid": "play" }, "▶") : null);
    return wrap;
  }
  if (kind === "voice") {
    const audio = el("audio", { controls: true, preload: "none" });
    blobUrl(a.file, null).then((url) => (audio.src = url), () => {});
    const secs = a.duration_ms ? ` ${Math.round(a.duration_ms / 1000)} s` : "";
    return el("div", {}, el("small", {}, `🎤${secs}`), audio);
  }
  return el("span", { class: "file", "data-testid": "file", onclick: () => download(a) }, `📄 ${a.name || "file"} (${size(a.size)})`);
}

function size(n) {
  return n > 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : n > 1024 ? `${Math.round(n / 1024)} KB` : `${n} B`;
}

function blobUrl(file, which) {
  const key = `${file}/${which}`;
  if (!state.blobs.has(key)) {
    const p = state.api.mediaBlob(file, which).then((b) => URL.createObjectURL(b));
    p.catch(() => state.blobs.delete(key));
    state.blobs.set(key, p);
  }
  return state.blobs.get(key);
}

async function view(kind, a) {
  const viewer = $("viewer");
  viewer.replaceChildren(el("p", { class: "viewer-note" }, "loading…"));
  viewer.hidden = false;
  try {
    if (kind === "image") {
      const url = await blobUrl(a.file, a.preview === false ? null : "preview").catch(() => blobUrl(a.file, null));
      viewer.replaceChildren(el("img", { src: url, alt: a.name || "photo" }));
    } else {
      const url = await blobUrl(a.file, "preview").catch(() => blobUrl(a.file, null));
      viewer.replaceChildren(el("video", { src: url, controls: true, autoplay: true, onclick: (e) => e.stopPropagation() }));
    }
  } catch {
    viewer.replaceChildren(el("p", { class: "viewer-note" }, "unavailable"));
  }
}
$("viewer").addEventListener("click", () => {
  $("viewer").hidden = true;
  $("viewer").replaceChildren();
});
document.addEventListener("keydown", (e) => e.key === "Escape" && $("viewer").click());

async function download(a) {
  const url = await blobUrl(a.file, null);
  el("a", { href: url, download: a.name || "file" }).click();
}

// ---------- sending ----------

let typingSince = 0;
let typingIdle = null;

$("text").addEventListener("input", () => {
  const conv = state.open;
  if (!conv || !state.client) return;
  const now = Date.now();
  if (now - typingSince > 2500) {
    state.client.typing(conv, true);
    typingSince = now;
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => stopTyping(conv), 4000);
});

function stopTyping(conv) {
  clearTimeout(typingIdle);
  if (typingSince && state.client) state.client.typing(conv, false);
  typingSince = 0;
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !state.open || !state.client) return;
  $("text").value = "";
  $("mention-list").hidden = true;
  stopTyping(state.open);
  const mentions = mentionsIn(text);
  state.client.send(state.open, mentions.length ? { kind: "text", text, mentions } : { kind: "text", text });
  renderMessages({ bottom: true });
});

$("file-input").addEventListener("change", (ev) => {
  const conv = state.open;
  if (!state.client) return;
  for (const file of ev.target.files) upload(conv, file);
  ev.target.value = "";
});

async function upload(conv, file) {
  const id = Math.random().toString(36).slice(2);
  const u = { conv, name: file.name, sent: 0, total: file.size, error: null };
  state.uploads.set(id, u);
  renderMessages({ bottom: true });
  let last = 0;
  try {
    const media = await state.api.upload(file, {
      tus: window.tus,
      onProgress: (sent, total) => {
        u.sent = sent;
        u.total = total;
        if (Date.now() - last > 100 || sent === total) {
          last = Date.now();
          if (state.open === conv) renderMessages();
        }
      },
    });
    state.uploads.delete(id);
    const kind = { image: "image", video: "video", audio: "voice" }[media.class] || "file";
    state.files.set(media.id, media);
    if (!state.client) throw new CourierError("elsewhere", "the chat moved to another tab");
    state.client.send(conv, { kind, attachments: [{ file: media.id }] });
  } catch (e) {
    u.error = e.code === "payload_too_large" ? "too large to send" : e.code === "unsupported_media" ? "this type of file cannot be sent" : `upload failed: ${e.message}`;
  }
  if (state.open === conv) renderMessages({ bottom: true });
}

function onOutbox(entry) {
  if (entry.state === "sent") {
    // Shown as stored now, before its own update comes back on the stream.
    const r = entry.result;
    const m = { id: r.msg, conv: r.conv, seq: r.seq, ts: r.ts, cmid: r.cmid, sender: state.me.user, device: state.me.device, ...entry.content };
    if (m.attachments) m.attachments = m.attachments.map((a) => ({ ...a, ...(state.files.get(a.file) || {}) }));
    addMessage(m, false);
  } else if (entry.state === "failed") {
    failedEntries.push(entry);
  }
  if (state.open === entry.conv) renderMessages({ bottom: true });
}

// ---------- the update stream ----------

function addMessage(m, fromStream) {
  const box = state.msgs.get(m.conv);
  if (box && (fromStream || !box.bySeq.has(m.seq))) box.bySeq.set(m.seq, m);
  noteLast(m);
  const c = state.convs.get(m.conv);
  if (c) c.last_seq = Math.max(c.last_seq, m.seq);
}

function onUpdate(u) {
  switch (u.type) {
    case "message": {
      const m = u.msg;
      const c = state.convs.get(m.conv);
      if (!c) {
        loadConversations().catch(() => {});
        break;
      }
      const fresh = m.seq > c.last_seq;
      addMessage(m, true);
      if (m.kind === "system") {
        // The group changed: its title, picture or members, as the listing now has them.
        if (m.event === "title_changed") c.title = m.title || null;
        if (fresh && c.archived && !c.muted_until) c.archived = false;
      } else if (m.sender !== state.me.user) {
        if (fresh && (m.mentions || []).some((x) => x === state.me.user || x === "@all")) c.mentioned = true;
        if (fresh && c.archived && !isMuted(c)) c.archived = false;
        c.typing.delete(m.sender);
        if (fresh && m.seq > c.read_seq && !m.deleted) c.unread += 1;
        resolveNames([m.sender]).then(() => state.open === m.conv && renderMessages());
      } else {
        c.read_seq = Math.max(c.read_seq, m.seq);
      }
      markRead();
      break;
    }
    case "receipt": {
      const c = state.convs.get(u.conv);
      if (!c) break;
      if (u.user === state.me.user) {
        // Read on another of this user's devices.
        if (u.read_seq > c.read_seq) {
          c.read_seq = u.read_seq;
          state.api.conversation(u.conv).then(mergeConv).then(renderList, () => {});
        }
      } else {
        const r = c.receipts.get(u.user) || { user: u.user, delivered_seq: 0, read_seq: 0 };
        c.receipts.set(u.user, { user: u.user, delivered_seq: Math.max(r.delivered_seq, u.delivered_seq), read_seq: Math.max(r.read_seq, u.read_seq) });
      }
      break;
    }
    case "member":
      if (u.action === "removed" && u.users.includes(state.me.user)) {
        state.convs.delete(u.conv);
        if (state.open === u.conv) state.open = null;
      } else {
        state.api
          .conversation(u.conv)
          .then(async (c) => {
            mergeConv(c);
            await resolveNames(c.members);
            renderList();
            renderHead();
          })
          .catch(() => {});
      }
      break;
    case "edit":
    case "delete":
    case "reaction": {
      const box = state.msgs.get(u.conv);
      const m = box && box.bySeq.get(u.seq);
      if (m) {
        if (u.type === "edit") Object.assign(m, { text: u.text, edited_at: u.edited_at });
        if (u.type === "delete") Object.assign(m, { deleted: u.for, text: undefined, attachments: undefined });
        if (u.type === "reaction") reactOn(m, u);
      }
      break;
    }
    case "media":
      state.files.set(u.file, { ...(state.files.get(u.file) || {}), ...u, type: undefined });
      break;
    case "settings": {
      const c = state.convs.get(u.conv);
      if (c) Object.assign(c, { muted_until: u.muted_until, pinned: u.pinned, archived: u.archived, marked_unread: u.marked_unread });
      break;
    }
    case "profile":
      state.people.set(u.profile.user, u.profile);
      if (u.profile.user === state.me.user) setMe(u.profile);
      break;
    default:
      break;
  }
  renderList();
  if (state.open) {
    renderHead();
    renderMessages();
  }
}

function reactOn(m, u) {
  const list = (m.reactions || []).filter((r) => r.emoji !== u.emoji || r.users.length);
  let r = list.find((x) => x.emoji === u.emoji);
  if (!r) list.push((r = { emoji: u.emoji, users: [] }));
  r.users = r.users.filter((x) => x !== u.user).concat(u.on ? [u.user] : []);
  m.reactions = list.filter((x) => x.users.length);
}

function onTyping({ conv, user, on }) {
  const c = state.convs.get(conv);
  if (!c || user === state.me.user) return;
  clearTimeout(c.typing.get(user));
  if (on) {
    c.typing.set(
      user,
      setTimeout(() => {
        c.typing.delete(user);
        renderList();
        renderHead();
      }, 6000),
    );
  } else c.typing.delete(user);
  renderList();
  renderHead();
}

let reading = false;

/** Marks the open conversation read while the page is visible. */
async function markRead() {
  const c = state.convs.get(state.open);
  if (!c || reading || document.visibilityState !== "visible" || !state.client || !state.client.connected) return;
  if (c.read_seq >= c.last_seq && c.unread === 0 && !c.marked_unread && !c.mentioned) return;
  reading = true;
  try {
    const seq = c.last_seq;
    const r = await state.client.read(c.id, seq);
    c.read_seq = Math.max(c.read_seq, r.read_seq);
    if (c.read_seq >= c.last_seq) Object.assign(c, { unread: 0, mentioned: false });
    c.marked_unread = false;
    renderList();
  } catch {
    // Not connected: tried again on the next update or visit.
  } finally {
    reading = false;
  }
  if (c.read_seq < c.last_seq) markRead();
}

// ---------- new chat / new group ----------

function ask(group) {
  const d = $("dialog");
  $("dialog-title").textContent = group ? "New group" : "New chat";
  $("dialog-title-label").hidden = !group;
  $("dialog-people-label").textContent = group ? "Members (usernames, comma-separated)" : "Username";
  $("dialog-error").textContent = "";
  $("dialog-form").reset();
  d.dataset.group = group ? "1" : "";
  d.showModal();
}

$("new-chat").addEventListener("click", () => ask(false));
$("new-group").addEventListener("click", () => ask(true));

$("dialog-form").addEventListener("submit", async (ev) => {
  if (ev.submitter && ev.submitter.value === "cancel") return;
  ev.preventDefault();
  const d = $("dialog");
  const form = ev.target;
  const group = d.dataset.group === "1";
  const names = form.people.value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const found = await state.api.users({ names });
    const known = new Set(found.map((f) => f.username.toLowerCase()));
    const unknown = names.filter((n) => !known.has(n.toLowerCase()));
    if (unknown.length) throw new CourierError("not_found", `No such user: ${unknown.join(", ")}`);
    for (const f of found) state.people.set(f.user, f);
    const ids = found.map((f) => f.user).filter((u) => u !== state.me.user);
    if (!group && ids.length !== 1) throw new CourierError("bad_request", "Give one other user's name.");
    const c = group ? await state.api.group(form.title.value.trim() || null, ids) : await state.api.direct(ids[0]);
    mergeConv(c);
    d.close();
    renderList();
    openConv(c.id);
  } catch (e) {
    $("dialog-error").textContent =
      e.code === "consent_required"
        ? `${e.details.users.map(nameOf).join(", ")} can't be added by you: they accept groups from their contacts only (someone they started a chat with or wrote to), or from nobody.`
        : e.message;
  }
});

// ---------- profile, blocking, reporting, deleting the account ----------

$("profile").addEventListener("click", () => {
  const me = state.people.get(state.me.user) || { username: state.me.username };
  $("profile-form").reset();
  $("profile-form").display_name.value = me.display_name || "";
  $("profile-error").textContent = "";
  $("profile-status").textContent = "";
  showAvatar($("profile-avatar"), me);
  $("profile-dialog").showModal();
});

$("profile-form").addEventListener("submit", async (ev) => {
  if (ev.submitter && ev.submitter.value === "cancel") return;
  ev.preventDefault();
  const name = ev.target.display_name.value.trim();
  $("profile-error").textContent = "";
  try {
    setMe(await state.api.changeProfile({ display_name: name || null }));
    $("profile-dialog").close();
  } catch (e) {
    $("profile-error").textContent = e.code === "bad_request" ? "Names are 1–64 characters, without control characters." : e.message;
  }
});

/** Uploads `file`, waits for the server to make its pictures, then makes it the avatar. */
$("avatar-input").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  $("profile-error").textContent = "";
  try {
    const media = await uploadPicture(file, $("profile-status"));
    const p = await state.api.changeProfile({ avatar: media });
    setMe(p);
    showAvatar($("profile-avatar"), p);
    $("profile-status").textContent = "picture saved";
  } catch (e) {
    $("profile-status").textContent = "";
    $("profile-error").textContent = e.code === "unsupported_media" ? "That file is not a picture Courier can read." : e.message;
  }
  ev.target.value = "";
});

$("avatar-clear").addEventListener("click", async () => {
  try {
    const p = await state.api.changeProfile({ avatar: null });
    setMe(p);
    showAvatar($("profile-avatar"), p);
  } catch (e) {
    $("profile-error").textContent = e.message;
  }
});

$("delete-account").addEventListener("click", async () => {
  const password = $("profile-form").password.value;
  $("profile-error").textContent = "";
  if (!password) {
    $("profile-error").textContent = "Type your password to delete your account.";
    return;
  }
  try {
    await state.api.deleteAccount(password);
  } catch (e) {
    $("profile-error").textContent = e.code === "forbidden" ? "Wrong password." : e.message;
    return;
  }
  $("profile-dialog").close();
  stopClient();
  forget();
  showLogin("Your account was deleted.");
});

$("block").addEventListener("click", async () => {
  const other = otherOf(state.convs.get(state.open));
  if (!other) return;
  try {
    if (state.blocked.has(other)) {
      await state.api.unblock(other);
      state.blocked.delete(other);
      toast(`${nameOf(other)} is unblocked.`);
    } else {
      await state.api.block(other);
      state.blocked.add(other);
      toast(`${nameOf(other)} is blocked: no messages, typing or online status either way.`);
    }
  } catch (e) {
    toast(e.message);
  }
  renderHead();
});

$("report").addEventListener("click", () => {
  const other = otherOf(state.convs.get(state.open));
  if (!other) return;
  $("report-form").reset();
  $("report-title").textContent = `Report ${nameOf(other)}`;
  $("report-error").textContent = "";
  $("report-dialog").dataset.user = other;
  $("report-dialog").showModal();
});

$("report-form").addEventListener("submit", async (ev) => {
  if (ev.submitter && ev.submitter.value === "cancel") return;
  ev.preventDefault();
  const form = ev.target;
  const note = form.note.value.trim();
  try {
    await state.api.report({ user: $("report-dialog").dataset.user, reason: form.reason.value, note: note || undefined });
    $("report-dialog").close();
    toast("Reported. Thank you: the server's operators will look at it.");
  } catch (e) {
    $("report-error").textContent = e.code === "rate_limited" ? "Too many reports; try again later." : e.message;
  }
});

start();

// ---------- organizing: settings, group admin, mentions, search ----------

/** Applies a change to the caller's own settings for the open conversation. */
async function changeSettings(patch) {
  const id = state.open;
  if (!id) return;
  try {
    mergeConv(await state.api.conversationSettings(id, patch));
  } catch (e) {
    toast(e.code === "bad_request" && patch.pinned ? "You can pin at most 5 chats." : e.message);
  }
  renderList();
  renderHead();
}

$("pin").addEventListener("click", () => changeSettings({ pinned: !state.convs.get(state.open)?.pinned }));
$("mute").addEventListener("click", () => changeSettings({ muted_until: isMuted(state.convs.get(state.open) || {}) ? null : -1 }));
$("archive").addEventListener("click", async () => {
  const c = state.convs.get(state.open);
  if (!c) return;
  await changeSettings({ archived: !c.archived });
  if (state.convs.get(c.id)?.archived) toast("Archived: it comes back with a new message (unless muted).");
});
$("mark-unread").addEventListener("click", async () => {
  await changeSettings({ marked_unread: true });
  // Reading it (opening it again) clears the mark.
  state.open = null;
  document.querySelector(".chat-head").hidden = true;
  for (const id of ["messages", "composer"]) $(id).hidden = true;
  $("no-chat").hidden = false;
  renderList();
});

$("show-archived").addEventListener("click", async () => {
  state.showArchived = !state.showArchived;
  if (state.showArchived) {
    try {
      for (const c of await state.api.conversations({ archived: true })) mergeConv(c);
    } catch (e) {
      toast(e.message);
    }
  }
  renderList();
});

// Mentions: typing "@" in a group offers its members; picks are sent as `mentions`.

/** The members a text mentions through the picks it still holds, and `@all` (admins). */
function mentionsIn(text) {
  const c = state.convs.get(state.open);
  if (!c || c.kind !== "group") return [];
  const out = new Set();
  for (const [tag, user] of state.mentionPicks) if (text.includes(tag) && c.members.includes(user)) out.add(user);
  if (/(^|\s)@all\b/.test(text) && (c.admins || []).includes(state.me.user)) out.add("@all");
  state.mentionPicks.clear();
  return [...out].slice(0, 50);
}

/** A message's text, with the names it mentions highlighted. */
function withMentions(m) {
  const who = (m.mentions || []).map((u) => (u === "@all" ? "@all" : "@" + nameOf(u)));
  if (!who.length) return [m.text];
  const escaped = who.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const parts = m.text.split(new RegExp(`(${escaped.join("|")})`));
  return parts.map((p) => (who.includes(p) ? el("span", { class: "mention", "data-testid": "mention" }, p) : p));
}

$("text").addEventListener("input", () => {
  const c = state.convs.get(state.open);
  const list = $("mention-list");
  const typed = /(^|\s)@([^\s@]*)$/.exec($("text").value);
  if (!c || c.kind !== "group" || !typed) {
    list.hidden = true;
    return;
  }
  const q = typed[2].toLowerCase();
  const options = c.members
    .filter((u) => u !== state.me.user)
    .map((u) => ({ user: u, name: nameOf(u) }))
    .filter((o) => o.name.toLowerCase().startsWith(q))
    .slice(0, 8);
  if ((c.admins || []).includes(state.me.user) && "all".startsWith(q)) options.push({ user: "@all", name: "all" });
  list.replaceChildren(
    ...options.map((o) =>
      el(
        "li",
        {
          "data-testid": "mention-option",
          onmousedown: (ev) => {
            ev.preventDefault();
            const tag = "@" + o.name;
            $("text").value = $("text").value.replace(/@([^\s@]*)$/, tag + " ");
            if (o.user !== "@all") state.mentionPicks.set(tag, o.user);
            list.hidden = true;
            $("text").focus();
          },
        },
        o.user === "@all" ? "@all — everyone" : o.name,
      ),
    ),
  );
  list.hidden = !options.length;
});

// The group dialog: name, picture, members and their roles, leaving.

async function uploadPicture(file, status) {
  status.textContent = "uploading…";
  const media = await state.api.upload(file, { tus: window.tus });
  status.textContent = "making the picture…";
  const end = Date.now() + 60000;
  for (let info = media; info.status !== "ready"; info = await state.api.mediaInfo(media.id)) {
    if (info.status === "failed" || info.class !== "image") throw new CourierError("unsupported_media", "that picture could not be read");
    if (Date.now() > end) throw new CourierError("timeout", "the picture took too long to process");
    await new Promise((r) => setTimeout(r, 300));
  }
  return media.id;
}

function renderGroupDialog() {
  const c = state.convs.get(state.open);
  if (!c) return;
  const admin = (c.admins || []).includes(state.me.user);
  $("group-form").classList.toggle("admin", admin);
  $("group-name").readOnly = !admin;
  showAvatar($("group-avatar"), c.avatar ? { avatar: c.avatar } : null);
  const act = (label, testid, fn) => el("button", { type: "button", class: "secondary", "data-testid": testid, onclick: fn }, label);
  $("group-members").replaceChildren(
    ...c.members.map((u) => {
      const isAdmin = (c.admins || []).includes(u);
      return el(
        "li",
        { "data-testid": "group-member", "data-user": u },
        el("span", { class: "grow" }, u === state.me.user ? "You" : nameOf(u)),
        el("span", { class: "role", "data-testid": "role" }, isAdmin ? "admin" : "member"),
        admin && u !== state.me.user ? act(isAdmin ? "Remove admin" : "Make admin", "toggle-admin", () => groupAction(() => state.api.setRole(c.id, u, isAdmin ? "member" : "admin"))) : null,
        admin && u !== state.me.user ? act("Remove", "remove-member", () => groupAction(() => state.api.removeMember(c.id, u))) : null,
      );
    }),
  );
}

async function groupAction(call) {
  $("group-error").textContent = "";
  try {
    const r = await call();
    mergeConv(r && r.id ? r : await state.api.conversation(state.open));
  } catch (e) {
    $("group-error").textContent = e.message;
  }
  renderGroupDialog();
  renderList();
  renderHead();
}

$("group-settings").addEventListener("click", () => {
  const c = state.convs.get(state.open);
  if (!c) return;
  $("group-name").value = c.title || "";
  $("group-status").textContent = "";
  $("group-error").textContent = "";
  renderGroupDialog();
  $("group-dialog").showModal();
});

$("group-form").addEventListener("submit", async (ev) => {
  const c = state.convs.get(state.open);
  if (ev.submitter?.value !== "save" || !c) return;
  ev.preventDefault();
  const title = $("group-name").value.trim();
  if (title === (c.title || "")) return $("group-dialog").close();
  await groupAction(() => state.api.changeGroup(c.id, { title: title || null }));
  if (!$("group-error").textContent) $("group-dialog").close();
});

$("group-avatar-input").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file || !state.open) return;
  const id = state.open;
  try {
    const media = await uploadPicture(file, $("group-status"));
    await groupAction(() => state.api.changeGroup(id, { avatar: media }));
    $("group-status").textContent = "picture saved";
  } catch (e) {
    $("group-status").textContent = "";
    $("group-error").textContent = e.message;
  }
  ev.target.value = "";
});

$("group-leave").addEventListener("click", async () => {
  const id = state.open;
  try {
    await state.api.removeMember(id, state.me.user);
    state.convs.delete(id);
    state.open = null;
    $("group-dialog").close();
    location.hash = "";
    renderList();
    document.querySelector(".chat-head").hidden = true;
    for (const x of ["messages", "composer"]) $(x).hidden = true;
    $("no-chat").hidden = false;
  } catch (e) {
    $("group-error").textContent = e.message;
  }
});

// Search: results replace the list while the box holds a query; one opens its message.

let searchTimer = null;
let searchAsked = 0;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 250);
});

async function runSearch() {
  const q = $("search").value.trim();
  const asked = ++searchAsked;
  const box = $("search-results");
  if (!/[\p{L}\p{N}]/u.test(q)) {
    box.hidden = true;
    $("conv-list").hidden = false;
    return;
  }
  let page;
  try {
    page = await state.api.search(q);
  } catch (e) {
    if (asked === searchAsked) toast(e.message);
    return;
  }
  if (asked !== searchAsked) return;
  await resolveNames(page.messages.map((m) => m.sender));
  box.replaceChildren(
    ...(page.messages.length
      ? page.messages.map((m) => {
          const c = state.convs.get(m.conv);
          return el(
            "li",
            { class: "conv search-result", "data-testid": "search-result", "data-msg": m.id, onclick: () => openFound(m) },
            el(
              "div",
              { class: "body" },
              el("div", { class: "name" }, c ? titleOf(c) : "a conversation"),
              el("div", { class: "snippet" }, `${m.sender === state.me.user ? "You" : nameOf(m.sender)}: ${m.text || ""}`),
            ),
          );
        })
      : [el("li", { class: "empty", "data-testid": "no-results" }, "No messages found")]),
  );
  box.hidden = false;
  $("conv-list").hidden = true;
}

/** Opens the conversation of a found message, with enough history loaded to show it. */
async function openFound(m) {
  $("search").value = "";
  $("search-results").hidden = true;
  $("conv-list").hidden = false;
  if (!state.convs.has(m.conv)) mergeConv(await state.api.conversation(m.conv));
  await openConv(m.conv);
  const box = msgBox(m.conv);
  for (let i = 0; i < 50 && !box.bySeq.has(m.seq) && box.nextBefore !== undefined; i++) await loadOlder(m.conv);
  state.found = m.id;
  renderMessages();
  const node = $("messages").querySelector(`[data-msg="${CSS.escape(m.id)}"]`);
  if (node) node.scrollIntoView({ block: "center" });
}

// The JS SDK (sdk/js/courier.js) in Node against a real server, over MQTT-over-WebSocket, with
// the network's bad days made on purpose: an answer lost with its connection, pushes out of
// order and lost, messages queued while disconnected, a reload mid-stream, a refused send.
// Each message must arrive once and every update in order.
//
// Run by `cargo test` (tests/it/web.rs) with COURIER_URL set to the server's HTTP address and
// COURIER_IMAGE to a JPEG carrying a phone's EXIF.

import mqtt from "mqtt";
import * as tus from "tus-js-client";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Api, Client, memoryStorage as memory } from "../courier.js";
import { password, sleep, until, url } from "./support.mjs";



/**
 * MQTT.js with a hand on the wire: `rule(fn)` sees each incoming publish and says what to do
 * with it (`"drop"`, `"hold"` until `release()`, or nothing); `cut()` kills the socket.
 */
function meddler() {
  let rule = () => undefined;
  const held = [];
  let client;
  return {
    lib: {
      connect(u, opts) {
        client = mqtt.connect(u, opts);
        const emit = client.emit.bind(client);
        client.emit = (name, ...args) => {
          if (name === "message") {
            const [topic, payload] = args;
            const action = rule(topic, JSON.parse(payload.toString()));
            if (action === "drop") return true;
            if (action === "hold") {
              held.push(() => emit(name, ...args));
              return true;
            }
          }
          return emit(name, ...args);
        };
        return client;
      },
    },
    rule: (fn) => (rule = fn),
    release() {
      rule = () => undefined;
      while (held.length) held.shift()();
    },
    cut: () => client.stream.destroy(),
  };
}

// Names of this run's own, so the test can run against a server that has seen others.
const run = Date.now().toString(36);

async function person(who) {
  const name = `${who}-${run}`;
  const api = new Api(url);
  await api.signUp(name, password);
  const session = await api.logIn(name, password, `${name}'s node`, "test");
  return { api, session };
}

/** A client whose updates are recorded. */
function open(who, { lib = mqtt, storage = memory() } = {}) {
  const client = new Client(who.session, { mqtt: lib, api: who.api, storage, watchNetwork: false, requestTimeout: 3000 });
  const updates = [];
  client.addEventListener("update", (e) => updates.push(e.detail));
  client.connect();
  return { client, updates, storage };
}

const connected = (c) => until("connected", () => c.client.connected);
const messages = (updates) => updates.filter((u) => u.type === "message").map((u) => u.msg);

function inOrder(updates) {
  for (let i = 1; i < updates.length; i++) assert.equal(updates[i].useq, updates[i - 1].useq + 1, "useq gapless and in order");
}

const alice = await person("alice");
const bob = await person("bob");
const conv = (await alice.api.direct(bob.session.user)).id;

// 1. Queued while disconnected: the outbox goes out on connect, once each, in order.
const aliceWire = meddler();
const a = new Client(alice.session, { mqtt: aliceWire.lib, api: alice.api, storage: memory(), watchNetwork: false, requestTimeout: 3000 });
const receipts = [];
a.addEventListener("update", (e) => e.detail.type === "receipt" && receipts.push(e.detail));
const early = [a.send(conv, { kind: "text", text: "typed offline 1" }), a.send(conv, { kind: "text", text: "typed offline 2" })];
assert.equal(a.outbox.length, 2);
const b = open(bob);
a.connect();
const acks = await Promise.all(early.map((e) => e.done));
assert.deepEqual(acks.map((x) => x.seq), [1, 2]);
assert.equal(a.outbox.length, 0);
console.log("outbox sent on connect");

// 2. The answer is lost with the connection: the resend after reconnecting, with the same
//    cmid, stores nothing new and settles the entry with the original message.
aliceWire.rule((topic, body) => (topic.endsWith("/rsp") && body.result && body.result.cmid ? "drop" : undefined));
const lost = a.send(conv, { kind: "text", text: "answer lost" });
await until("stored", async () => messages(b.updates).some((m) => m.text === "answer lost"));
aliceWire.rule(() => undefined);
aliceWire.cut();
const ack = await lost.done;
const stored = messages(b.updates).filter((m) => m.text === "answer lost");
assert.equal(stored.length, 1);
assert.equal(ack.msg, stored[0].id, "the resend answers with the original message");
console.log("lost answer: resent, stored once");

// 3. Pushes out of order and lost: bob's client still hands over every update once, in order.
const bobWire = meddler();
const b2 = open(bob, { lib: bobWire.lib });
await connected(b2);
await until("b2 caught up", () => messages(b2.updates).length === 3);
let pushes = 0;
bobWire.rule((topic, body) => {
  if (!topic.endsWith("/in") || body.type !== "message") return undefined;
  pushes += 1;
  return pushes === 1 ? "hold" : pushes === 3 ? "drop" : undefined; // the 1st late, the 3rd lost
});
for (let i = 1; i <= 5; i++) a.send(conv, { kind: "text", text: `burst ${i}` });
await until("the burst is stored", () => messages(b.updates).filter((m) => m.text.startsWith("burst")).length === 5);
await sleep(300);
bobWire.release();
await until("b2 has the burst", () => messages(b2.updates).filter((m) => m.text.startsWith("burst")).length === 5);
inOrder(b2.updates);
assert.deepEqual(
  messages(b2.updates).map((m) => m.text).filter((t) => t.startsWith("burst")),
  ["burst 1", "burst 2", "burst 3", "burst 4", "burst 5"],
);
console.log("held and lost pushes: in order, once");

// 4. A reload: a new client on the same storage goes on after the cursor, repeating nothing.
b2.client.close();
a.send(conv, { kind: "text", text: "while reloading" });
await until("stored", () => messages(b.updates).some((m) => m.text === "while reloading"));
const b3 = open(bob, { storage: b2.storage });
await until("b3 gets it", () => messages(b3.updates).some((m) => m.text === "while reloading"));
await sleep(500);
assert.equal(messages(b3.updates).length, 1, "only what came after the cursor");
assert.equal(b3.updates[0].useq, b2.updates.at(-1).useq + 1);
inOrder(b3.updates);
console.log("reload: continues after the cursor");

// 5. ✓✓ follows the ack: alice learns bob's delivered_seq.
await until("a delivered receipt", () => receipts.some((r) => r.delivered_seq >= 9));

// 6. A refused send settles as failed and is not retried.
const stranger = await person("carol");
const other = (await stranger.api.direct(bob.session.user)).id;
const refused = a.send(other, { kind: "text", text: "not my conversation" });
await assert.rejects(refused.done, (e) => e.code === "not_member");
assert.equal(refused.state, "failed");
assert.equal(a.outbox.length, 0);
console.log("refused: failed, not retried");

// 7. Uploads over tus: a photo's GPS and camera serial are stripped unless the uploader keeps
// them (keepMetadata), in which case the stored bytes are the uploaded ones.
const photo = readFileSync(process.env.COURIER_IMAGE);
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const stripped = await alice.api.upload(photo, { tus, name: "beach.jpg" });
const kept = await alice.api.upload(photo, { tus, name: "beach.jpg", keepMetadata: true });
assert.equal(kept.sha256, sha256(photo), "kept as uploaded");
assert.notEqual(stripped.sha256, sha256(photo));
assert.ok(stripped.size < photo.length, `${stripped.size} < ${photo.length}`);
console.log("uploads: metadata stripped, or kept when asked");

// 8. Profiles, blocks, reports and account deletion through the SDK's API.
{
  const me = await alice.api.changeProfile({ display_name: "  Alice in Node " });
  assert.equal(me.display_name, "Alice in Node");
  assert.deepEqual(await alice.api.me(), me);
  const [seen] = await bob.api.users({ ids: [alice.session.user] });
  assert.equal(seen.display_name, "Alice in Node");
  const avatar = await alice.api.changeProfile({ avatar: stripped.id }).catch((e) => e);
  // Processed by now, or still being processed: either way a typed answer.
  if (avatar.avatar) {
    const blob = await bob.api.avatarBlob(avatar.avatar);
    assert.equal(blob.type, "image/webp");
  } else assert.equal(avatar.code, "bad_request");
  const dave = await person("dave");
  await dave.api.block(alice.session.user);
  assert.deepEqual((await dave.api.blocks()).map((b) => b.user), [alice.session.user]);
  await assert.rejects(alice.api.direct(dave.session.user), (e) => e.code === "blocked" && e.status === 403);
  await dave.api.unblock(alice.session.user);
  assert.deepEqual(await dave.api.blocks(), []);
  const filed = await dave.api.report({ user: alice.session.user, reason: "spam", note: "from node" });
  assert.equal(filed.reason, "spam");
  await assert.rejects(dave.api.deleteAccount("wrong password"), (e) => e.code === "forbidden");
  await dave.api.deleteAccount(password);
  await assert.rejects(dave.api.me(), (e) => e.code === "unauthorized");
  const [gone] = await alice.api.users({ ids: [dave.session.user] });
  assert.ok(gone.deleted && gone.username === "", JSON.stringify(gone));
  console.log("profiles, blocks, reports, deletion: through the SDK");
}

// Across everything: every message bob's first client saw, once each.
inOrder(b.updates);
const texts = messages(b.updates).map((m) => m.text);
assert.equal(new Set(texts).size, texts.length, `no duplicates: ${texts}`);
assert.equal(texts.length, 9);

for (const c of [a, b.client, b3.client]) c.close();
console.log("sdk: all checks passed");
process.exit(0);

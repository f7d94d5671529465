// The SDK where there is no DOM, as in React Native, a worker or bare Node: no `window`,
// `localStorage`, `EventTarget` or `CustomEvent`. Two people log in, connect over MQTT over
// WebSocket, and a message goes from one to the other, with its updates as events.
//
// Run by `cargo test` (tests/it/web.rs) with COURIER_URL set to the server's HTTP address.

import assert from "node:assert/strict";
import mqtt from "mqtt";
import { password, until, url } from "./support.mjs";

// Node's own fetch needs EventTarget, so it is hidden only while the SDK loads (the SDK
// decides then what to build its events on); the rest stay gone.
const nodeEventTarget = globalThis.EventTarget;
for (const name of ["window", "localStorage", "EventTarget", "CustomEvent"]) delete globalThis[name];
assert.equal(typeof EventTarget, "undefined");
const { Api, Client } = await import("../courier.js");
globalThis.EventTarget = nodeEventTarget;

const run = Date.now().toString(36);

async function person(who) {
  const api = new Api(url);
  await api.signUp(`${who}-${run}`, password);
  const session = await api.logIn(`${who}-${run}`, password, `${who}'s phone`, "react-native");
  // No storage given and no localStorage: the client keeps its cursor and outbox in memory.
  const client = new Client(session, { mqtt, api });
  const updates = [];
  const statuses = [];
  client.addEventListener("update", (e) => updates.push(e.detail));
  client.addEventListener("status", (e) => statuses.push(e.detail.connected));
  client.connect();
  return { api, session, client, updates, statuses };
}

const alice = await person("alice");
assert.ok(!(alice.client instanceof nodeEventTarget), "the client runs on the SDK's own events");
const bob = await person("bob");
await until("both connected", () => alice.client.connected && bob.client.connected);
assert.ok(alice.statuses.includes(true), "status events");
const conv = (await alice.api.direct(bob.session.user)).id;
const entry = alice.client.send(conv, { kind: "text", text: "no DOM here" });
const ack = await entry.done;
assert.equal(ack.conv, conv);
await until("bob's copy", () => bob.updates.some((u) => u.type === "message" && u.msg.text === "no DOM here"));
const mine = alice.updates.filter((u) => u.type === "message");
await until("alice's own copy", () => alice.updates.some((u) => u.type === "message"));
assert.ok(mine.length <= 1);
alice.client.close();
bob.client.close();
console.log("runtime: all checks passed");
process.exit(0);

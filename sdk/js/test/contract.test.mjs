// The MQTT contract: the AsyncAPI document the server serves (GET /v1/asyncapi.json, kept as
// docs/asyncapi.yaml) must pass the AsyncAPI parser, and every payload a real server sends a
// device in a session that exercises every op — each answer on `rsp`, each update on `in`,
// each event on `eph` — must validate against that document's schema for it.
//
// Run by `cargo test` (tests/it/web.rs) with COURIER_URL set to the server's HTTP address.

import assert from "node:assert/strict";
import mqtt from "mqtt";
import { Parser } from "@asyncapi/parser";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import { Api } from "../courier.js";
import { password, sleep, url } from "./support.mjs";

const run = Date.now().toString(36);

// 1. The document parses, with no error.
const doc = await (await fetch(`${url}/v1/asyncapi.json`)).json();
const { document, diagnostics } = await new Parser().parse(JSON.stringify(doc));
const errors = diagnostics.filter((d) => d.severity === 0);
assert.equal(errors.length, 0, `the AsyncAPI parser found errors:\n${JSON.stringify(errors, null, 1)}`);
assert.ok(document, "parsed");
assert.equal(doc.asyncapi, "3.0.0");

// 2. A session that makes the server send every kind of payload, captured raw.
async function person(who) {
  const api = new Api(url);
  const name = `${who}-${run}`;
  await api.signUp(name, password);
  const session = await api.logIn(name, password, `${who}'s contract test`, "test");
  const base = `u/${session.user}/d/${session.device}`;
  const seen = [];
  const client = mqtt.connect(session.mqtt.ws, {
    clientId: session.device,
    username: session.device,
    password: session.token,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  await client.subscribeAsync([`${base}/in`, `${base}/rsp`, `${base}/eph`], { qos: 1 });
  const answers = new Map();
  client.on("message", (topic, payload) => {
    const channel = topic.slice(base.length + 1);
    const body = JSON.parse(payload.toString());
    seen.push({ channel, body });
    if (channel === "rsp") answers.get(body.id)?.(body);
  });
  let n = 0;
  const ask = (op, body) =>
    new Promise((resolve) => {
      const id = `${op}-${++n}`;
      answers.set(id, resolve);
      client.publish(`${base}/req/${op}`, JSON.stringify({ id, ...body }), { qos: 1 });
    });
  return { api, session, client, seen, ask, base };
}

const alice = await person("alice");
const bob = await person("bob");
const conv = (await alice.api.direct(bob.session.user)).id;
const sent = await alice.ask("send", { conv, cmid: `c-${run}`, kind: "text", text: "hello bob" });
assert.ok(sent.ok, JSON.stringify(sent));
const msg = sent.result.msg;
const located = await alice.ask("send", { conv, cmid: `c2-${run}`, kind: "location", location: { lat: 10.77, lng: 106.7, name: "Sài Gòn" } });
assert.ok(located.ok, JSON.stringify(located));
await bob.ask("read", { conv, seq: sent.result.seq });
await bob.ask("ack", { useq: 1 });
await bob.ask("sync", { after: 0, limit: 50 });
await alice.ask("edit", { msg, text: "hello, bob" });
await bob.ask("react", { msg, emoji: "👍", on: true });
bob.client.publish(`${bob.base}/req/typing`, JSON.stringify({ conv, on: true }), { qos: 0 });
await alice.ask("delete", { msg, for: "everyone" });
await alice.ask("send", { conv: "cnowhere", cmid: `c3-${run}`, kind: "text", text: "x" }); // an error answer
await bob.api.changeSettings({ group_adds: "everyone" });
const group = await alice.api.group(`contract ${run}`, [bob.session.user]);
await alice.api.conversationSettings(group.id, { pinned: true });
await alice.api.changeProfile({ display_name: "Alice" });
await sleep(1500);

// 3. Every payload validates against the document's schema for it.
const ajv = new Ajv({ strict: false, validateSchema: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "asyncapi");
const validators = new Map();
const validator = (message) => {
  if (!validators.has(message)) {
    assert.ok(doc.components.messages[message], `the document has no message ${message}`);
    validators.set(message, ajv.compile({ $ref: `asyncapi#/components/messages/${message}/payload` }));
  }
  return validators.get(message);
};
// The schemas hold: wrong payloads are refused.
assert.ok(!validator("update_message")({ type: "message", useq: "one", ts: 1, msg: {} }), "a bad update passed");
assert.ok(!validator("sendAnswer")({ id: "s", ok: true, result: { msg: 5 } }), "a bad answer passed");
assert.ok(!validator("eph_typing")({ type: "typing", conv: "c", on: "yes" }), "a bad event passed");
const opOf = (id) => String(id).split("-")[0];
const counts = {};
for (const { channel, body } of [...alice.seen, ...bob.seen]) {
  let message;
  if (channel === "in") message = `update_${body.type}`;
  else if (channel === "eph") message = `eph_${body.type}`;
  else if (channel === "rsp") message = body.ok ? `${opOf(body.id)}Answer` : "errorAnswer";
  else throw new Error(`a payload on ${channel}`);
  const valid = validator(message);
  assert.ok(valid(body), `${channel} payload does not match ${message}: ${JSON.stringify(body)}\n${ajv.errorsText(valid.errors)}`);
  counts[message] = (counts[message] || 0) + 1;
}
for (const needed of ["sendAnswer", "readAnswer", "ackAnswer", "syncAnswer", "editAnswer", "reactAnswer", "deleteAnswer", "errorAnswer", "update_message", "update_receipt", "update_edit", "update_reaction", "update_delete", "update_member", "update_settings", "eph_typing"]) {
  assert.ok(counts[needed], `no ${needed} was captured: ${JSON.stringify(counts)}`);
}
alice.client.end(true);
bob.client.end(true);
console.log(`contract: all checks passed (${Object.values(counts).reduce((a, b) => a + b, 0)} payloads: ${JSON.stringify(counts)})`);
process.exit(0);

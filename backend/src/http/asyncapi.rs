//! The AsyncAPI 3.0 document of the MQTT side, served at `GET /v1/asyncapi.json` (and kept
//! as docs/asyncapi.yaml). Like the OpenAPI document it is made from the code: the ops come
//! from `protocol::ops::Op::ALL`, the update types from the schema of `UpdateBody`, and every
//! payload's schema is the wire type's own — the same component schemas the OpenAPI document
//! uses (`ErrorBody`, `ErrorCode`, `Content`, `MediaFile`, …).

use protocol::ops::{
    AckReq, AckResult, DeleteReq, DeleteResult, EditReq, EditResult, Ephemeral, Op, ReactReq,
    ReactResult, ReadReq, ReadResult, SendReq, SendResult, SyncReq, SyncResult, TypingReq,
};
use protocol::{ErrorBody, ErrorCode, Response, Update};
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

/// The request and result schemas of `op` (`typing` has no answer).
fn bodies(op: Op) -> (&'static str, Option<&'static str>) {
    match op {
        Op::Send => ("SendReq", Some("SendResult")),
        Op::Ack => ("AckReq", Some("AckResult")),
        Op::Read => ("ReadReq", Some("ReadResult")),
        Op::Sync => ("SyncReq", Some("SyncResult")),
        Op::Typing => ("TypingReq", None),
        Op::Edit => ("EditReq", Some("EditResult")),
        Op::Delete => ("DeleteReq", Some("DeleteResult")),
        Op::React => ("ReactReq", Some("ReactResult")),
    }
}

fn schemas() -> Map<String, Value> {
    let mut all: Vec<(String, RefOr<Schema>)> = Vec::new();
    fn add<T: ToSchema>(all: &mut Vec<(String, RefOr<Schema>)>) {
        all.push((T::name().into_owned(), T::schema()));
        T::schemas(all);
    }
    add::<SendReq>(&mut all);
    add::<SendResult>(&mut all);
    add::<AckReq>(&mut all);
    add::<AckResult>(&mut all);
    add::<ReadReq>(&mut all);
    add::<ReadResult>(&mut all);
    add::<SyncReq>(&mut all);
    add::<SyncResult>(&mut all);
    add::<TypingReq>(&mut all);
    add::<EditReq>(&mut all);
    add::<EditResult>(&mut all);
    add::<DeleteReq>(&mut all);
    add::<DeleteResult>(&mut all);
    add::<ReactReq>(&mut all);
    add::<ReactResult>(&mut all);
    add::<Response>(&mut all);
    add::<Update>(&mut all);
    add::<Ephemeral>(&mut all);
    add::<ErrorBody>(&mut all);
    add::<ErrorCode>(&mut all);
    all.into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).expect("a schema")))
        .collect()
}

/// The `type` tags of a tagged enum's schema (`oneOf` of objects with a one-value `type`).
fn tags(schema: &Value) -> Vec<String> {
    schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variant| {
            let all = variant["allOf"].as_array().cloned().unwrap_or_default();
            std::iter::once(variant.clone()).chain(all).find_map(|v| {
                v["properties"]["type"]["enum"][0]
                    .as_str()
                    .map(String::from)
            })
        })
        .collect()
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A message whose payload is the tagged type `schema` with `type` = `tag`.
fn tagged(schema: &str, tag: &str) -> Value {
    json!({
        "name": tag,
        "title": tag,
        "contentType": "application/json",
        "payload": {
            "allOf": [
                reference(schema),
                { "type": "object", "required": ["type"], "properties": { "type": { "const": tag } } }
            ]
        }
    })
}

/// `GET /v1/asyncapi.yaml`: docs/asyncapi.yaml, which a test keeps equal to [`document`].
pub async fn yaml() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../../docs/asyncapi.yaml"),
    )
}

/// The document, made once.
pub fn cached() -> &'static Value {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(document);
    &DOC
}

/// The document.
pub fn document() -> Value {
    let schemas = schemas();
    let device_params = json!({
        "user": { "description": "the connected device's user id" },
        "device": { "description": "the connected device's id (its MQTT client id and user name)" }
    });
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();

    // Requests, one channel per op, and their answers on `rsp`.
    let mut answers = Vec::new();
    for op in Op::ALL {
        let name = op.as_str();
        let (request, result) = bodies(op);
        let message = format!("{name}Request");
        let payload = match result {
            // Every answered request carries the client's `id`, echoed on `rsp`.
            Some(_) => json!({ "allOf": [reference(request), {
                "type": "object",
                "required": ["id"],
                "properties": { "id": { "description": "chosen by the client; any JSON value but null" } }
            }]}),
            None => reference(request),
        };
        messages.insert(
            message.clone(),
            json!({ "name": message, "contentType": "application/json", "payload": payload }),
        );
        channels.insert(
            format!("req_{name}"),
            json!({
                "address": format!("u/{{user}}/d/{{device}}/req/{name}"),
                "description": format!("`{name}` requests: docs/protocol.md#{name}"),
                "parameters": device_params,
                "messages": { message.clone(): { "$ref": format!("#/components/messages/{message}") } }
            }),
        );
        let qos = if op == Op::Typing { 0 } else { 1 };
        operations.insert(
            name.to_owned(),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/req_{name}") },
                "summary": match result {
                    Some(_) => format!("`{name}`, answered once on `rsp`"),
                    None => format!("`{name}`, never answered"),
                },
                "bindings": { "mqtt": { "qos": qos, "retain": false } },
                "messages": [{ "$ref": format!("#/channels/req_{name}/messages/{message}") }]
            }),
        );
        if let Some(result) = result {
            let answer = format!("{name}Answer");
            messages.insert(
                answer.clone(),
                json!({
                    "name": answer,
                    "contentType": "application/json",
                    "payload": { "allOf": [reference("Response"), {
                        "type": "object",
                        "properties": { "ok": { "const": true }, "result": reference(result) }
                    }]}
                }),
            );
            answers.push(answer);
        }
    }
    messages.insert(
        "errorAnswer".into(),
        json!({
            "name": "errorAnswer",
            "summary": "a refused request; `error.code` says why (docs/protocol.md#error-codes)",
            "contentType": "application/json",
            "payload": { "allOf": [reference("Response"), {
                "type": "object",
                "required": ["error"],
                "properties": { "ok": { "const": false }, "error": reference("ErrorBody") }
            }]}
        }),
    );
    answers.push("errorAnswer".into());
    let answer_refs: Map<String, Value> = answers
        .iter()
        .map(|a| {
            (
                a.clone(),
                json!({ "$ref": format!("#/components/messages/{a}") }),
            )
        })
        .collect();

    // Updates on `in`, one message per type; ephemeral events on `eph`.
    let update_kinds = tags(&schemas["UpdateBody"]);
    let mut update_refs = Map::new();
    for kind in &update_kinds {
        let name = format!("update_{kind}");
        messages.insert(name.clone(), tagged("Update", kind));
        update_refs.insert(
            name.clone(),
            json!({ "$ref": format!("#/components/messages/{name}") }),
        );
    }
    let mut eph_refs = Map::new();
    for kind in tags(&schemas["Ephemeral"]) {
        let name = format!("eph_{kind}");
        messages.insert(name.clone(), tagged("Ephemeral", &kind));
        eph_refs.insert(
            name.clone(),
            json!({ "$ref": format!("#/components/messages/{name}") }),
        );
    }
    messages.insert(
        "presenceAnnouncement".into(),
        json!({
            "name": "presenceAnnouncement",
            "contentType": "application/json",
            "payload": {
                "type": "object",
                "required": ["online"],
                "properties": { "online": { "type": "boolean" } }
            }
        }),
    );
    let own = |address: &str, what: &str, refs: Map<String, Value>| {
        json!({
            "address": format!("u/{{user}}/d/{{device}}/{address}"),
            "description": what,
            "parameters": device_params,
            "messages": refs
        })
    };
    channels.insert(
        "rsp".into(),
        own(
            "rsp",
            "answers to this device's requests, each once, echoing its `id`",
            answer_refs.clone(),
        ),
    );
    channels.insert(
        "in".into(),
        own(
            "in",
            "the device's ordered update stream: gapless `useq` (docs/protocol.md#updates)",
            update_refs.clone(),
        ),
    );
    channels.insert(
        "eph".into(),
        own(
            "eph",
            "ephemeral events: typing and presence; never stored",
            eph_refs.clone(),
        ),
    );
    channels.insert(
        "presence".into(),
        own(
            "presence",
            "the device says it is online or going away; its Last Will goes here",
            [(
                "presenceAnnouncement".to_owned(),
                json!({ "$ref": "#/components/messages/presenceAnnouncement" }),
            )]
            .into_iter()
            .collect(),
        ),
    );
    let receive = |channel: &str, summary: &str, qos: u8, refs: &Map<String, Value>| {
        json!({
            "action": "receive",
            "channel": { "$ref": format!("#/channels/{channel}") },
            "summary": summary,
            "bindings": { "mqtt": { "qos": qos, "retain": false } },
            "messages": refs.keys()
                .map(|m| json!({ "$ref": format!("#/channels/{channel}/messages/{m}") }))
                .collect::<Vec<_>>()
        })
    };
    operations.insert(
        "receiveAnswers".into(),
        receive("rsp", "answers on `rsp`", 1, &answer_refs),
    );
    operations.insert(
        "receiveUpdates".into(),
        receive(
            "in",
            "updates on `in`; acknowledge them with `ack`",
            1,
            &update_refs,
        ),
    );
    operations.insert(
        "receiveEphemeral".into(),
        receive("eph", "typing and presence events", 0, &eph_refs),
    );
    operations.insert(
        "announcePresence".into(),
        json!({
            "action": "send",
            "channel": { "$ref": "#/channels/presence" },
            "summary": "online/offline, for brokers without Courier's presence events",
            "bindings": { "mqtt": { "qos": 1, "retain": false } },
            "messages": [{ "$ref": "#/channels/presence/messages/presenceAnnouncement" }]
        }),
    );

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Courier MQTT API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The device side of a Courier server: requests on `req/{op}`, answers on \
                `rsp`, the ordered update stream on `in`, ephemeral events on `eph`. MQTT 3.1.1 or 5; \
                client id and user name are the device id, the password is its token (from \
                POST /v1/sessions, see the OpenAPI document). Full rules: docs/protocol.md.",
            "license": { "name": "Apache-2.0" }
        },
        "defaultContentType": "application/json",
        "servers": {
            "mqtt": { "host": "localhost:1883", "protocol": "mqtt", "description": "--mqtt",
                      "security": [{ "$ref": "#/components/securitySchemes/deviceToken" }] },
            "mqtts": { "host": "localhost:8883", "protocol": "secure-mqtt", "description": "--mqtts (with --tls-cert)",
                       "security": [{ "$ref": "#/components/securitySchemes/deviceToken" }] },
            "ws": { "host": "localhost:8083", "pathname": "/mqtt", "protocol": "ws", "description": "--mqtt-ws",
                    "security": [{ "$ref": "#/components/securitySchemes/deviceToken" }] },
            "wss": { "host": "localhost:8083", "pathname": "/mqtt", "protocol": "wss", "description": "--mqtt-ws with --tls-cert",
                     "security": [{ "$ref": "#/components/securitySchemes/deviceToken" }] }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "deviceToken": {
                    "type": "userPassword",
                    "description": "MQTT user name = device id (also the client id), password = the device token"
                }
            }
        }
    })
}

//! End-to-end tests: the real server (`courier::App`, exactly what `courier serve` runs) on
//! port 0 with a fresh database, driven by real MQTT clients over TCP and WebSocket.
//!
//! Every scenario runs on SQLite and on PostgreSQL (`COURIER_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`); an unreachable PostgreSQL fails the tests.
//! Media scenarios also run with their objects in S3, on an in-process s3s-fs endpoint that
//! checks Signature V4 (`s3_endpoint.rs`).

extern crate client as courier_client;

mod acl;
mod bad_input;
mod binary;
mod blocks;
mod broker_edge;
mod broker_hooks;
mod cli;
mod compose;
mod contracts;
mod conversation_list;
mod deletion;
mod delivery;
mod edge_abuse;
mod fails_alone;
mod fault;
mod flood;
mod fuzz_corpus;
mod group_admin;
mod group_consent;
mod helpers;
mod hostile;
mod http_api;
mod http_limits;
mod media;
mod media_confinement;
mod media_isolation;
mod media_jobs;
mod media_metadata;
mod media_revocation;
mod message_changes;
mod moderation;
mod presence;
mod profiles;
mod push;
mod rate_limits;
mod retention;
mod s3_endpoint;
mod s3_storage;
mod scale_out;
mod search;
mod server;
mod sessions;
mod signup;
mod storage;
mod tls;
mod uploads;
mod web;

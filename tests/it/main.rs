//! Integration tests: one binary, real servers, real Redis.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test that cannot go on should stop loudly, where it is"
)]

mod admin_api;
mod agent_ws;
mod binary;
mod bus_redis;
mod compat;
mod engine_contract;
mod failover;
mod guest_tokens;
mod guest_ws;
mod hardening;
mod homes;
mod jwt_bearer;
mod lifecycle;
mod limit_settings;
mod limits;
mod loadtest;
mod multi_node;
mod observability;
mod oidc_attacks;
mod operate;
mod proxy;
mod public_and_ops;
mod push;
mod routing_burst;
mod serving;
mod staff_sso;
mod support;
mod traces;
mod web_snippet;

//! Integration tests: one binary, real servers, real Redis.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod admin_api;
mod binary;
mod engine_contract;
mod public_and_ops;
mod support;

//! The device-side cloud agent.
//!
//! - `core`: the sans-IO rules (who may do what, how commands change the
//!   state, trusted time, audit, the outbox, backoff, domain registration);
//!   plain functions of (state, input, now) returning effects.
//! - `store`: the state file on flash.
//! - `shell`: the I/O around the core: config, TLS, MQTT, local socket,
//!   event loop.
//! - `client`: the local-socket client library for firmware processes.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod core;
pub mod shell;
pub mod store;

/// The agent's version, reported in the state report and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

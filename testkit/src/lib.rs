//! `hc-testkit`: the one place for what the agent's integration tests and
//! benchmarks, the simulator (`sim-device`), the cross-crate scenarios
//! (`tests/`) and the measurements (`perf/`) share. Not shipped.
//!
//! - Infrastructure: a throw-away PKI ([`pki`]), an embedded MQTT broker
//!   with mutual TLS ([`broker`]), a real mosquitto as a child process
//!   ([`mosquitto`]) and the port choice both brokers use ([`ports`]).
pub mod broker;
pub mod mosquitto;
pub mod pki;
pub mod ports;

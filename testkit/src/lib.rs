//! `hc-testkit`: the one place for what the agent's integration tests and
//! benchmarks, the simulator (`sim-device`), the cross-crate scenarios
//! (`tests/`) and the measurements (`perf/`) share. Not shipped; the
//! product crates never depend on it (only as a dev-dependency).
//!
//! - Infrastructure: a throw-away PKI ([`pki`]), an embedded MQTT broker
//!   with mutual TLS ([`broker`]), a real mosquitto as a child process
//!   ([`mosquitto`]), a three-node NATS cluster as an MQTT broker
//!   ([`nats`]), the port choice and the address both brokers listen at ([`ports`]) and a
//!   TCP proxy that cuts the link like a dead network ([`proxy`]).
//! - The agent as a process: a site that writes its configuration
//!   ([`agent_config`], the agent's own `Config` serialized) and runs the
//!   real binary ([`daemon`]), the cloud that talks to it over MQTT
//!   ([`cloud`]), its local socket as firmware uses it ([`local`]), and the
//!   agent's core as the reference model of what it must hold ([`model`]),
//!   and its wall clock shifted with libfaketime ([`faketime`]).
//! - Flash that loses what was not synced at a power cut: a FUSE file
//!   system the real binary keeps its state on (`power_cut`, feature
//!   `power-cut`).
//! - The agent's core in process: a device with known identity and
//!   accounts, and the fully populated device ([`fixture`]).

pub mod agent_config;
pub mod broker;
mod child;
pub mod cloud;
pub mod crash_states;
pub mod daemon;
pub mod faketime;
pub mod fixture;
pub mod local;
pub mod model;
pub mod mosquitto;
pub mod nats;
pub mod pki;
pub mod ports;
#[cfg(feature = "power-cut")]
pub mod power_cut;
pub mod proxy;
pub mod skip;

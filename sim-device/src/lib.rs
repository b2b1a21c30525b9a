//! `sim-device` as a library: the parts the simulator binary, the demo and
//! the integration tests of the workspace share: a throw-away PKI
//! ([`pki`]), an embedded MQTT broker with mutual TLS ([`broker`]) and a
//! real mosquitto run as a child process for tests ([`mosquitto`]), the
//! simulated cloud ([`cloud`]), simulated recorders ([`recorder`]), the
//! demo story ([`demo`]) and fleet load ([`fleet`]).

pub mod broker;
pub mod cloud;
pub mod demo;
pub mod fleet;
pub mod mosquitto;
pub mod pki;
pub mod ports;
pub mod recorder;

//! The I/O shell around the core: configuration, TLS, the MQTT link, the
//! local socket server, reading network facts, and the event loop, the one
//! place that reads the clock and turns events into core inputs and effects
//! into I/O.

pub mod agent;
mod cloud_driver;
pub mod config;
pub mod event_loop;
pub mod local_server;
mod mqtt_task;
pub mod net_facts;
pub mod tls;

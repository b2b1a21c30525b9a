//! The I/O shell around the core: configuration, TLS, the wall clock, the
//! agent with its store and queues (`device`), the cloud link's driver and
//! its MQTT task, the local socket server, reading network facts, and the
//! daemon's start and stop. Only here are clocks read and sockets touched.

mod cert_subject;
pub mod clock;
mod cloud_driver;
pub mod config;
mod config_error;
pub mod daemon;
pub mod device;
mod local_server;
mod mqtt_task;
pub mod net_facts;
pub mod tls;

pub use cloud_driver::link_policy;

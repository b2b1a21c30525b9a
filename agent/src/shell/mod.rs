//! The I/O shell around the core: configuration, TLS, the wall clock, the
//! agent with its store and queues (`device`), the cloud link's driver and
//! its MQTT task, the local socket server, reading network facts, the
//! daemon's start and stop with its hygiene (single-instance lock, SIGHUP
//! reload, syslog, systemd notifications), and `hc-agent ctl`. Only here are clocks read and sockets touched.

pub mod cert_der;
pub mod clock;
mod cloud_driver;
pub mod config;
mod credentials;
pub mod ctl;
pub mod daemon;
pub mod device;
mod instance_lock;
mod local_server;
pub mod mqtt_error;
mod mqtt_task;
pub mod net_facts;
mod provisioning;
pub mod reload;
mod sd_notify;
pub mod syslog;
pub mod tls;
mod tls_source;

pub use cloud_driver::link_policy;

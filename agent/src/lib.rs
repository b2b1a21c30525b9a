//! The device-side cloud agent: the daemon `hc-agent` as a library, for the
//! binary, the simulator, the fuzz targets and the tests.
//!
//! # Layers
//!
//! - [`core`]: the sans-IO rules. Plain functions and state machines of
//!   (state, input, now) that return effects and the next deadline; they
//!   import neither tokio nor rumqttc and never read a clock.
//! - [`store`]: the state file on flash (atomic writes, integrity check,
//!   last good copy).
//! - [`shell`]: the I/O around the core: configuration, TLS, the cloud
//!   link's driver, the local socket, the wall clock, start and stop.
//! - [`client`]: the local-socket client library for firmware processes.
//!
//! # Driving the core
//!
//! The daemon ([`shell::daemon::run`]) does exactly this, and so can a
//! simulator or a test with time in its own hands:
//!
//! 1. Load or create a [`core::DeviceState`] (through a [`store::StateStore`]).
//! 2. For every command envelope received on the command topic, call
//!    [`core::handle_command`]`(&state, payload, &keys, now)`. It opens the
//!    envelope, checks the ledger (redelivery, replay), applies the command
//!    and returns an [`core::Applied`]: the next state, the audit entry and
//!    the effects, in order. Carry the effects out front to back; `Persist`
//!    comes first, and if it fails carry out [`core::storage_failed`]
//!    instead and keep the old state: nothing is acknowledged that did not
//!    reach flash.
//! 3. For every question of a firmware process, call [`core::decide()`]; it
//!    allocates nothing and names the reason of every denial.
//! 4. Drive the connection with a [`core::link::Link`]: feed it what the
//!    MQTT connection reports (`handle_connack`, `handle_incoming`,
//!    `handle_error`, ...), carry out what `poll_transmit` asks for, report
//!    what `poll_event` says, and call `handle_timeout` no later than
//!    `poll_timeout`. Time is monotonic milliseconds you pass in.
//! 5. Feed the [`core::domain::Registrar`] the network facts and the
//!    cloud's answers; send what it returns.
//!
//! [`shell::device::Agent`] bundles steps 1-3 and 5 with the store, the
//! audit ring and the outbox; the driver in `shell` does step 4 and the
//! I/O.
// No unsafe code but one audited `clock_gettime` call (shell/clock.rs).
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod core;
pub mod shell;
pub mod store;

pub use core::{handle_command, Applied, DeviceState};
pub use shell::config::Config;
pub use shell::daemon::run;
pub use shell::device::Agent;

/// The agent's version, reported in the state report and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

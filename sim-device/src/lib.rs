//! `sim-device` as a library: the parts the simulator binary, the demo and
//! the integration tests of the workspace share: the simulated cloud
//! ([`cloud`]), simulated recorders ([`recorder`]), the demo story
//! ([`demo`]) and fleet load ([`fleet`]).

pub mod cloud;
pub mod demo;
pub mod fleet;
pub mod recorder;

// They live in the test kit, shared with the agent's tests and perf/; the
// old paths (`sim_device::pki`, `crate::broker`, ...) keep working.
pub use hc_testkit::{broker, mosquitto, nats, pki, ports};

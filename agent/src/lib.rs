//! The device-side cloud agent. `core` holds the sans-IO rules (who may do
//! what, how commands change the state, time and audit); `store` keeps the
//! state on flash. The I/O shell (cloud link, local socket, domain
//! registration) builds on these.
#![forbid(unsafe_code)]

pub mod core;
pub mod store;

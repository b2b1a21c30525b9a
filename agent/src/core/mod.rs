//! The sans-IO core of the agent: the device state, the access decision,
//! command application, trusted time and the audit ring. Everything here is
//! a plain function of (state, input, now) returning effects; nothing reads
//! a clock, touches a file or a socket. The event loop owns all of that.

mod apply;
mod audit;
pub mod backoff;
mod command;
mod decide;
pub mod domain;
mod effects;
pub mod link;
mod local;
pub(crate) mod outbox;
pub mod renewal;
pub(crate) mod state;
pub mod time;
pub(crate) mod watch;

pub use apply::{apply, apply_signed, Applied, SignedWith};
pub use audit::AuditRing;
pub use command::handle_command;
pub use decide::{decide, role_of, Role};
pub use effects::{storage_failed, Effect, Effects};
pub use local::{local_admin_change, set_platform_access, LocalChange};
pub use outbox::{Outbox, Outgoing};
pub use state::{AccessState, DeviceState, HandledCommand, Identity, Ledger, Shares};
pub use time::TrustedClock;
pub use watch::Revoked;

//! The wire protocol between the device agent, the cloud and the firmware's
//! local clients: topics, the signed command envelope, every message, the
//! closed set of reason codes and every capacity. No I/O; `no_std` + `alloc`
//! capable (the `std` feature, on by default, only adds `std::error::Error`).
//! On a target without an operating system, add the `custom-getrandom`
//! feature (ring links a random source; CI builds `aarch64-unknown-none`).
//!
//! `SPEC.md` beside this crate is the normative description; its test
//! vectors are regenerated and compared by `tests/spec_vectors.rs`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

extern crate alloc;

mod coded;

pub mod access;
pub mod codec;
pub mod command;
pub mod ddns;
pub mod envelope;
pub mod ids;
pub mod limits;
pub mod local;
pub mod messages;
pub mod reason;
pub mod topics;

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;

pub use access::{
    Action, ChannelScope, ChannelSet, Grant, InstallerGrants, Permissions, ShareEntry, Validity,
};
pub use access::{Decision, LocalLevel, Principal};
pub use codec::{decode, encode, DecodeError};
pub use command::{BindRole, Command, CommandBody, CommandKind};
pub use envelope::{CommandKeys, EnvelopeError};
pub use ids::{AccountId, AccountRef, DomainName, Region, Serial, Text};
pub use messages::{Ack, Outcome};
pub use reason::Reason;

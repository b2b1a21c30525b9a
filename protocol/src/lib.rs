//! The wire protocol between the device agent, the cloud and the firmware's
//! local clients, as plain data and pure functions:
//!
//! - **wire types**: the signed [`Command`] and its [`CommandBody`], the
//!   device's messages ([`messages`]: [`Ack`], state and audit reports, the
//!   online status), domain registration ([`ddns`]), the local-socket
//!   requests and replies ([`local`]), the access vocabulary ([`access`]),
//!   validated identifiers ([`ids`]) and the closed set of [`Reason`] codes;
//! - **topics** ([`topics`]): every MQTT topic, built from the serial;
//! - **limits** ([`limits`]): every capacity, in one place;
//! - **the envelope** ([`envelope`]): Ed25519 signing on the cloud side,
//!   verification over the exact received bytes on the device;
//! - **signed time** ([`time`]): the nonce request and the signed answer;
//! - **the codec** ([`codec`]): postcard with the size limit checked first,
//!   trailing bytes refused and every failure a typed error.
//!
//! It does no I/O, reads no clock and draws no random numbers. It is
//! `no_std` + `alloc` capable: the `std` feature (on by default) only adds
//! `std::error::Error`; on a target without an operating system add the
//! `custom-getrandom` feature (ring links a random source; CI builds
//! `aarch64-unknown-none`). The `arbitrary` feature adds proptest
//! strategies for every wire value (module `arbitrary`), for other crates'
//! tests and fuzzers.
//!
//! `SPEC.md` beside this crate is the normative description (a cloud team
//! implements the other side from it alone); its tables and test vectors
//! are regenerated from this code and compared by `tests/spec_vectors.rs`.
//!
//! # The cloud side
//!
//! Seal a command for one device, publish it on its `cmd` topic, and read
//! the device's acknowledgement from `ack`:
//!
//! ```
//! use hc_protocol::envelope::CommandSigner;
//! use hc_protocol::limits::MAX_MESSAGE_BYTES;
//! use hc_protocol::topics::{self, Leaf};
//! use hc_protocol::{codec, AccountId, AccountRef, Ack, Command, CommandBody, Region, Serial};
//!
//! let signer = CommandSigner::from_seed(1, &[7; 32]).expect("a 32-byte seed");
//! let serial = Serial::new("DS-7608-0001").expect("a valid serial");
//! let command = Command {
//!     serial: serial.clone(),
//!     actor: AccountRef {
//!         id: AccountId::new("owner-0007").expect("a valid account id"),
//!         region: Region::new("EU").expect("a valid region"),
//!     },
//!     seq: 1, // the next value of the cloud's counter for this device
//!     issued_at: 1_767_225_600,
//!     body: CommandBody::RequestState,
//! };
//! let envelope: Vec<u8> = signer.seal(&command).expect("fits MAX_COMMAND_BYTES");
//! assert_eq!(topics::topic(&serial, Leaf::Command), "dev/DS-7608-0001/cmd");
//! // ... publish `envelope` at QoS 1; subscribe to `topics::all_devices(Leaf::Ack)`.
//! # let payload = codec::encode(&Ack { seq: Some(1), outcome: hc_protocol::Outcome::Accepted, redelivered: false }, MAX_MESSAGE_BYTES).unwrap();
//! let (from, leaf) = topics::parse("dev/DS-7608-0001/ack").expect("one of our topics");
//! assert_eq!((from, leaf), (serial, Leaf::Ack));
//! let ack: Ack = codec::decode(&payload, MAX_MESSAGE_BYTES).expect("a valid ack");
//! assert_eq!(ack.seq, Some(1));
//! ```
//!
//! # The device side
//!
//! Open an envelope with the pinned keys (checking size, version, key,
//! signature, decoding and serial, in that order), then answer with an
//! encoded message:
//!
//! ```
//! use hc_protocol::envelope::{self, CommandKeys, CommandSigner};
//! use hc_protocol::limits::MAX_MESSAGE_BYTES;
//! use hc_protocol::{codec, Ack, Outcome, Reason, Serial};
//!
//! # let signer = CommandSigner::from_seed(1, &[7; 32]).unwrap();
//! let mut keys = CommandKeys::new();
//! keys.pin(1, signer.public_key()); // from the device's configuration
//! let me = Serial::new("DS-7608-0001").expect("a valid serial");
//! # let received: &[u8] = &[1, 1, 0];
//! let ack = match envelope::open(received, &keys, &me) {
//!     Ok(command) => Ack { seq: Some(command.seq), outcome: Outcome::Accepted, redelivered: false },
//!     // Nothing in an unverified envelope is trusted, not even its seq.
//!     Err(e) => Ack { seq: None, outcome: Outcome::Refused(e.reason()), redelivered: false },
//! };
//! assert_eq!(ack.outcome, Outcome::Refused(Reason::Malformed)); // 3 bytes: too short
//! let payload = codec::encode(&ack, MAX_MESSAGE_BYTES).expect("an ack always fits");
//! assert_eq!(payload, [0x00, 0x01, 0x18, 0x00]);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

extern crate alloc;

mod coded;

pub mod access;
pub mod certificate;
pub mod codec;
pub mod command;
pub mod ddns;
pub mod envelope;
pub mod ids;
pub mod limits;
pub mod local;
pub mod messages;
pub mod provisioning;
pub mod reason;
pub mod time;
pub mod topics;

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;

pub use access::{
    Action, ChannelScope, ChannelSet, Grant, InstallerGrants, Permissions, ShareEntry, Validity,
};
pub use access::{Decision, LocalLevel, Principal};
pub use codec::{decode, encode, DecodeError};
pub use command::{BindRole, Command, CommandBody, CommandKind};
pub use envelope::{CommandKeys, EnvelopeError, Verified};
pub use ids::{AccountId, AccountRef, DomainName, Region, Serial, Text};
pub use messages::{Ack, Outcome};
pub use reason::Reason;

//! The local-socket protocol between the agent and the firmware's own
//! processes (web, streaming and SDK servers). Frames are a 4-byte
//! big-endian length followed by that many bytes of postcard.

use alloc::boxed::Box;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Decision, LocalLevel, Principal};
use crate::codec::{self, DecodeError, EncodeError};
use crate::ids::{DomainName, Serial};
use crate::limits::{MAX_AUDIT_REPLY, MAX_COMMAND_KEYS, MAX_LOCAL_FRAME_BYTES};
use crate::messages::{AuditEntry, StateReport};
use crate::reason::Reason;

/// The frame's length prefix: a big-endian `u32`.
pub const FRAME_HEADER_LEN: usize = 4;

/// What a firmware process asks the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalRequest {
    /// May `principal` do `action` on `channel` now?
    Authorize {
        /// Who asks.
        principal: Principal,
        /// What it wants to do.
        action: Action,
        /// The channel, for a channel-scoped action.
        channel: Option<u16>,
    },
    /// The agent's health and switches.
    Status,
    /// The whole access list (as the state report).
    ListAccess,
    /// Switch platform access; `by` is the level of the device user who
    /// asked, as authenticated by the calling process. Admin only.
    SetPlatformAccess {
        /// The level of the device user who asked.
        by: LocalLevel,
        /// On or off.
        enabled: bool,
    },
    /// Up to `max` most recent audit entries.
    RecentAudit {
        /// How many, clamped to `MAX_AUDIT_REPLY`.
        max: u16,
    },
    /// Watch a session the process holds (a live view, a playback, a
    /// configuration session): it is registered if the decision is allow
    /// now (reply `Decision(Allow)`), and the connection gets
    /// `LocalReply::Revoked` the moment that decision turns to deny. A
    /// denied session is not registered (reply `Decision(Deny(reason))`).
    Watch {
        /// The process's own id for the session, unique on its connection.
        session: u32,
        /// Who holds the session.
        principal: Principal,
        /// What the session does.
        action: Action,
        /// The channel, for a channel-scoped action.
        channel: Option<u16>,
    },
    /// The process ended a watched session (reply `Done`, also when the
    /// session was not watched or already revoked). Closing the connection
    /// ends all of its sessions.
    Unwatch {
        /// The id given in `Watch`.
        session: u32,
    },
    /// Local recovery: unbind the device from its cloud account(s), as a
    /// recorder's local menu does; `by` is the level of the device user
    /// who asked, as authenticated by the calling process. Admin only,
    /// from a process on the admin list; audited; the next state report
    /// tells the cloud. Reply `Done`, or `Error(reason)`.
    Unbind {
        /// The level of the device user who asked.
        by: LocalLevel,
    },
}

/// The cloud link as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkState {
    /// The MQTT session is up.
    Connected,
    /// Connecting or backing off.
    Connecting,
    /// Platform access is off: the link is closed on purpose.
    Disabled,
}

/// Where the domain registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationState {
    /// Nothing sent yet for the current name.
    NotRegistered,
    /// Sent, no answer yet.
    Pending,
    /// Registered.
    Registered {
        /// When the cloud forgets it unless refreshed (device time).
        expires_at: u64,
    },
    /// The cloud answered `NameTaken`; not retried until the name changes.
    NameTaken,
    /// The cloud answered `Invalid`; not retried until the name changes.
    Invalid,
}

/// The agent's health and switches, for `LocalRequest::Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The device serial.
    pub serial: Serial,
    /// The cloud link.
    pub link: LinkState,
    /// An owner or an installer holds the device.
    pub bound: bool,
    /// The device is owned (handed over or bound by its owner).
    pub handed_over: bool,
    /// The cloud service switch.
    pub cloud_service: bool,
    /// The platform-access switch.
    pub platform_access: bool,
    /// The current domain name.
    pub domain: DomainName,
    /// The registration of `domain` (the current name).
    pub registration: RegistrationState,
    /// The highest command `seq` handled.
    pub last_seq: u64,
    /// Time-limited grants can be decided: the device holds signed time
    /// (`clock_offset_ms` is `Some`), or its wall clock is at or above the
    /// trusted-time floor.
    pub clock_trusted: bool,
    /// Messages waiting in the offline queue.
    pub reports_queued: u32,
    /// Messages dropped from the offline queue since start-up.
    pub reports_dropped: u32,
    /// The device wall clock's offset from trusted time in milliseconds
    /// (positive: the wall clock is ahead), now; `None` without signed
    /// time since start-up (decisions then use the wall clock against the
    /// floor). Firmware may set its clock by it (SPEC.md §8.4).
    pub clock_offset_ms: Option<i64>,
    /// The ids of the command keys the device holds, ascending (SPEC.md
    /// §6.2): set by configuration until the cloud's first key command.
    pub command_key_ids: heapless::Vec<u8, MAX_COMMAND_KEYS>,
    /// When the device certificate in use ends, Unix seconds; `None`
    /// without TLS or before the agent read it (SPEC.md §6.6).
    pub certificate_not_after: Option<u64>,
}

// One reply exists per connection at a time; the inline audit list is fine.
#[allow(clippy::large_enum_variant)]
/// The agent's answer: exactly one per request, in request order, except
/// `Revoked`, which answers no request: the agent sends it on a connection
/// that watches sessions whenever one of them is revoked, between replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalReply {
    /// The answer to `Authorize`.
    Decision(Decision),
    /// The answer to `Status`.
    Status(Box<StatusReply>),
    /// The answer to `ListAccess`: the current state report.
    Access(Box<StateReport>),
    /// The answer to `RecentAudit`, oldest first (at most `MAX_AUDIT_REPLY`).
    Audit(heapless::Vec<AuditEntry, MAX_AUDIT_REPLY>),
    /// The request was carried out.
    Done,
    /// The request was refused or could not be understood.
    Error(Reason),
    /// A notice, not a reply: watched session `session` may no longer go
    /// on, for `reason`. It is no longer watched.
    Revoked {
        /// The id given in `Watch`.
        session: u32,
        /// Why the decision turned to deny.
        reason: Reason,
    },
}

/// Encodes a message as one frame: length prefix and body.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let body = codec::encode(message, MAX_LOCAL_FRAME_BYTES)?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    // Cannot truncate: body is at most MAX_LOCAL_FRAME_BYTES.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a frame header; refuses a length over the limit before any body
/// byte is read, so a client cannot make the agent allocate or wait for it.
pub fn frame_body_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_LOCAL_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len,
            max: MAX_LOCAL_FRAME_BYTES,
        });
    }
    Ok(len)
}

/// Decodes a frame body.
pub fn decode_frame_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    codec::decode(body, MAX_LOCAL_FRAME_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_header_is_refused_before_the_body() {
        let header = ((MAX_LOCAL_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            frame_body_len(header),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(frame_body_len(16u32.to_be_bytes()), Ok(16));
    }

    #[test]
    fn frame_round_trips() {
        let frame = encode_frame(&LocalRequest::Status).unwrap();
        let len = frame_body_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(
            decode_frame_body::<LocalRequest>(&frame[4..]).unwrap(),
            LocalRequest::Status
        );
    }
}

//! What the store can keep: a value with its current payload encoding and a
//! way to read the payloads older agents wrote, so an update never loses
//! the state on flash.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::file_format::FormatError;
use crate::core::state::{AccessState, Identity, Ledger};
use crate::core::time::TrustedClock;
use crate::core::DeviceState;

/// A value kept in a state file.
pub trait Stored: Serialize + DeserializeOwned {
    /// The value from the payload of a file of format `version`, older than
    /// `FORMAT_VERSION` and at least `OLDEST_READABLE_VERSION`.
    fn upgrade(version: u16, payload: &[u8]) -> Result<Self, FormatError>;
}

/// Decodes `payload` as exactly one `T`, nothing after it.
pub(super) fn decode_whole<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FormatError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(payload).map_err(|e| FormatError::Payload(e.to_string()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(FormatError::Payload(format!(
            "{} bytes after the state",
            rest.len()
        )))
    }
}

/// The device state as format version 1 wrote it: without `behind`.
#[derive(Deserialize)]
struct DeviceStateV1 {
    identity: Identity,
    access: AccessState,
    ledger: Ledger,
    clock: TrustedClock,
}

impl Stored for DeviceState {
    fn upgrade(version: u16, payload: &[u8]) -> Result<Self, FormatError> {
        match version {
            1 => {
                let v1 = decode_whole::<DeviceStateV1>(payload)?;
                Ok(DeviceState {
                    identity: v1.identity,
                    access: v1.access,
                    ledger: v1.ledger,
                    clock: v1.clock,
                    // A version 1 file was the agent's own current state.
                    behind: false,
                })
            }
            other => Err(FormatError::UnsupportedVersion(other)),
        }
    }
}

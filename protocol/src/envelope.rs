//! The signed command envelope. Layout (normative text in `SPEC.md`):
//!
//! ```text
//! offset 0       u8      format version (ENVELOPE_VERSION)
//! offset 1       u8      key id
//! offset 2..n-64         postcard(Command)
//! offset n-64..n         Ed25519 signature over bytes 0..n-64
//! ```
//!
//! The signature is checked over the exact bytes received, before the
//! command is decoded; nothing is re-encoded for verification.

use alloc::vec::Vec;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::codec::{self, DecodeError};
use crate::command::Command;
use crate::ids::Serial;
use crate::limits::{MAX_COMMAND_BYTES, MAX_COMMAND_KEYS};
use crate::reason::Reason;

/// The first byte of every envelope: its format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// The Ed25519 signature at the end of an envelope.
pub const SIGNATURE_LEN: usize = 64;
/// The header before the command: version and key id.
pub const HEADER_LEN: usize = 2;
/// An Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Why an envelope was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// More than `MAX_COMMAND_BYTES` (the length is carried).
    #[error("envelope of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Shorter than a header, one command byte and a signature.
    #[error("envelope of {0} bytes is too short")]
    TooShort(usize),
    /// The first byte is not `ENVELOPE_VERSION`.
    #[error("envelope format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// The key id names no pinned key.
    #[error("key id {0} is not pinned on this device")]
    UnknownKeyId(u8),
    /// The signature does not verify with the pinned key.
    #[error("signature does not verify")]
    BadSignature,
    /// The signed bytes are not exactly one `Command`.
    #[error("signed command does not decode: {0}")]
    Malformed(DecodeError),
    /// The command names another serial.
    #[error("command is for another device")]
    WrongDevice,
}

impl EnvelopeError {
    /// The reason code the device acknowledges this refusal with.
    pub fn reason(self) -> Reason {
        match self {
            EnvelopeError::TooLarge(_) => Reason::TooLarge,
            EnvelopeError::TooShort(_) => Reason::Malformed,
            EnvelopeError::UnsupportedVersion(_) => Reason::UnsupportedVersion,
            EnvelopeError::UnknownKeyId(_) => Reason::UnknownKeyId,
            EnvelopeError::BadSignature => Reason::BadSignature,
            EnvelopeError::Malformed(e) => e.reason(),
            EnvelopeError::WrongDevice => Reason::WrongDevice,
        }
    }
}

/// One key of the ring: its id and its Ed25519 public key.
type PinnedKey = (u8, [u8; PUBLIC_KEY_LEN]);

/// The cloud's command verification keys the device holds (its key ring):
/// the current one, during a rotation the next one, and room for a
/// standby key. Each under its own one-byte id. Stored on flash as a list
/// of `(id, key)` pairs; a list that names an id twice does not decode.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    try_from = "heapless::Vec<PinnedKey, MAX_COMMAND_KEYS>",
    into = "heapless::Vec<PinnedKey, MAX_COMMAND_KEYS>"
)]
pub struct CommandKeys {
    keys: heapless::Vec<PinnedKey, MAX_COMMAND_KEYS>,
}

impl From<CommandKeys> for heapless::Vec<PinnedKey, MAX_COMMAND_KEYS> {
    fn from(keys: CommandKeys) -> Self {
        keys.keys
    }
}

impl TryFrom<heapless::Vec<PinnedKey, MAX_COMMAND_KEYS>> for CommandKeys {
    type Error = &'static str;

    fn try_from(list: heapless::Vec<PinnedKey, MAX_COMMAND_KEYS>) -> Result<Self, Self::Error> {
        let mut keys = CommandKeys::new();
        for (id, key) in list {
            if !keys.pin(id, key) {
                return Err("a key id appears twice in the key ring");
            }
        }
        Ok(keys)
    }
}

impl CommandKeys {
    /// No key pinned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins a key under an id; false when the ring is full or the id is taken.
    pub fn pin(&mut self, key_id: u8, public_key: [u8; PUBLIC_KEY_LEN]) -> bool {
        if self.get(key_id).is_some() {
            return false;
        }
        self.keys.push((key_id, public_key)).is_ok()
    }

    /// Removes the key under `key_id`; false when there is none.
    pub fn remove(&mut self, key_id: u8) -> bool {
        match self.keys.iter().position(|(id, _)| *id == key_id) {
            Some(index) => {
                self.keys.remove(index);
                true
            }
            None => false,
        }
    }

    /// The key pinned under `key_id`.
    pub fn get(&self, key_id: u8) -> Option<&[u8; PUBLIC_KEY_LEN]> {
        self.keys
            .iter()
            .find(|(id, _)| *id == key_id)
            .map(|(_, k)| k)
    }

    /// The ids of the keys held, in ascending order (as the state report
    /// lists them).
    pub fn ids(&self) -> heapless::Vec<u8, MAX_COMMAND_KEYS> {
        let mut ids: heapless::Vec<u8, MAX_COMMAND_KEYS> =
            self.keys.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// How many keys are pinned.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is pinned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `MAX_COMMAND_KEYS` keys are pinned: no room for another.
    pub fn is_full(&self) -> bool {
        self.keys.is_full()
    }
}

/// A command whose envelope verified, with the id of the key that signed
/// it (a key-management command may depend on which key signed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The command, decoded from the signed bytes.
    pub command: Command,
    /// The envelope's key id: the held key whose signature verified.
    pub key_id: u8,
}

/// Verifies and decodes an envelope for `serial`, keeping the signing
/// key's id.
pub fn open_verified(
    bytes: &[u8],
    keys: &CommandKeys,
    serial: &Serial,
) -> Result<Verified, EnvelopeError> {
    let command = open(bytes, keys, serial)?;
    // `open` checked the length and read the key id from byte 1.
    let key_id = bytes.get(1).copied().unwrap_or_default();
    Ok(Verified { command, key_id })
}

/// Verifies and decodes an envelope for `serial`.
pub fn open(bytes: &[u8], keys: &CommandKeys, serial: &Serial) -> Result<Command, EnvelopeError> {
    open_for(bytes, keys, serial, ENVELOPE_VERSION, MAX_COMMAND_BYTES)
}

/// A signed message meant for one device (a command, a time answer): it
/// names the device's serial, and no other device may act on it.
pub(crate) trait ForDevice: serde::de::DeserializeOwned {
    /// The device it is meant for.
    fn serial(&self) -> &Serial;
}

impl ForDevice for Command {
    fn serial(&self) -> &Serial {
        &self.serial
    }
}

/// Verifies and decodes a signed message of format `format` (at most `max`
/// bytes) for `serial`: size, format, key id, signature, decoding and
/// serial, in that order.
pub(crate) fn open_for<T: ForDevice>(
    bytes: &[u8],
    keys: &CommandKeys,
    serial: &Serial,
    format: u8,
    max: usize,
) -> Result<T, EnvelopeError> {
    let body = open_signed(bytes, keys, format, max)?;
    let message: T = codec::decode(body, max).map_err(EnvelopeError::Malformed)?;
    if message.serial() != serial {
        return Err(EnvelopeError::WrongDevice);
    }
    Ok(message)
}

/// Checks a signed blob of format `format` (its first byte) and at most
/// `max` bytes: size, format, key id and signature, in that order, over
/// the exact bytes received. Returns the signed body, not yet decoded.
/// Commands and time answers (`crate::time`) share this layout under
/// different format bytes, so neither can pass for the other.
pub fn open_signed<'a>(
    bytes: &'a [u8],
    keys: &CommandKeys,
    format: u8,
    max: usize,
) -> Result<&'a [u8], EnvelopeError> {
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge(bytes.len()));
    }
    if bytes.len() < HEADER_LEN + 1 + SIGNATURE_LEN {
        return Err(EnvelopeError::TooShort(bytes.len()));
    }
    if bytes[0] != format {
        return Err(EnvelopeError::UnsupportedVersion(bytes[0]));
    }
    let key = keys
        .get(bytes[1])
        .ok_or(EnvelopeError::UnknownKeyId(bytes[1]))?;
    let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    UnparsedPublicKey::new(&ED25519, key)
        .verify(signed, signature)
        .map_err(|_| EnvelopeError::BadSignature)?;
    Ok(&signed[HEADER_LEN..])
}

/// The cloud side: a command signing key with its id.
pub struct CommandSigner {
    key_id: u8,
    pair: Ed25519KeyPair,
}

impl CommandSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(key_id: u8, seed: &[u8; 32]) -> Result<Self, ring::error::KeyRejected> {
        Ok(CommandSigner {
            key_id,
            pair: Ed25519KeyPair::from_seed_unchecked(seed)?,
        })
    }

    /// The id the device pins this key under.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The public key to pin on devices.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Encodes and signs a command into an envelope.
    pub fn seal(&self, command: &Command) -> Result<Vec<u8>, codec::EncodeError> {
        self.seal_signed(ENVELOPE_VERSION, command, MAX_COMMAND_BYTES)
    }

    /// Encodes `body` and signs it under format byte `format`, into at
    /// most `max` bytes (the layout `open_signed` checks).
    pub fn seal_signed<T: serde::Serialize>(
        &self,
        format: u8,
        body: &T,
        max: usize,
    ) -> Result<Vec<u8>, codec::EncodeError> {
        let body = codec::encode(body, max - HEADER_LEN - SIGNATURE_LEN)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + SIGNATURE_LEN);
        out.push(format);
        out.push(self.key_id);
        out.extend_from_slice(&body);
        let signature = self.pair.sign(&out);
        out.extend_from_slice(signature.as_ref());
        Ok(out)
    }
}

//! The state file's format:
//!
//! ```text
//! 4 bytes  magic "HCST"
//! 2 bytes  format version, big-endian (FORMAT_VERSION)
//! 4 bytes  payload length, big-endian (at most MAX_PAYLOAD)
//! n bytes  payload (postcard)
//! 32 bytes SHA-256 over everything before it
//! ```

use ring::digest::{digest, SHA256};

/// The first bytes of every state file.
pub(super) const MAGIC: &[u8; 4] = b"HCST";
/// The format this agent writes; raised when the layout or the payload's
/// encoding changes. Version 1 payloads lack the device state's `behind`
/// flag, version 2 payloads its `command_keys`; both are still read (see
/// `Stored::upgrade`).
pub const FORMAT_VERSION: u16 = 3;
/// The oldest format version this agent still reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;
/// The largest state payload; a full access list is about 12 KiB.
pub const MAX_PAYLOAD: usize = hc_protocol::limits::MAX_STATE_FILE_BYTES;
const HEADER_LEN: usize = 10;
const DIGEST_LEN: usize = 32;

/// Why a state file is not a good state. Each kind of damage has its own
/// variant, so the log says what happened to the flash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A file of zero bytes (typically a write cut short by power loss).
    #[error("file is empty")]
    Empty,
    /// The file does not start with the magic: not a state file at all.
    #[error("not a state file (bad magic)")]
    BadMagic,
    /// Written by an agent with another format version.
    #[error("state format version {0} is not supported")]
    UnsupportedVersion(u16),
    /// A payload (length in bytes) over `MAX_PAYLOAD`, whether written or
    /// claimed by a header.
    #[error("payload length {0} is over the limit")]
    TooLarge(usize),
    /// The file is shorter than its header says.
    #[error("file is truncated ({have} of {need} bytes)")]
    Truncated {
        /// The file's length in bytes.
        have: usize,
        /// The length its header calls for.
        need: usize,
    },
    /// This many bytes follow the checksum.
    #[error("{0} unexpected bytes after the checksum")]
    TrailingBytes(usize),
    /// The SHA-256 does not match: bit rot or a torn write.
    #[error("checksum mismatch: the file is corrupt")]
    Corrupt,
    /// The file is intact but its payload does not decode as (or does not
    /// encode from) the state.
    #[error("payload does not decode: {0}")]
    Payload(String),
}

/// The whole file for `payload`: header, payload and checksum.
pub(super) fn encode(payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FormatError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + DIGEST_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let sum = digest(&SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    Ok(out)
}

/// The payload of a well-formed file of the current version (the store
/// reads every readable version through `decode_any`).
#[cfg(test)]
pub(super) fn decode(bytes: &[u8]) -> Result<&[u8], FormatError> {
    match decode_any(bytes)? {
        (FORMAT_VERSION, payload) => Ok(payload),
        (version, _) => Err(FormatError::UnsupportedVersion(version)),
    }
}

/// The format version and payload of a well-formed file of any readable
/// version.
pub(super) fn decode_any(bytes: &[u8]) -> Result<(u16, &[u8]), FormatError> {
    if bytes.is_empty() {
        return Err(FormatError::Empty);
    }
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            have: bytes.len(),
            need: HEADER_LEN,
        });
    }
    if &bytes[..4] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let len = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FormatError::TooLarge(len));
    }
    let need = HEADER_LEN + len + DIGEST_LEN;
    if bytes.len() < need {
        return Err(FormatError::Truncated {
            have: bytes.len(),
            need,
        });
    }
    if bytes.len() > need {
        return Err(FormatError::TrailingBytes(bytes.len() - need));
    }
    let (body, sum) = bytes.split_at(HEADER_LEN + len);
    if digest(&SHA256, body).as_ref() != sum {
        return Err(FormatError::Corrupt);
    }
    Ok((version, &body[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let file = encode(b"hello").unwrap();
        assert_eq!(decode(&file).unwrap(), b"hello");
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let file = encode(b"hello").unwrap();
        assert_eq!(decode(&[]), Err(FormatError::Empty));
        assert_eq!(
            decode(&file[..file.len() - 1]),
            Err(FormatError::Truncated {
                have: file.len() - 1,
                need: file.len()
            })
        );
        let mut bad = file.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(FormatError::BadMagic));
        let mut bad = file.clone();
        bad[5] = 9;
        assert_eq!(decode(&bad), Err(FormatError::UnsupportedVersion(9)));
        let mut bad = file.clone();
        bad[11] ^= 1;
        assert_eq!(decode(&bad), Err(FormatError::Corrupt));
        let mut bad = file.clone();
        bad.push(0);
        assert_eq!(decode(&bad), Err(FormatError::TrailingBytes(1)));
        let mut bad = file;
        bad[6] = 0xff;
        assert!(matches!(decode(&bad), Err(FormatError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_single_bit_flip_is_refused(payload in proptest::collection::vec(any::<u8>(), 0..64), bit in any::<usize>()) {
            let mut file = encode(&payload).unwrap();
            let bit = bit % (file.len() * 8);
            file[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&file).is_err());
        }

        #[test]
        fn any_truncation_is_refused(payload in proptest::collection::vec(any::<u8>(), 0..64), cut in any::<usize>()) {
            let file = encode(&payload).unwrap();
            let cut = cut % file.len();
            prop_assert!(decode(&file[..cut]).is_err());
        }
    }
}

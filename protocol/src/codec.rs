//! Encoding and decoding of every message: postcard, with the size limit
//! checked before any decoding, trailing bytes rejected and every failure a
//! typed error (never a panic).

use alloc::vec::Vec;
use serde::{de::DeserializeOwned, Serialize};

use crate::reason::Reason;

/// Why bytes did not decode into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is longer than the limit of its kind; nothing was decoded.
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit they were checked against.
        max: usize,
    },
    /// The bytes are not an encoding of the type (or end inside it).
    #[error("message is malformed")]
    Malformed,
    /// A whole value was decoded, but this many bytes follow it.
    #[error("{0} bytes follow the message")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// The reason code that answers this error on the wire.
    pub fn reason(self) -> Reason {
        match self {
            DecodeError::TooLarge { .. } => Reason::TooLarge,
            DecodeError::Malformed | DecodeError::TrailingBytes(_) => Reason::Malformed,
        }
    }
}

/// Why a message could not be encoded. Values built through this crate's
/// types always fit; this guards the size limit on the sending side too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoding is longer than the limit it was made for.
    #[error("encoded message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Bytes the encoding took.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The serializer refused the value (not possible for this crate's
    /// types, which use only what postcard encodes).
    #[error("value cannot be encoded")]
    Unencodable,
}

/// Decodes exactly one `T` from `bytes`, which must be at most `max` long.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|_| DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Encodes `value`, refusing results over `max` bytes.
pub fn encode<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<Vec<u8>, EncodeError> {
    let bytes = postcard::to_allocvec(value).map_err(|_| EncodeError::Unencodable)?;
    if bytes.len() > max {
        return Err(EncodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_checked_before_decoding() {
        let big = [0u8; 9];
        assert_eq!(
            decode::<u8>(&big, 8),
            Err(DecodeError::TooLarge { len: 9, max: 8 })
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        assert_eq!(decode::<u8>(&[1, 2], 8), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(decode::<u8>(&[1], 8), Ok(1));
    }

    #[test]
    fn empty_input_is_malformed_not_a_panic() {
        assert_eq!(decode::<u64>(&[], 8), Err(DecodeError::Malformed));
    }
}

//! Signed time, in the spirit of Roughtime (normative text in `SPEC.md`
//! §8.4). The device asks with a fresh random nonce ([`TimeRequest`] on
//! `time/request`); the cloud answers with its time and that nonce
//! ([`TimeAnswer`] on `time/answer`), signed with the command key in the
//! envelope layout under its own format byte:
//!
//! ```text
//! offset 0       u8      TIME_ANSWER_FORMAT
//! offset 1       u8      key id
//! offset 2..n-64         postcard(TimeAnswer)
//! offset n-64..n         Ed25519 signature over bytes 0..n-64
//! ```
//!
//! The distinct first byte keeps a signed time answer from ever opening as
//! a command envelope, and a command from opening as a time answer.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::codec::{self, EncodeError};
use crate::envelope::{open_for, CommandKeys, CommandSigner, EnvelopeError, ForDevice};
use crate::ids::Serial;
use crate::limits::MAX_MESSAGE_BYTES;

/// The first byte of a signed time answer (a command envelope's is
/// `ENVELOPE_VERSION`).
pub const TIME_ANSWER_FORMAT: u8 = 0x54;
/// Bytes in a time request's nonce.
pub const NONCE_LEN: usize = 16;
/// How often a connected device asks for the time again, in seconds (it
/// also asks at every connect, and sooner after a request that failed).
pub const TIME_REFRESH_SECS: u64 = 6 * 3600;
/// How long a device waits before asking again after a request that got
/// no acceptable answer, in seconds.
pub const TIME_RETRY_SECS: u64 = 30;

/// The device asks for the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRequest {
    /// Fresh random bytes; the answer must carry them back.
    pub nonce: [u8; NONCE_LEN],
}

/// The cloud's time, for one request of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeAnswer {
    /// The device asking; equals the topic's serial.
    pub serial: Serial,
    /// The request's nonce, copied.
    pub nonce: [u8; NONCE_LEN],
    /// The cloud's clock when it answered, Unix milliseconds.
    pub time_ms: u64,
    /// How far the cloud's clock may be off true time, milliseconds.
    pub radius_ms: u32,
}

impl TimeAnswer {
    /// The answer to `request` from `serial`, at cloud time `time_ms`.
    pub fn to(serial: Serial, request: &TimeRequest, time_ms: u64, radius_ms: u32) -> Self {
        TimeAnswer {
            serial,
            nonce: request.nonce,
            time_ms,
            radius_ms,
        }
    }
}

impl CommandSigner {
    /// Signs a time answer (the cloud side).
    pub fn seal_time(&self, answer: &TimeAnswer) -> Result<Vec<u8>, EncodeError> {
        self.seal_signed(TIME_ANSWER_FORMAT, answer, MAX_MESSAGE_BYTES)
    }

    /// The cloud side in one step: the signed answer to a `TimeRequest`
    /// payload that `serial` published, at cloud time `time_ms`; `None` if
    /// the payload is not a request.
    pub fn answer_time_request(
        &self,
        serial: &Serial,
        request: &[u8],
        time_ms: u64,
        radius_ms: u32,
    ) -> Option<Vec<u8>> {
        let request: TimeRequest = codec::decode(request, MAX_MESSAGE_BYTES).ok()?;
        let answer = TimeAnswer::to(serial.clone(), &request, time_ms, radius_ms);
        self.seal_time(&answer).ok()
    }
}

/// Verifies and decodes a signed time answer for `serial`: size, format,
/// key id, signature, decoding and serial, in that order. Whether it
/// answers the outstanding request, in time, is the device's to check.
pub fn open_time_answer(
    bytes: &[u8],
    keys: &CommandKeys,
    serial: &Serial,
) -> Result<TimeAnswer, EnvelopeError> {
    open_for(bytes, keys, serial, TIME_ANSWER_FORMAT, MAX_MESSAGE_BYTES)
}

impl ForDevice for TimeAnswer {
    fn serial(&self) -> &Serial {
        &self.serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{self, ENVELOPE_VERSION};

    fn setup() -> (CommandSigner, CommandKeys, Serial) {
        let signer = CommandSigner::from_seed(1, &[7; 32]).unwrap();
        let mut keys = CommandKeys::new();
        keys.pin(1, signer.public_key());
        (signer, keys, Serial::new("NVR-01").unwrap())
    }

    /// The answer for `serial` to a request whose nonce is all `nonce`.
    fn answer_for(serial: &Serial, nonce: u8, time_ms: u64, radius_ms: u32) -> TimeAnswer {
        let request = TimeRequest {
            nonce: [nonce; NONCE_LEN],
        };
        TimeAnswer::to(serial.clone(), &request, time_ms, radius_ms)
    }

    #[test]
    fn an_answer_opens_for_its_device_only() {
        let (signer, keys, serial) = setup();
        let answer = answer_for(&serial, 3, 1_767_225_600_123, 50);
        let sealed = signer.seal_time(&answer).unwrap();
        assert_eq!(sealed[0], TIME_ANSWER_FORMAT);
        assert_eq!(open_time_answer(&sealed, &keys, &serial), Ok(answer));
        let other = Serial::new("NVR-02").unwrap();
        assert_eq!(
            open_time_answer(&sealed, &keys, &other),
            Err(EnvelopeError::WrongDevice)
        );
    }

    #[test]
    fn the_cloud_answers_a_request_payload_in_one_step() {
        let (signer, keys, serial) = setup();
        let request = TimeRequest { nonce: [4; 16] };
        let payload = codec::encode(&request, MAX_MESSAGE_BYTES).unwrap();
        let sealed = signer
            .answer_time_request(&serial, &payload, 77, 5)
            .unwrap();
        let expected = TimeAnswer::to(serial.clone(), &request, 77, 5);
        assert_eq!(open_time_answer(&sealed, &keys, &serial), Ok(expected));
        assert_eq!(signer.answer_time_request(&serial, &[1, 2], 77, 5), None);
    }

    #[test]
    fn answers_and_commands_never_pass_for_each_other() {
        let (signer, keys, serial) = setup();
        let sealed = signer.seal_time(&answer_for(&serial, 0, 1, 0)).unwrap();
        assert_eq!(
            envelope::open(&sealed, &keys, &serial),
            Err(EnvelopeError::UnsupportedVersion(TIME_ANSWER_FORMAT))
        );
        let mut command = sealed.clone();
        command[0] = ENVELOPE_VERSION;
        assert_eq!(
            open_time_answer(&command, &keys, &serial),
            Err(EnvelopeError::UnsupportedVersion(ENVELOPE_VERSION))
        );
    }

    #[test]
    fn a_flipped_bit_or_an_unknown_key_is_refused() {
        let (signer, keys, serial) = setup();
        let sealed = signer.seal_time(&answer_for(&serial, 9, 5, 5)).unwrap();
        for i in 2..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                open_time_answer(&bad, &keys, &serial),
                Err(EnvelopeError::BadSignature),
                "byte {i}"
            );
        }
        let stranger = CommandSigner::from_seed(2, &[8; 32]).unwrap();
        let sealed = stranger.seal_time(&answer_for(&serial, 9, 5, 5)).unwrap();
        assert_eq!(
            open_time_answer(&sealed, &keys, &serial),
            Err(EnvelopeError::UnknownKeyId(2))
        );
    }
}

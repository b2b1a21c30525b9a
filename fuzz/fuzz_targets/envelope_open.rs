//! The command envelope opener, as the agent calls it on every message of
//! the command topic.
//!
//! The first input byte picks a mode:
//! - even: the rest is an envelope as received. Unsigned bytes must be
//!   refused with exactly the error of the first failing step of SPEC.md
//!   §6.3 (size, length, version, key id), else `BadSignature`.
//! - odd: the rest is signed as the command bytes of an envelope under one
//!   of the two pinned keys (bit 1 picks which), so the decoder behind the
//!   signature is reached. The result must be what decoding those bytes
//!   says: the command (for this device), `WrongDevice`, or `Malformed`
//!   with the decoder's own error. An opened command re-seals canonically
//!   and opens again to itself, and one flipped signature bit is refused.
//!   With bit 2 set, the device's serial is put in front of the rest (the
//!   command's first field), so the fuzzer need not find it.
#![no_main]

use hc_fuzz::{keys, serial, sign_raw, signer, KEY_ID, NEXT_KEY_ID};
use hc_protocol::codec;
use hc_protocol::envelope::{self, EnvelopeError, ENVELOPE_VERSION, HEADER_LEN, SIGNATURE_LEN};
use hc_protocol::limits::MAX_COMMAND_BYTES;
use hc_protocol::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = keys();
    let serial = serial();
    if mode & 1 == 0 {
        let result = envelope::open(rest, keys, &serial);
        let expected = if rest.len() > MAX_COMMAND_BYTES {
            Some(EnvelopeError::TooLarge(rest.len()))
        } else if rest.len() < HEADER_LEN + 1 + SIGNATURE_LEN {
            Some(EnvelopeError::TooShort(rest.len()))
        } else if rest[0] != ENVELOPE_VERSION {
            Some(EnvelopeError::UnsupportedVersion(rest[0]))
        } else if keys.get(rest[1]).is_none() {
            Some(EnvelopeError::UnknownKeyId(rest[1]))
        } else {
            None
        };
        match (expected, result) {
            (Some(expected), result) => assert_eq!(result, Err(expected)),
            // Past the header checks: only a real signature gets further.
            (None, Err(EnvelopeError::BadSignature)) => {}
            (None, other) => {
                let (signed, signature) = rest.split_at(rest.len() - SIGNATURE_LEN);
                let resigned = sign_raw(signed[0], signed[1], &signed[HEADER_LEN..]);
                assert_eq!(
                    &resigned[resigned.len() - SIGNATURE_LEN..],
                    signature,
                    "opened without our signature: {other:?}"
                );
            }
        }
        return;
    }

    let key_id = if mode & 2 == 0 { KEY_ID } else { NEXT_KEY_ID };
    let owned;
    let rest = if mode & 4 == 0 {
        rest
    } else {
        let mut body = codec::encode(&serial, MAX_COMMAND_BYTES).unwrap();
        body.extend_from_slice(rest);
        owned = body;
        &owned[..]
    };
    let bytes = sign_raw(ENVELOPE_VERSION, key_id, rest);
    let result = envelope::open(&bytes, keys, &serial);
    if bytes.len() > MAX_COMMAND_BYTES {
        assert_eq!(result, Err(EnvelopeError::TooLarge(bytes.len())));
        return;
    }
    if rest.is_empty() {
        assert_eq!(result, Err(EnvelopeError::TooShort(bytes.len())));
        return;
    }
    match codec::decode::<Command>(rest, MAX_COMMAND_BYTES) {
        Err(e) => assert_eq!(result, Err(EnvelopeError::Malformed(e))),
        Ok(command) if command.serial != serial => {
            assert_eq!(result, Err(EnvelopeError::WrongDevice))
        }
        Ok(command) => {
            assert_eq!(result.as_ref(), Ok(&command));
            let sealed = signer(key_id)
                .seal(&command)
                .expect("a decoded command fits");
            assert!(sealed.len() <= bytes.len());
            assert_eq!(envelope::open(&sealed, keys, &serial), Ok(command));
            let mut forged = bytes.clone();
            let at = forged.len() - 1 - usize::from(mode >> 3) % SIGNATURE_LEN;
            forged[at] ^= 1 << (mode % 8);
            assert_eq!(
                envelope::open(&forged, keys, &serial),
                Err(EnvelopeError::BadSignature)
            );
        }
    }
});

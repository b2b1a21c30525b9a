//! Every decoder that takes bytes from outside (the network, the local
//! socket) answers any input with a value or a typed error, never a panic,
//! and says exactly which error:
//!
//! - arbitrary bytes (raw, and behind plausible variant tags so decoding
//!   gets past the first byte);
//! - valid encodings, mutated: a flipped bit, a byte overwritten, inserted
//!   or removed, a truncation (always `Malformed`: a strict prefix of a
//!   value cannot be a value), appended bytes (always `TrailingBytes(n)`);
//! - input over the limit is `TooLarge` whatever it contains, even a valid
//!   message followed by padding: the size is checked before decoding.
//!
//! Whatever decodes is a valid value: it encodes again within the limit
//! and decodes back to itself.

mod support;

use hc_protocol::{command, ddns, envelope, ids, limits, local, messages, reason};

use core::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use envelope::{CommandKeys, EnvelopeError, HEADER_LEN, SIGNATURE_LEN};
use hc_protocol::arbitrary::*;
use hc_protocol::codec::{self, DecodeError};
use limits::{MAX_COMMAND_BYTES, MAX_LOCAL_FRAME_BYTES, MAX_MESSAGE_BYTES};
use local::FRAME_HEADER_LEN;
use support::property_per_message;

/// Decodes `bytes` as a `T` limited to `max`, and checks the answer: a
/// value that re-encodes within the limit and decodes to itself, or one of
/// the errors possible for input of this length.
fn decode_checked<T>(bytes: &[u8], max: usize) -> Result<Result<T, DecodeError>, TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let result = codec::decode::<T>(bytes, max);
    match &result {
        Ok(value) => {
            let again = codec::encode(value, max);
            prop_assert!(again.is_ok(), "a decoded value does not encode: {value:?}");
            let again = again.unwrap();
            prop_assert_eq!(&codec::decode::<T>(&again, max).unwrap(), value);
            // Only overlong varints can make the input longer than the
            // canonical encoding; nothing can make it shorter.
            prop_assert!(again.len() <= bytes.len());
        }
        Err(DecodeError::TooLarge { len, max: m }) => {
            prop_assert!(bytes.len() > max);
            prop_assert_eq!((*len, *m), (bytes.len(), max));
        }
        Err(DecodeError::TrailingBytes(n)) => {
            prop_assert!(bytes.len() <= max);
            prop_assert!(*n > 0 && *n < bytes.len(), "{n} of {}", bytes.len());
        }
        Err(DecodeError::Malformed) => prop_assert!(bytes.len() <= max),
    }
    Ok(result)
}

/// `decode_checked` when only the checks matter.
fn survives<T>(bytes: &[u8], max: usize) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    decode_checked::<T>(bytes, max).map(drop)
}

/// Every decoder fed the same bytes, each with its limit.
fn decode_as_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    use ddns::{DomainRegistration, DomainResult};
    use local::{LocalReply, LocalRequest, StatusReply};
    use messages::{Ack, AuditEntry, AuditEvent, AuditReport, DeviceStatus, StateReport};

    survives::<command::Command>(bytes, MAX_COMMAND_BYTES)?;
    survives::<command::CommandBody>(bytes, MAX_COMMAND_BYTES)?;
    survives::<Ack>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<StateReport>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<DeviceStatus>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<AuditReport>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<AuditEntry>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<AuditEvent>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<DomainRegistration>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<DomainResult>(bytes, MAX_MESSAGE_BYTES)?;
    survives::<LocalRequest>(bytes, MAX_LOCAL_FRAME_BYTES)?;
    survives::<LocalReply>(bytes, MAX_LOCAL_FRAME_BYTES)?;
    survives::<StatusReply>(bytes, MAX_LOCAL_FRAME_BYTES)?;
    // The local-socket entry point is the codec with the frame limit.
    prop_assert_eq!(
        local::decode_frame_body::<LocalRequest>(bytes),
        codec::decode::<LocalRequest>(bytes, MAX_LOCAL_FRAME_BYTES)
    );
    Ok(())
}

/// Bytes that often start like a message: a small variant index or length,
/// then anything.
fn plausible_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..600),
        2 => (vec(0u8..16, 1..6), vec(any::<u8>(), 0..400)).prop_map(|(mut head, tail)| {
            head.extend(tail);
            head
        }),
        1 => vec(prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0xff)], 0..200),
    ]
}

proptest! {
    #![proptest_config(test_config(256))]

    #[test]
    fn arbitrary_bytes_into_every_decoder(bytes in plausible_bytes()) {
        decode_as_everything(&bytes)?;
    }
}

// ---------------------------------------------------------------------------
// Mutated valid encodings

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    InsertByte(prop::sample::Index, u8),
    RemoveByte(prop::sample::Index),
    /// Keep this many bytes (fewer than the encoding has).
    Truncate(prop::sample::Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::InsertByte(i, b)),
        1 => any::<Index>().prop_map(Mutation::RemoveByte),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => vec(any::<u8>(), 1..40).prop_map(Mutation::Append),
    ]
}

/// Mutates a valid encoding and checks the decoder's answer; truncations
/// and appended bytes have one exact answer.
fn check_mutated<T>(value: &T, max: usize, mutation: &Mutation) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut bytes = codec::encode(value, max).unwrap();
    let n = bytes.len();
    match mutation {
        Mutation::FlipBit(i, bit) => bytes[i.index(n)] ^= 1 << bit,
        Mutation::SetByte(i, b) => bytes[i.index(n)] = *b,
        Mutation::InsertByte(i, b) => bytes.insert(i.index(n + 1), *b),
        Mutation::RemoveByte(i) => {
            bytes.remove(i.index(n));
        }
        Mutation::Truncate(i) => {
            bytes.truncate(i.index(n));
            prop_assert_eq!(
                decode_checked::<T>(&bytes, max)?,
                Err(DecodeError::Malformed)
            );
            return Ok(());
        }
        Mutation::Append(extra) => {
            bytes.extend_from_slice(extra);
            prop_assert_eq!(
                decode_checked::<T>(&bytes, max)?,
                Err(DecodeError::TrailingBytes(extra.len()))
            );
            return Ok(());
        }
    }
    survives::<T>(&bytes, max)?;
    Ok(())
}

/// A valid message padded past the limit is refused as too large, not as
/// malformed or trailing: the size is checked first.
fn check_oversized<T>(value: &T, max: usize, extra: usize) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut bytes = codec::encode(value, max).unwrap();
    // Exactly at the limit: decoded, so the padding is trailing bytes.
    let n = bytes.len();
    bytes.resize(max, 0);
    if max > n {
        prop_assert_eq!(
            codec::decode::<T>(&bytes, max),
            Err(DecodeError::TrailingBytes(max - n))
        );
    }
    bytes.resize(max + 1 + extra, 0);
    prop_assert_eq!(
        codec::decode::<T>(&bytes, max),
        Err(DecodeError::TooLarge {
            len: max + 1 + extra,
            max
        })
    );
    Ok(())
}

/// Both properties of a valid encoding: mutated, and padded past the limit.
fn check_mutated_and_oversized<T>(
    value: &T,
    max: usize,
    (mutation, extra): (Mutation, usize),
) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    check_mutated(value, max, &mutation)?;
    check_oversized(value, max, extra)
}

property_per_message! {
    check: check_mutated_and_oversized, with: (mutation(), 0usize..64);
    mutated_command: any_command(), MAX_COMMAND_BYTES;
    mutated_ack: any_ack(), MAX_MESSAGE_BYTES;
    mutated_state_report: any_state_report(), MAX_MESSAGE_BYTES;
    mutated_device_status: any_device_status(), MAX_MESSAGE_BYTES;
    mutated_audit_report: any_audit_report(), MAX_MESSAGE_BYTES;
    mutated_domain_registration: any_domain_registration(), MAX_MESSAGE_BYTES;
    mutated_domain_result: any_domain_result(), MAX_MESSAGE_BYTES;
    mutated_local_request: any_local_request(), MAX_LOCAL_FRAME_BYTES;
    mutated_local_reply: any_local_reply(), MAX_LOCAL_FRAME_BYTES;
    mutated_time_request: any_time_request(), MAX_MESSAGE_BYTES;
    mutated_time_answer: any_time_answer(), MAX_MESSAGE_BYTES;
}

// ---------------------------------------------------------------------------
// Local-socket frames

/// One frame as the agent's local server sees it.
#[derive(Debug)]
enum Frame {
    /// The header was accepted and the body decoded (or not).
    Body(Result<local::LocalRequest, DecodeError>),
    /// The header announced too much; the connection would be closed.
    RefusedHeader(DecodeError),
}

/// What the agent's local server does with a byte stream: header, length
/// check before reading the body, body decode. Stops at the first refused
/// header or at the end of the input.
fn read_frames(mut stream: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while stream.len() >= FRAME_HEADER_LEN {
        let header: [u8; FRAME_HEADER_LEN] = stream[..FRAME_HEADER_LEN].try_into().unwrap();
        stream = &stream[FRAME_HEADER_LEN..];
        match local::frame_body_len(header) {
            Err(e) => {
                out.push(Frame::RefusedHeader(e));
                break;
            }
            Ok(len) if len > stream.len() => break,
            Ok(len) => {
                out.push(Frame::Body(local::decode_frame_body(&stream[..len])));
                stream = &stream[len..];
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(test_config(256))]

    #[test]
    fn frame_header_refuses_every_length_over_the_limit(header in any::<[u8; 4]>()) {
        let len = u32::from_be_bytes(header) as usize;
        let result = local::frame_body_len(header);
        if len <= MAX_LOCAL_FRAME_BYTES {
            prop_assert_eq!(result, Ok(len));
        } else {
            prop_assert_eq!(result, Err(DecodeError::TooLarge { len, max: MAX_LOCAL_FRAME_BYTES }));
        }
    }

    #[test]
    fn frame_streams_never_panic(
        requests in vec(any_local_request(), 0..4),
        noise in vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
        flip in proptest::option::of((any::<prop::sample::Index>(), 0u8..8)),
    ) {
        let mut stream = Vec::new();
        for r in &requests {
            stream.extend(local::encode_frame(r).unwrap());
        }
        // Unmodified: every request comes back, in order.
        let back: Vec<_> = read_frames(&stream)
            .into_iter()
            .map(|f| match f {
                Frame::Body(Ok(r)) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        prop_assert_eq!(&back, &requests);
        stream.extend(&noise);
        if let Some((i, bit)) = flip {
            if !stream.is_empty() {
                let i = i.index(stream.len());
                stream[i] ^= 1 << bit;
            }
        }
        let cut = cut.index(stream.len() + 1);
        for frame in read_frames(&stream[..cut]) {
            match frame {
                Frame::Body(Ok(_)) => {}
                // A body within the limit is never "too large".
                Frame::Body(Err(e)) => prop_assert!(
                    e == DecodeError::Malformed || matches!(e, DecodeError::TrailingBytes(_)),
                    "{:?}", e
                ),
                Frame::RefusedHeader(e) => prop_assert!(
                    matches!(e, DecodeError::TooLarge { len, max } if len > max && max == MAX_LOCAL_FRAME_BYTES),
                    "{:?}", e
                ),
            }
        }
    }

    #[test]
    fn frame_bodies_over_the_limit_are_too_large(extra in 1usize..100, fill in any::<u8>()) {
        let body = vec![fill; MAX_LOCAL_FRAME_BYTES + extra];
        prop_assert_eq!(
            local::decode_frame_body::<local::LocalRequest>(&body),
            Err(DecodeError::TooLarge { len: MAX_LOCAL_FRAME_BYTES + extra, max: MAX_LOCAL_FRAME_BYTES })
        );
    }
}

// ---------------------------------------------------------------------------
// The envelope opener on arbitrary bytes

/// What `open` must answer for bytes that carry no valid signature, step by
/// step as in SPEC.md §6.3.
fn expected_refusal(bytes: &[u8], keys: &CommandKeys) -> EnvelopeError {
    if bytes.len() > MAX_COMMAND_BYTES {
        EnvelopeError::TooLarge(bytes.len())
    } else if bytes.len() < HEADER_LEN + 1 + SIGNATURE_LEN {
        EnvelopeError::TooShort(bytes.len())
    } else if bytes[0] != envelope::ENVELOPE_VERSION {
        EnvelopeError::UnsupportedVersion(bytes[0])
    } else if keys.get(bytes[1]).is_none() {
        EnvelopeError::UnknownKeyId(bytes[1])
    } else {
        EnvelopeError::BadSignature
    }
}

fn envelope_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..200),
        // A right header, so the checks up to the signature are passed.
        (
            prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
            vec(any::<u8>(), 0..300)
        )
            .prop_map(|(key_id, rest)| {
                let mut bytes = vec![envelope::ENVELOPE_VERSION, key_id];
                bytes.extend(rest);
                bytes
            }),
        (MAX_COMMAND_BYTES - 2..MAX_COMMAND_BYTES + 3, any::<u8>())
            .prop_map(|(len, fill)| vec![fill; len]),
    ]
}

proptest! {
    #![proptest_config(test_config(256))]

    #[test]
    fn envelope_open_refuses_arbitrary_bytes_with_the_right_error(
        bytes in envelope_bytes(),
        seed in any::<[u8; 32]>(),
        serial in any_serial(),
    ) {
        let mut keys = CommandKeys::new();
        let signer = envelope::CommandSigner::from_seed(1, &seed).unwrap();
        prop_assert!(keys.pin(1, signer.public_key()));
        let result = envelope::open(&bytes, &keys, &serial);
        prop_assert_eq!(result, Err(expected_refusal(&bytes, &keys)));
    }
}

// ---------------------------------------------------------------------------
// Fixed edge cases

#[test]
fn empty_and_tiny_inputs_are_malformed() {
    let mut keys = CommandKeys::new();
    keys.pin(1, [0; 32]);
    let serial = ids::Serial::new("NVR1").unwrap();
    for len in 0..=HEADER_LEN + SIGNATURE_LEN {
        let bytes = vec![envelope::ENVELOPE_VERSION; len];
        assert_eq!(
            envelope::open(&bytes, &keys, &serial),
            Err(EnvelopeError::TooShort(len))
        );
        assert_eq!(
            EnvelopeError::TooShort(len).reason(),
            reason::Reason::Malformed
        );
    }
    assert_eq!(
        codec::decode::<messages::Ack>(&[], MAX_MESSAGE_BYTES),
        Err(DecodeError::Malformed)
    );
    assert_eq!(
        codec::decode::<local::LocalRequest>(&[], MAX_LOCAL_FRAME_BYTES),
        Err(DecodeError::Malformed)
    );
}

#[test]
fn huge_declared_lengths_are_refused_without_allocating() {
    // A string or list length of u32::MAX (and of usize::MAX) inside a
    // small message: postcard must notice the input is too short instead
    // of reserving memory for it.
    let huge_u32 = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let huge_u64 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    for len in [&huge_u32[..], &huge_u64[..]] {
        // AuditReport: serial string length first.
        assert_eq!(
            codec::decode::<messages::AuditReport>(len, MAX_MESSAGE_BYTES),
            Err(DecodeError::Malformed)
        );
        // CommandBody::Unshare (variant 3): account count first.
        let mut unshare = vec![3u8];
        unshare.extend_from_slice(len);
        assert_eq!(
            codec::decode::<command::CommandBody>(&unshare, MAX_COMMAND_BYTES),
            Err(DecodeError::Malformed)
        );
        // LocalReply::Audit (variant 3): entry count first.
        let mut audit = vec![3u8];
        audit.extend_from_slice(len);
        assert_eq!(
            local::decode_frame_body::<local::LocalReply>(&audit),
            Err(DecodeError::Malformed)
        );
    }
}

#[test]
fn collections_one_over_their_bound_do_not_decode() {
    // Unshare with MAX_SHARES + 1 one-byte account ids.
    let mut bytes = vec![3u8, (limits::MAX_SHARES + 1) as u8];
    for _ in 0..=limits::MAX_SHARES {
        bytes.extend_from_slice(&[1, b'a']);
    }
    assert_eq!(
        codec::decode::<command::CommandBody>(&bytes, MAX_COMMAND_BYTES),
        Err(DecodeError::Malformed)
    );
    // The same at the bound decodes.
    let mut bytes = vec![3u8, limits::MAX_SHARES as u8];
    for _ in 0..limits::MAX_SHARES {
        bytes.extend_from_slice(&[1, b'a']);
    }
    assert!(codec::decode::<command::CommandBody>(&bytes, MAX_COMMAND_BYTES).is_ok());
    // Identifiers one byte over their limit.
    let mut serial = vec![(limits::MAX_SERIAL_LEN + 1) as u8];
    serial.extend(std::iter::repeat_n(b'A', limits::MAX_SERIAL_LEN + 1));
    assert_eq!(
        codec::decode::<ids::Serial>(&serial, MAX_MESSAGE_BYTES),
        Err(DecodeError::Malformed)
    );
}

#[test]
fn audit_lists_over_max_audit_reply_do_not_decode() {
    // The smallest entry: at 0, actor Device, event EnvelopeRefused, Accepted.
    const ENTRY: [u8; 4] = [0, 2, 3, 0];
    let list = |prefix: &[u8], n: usize| {
        let mut bytes = prefix.to_vec();
        bytes.push(n as u8);
        for _ in 0..n {
            bytes.extend_from_slice(&ENTRY);
        }
        bytes
    };
    let max = limits::MAX_AUDIT_REPLY;
    // AuditReport { serial: "A", entries } and LocalReply::Audit (variant 3).
    let report =
        |n| codec::decode::<messages::AuditReport>(&list(&[1, b'A'], n), MAX_MESSAGE_BYTES);
    let reply = |n| local::decode_frame_body::<local::LocalReply>(&list(&[3], n));
    assert_eq!(report(max).map(|r| r.entries.len()), Ok(max));
    assert_eq!(report(max + 1), Err(DecodeError::Malformed));
    assert!(matches!(reply(max), Ok(local::LocalReply::Audit(e)) if e.len() == max));
    assert_eq!(reply(max + 1), Err(DecodeError::Malformed));
}

//! The signed command envelope (SPEC.md §6): a good signature opens, and
//! everything else is refused with the exact error of the first failing
//! step of §6.3:
//!
//! - a wrong key, an unknown key id, an empty key ring;
//! - every single flipped bit anywhere in a signed envelope (exhaustively
//!   for fixed envelopes, at random positions for random ones);
//! - every truncation;
//! - key rotation: two keys pinned, either opens its own envelopes, a third
//!   key cannot be pinned, an id cannot be pinned twice, and a dropped key's
//!   envelopes are refused;
//! - the exact received bytes are verified, nothing is re-encoded: an
//!   envelope whose command uses overlong (still valid) varints opens when
//!   its own bytes are signed, and is refused when the signature was made
//!   over the canonical encoding (and the other way round);
//! - a non-canonical signature (S + L) is refused;
//! - the signature is checked before the command is decoded, and the serial
//!   only after.

use hc_protocol::{access, command, envelope, ids, limits, reason};

use proptest::prelude::*;
use proptest::sample::Index;
use ring::signature::{Ed25519KeyPair, KeyPair};

use access::{Action, ChannelScope, ChannelSet, Permissions, Validity};
use command::{Command, CommandBody};
use envelope::{
    CommandKeys, CommandSigner, EnvelopeError, ENVELOPE_VERSION, HEADER_LEN, SIGNATURE_LEN,
};
use hc_protocol::arbitrary::*;
use hc_protocol::codec::{self, DecodeError};
use ids::{AccountId, AccountRef, Region, Serial};
use limits::{MAX_COMMAND_BYTES, MAX_COMMAND_KEYS};
use reason::Reason;

const SEED: [u8; 32] = [7; 32];
const NEXT_SEED: [u8; 32] = [9; 32];
const OTHER_SEED: [u8; 32] = [42; 32];
const KEY_ID: u8 = 1;
const NEXT_KEY_ID: u8 = 2;
/// The shortest envelope: header, a one-byte command, signature.
const MIN_LEN: usize = HEADER_LEN + 1 + SIGNATURE_LEN;

fn serial() -> Serial {
    Serial::new("NVR-0001").unwrap()
}

fn alice() -> AccountRef {
    AccountRef {
        id: AccountId::new("alice").unwrap(),
        region: Region::new("EU").unwrap(),
    }
}

fn command(seq: u64, body: CommandBody) -> Command {
    Command {
        serial: serial(),
        actor: alice(),
        seq,
        issued_at: 1_767_225_600,
        body,
    }
}

fn signer(key_id: u8, seed: &[u8; 32]) -> CommandSigner {
    CommandSigner::from_seed(key_id, seed).unwrap()
}

fn keys(pins: &[(u8, &[u8; 32])]) -> CommandKeys {
    let mut keys = CommandKeys::new();
    for (id, seed) in pins {
        assert!(keys.pin(*id, signer(*id, seed).public_key()));
    }
    keys
}

/// Signs arbitrary bytes as an envelope: `version || key id || body ||
/// signature`, without going through `Command`.
fn sign_raw(version: u8, key_id: u8, body: &[u8], seed: &[u8; 32]) -> Vec<u8> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    let mut out = vec![version, key_id];
    out.extend_from_slice(body);
    let signature = pair.sign(&out);
    out.extend_from_slice(signature.as_ref());
    out
}

/// A few fixed commands of different shapes and sizes, including the
/// largest one (a full unshare of the longest ids).
fn fixed_commands() -> Vec<Command> {
    let longest = AccountId::new(&"x".repeat(limits::MAX_ACCOUNT_ID_LEN)).unwrap();
    vec![
        command(1, CommandBody::RequestState),
        command(
            2,
            CommandBody::Share {
                account: alice(),
                permissions: Permissions::of(&[Action::LiveView, Action::Playback]),
                channels: ChannelScope::Only(ChannelSet::from_channels(&[1, 2, 16]).unwrap()),
                validity: Some(Validity {
                    not_before: 1,
                    not_after: u64::MAX,
                }),
            },
        ),
        command(
            u64::MAX,
            CommandBody::Unshare {
                accounts: core::iter::repeat_n(longest, limits::MAX_SHARES).collect(),
            },
        ),
    ]
}

/// What `open` must say about `bytes` (a signed envelope with one bit
/// flipped at `bit`) when `keys` are pinned.
fn expected_after_flip(original: &[u8], bit: usize, keys: &CommandKeys) -> EnvelopeError {
    let byte = bit / 8;
    let flipped = original[byte] ^ (1 << (bit % 8));
    match byte {
        0 => EnvelopeError::UnsupportedVersion(flipped),
        1 if keys.get(flipped).is_none() => EnvelopeError::UnknownKeyId(flipped),
        // Another pinned key, the command or the signature: the signature
        // no longer verifies.
        _ => EnvelopeError::BadSignature,
    }
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

// ---------------------------------------------------------------------------
// Good and wrong keys

proptest! {
    #![proptest_config(test_config(128))]

    #[test]
    fn a_good_signature_opens(case in any_envelope_case()) {
        let bytes = case.seal();
        prop_assert_eq!(
            envelope::open(&bytes, &case.keys(), &case.command.serial),
            Ok(case.command.clone())
        );
    }

    #[test]
    fn a_wrong_key_under_the_same_id_is_refused(case in any_envelope_case(), other in any::<[u8; 32]>()) {
        prop_assume!(other != case.seed);
        let bytes = case.seal();
        let mut keys = CommandKeys::new();
        prop_assert!(keys.pin(case.key_id, signer(case.key_id, &other).public_key()));
        prop_assert_eq!(
            envelope::open(&bytes, &keys, &case.command.serial),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn an_unknown_key_id_is_refused(case in any_envelope_case(), pinned in any::<u8>()) {
        prop_assume!(pinned != case.key_id);
        let bytes = case.seal();
        // The right public key, under another id: the id decides.
        let mut keys = CommandKeys::new();
        prop_assert!(keys.pin(pinned, case.public_key()));
        prop_assert_eq!(
            envelope::open(&bytes, &keys, &case.command.serial),
            Err(EnvelopeError::UnknownKeyId(case.key_id))
        );
        prop_assert_eq!(
            envelope::open(&bytes, &CommandKeys::new(), &case.command.serial),
            Err(EnvelopeError::UnknownKeyId(case.key_id))
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_random_envelope_is_refused(
        case in any_envelope_case(),
        positions in proptest::collection::vec(any::<Index>(), 1..8),
    ) {
        let bytes = case.seal();
        let keys = case.keys();
        for position in positions {
            let bit = position.index(bytes.len() * 8);
            prop_assert_eq!(
                envelope::open(&flip(&bytes, bit), &keys, &case.command.serial),
                Err(expected_after_flip(&bytes, bit, &keys)),
                "bit {}", bit
            );
        }
    }

    #[test]
    fn a_random_truncation_is_refused(case in any_envelope_case(), cut in any::<Index>()) {
        let bytes = case.seal();
        let cut = cut.index(bytes.len());
        let expected = if cut < MIN_LEN {
            EnvelopeError::TooShort(cut)
        } else {
            EnvelopeError::BadSignature
        };
        prop_assert_eq!(
            envelope::open(&bytes[..cut], &case.keys(), &case.command.serial),
            Err(expected)
        );
    }
}

#[test]
fn every_single_flipped_bit_is_refused() {
    // Two keys pinned whose ids differ in one bit (1 and 3), so a flip of
    // the key id can land on the other pinned key: still refused.
    let keys = keys(&[(KEY_ID, &SEED), (3, &NEXT_SEED)]);
    let signer = signer(KEY_ID, &SEED);
    let mut checked = 0;
    for command in fixed_commands() {
        let bytes = signer.seal(&command).unwrap();
        assert_eq!(envelope::open(&bytes, &keys, &serial()), Ok(command));
        for bit in 0..bytes.len() * 8 {
            let result = envelope::open(&flip(&bytes, bit), &keys, &serial());
            assert_eq!(
                result,
                Err(expected_after_flip(&bytes, bit, &keys)),
                "bit {bit} of {}",
                bytes.len()
            );
            checked += 1;
        }
    }
    // The flip of bit 1 of the key id (1 -> 3) reached the second key.
    let bytes = signer.seal(&fixed_commands()[0]).unwrap();
    assert_eq!(
        envelope::open(&flip(&bytes, 8 + 1), &keys, &serial()),
        Err(EnvelopeError::BadSignature)
    );
    assert_eq!(
        envelope::open(&flip(&bytes, 8 + 2), &keys, &serial()),
        Err(EnvelopeError::UnknownKeyId(KEY_ID ^ 4))
    );
    assert!(checked > 35_000, "{checked}");
}

#[test]
fn every_truncation_is_refused() {
    let keys = keys(&[(KEY_ID, &SEED)]);
    let signer = signer(KEY_ID, &SEED);
    for command in fixed_commands().into_iter().take(2) {
        let bytes = signer.seal(&command).unwrap();
        for cut in 0..bytes.len() {
            let expected = if cut < MIN_LEN {
                EnvelopeError::TooShort(cut)
            } else {
                EnvelopeError::BadSignature
            };
            assert_eq!(
                envelope::open(&bytes[..cut], &keys, &serial()),
                Err(expected),
                "cut at {cut} of {}",
                bytes.len()
            );
            // Cut from the front instead: the header is gone.
            let tail = &bytes[bytes.len() - cut..];
            assert!(envelope::open(tail, &keys, &serial()).is_err());
        }
    }
}

#[test]
fn appended_or_removed_bytes_are_refused() {
    let keys = keys(&[(KEY_ID, &SEED)]);
    let bytes = signer(KEY_ID, &SEED).seal(&fixed_commands()[1]).unwrap();
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        envelope::open(&longer, &keys, &serial()),
        Err(EnvelopeError::BadSignature)
    );
    for i in 0..bytes.len() {
        let mut shorter = bytes.clone();
        shorter.remove(i);
        // What is left is judged as any envelope: version, key, signature.
        let expected = if shorter[0] != ENVELOPE_VERSION {
            EnvelopeError::UnsupportedVersion(shorter[0])
        } else if keys.get(shorter[1]).is_none() {
            EnvelopeError::UnknownKeyId(shorter[1])
        } else {
            EnvelopeError::BadSignature
        };
        assert_eq!(
            envelope::open(&shorter, &keys, &serial()),
            Err(expected),
            "{i}"
        );
    }
}

// ---------------------------------------------------------------------------
// Keys and rotation

#[test]
fn rotation_two_keys_each_open_their_own_envelopes() {
    let current = signer(KEY_ID, &SEED);
    let next = signer(NEXT_KEY_ID, &NEXT_SEED);
    let mut ring = CommandKeys::new();
    assert!(ring.pin(KEY_ID, current.public_key()));
    assert!(ring.pin(NEXT_KEY_ID, next.public_key()));

    let old = current
        .seal(&command(10, CommandBody::RequestState))
        .unwrap();
    let new = next.seal(&command(11, CommandBody::RequestState)).unwrap();
    assert_eq!(old[1], KEY_ID);
    assert_eq!(new[1], NEXT_KEY_ID);
    assert_eq!(envelope::open(&old, &ring, &serial()).unwrap().seq, 10);
    assert_eq!(envelope::open(&new, &ring, &serial()).unwrap().seq, 11);

    // A key signing under the other key's id is refused.
    let crossed = signer(KEY_ID, &NEXT_SEED)
        .seal(&command(12, CommandBody::RequestState))
        .unwrap();
    assert_eq!(
        envelope::open(&crossed, &ring, &serial()),
        Err(EnvelopeError::BadSignature)
    );

    // An id is not pinned twice; a full ring takes no other key.
    assert!(!ring.pin(KEY_ID, signer(KEY_ID, &OTHER_SEED).public_key()));
    assert_eq!(ring.get(KEY_ID), Some(&current.public_key()));
    let mut full = ring.clone();
    let mut standby = 100u8;
    while !full.is_full() {
        assert!(full.pin(standby, signer(standby, &OTHER_SEED).public_key()));
        standby += 1;
    }
    assert_eq!(full.len(), MAX_COMMAND_KEYS);
    assert!(!full.pin(standby, signer(standby, &OTHER_SEED).public_key()));
    assert_eq!(full.get(standby), None);
    assert_eq!(full.len(), MAX_COMMAND_KEYS);

    // After the old key is dropped, only the new one opens.
    let after = keys(&[(NEXT_KEY_ID, &NEXT_SEED)]);
    assert_eq!(
        envelope::open(&old, &after, &serial()),
        Err(EnvelopeError::UnknownKeyId(KEY_ID))
    );
    assert!(envelope::open(&new, &after, &serial()).is_ok());
}

#[test]
fn a_removed_key_opens_nothing_and_its_id_is_free_again() {
    let mut ring = keys(&[(KEY_ID, &SEED), (NEXT_KEY_ID, &NEXT_SEED)]);
    assert_eq!(ring.ids().as_slice(), [KEY_ID, NEXT_KEY_ID]);
    assert!(ring.remove(KEY_ID));
    assert!(!ring.remove(KEY_ID), "nothing left under that id");
    assert_eq!(ring.ids().as_slice(), [NEXT_KEY_ID]);
    let old = signer(KEY_ID, &SEED)
        .seal(&command(1, CommandBody::RequestState))
        .unwrap();
    assert_eq!(
        envelope::open(&old, &ring, &serial()),
        Err(EnvelopeError::UnknownKeyId(KEY_ID))
    );
    assert!(ring.pin(KEY_ID, signer(KEY_ID, &OTHER_SEED).public_key()));
    // Ids are listed ascending whatever the order they were pinned in.
    assert_eq!(ring.ids().as_slice(), [KEY_ID, NEXT_KEY_ID]);
}

#[test]
fn the_signing_key_id_comes_with_the_verified_command() {
    let ring = keys(&[(KEY_ID, &SEED), (NEXT_KEY_ID, &NEXT_SEED)]);
    let bytes = signer(NEXT_KEY_ID, &NEXT_SEED)
        .seal(&command(5, CommandBody::RequestState))
        .unwrap();
    let verified = envelope::open_verified(&bytes, &ring, &serial()).unwrap();
    assert_eq!(verified.key_id, NEXT_KEY_ID);
    assert_eq!(verified.command.seq, 5);
}

#[test]
fn a_stored_ring_round_trips_and_one_naming_an_id_twice_does_not_decode() {
    let ring = keys(&[(KEY_ID, &SEED), (NEXT_KEY_ID, &NEXT_SEED)]);
    let bytes = postcard::to_allocvec(&ring).unwrap();
    assert_eq!(postcard::from_bytes::<CommandKeys>(&bytes).unwrap(), ring);
    // Two entries, both under KEY_ID.
    let mut twice = vec![2, KEY_ID];
    twice.extend_from_slice(&signer(KEY_ID, &SEED).public_key());
    twice.push(KEY_ID);
    twice.extend_from_slice(&signer(KEY_ID, &NEXT_SEED).public_key());
    assert!(postcard::from_bytes::<CommandKeys>(&twice).is_err());
    // More than MAX_COMMAND_KEYS entries.
    let mut over = vec![MAX_COMMAND_KEYS as u8 + 1];
    for id in 0..=MAX_COMMAND_KEYS as u8 {
        over.push(id);
        over.extend_from_slice(&[0; 32]);
    }
    assert!(postcard::from_bytes::<CommandKeys>(&over).is_err());
}

#[test]
fn an_id_cannot_be_pinned_twice_even_in_an_empty_slot() {
    let mut ring = CommandKeys::new();
    assert!(ring.is_empty());
    assert!(ring.pin(KEY_ID, signer(KEY_ID, &SEED).public_key()));
    assert!(!ring.pin(KEY_ID, signer(KEY_ID, &NEXT_SEED).public_key()));
    assert_eq!(ring.len(), 1);
    // The first key stays in force.
    let bytes = signer(KEY_ID, &SEED)
        .seal(&command(1, CommandBody::Unbind))
        .unwrap();
    assert!(envelope::open(&bytes, &ring, &serial()).is_ok());
}

// ---------------------------------------------------------------------------
// The exact bytes are verified

fn encoded<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    codec::encode(value, MAX_COMMAND_BYTES).unwrap()
}

/// `command` encoded field by field, with the actor's id and the sequence
/// number given as bytes, to write what encoding a `Command` never would.
fn command_bytes(command: &Command, actor_id: &[u8], seq: &[u8]) -> Vec<u8> {
    let mut out = encoded(&command.serial);
    out.extend(actor_id);
    out.extend(encoded(&command.actor.region));
    out.extend(seq);
    out.extend(encoded(&command.issued_at));
    out.extend(encoded(&command.body));
    out
}

/// The canonical encoding of `command` with `seq` re-encoded as an overlong
/// varint (valid for postcard, SPEC.md §4).
fn overlong_encoding(command: &Command) -> Vec<u8> {
    assert!(command.seq < 128);
    let seq = [command.seq as u8 | 0x80, 0x80, 0x00];
    command_bytes(command, &encoded(&command.actor.id), &seq)
}

#[test]
fn the_received_bytes_are_verified_not_a_re_encoding() {
    let keys = keys(&[(KEY_ID, &SEED)]);
    let cmd = command(5, CommandBody::SetCloudService { enabled: false });
    let canonical = codec::encode(&cmd, MAX_COMMAND_BYTES).unwrap();
    let overlong = overlong_encoding(&cmd);
    assert_ne!(canonical, overlong);
    // Both decode to the same command.
    assert_eq!(
        codec::decode::<Command>(&overlong, MAX_COMMAND_BYTES),
        Ok(cmd.clone())
    );

    // Signed as sent, the overlong form opens: the signature covered those
    // bytes, not a re-encoding of the decoded command.
    let overlong_envelope = sign_raw(ENVELOPE_VERSION, KEY_ID, &overlong, &SEED);
    assert_eq!(
        envelope::open(&overlong_envelope, &keys, &serial()),
        Ok(cmd.clone())
    );

    // The canonical envelope with its command bytes swapped for the
    // equivalent overlong ones keeps its signature, and is refused; and the
    // other way round.
    let canonical_envelope = signer(KEY_ID, &SEED).seal(&cmd).unwrap();
    for (envelope, other_body) in [
        (&canonical_envelope, &overlong),
        (&overlong_envelope, &canonical),
    ] {
        let signature = &envelope[envelope.len() - SIGNATURE_LEN..];
        let mut swapped = vec![ENVELOPE_VERSION, KEY_ID];
        swapped.extend(other_body);
        swapped.extend(signature);
        assert_eq!(
            envelope::open(&swapped, &keys, &serial()),
            Err(EnvelopeError::BadSignature)
        );
    }
}

/// Adds the Ed25519 group order L to the signature's S (little-endian):
/// the same point equation holds, but RFC 8032 requires S < L.
fn add_group_order(signature: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s = &mut signature[32..];
    let mut carry = 0u16;
    for (byte, l) in s.iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}

#[test]
fn a_malleated_signature_is_refused() {
    let keys = keys(&[(KEY_ID, &SEED)]);
    let bytes = signer(KEY_ID, &SEED)
        .seal(&command(1, CommandBody::RequestState))
        .unwrap();
    let mut malleated = bytes.clone();
    let at = malleated.len() - SIGNATURE_LEN;
    add_group_order(&mut malleated[at..]);
    assert_ne!(malleated, bytes);
    assert_eq!(
        envelope::open(&malleated, &keys, &serial()),
        Err(EnvelopeError::BadSignature)
    );
}

// ---------------------------------------------------------------------------
// Order of the checks

#[test]
fn the_signature_is_checked_before_decoding_and_the_serial_after() {
    let keys = keys(&[(KEY_ID, &SEED)]);
    let good = command(1, CommandBody::RequestState);
    let body = codec::encode(&good, MAX_COMMAND_BYTES).unwrap();

    // Garbage signed: the signature holds, the command does not decode.
    let garbage = sign_raw(ENVELOPE_VERSION, KEY_ID, &[0xff; 40], &SEED);
    assert_eq!(
        envelope::open(&garbage, &keys, &serial()),
        Err(EnvelopeError::Malformed(DecodeError::Malformed))
    );
    // Garbage unsigned: refused for the signature, never decoded.
    let unsigned = flip(&garbage, (garbage.len() - 1) * 8);
    assert_eq!(
        envelope::open(&unsigned, &keys, &serial()),
        Err(EnvelopeError::BadSignature)
    );

    // A signed command followed by a byte: exactly one command is allowed.
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(
        envelope::open(
            &sign_raw(ENVELOPE_VERSION, KEY_ID, &trailing, &SEED),
            &keys,
            &serial()
        ),
        Err(EnvelopeError::Malformed(DecodeError::TrailingBytes(1)))
    );

    // For another device: refused only once the signature held.
    let other = Command {
        serial: Serial::new("NVR-0002").unwrap(),
        ..good.clone()
    };
    let bytes = signer(KEY_ID, &SEED).seal(&other).unwrap();
    assert_eq!(
        envelope::open(&bytes, &keys, &serial()),
        Err(EnvelopeError::WrongDevice)
    );
    let forged = flip(&bytes, bytes.len() * 8 - 1);
    assert_eq!(
        envelope::open(&forged, &keys, &serial()),
        Err(EnvelopeError::BadSignature)
    );

    // A properly signed envelope of another format version.
    let v2 = sign_raw(2, KEY_ID, &body, &SEED);
    assert_eq!(
        envelope::open(&v2, &keys, &serial()),
        Err(EnvelopeError::UnsupportedVersion(2))
    );
    // The version is checked before the key id.
    let v2_unknown = sign_raw(2, 9, &body, &SEED);
    assert_eq!(
        envelope::open(&v2_unknown, &keys, &serial()),
        Err(EnvelopeError::UnsupportedVersion(2))
    );

    // Size first: a properly signed envelope one byte over the limit.
    let padding = vec![0u8; MAX_COMMAND_BYTES - HEADER_LEN - SIGNATURE_LEN + 1];
    let huge = sign_raw(ENVELOPE_VERSION, KEY_ID, &padding, &SEED);
    assert_eq!(huge.len(), MAX_COMMAND_BYTES + 1);
    assert_eq!(
        envelope::open(&huge, &keys, &serial()),
        Err(EnvelopeError::TooLarge(MAX_COMMAND_BYTES + 1))
    );
    // Exactly at the limit it is verified and decoded (and is malformed).
    let at_limit = sign_raw(ENVELOPE_VERSION, KEY_ID, &padding[1..], &SEED);
    assert_eq!(at_limit.len(), MAX_COMMAND_BYTES);
    assert!(matches!(
        envelope::open(&at_limit, &keys, &serial()),
        Err(EnvelopeError::Malformed(_))
    ));
    // The smallest envelope: one command byte.
    let tiny = sign_raw(ENVELOPE_VERSION, KEY_ID, &[0], &SEED);
    assert_eq!(tiny.len(), MIN_LEN);
    assert_eq!(
        envelope::open(&tiny, &keys, &serial()),
        Err(EnvelopeError::Malformed(DecodeError::Malformed))
    );
    assert_eq!(
        envelope::open(&tiny[..MIN_LEN - 1], &keys, &serial()),
        Err(EnvelopeError::TooShort(MIN_LEN - 1))
    );
}

#[test]
fn a_signed_command_naming_an_account_with_a_space_is_malformed() {
    // The identifier rules hold on the decode path too (SPEC.md §5): a
    // correctly signed command for `carol smith` is refused, not applied.
    let keys = keys(&[(KEY_ID, &SEED)]);
    let good = command(1, CommandBody::RequestState);
    let body = command_bytes(&good, &encoded("carol smith"), &encoded(&good.seq));
    // The same bytes with the id written as `carol-smith` open.
    let fine = command_bytes(&good, &encoded("carol-smith"), &encoded(&good.seq));
    let opened = envelope::open(
        &sign_raw(ENVELOPE_VERSION, KEY_ID, &fine, &SEED),
        &keys,
        &serial(),
    );
    assert_eq!(
        opened.map(|c| c.actor.id.to_string()),
        Ok("carol-smith".to_string())
    );
    assert_eq!(
        envelope::open(
            &sign_raw(ENVELOPE_VERSION, KEY_ID, &body, &SEED),
            &keys,
            &serial()
        ),
        Err(EnvelopeError::Malformed(DecodeError::Malformed))
    );
}

#[test]
fn the_signer_refuses_what_the_opener_would_refuse_as_too_large() {
    // The largest valid command fits (SPEC.md §13.3), so sealing never
    // produces an envelope over the limit.
    let largest = fixed_commands().pop().unwrap();
    let bytes = signer(KEY_ID, &SEED).seal(&largest).unwrap();
    assert!(bytes.len() <= MAX_COMMAND_BYTES, "{}", bytes.len());
    let pair = Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap();
    assert_eq!(
        pair.public_key().as_ref(),
        signer(KEY_ID, &SEED).public_key()
    );
}

#[test]
fn each_refusal_has_its_reason() {
    let cases = [
        (
            EnvelopeError::TooLarge(MAX_COMMAND_BYTES + 1),
            Reason::TooLarge,
        ),
        (EnvelopeError::TooShort(3), Reason::Malformed),
        (
            EnvelopeError::UnsupportedVersion(2),
            Reason::UnsupportedVersion,
        ),
        (EnvelopeError::UnknownKeyId(9), Reason::UnknownKeyId),
        (EnvelopeError::BadSignature, Reason::BadSignature),
        (
            EnvelopeError::Malformed(DecodeError::Malformed),
            Reason::Malformed,
        ),
        (
            EnvelopeError::Malformed(DecodeError::TrailingBytes(1)),
            Reason::Malformed,
        ),
        (EnvelopeError::WrongDevice, Reason::WrongDevice),
    ];
    for (error, reason) in cases {
        assert_eq!(error.reason(), reason, "{error:?}");
    }
}

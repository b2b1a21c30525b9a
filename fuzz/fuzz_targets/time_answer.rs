//! The signed-time answer, as the agent handles it on the `time/answer`
//! topic: through `TrustedTime::handle_answer`, with one request
//! outstanding (nonce 0x5a..., sent at monotonic 1000 ms).
//!
//! The first input byte picks a mode, the second the arrival time (in
//! steps of 100 ms after the request, so both sides of the round-trip
//! bound are reached):
//! - even: the rest is an answer as received. Unsigned bytes must be
//!   refused with exactly the reason of the first failing check of
//!   SPEC.md §8.4 (size, length, format, key id), else `BadSignature`,
//!   and leave no anchor.
//! - odd: the rest is signed under a pinned key as the answer body, so
//!   the decoder and the nonce and round-trip checks behind the signature
//!   are reached. With bit 2 set the body is the device serial and the
//!   outstanding nonce followed by the rest (the fields the fuzzer would
//!   otherwise have to find). The result must be what the checks say: an
//!   anchor at the answer's time plus half the round trip, or the reason;
//!   a refused answer leaves no anchor, and an accepted one is refused when
//!   it comes again (a replay).
#![no_main]

use hc_agent::core::time::{TimePolicy, TrustedTime};
use hc_fuzz::{keys, serial, sign_raw, KEY_ID, NEXT_KEY_ID};
use hc_protocol::codec;
use hc_protocol::envelope::{HEADER_LEN, SIGNATURE_LEN};
use hc_protocol::limits::{MAX_MESSAGE_BYTES, MAX_TIME_ROUND_TRIP_MS};
use hc_protocol::time::{TimeAnswer, NONCE_LEN, TIME_ANSWER_FORMAT};
use hc_protocol::Reason;
use libfuzzer_sys::fuzz_target;

const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];
const SENT_MS: u64 = 1_000;

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, arrival], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut time = TrustedTime::new(TimePolicy::default());
    time.on_connected(SENT_MS);
    time.start_request(SENT_MS, NONCE);
    let at = SENT_MS + u64::from(arrival) * 100;
    let serial = serial();
    if mode & 1 == 0 {
        let result = time.handle_answer(rest, keys(), &serial, at);
        let expected = if rest.len() > MAX_MESSAGE_BYTES {
            Some(Reason::TooLarge)
        } else if rest.len() < HEADER_LEN + 1 + SIGNATURE_LEN {
            Some(Reason::Malformed)
        } else if rest[0] != TIME_ANSWER_FORMAT {
            Some(Reason::UnsupportedVersion)
        } else if keys().get(rest[1]).is_none() {
            Some(Reason::UnknownKeyId)
        } else {
            Some(Reason::BadSignature)
        };
        assert_eq!(result.err(), expected, "unsigned bytes never anchor");
        assert!(time.anchor().is_none());
        return;
    }
    let key_id = if mode & 2 == 0 { KEY_ID } else { NEXT_KEY_ID };
    let mut body = Vec::new();
    if mode & 4 != 0 {
        body.extend_from_slice(&codec::encode(&serial, MAX_MESSAGE_BYTES).unwrap());
        body.extend_from_slice(&NONCE);
    }
    body.extend_from_slice(rest);
    let sealed = sign_raw(TIME_ANSWER_FORMAT, key_id, &body);
    let result = time.handle_answer(&sealed, keys(), &serial, at);
    let expected = match codec::decode::<TimeAnswer>(&body, MAX_MESSAGE_BYTES) {
        _ if sealed.len() > MAX_MESSAGE_BYTES => Err(Reason::TooLarge),
        Err(e) => Err(e.reason()),
        Ok(answer) if answer.serial != serial => Err(Reason::WrongDevice),
        Ok(answer) if answer.nonce != NONCE => Err(Reason::UnexpectedTimeAnswer),
        Ok(_) if at - SENT_MS > MAX_TIME_ROUND_TRIP_MS => Err(Reason::LateTimeAnswer),
        Ok(answer) => Ok(answer.time_ms.saturating_add((at - SENT_MS) / 2)),
    };
    assert_eq!(result.map(|a| a.unix_ms), expected);
    match expected {
        Ok(unix_ms) => {
            assert_eq!(time.now_ms(at), Some(unix_ms));
            assert_eq!(
                time.handle_answer(&sealed, keys(), &serial, at + 1),
                Err(Reason::UnexpectedTimeAnswer),
                "a replay"
            );
            assert_eq!(time.now_ms(at), Some(unix_ms), "unchanged by the replay");
        }
        Err(_) => assert!(time.anchor().is_none()),
    }
});

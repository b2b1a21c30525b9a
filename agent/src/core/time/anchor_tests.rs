use super::*;
use crate::core::decide;
use crate::core::state::tests::device;
use crate::core::time::TrustedClock;
use hc_protocol::envelope::CommandSigner;
use hc_protocol::time::TimeAnswer;
use hc_protocol::{AccountId, Action, Decision, Principal};

const T: u64 = 1_767_225_600_000;
const NONCE: [u8; NONCE_LEN] = [5; NONCE_LEN];

fn signer() -> CommandSigner {
    CommandSigner::from_seed(1, &[7; 32]).unwrap()
}

fn keys() -> CommandKeys {
    let mut keys = CommandKeys::new();
    keys.pin(1, signer().public_key());
    keys
}

fn serial() -> Serial {
    Serial::new("S1").unwrap()
}

fn answer(nonce: [u8; NONCE_LEN], time_ms: u64, radius_ms: u32) -> Vec<u8> {
    let request = TimeRequest { nonce };
    signer()
        .seal_time(&TimeAnswer::to(serial(), &request, time_ms, radius_ms))
        .unwrap()
}

/// Connected at monotonic 1000 ms, request sent at once.
fn asking() -> TrustedTime {
    let mut time = TrustedTime::new(TimePolicy::default());
    time.on_connected(1_000);
    assert!(time.request_due(1_000));
    assert_eq!(time.start_request(1_000, NONCE).nonce, NONCE);
    time
}

#[test]
fn an_answer_anchors_the_midpoint_of_the_round_trip() {
    let mut time = asking();
    let anchor = time
        .handle_answer(&answer(NONCE, T, 40), &keys(), &serial(), 1_200)
        .unwrap();
    assert_eq!(anchor.unix_ms, T + 100);
    assert_eq!(anchor.half_width_ms, 140);
    assert_eq!(anchor.round_trip_ms, 200);
    assert_eq!(time.now_ms(1_200), Some(T + 100));
    assert_eq!(time.now_ms(61_200), Some(T + 60_100), "plus monotonic time");
    assert_eq!(time.offset_ms(1_200, T + 100 - 3_600_000), Some(-3_600_000));
    assert_eq!(
        time.offset_ms(1_200, T + 100 + 86_400_000),
        Some(86_400_000)
    );
}

#[test]
fn requests_at_connect_on_retry_and_on_refresh() {
    let policy = TimePolicy::default();
    let mut time = TrustedTime::new(policy);
    assert_eq!(time.poll_timeout(), None, "nothing asked before a connect");
    time.on_connected(1_000);
    assert_eq!(time.poll_timeout(), Some(1_000));
    time.start_request(1_000, NONCE);
    assert!(!time.request_due(1_000));
    assert_eq!(time.poll_timeout(), Some(1_000 + policy.retry_ms));
    time.handle_answer(&answer(NONCE, T, 0), &keys(), &serial(), 1_300)
        .unwrap();
    assert_eq!(time.poll_timeout(), Some(1_000 + policy.refresh_ms));
    time.on_disconnected();
    assert_eq!(time.poll_timeout(), None);
    assert!(time.anchor().is_some(), "the anchor outlives the link");
}

/// Each refusal leaves the machine as it was: the same anchor, and the
/// outstanding request still answerable.
fn refused_and_unchanged(time: &mut TrustedTime, bytes: &[u8], mono: u64, reason: Reason) {
    let before = (time.anchor, time.pending, time.next_request_ms);
    assert_eq!(
        time.handle_answer(bytes, &keys(), &serial(), mono),
        Err(reason)
    );
    assert_eq!((time.anchor, time.pending, time.next_request_ms), before);
}

#[test]
fn other_nonces_keys_signatures_and_devices_are_refused_and_change_nothing() {
    let mut time = asking();
    refused_and_unchanged(
        &mut time,
        &answer([6; NONCE_LEN], T, 0),
        1_100,
        Reason::UnexpectedTimeAnswer,
    );
    let stranger = CommandSigner::from_seed(9, &[8; 32]).unwrap();
    let request = TimeRequest { nonce: NONCE };
    let foreign = stranger
        .seal_time(&TimeAnswer::to(serial(), &request, T, 0))
        .unwrap();
    refused_and_unchanged(&mut time, &foreign, 1_100, Reason::UnknownKeyId);
    let mut forged = answer(NONCE, T, 0);
    forged[20] ^= 1;
    refused_and_unchanged(&mut time, &forged, 1_100, Reason::BadSignature);
    let other_device = signer()
        .seal_time(&TimeAnswer::to(Serial::new("S2").unwrap(), &request, T, 0))
        .unwrap();
    refused_and_unchanged(&mut time, &other_device, 1_100, Reason::WrongDevice);
    refused_and_unchanged(&mut time, &[0x54, 1, 2], 1_100, Reason::Malformed);
    // The real answer still works after all of them.
    assert!(time
        .handle_answer(&answer(NONCE, T, 0), &keys(), &serial(), 1_100)
        .is_ok());
}

#[test]
fn a_replayed_answer_is_refused_and_changes_nothing() {
    let mut time = asking();
    let first = answer(NONCE, T, 0);
    time.handle_answer(&first, &keys(), &serial(), 1_100)
        .unwrap();
    refused_and_unchanged(&mut time, &first, 500_000, Reason::UnexpectedTimeAnswer);
    // Nor after a new request: its nonce is another.
    time.start_request(600_000, [7; NONCE_LEN]);
    refused_and_unchanged(&mut time, &first, 600_100, Reason::UnexpectedTimeAnswer);
    assert_eq!(time.now_ms(1_100), Some(T + 50));
}

#[test]
fn a_late_answer_is_refused_and_anchors_nothing() {
    let mut time = asking();
    let bound = TimePolicy::default().round_trip_max_ms;
    assert_eq!(
        time.handle_answer(&answer(NONCE, T, 0), &keys(), &serial(), 1_000 + bound + 1),
        Err(Reason::LateTimeAnswer)
    );
    assert_eq!(time.anchor(), None);
    assert_eq!(
        time.handle_answer(&answer(NONCE, T, 0), &keys(), &serial(), 1_000 + bound + 2),
        Err(Reason::UnexpectedTimeAnswer),
        "its request is over"
    );
    // At the bound exactly it is still in time.
    let mut time = asking();
    assert!(time
        .handle_answer(&answer(NONCE, T, 0), &keys(), &serial(), 1_000 + bound)
        .is_ok());
}

#[test]
fn no_answer_is_expected_before_a_request_or_after_a_disconnect() {
    let mut time = TrustedTime::new(TimePolicy::default());
    refused_and_unchanged(
        &mut time,
        &answer(NONCE, T, 0),
        10,
        Reason::UnexpectedTimeAnswer,
    );
    let mut time = asking();
    time.on_disconnected();
    refused_and_unchanged(
        &mut time,
        &answer(NONCE, T, 0),
        1_100,
        Reason::UnexpectedTimeAnswer,
    );
}

/// bob may watch live from `T0` to `T0 + 200` in the fixture's seconds;
/// here the fixture's windows are moved to real times.
fn bob_at(time: &TrustedTime, clock: &TrustedClock, mono: u64, wall_ms: u64) -> Decision {
    let mut state = device();
    state.clock = *clock;
    let now = time.decision_ms(clock, mono, wall_ms) / 1000;
    state.clock.observe(now);
    let bob = Principal::Cloud(AccountId::new("bob").unwrap());
    decide(&state, &bob, Action::LiveView, Some(1), now)
}

#[test]
fn with_an_anchor_the_wall_clock_behind_ahead_or_jumping_does_not_matter() {
    // The fixture's bob share runs from 0 to 200 s; signed time 100 s.
    let mut time = TrustedTime::new(TimePolicy::default());
    time.on_connected(0);
    time.start_request(0, NONCE);
    time.handle_answer(&answer(NONCE, 100_000, 0), &keys(), &serial(), 0)
        .unwrap();
    let mut clock = TrustedClock::default();
    // The wall clock ran a day ahead before the anchor: settled.
    clock.observe(86_400);
    clock.settle(100);
    for wall_ms in [0, 50_000, 86_500_000, 10_000_000] {
        // Inside the window by signed time, whatever the wall clock says.
        assert_eq!(
            bob_at(&time, &clock, 99_999, wall_ms),
            Decision::Allow,
            "{wall_ms}"
        );
        // At its end by signed time: expired, even with the wall clock behind.
        assert_eq!(
            bob_at(&time, &clock, 100_000, wall_ms),
            Decision::Deny(Reason::Expired),
            "{wall_ms}"
        );
    }
}

#[test]
fn without_an_anchor_the_floor_rule_stays() {
    let time = TrustedTime::new(TimePolicy::default());
    let mut clock = TrustedClock::default();
    clock.vouch(150);
    assert_eq!(
        bob_at(&time, &clock, 0, 120_000),
        Decision::Deny(Reason::ClockNotTrusted),
        "a wall clock set back below the floor is not believed"
    );
    assert_eq!(bob_at(&time, &clock, 0, 160_000), Decision::Allow);
    assert_eq!(
        bob_at(&time, &clock, 0, 250_000),
        Decision::Deny(Reason::Expired)
    );
}

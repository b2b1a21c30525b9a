//! Every message type round-trips: encode → decode gives back the value,
//! within the message's size limit, through the same entry points the
//! agent, the cloud and the local clients use (`codec`, the envelope,
//! local-socket frames). Values come from the strategies in
//! `src/arbitrary.rs`, which cover every variant of every enum and fill
//! bounded collections and identifiers up to their limits.

mod support;

use hc_protocol::{access, command, envelope, ids, limits, local, reason};

use core::fmt::Debug;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use hc_protocol::arbitrary::*;
use hc_protocol::codec;
use limits::{MAX_COMMAND_BYTES, MAX_LOCAL_FRAME_BYTES, MAX_MESSAGE_BYTES};
use local::FRAME_HEADER_LEN;
use support::property_per_message;

/// encode → decode gives the value back; the encoding fits `max`.
fn round_trip<T>(value: &T, max: usize) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = codec::encode(value, max).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert!(bytes.len() <= max);
    let back: T = codec::decode(&bytes, max).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(&back, value);
    // Encoding is deterministic: the value re-encodes to the same bytes.
    prop_assert_eq!(codec::encode(&back, max).unwrap(), bytes);
    Ok(())
}

property_per_message! {
    check: |value, max, ()| round_trip(value, max);
    command_round_trips: any_command(), MAX_COMMAND_BYTES;
    ack_round_trips: any_ack(), MAX_MESSAGE_BYTES;
    state_report_round_trips: any_state_report(), MAX_MESSAGE_BYTES;
    device_status_round_trips: any_device_status(), MAX_MESSAGE_BYTES;
    audit_event_round_trips: any_audit_event(), MAX_MESSAGE_BYTES;
    audit_entry_round_trips: any_audit_entry(), MAX_MESSAGE_BYTES;
    audit_report_round_trips: any_audit_report(), MAX_MESSAGE_BYTES;
    domain_registration_round_trips: any_domain_registration(), MAX_MESSAGE_BYTES;
    domain_result_round_trips: any_domain_result(), MAX_MESSAGE_BYTES;
    status_reply_round_trips: any_status_reply(), MAX_LOCAL_FRAME_BYTES;
    time_request_round_trips: any_time_request(), MAX_MESSAGE_BYTES;
    time_answer_round_trips: any_time_answer(), MAX_MESSAGE_BYTES;
}

/// The same through a local-socket frame: the header announces the body's
/// exact length and passes the header check.
fn frame_round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame = local::encode_frame(value).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let header: [u8; FRAME_HEADER_LEN] = frame[..FRAME_HEADER_LEN].try_into().unwrap();
    let len = local::frame_body_len(header).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(len, frame.len() - FRAME_HEADER_LEN);
    prop_assert!(len <= MAX_LOCAL_FRAME_BYTES);
    let back: T = local::decode_frame_body(&frame[FRAME_HEADER_LEN..])
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #![proptest_config(test_config(256))]

    #[test]
    fn command_body_round_trips(body in any_command_body()) {
        round_trip(&body, MAX_COMMAND_BYTES)?;
        // The kind (carried in audit events) round-trips too.
        round_trip(&body.kind(), MAX_MESSAGE_BYTES)?;
    }

    #[test]
    fn envelope_seals_and_opens_to_the_same_command(case in any_envelope_case()) {
        let bytes = case.seal();
        prop_assert!(bytes.len() <= MAX_COMMAND_BYTES);
        prop_assert_eq!(bytes[0], envelope::ENVELOPE_VERSION);
        prop_assert_eq!(bytes[1], case.key_id);
        // The body between header and signature is exactly the command.
        let body = &bytes[envelope::HEADER_LEN..bytes.len() - envelope::SIGNATURE_LEN];
        prop_assert_eq!(body, &codec::encode(&case.command, MAX_COMMAND_BYTES).unwrap()[..]);
        let opened = envelope::open(&bytes, &case.keys(), &case.command.serial);
        prop_assert_eq!(opened, Ok(case.command.clone()));
    }

    #[test]
    fn local_request_round_trips(request in any_local_request()) {
        round_trip(&request, MAX_LOCAL_FRAME_BYTES)?;
        frame_round_trip(&request)?;
    }

    #[test]
    fn local_reply_round_trips(reply in any_local_reply()) {
        round_trip(&reply, MAX_LOCAL_FRAME_BYTES)?;
        frame_round_trip(&reply)?;
    }

    #[test]
    fn access_values_round_trip(
        share in any_share_entry(),
        grants in any_installer_grants(),
        principal in any_principal(),
        decision in any_decision(),
        binding in any_binding(),
    ) {
        round_trip(&share, MAX_MESSAGE_BYTES)?;
        round_trip(&grants, MAX_MESSAGE_BYTES)?;
        round_trip(&principal, MAX_MESSAGE_BYTES)?;
        round_trip(&decision, MAX_MESSAGE_BYTES)?;
        round_trip(&binding, MAX_MESSAGE_BYTES)?;
    }

    #[test]
    fn identifiers_round_trip_and_revalidate(
        serial in any_serial(),
        region in any_region(),
        account in any_account_id(),
        domain in any_domain_name(),
        text in any_text::<{ limits::MAX_VERSION_LEN }>(),
    ) {
        round_trip(&serial, MAX_MESSAGE_BYTES)?;
        round_trip(&region, MAX_MESSAGE_BYTES)?;
        round_trip(&account, MAX_MESSAGE_BYTES)?;
        round_trip(&domain, MAX_MESSAGE_BYTES)?;
        round_trip(&text, MAX_MESSAGE_BYTES)?;
        // The strategies only produce what the constructors accept.
        prop_assert_eq!(ids::Serial::new(&serial), Ok(serial.clone()));
        prop_assert_eq!(ids::Region::new(&region), Ok(region.clone()));
        prop_assert_eq!(ids::AccountId::new(&account), Ok(account.clone()));
        prop_assert_eq!(ids::DomainName::new(&domain), Ok(domain.clone()));
    }
}

/// Every variant of every enum that crosses a boundary is produced by its
/// strategy (so the round trips above really cover each of them).
#[test]
fn strategies_cover_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;

    fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
        let mut runner = TestRunner::deterministic();
        (0..n)
            .map(|_| strategy.new_tree(&mut runner).unwrap().current())
            .collect()
    }

    let kinds: BTreeSet<String> = sample(any_command_body(), 2_000)
        .iter()
        .map(|b| format!("{:?}", b.kind()))
        .collect();
    assert_eq!(kinds.len(), COMMAND_KINDS.len(), "{kinds:?}");

    // The number of distinct variant names among `n` samples.
    fn variants<S: Strategy>(strategy: S) -> usize
    where
        S::Value: core::fmt::Debug,
    {
        sample(strategy, 500)
            .iter()
            .map(|v| {
                let debug = format!("{v:?}");
                debug.split([' ', '(', '{']).next().unwrap().to_string()
            })
            .collect::<BTreeSet<_>>()
            .len()
    }
    let counted = [
        ("LocalRequest", variants(any_local_request()), 6),
        ("LocalReply", variants(any_local_reply()), 6),
        ("AuditEvent", variants(any_audit_event()), 7),
        ("AuditActor", variants(any_audit_actor()), 3),
        ("Binding", variants(any_binding()), 3),
        ("DomainOutcome", variants(any_domain_outcome()), 3),
        ("RegistrationState", variants(any_registration_state()), 5),
    ];
    for (what, seen, all) in counted {
        assert_eq!(seen, all, "{what}");
    }
    let reasons: std::collections::HashSet<reason::Reason> =
        sample(any_reason(), 2_000).into_iter().collect();
    assert_eq!(reasons.len(), reason::Reason::ALL.len());
    let actions: std::collections::HashSet<access::Action> =
        sample(any_action(), 1_000).into_iter().collect();
    assert_eq!(actions.len(), access::Action::ALL.len());
}

/// Full collections and longest identifiers are generated (the worst-case
/// sizes of SPEC.md §13.3 get exercised), and still fit their limits.
#[test]
fn strategies_reach_the_limits() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut full_unshare = false;
    let mut longest_id = false;
    for _ in 0..3_000 {
        let body = any_command_body().new_tree(&mut runner).unwrap().current();
        if let command::CommandBody::Unshare { accounts } = &body {
            full_unshare |= accounts.is_full();
            longest_id |= accounts
                .iter()
                .any(|a| a.len() == limits::MAX_ACCOUNT_ID_LEN);
        }
    }
    assert!(full_unshare && longest_id);

    let mut full_report = false;
    for _ in 0..300 {
        let report = any_state_report().new_tree(&mut runner).unwrap().current();
        full_report |= report.shares.is_full();
        assert!(codec::encode(&report, MAX_MESSAGE_BYTES).is_ok());
    }
    assert!(full_report);

    let mut full_mappings = false;
    for _ in 0..300 {
        let r = any_domain_registration()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        full_mappings |= r.mappings.is_full();
    }
    assert!(full_mappings);
}

//! The demo story, run in-process exactly as `sim-device demo` runs it:
//! against the embedded TLS broker, against mosquitto (TLS, client
//! certificates, per-device ACL) when it is installed, and against a
//! three-node NATS cluster (the recorder given every node) when
//! nats-server is installed. Without mosquitto or nats-server those tests
//! are skipped with a printed reason, unless the environment variable
//! `CI` is set: then they fail.

use sim_device::demo::{self, BrokerKind, DemoOptions, DemoReport};
use sim_device::mosquitto::skip_without_mosquitto;
use sim_device::nats::skip_without_nats;

fn run(broker: BrokerKind) -> (DemoReport, String) {
    run_with(DemoOptions {
        broker,
        claim: false,
    })
}

fn run_with(options: DemoOptions) -> (DemoReport, String) {
    let mut out = Vec::new();
    let report = demo::run(&options, &mut out).expect("the demo sets up");
    let text = String::from_utf8_lossy(&out).into_owned();
    print!("{text}");
    (report, text)
}

fn assert_passed(report: &DemoReport, text: &str) {
    let failed: Vec<String> = report
        .failures()
        .map(|s| {
            format!(
                "step {}: {} -> {} (promised: {})",
                s.number, s.what, s.outcome, s.expected
            )
        })
        .collect();
    assert!(
        report.passed(),
        "failed steps:\n{}\n\n{text}",
        failed.join("\n")
    );
    assert!(report.steps.len() >= 30, "the whole story runs");
    assert!(text.contains("  step 1: "), "{text}");
    assert!(
        text.lines().last().unwrap_or("").starts_with("demo passed"),
        "{text}"
    );
}

#[test]
fn the_demo_story_keeps_every_promise_on_the_embedded_broker() {
    let (report, text) = run(BrokerKind::Embedded);
    assert_passed(&report, &text);
    // The story's key outcomes, as the product words them.
    for promised in [
        "You can send at most five invitations in one day [ok]",
        "-> Shared [ok]",
        "The account doesn't exist [ok]",
        "Cross-regional share operation is not allowed [ok]",
        "(CloudServiceDisabled) [ok]",
        "(NotAPrincipal) [ok]",
        // The flows of issue 17.
        "olivia taps Delete All -> deleted [ok]",
        "-> Network busy [ok]\n  device SIM-NVR-0001 did not answer within 3 s\n",
        "installer deletes the recorder from olivia's account -> deleted [ok]",
        "olivia adds the recorder to her account with its verification code -> added [ok]",
        "(domain only), shared by olivia [ok]",
        "device's operator account: LiveView -> allowed [ok]",
        "the device admin switches platform access off (local menu) -> off; the recorder is offline [ok]",
        "olivia authorizes acme-security: live view and configuration for 24 h -> granted [ok]",
        "unbound; the cloud sees it unbound [ok]",
        "10 min behind signed time [ok]",
    ] {
        assert!(text.contains(promised), "missing {promised:?}:\n{text}");
    }
    assert!(
        report.elapsed.as_secs() < 20,
        "the demo took {:?}",
        report.elapsed
    );
}

#[test]
fn the_demo_story_keeps_every_promise_on_mosquitto() {
    if skip_without_mosquitto("the_demo_story_keeps_every_promise_on_mosquitto") {
        return;
    }
    let (report, text) = run(BrokerKind::Mosquitto);
    assert_passed(&report, &text);
}

/// A recorder with only its batch's claim certificate (its PKI holds no
/// certificate for it) provisions itself through mosquitto's claim ACL,
/// then the whole story runs on the certificate it was given.
#[test]
fn a_recorder_provisioned_by_claim_keeps_every_promise_on_mosquitto() {
    if skip_without_mosquitto("a_recorder_provisioned_by_claim_keeps_every_promise_on_mosquitto") {
        return;
    }
    let (report, text) = run_with(DemoOptions {
        broker: BrokerKind::Mosquitto,
        claim: true,
    });
    assert_passed(&report, &text);
    assert!(
        text.contains("provisions itself with the claim certificate"),
        "{text}"
    );
}

#[test]
fn the_demo_story_keeps_every_promise_on_a_nats_cluster() {
    if skip_without_nats("the_demo_story_keeps_every_promise_on_a_nats_cluster") {
        return;
    }
    let (report, text) = run(BrokerKind::Nats);
    assert_passed(&report, &text);
    assert!(text.contains("NATS cluster of 3 nodes"), "{text}");
}

//! The trusted-time floor on flash, through the agent and a real state
//! file: whenever the floor passes the end of a time-limited grant (by a
//! read-only command's issue time or by the device clock itself), the floor
//! reaches flash before the agent goes on, so a power cut followed by a
//! clock rolled back into the grant's window cannot revive it. Between such
//! moments nothing is written (flash wears).

use hc_agent::core::domain::{Registrar, RegistrarPolicy};
use hc_agent::core::{decide, DeviceState};
use hc_agent::shell::device::Agent;
use hc_agent::store::{Loaded, RealFlash, StateStore};
use hc_protocol::access::{Action, Decision};
use hc_protocol::envelope::{CommandKeys, CommandSigner};
use hc_protocol::{CommandBody, Reason};
use hc_testkit::fixture::*;

const END: u64 = T0 + 1_000;

/// Owned by alice, bob shared with live view until END; saved to `dir`.
fn agent_with_timed_share(dir: &std::path::Path) -> (Agent<RealFlash>, Device, CommandSigner) {
    let device = Device::owned_and_shared(bob_live_view(window(T0, END)));
    let signer = CommandSigner::from_seed(1, &[9; 32]).unwrap();
    let mut keys = CommandKeys::new();
    keys.pin(1, signer.public_key());
    let mut store = StateStore::new(RealFlash, dir.to_owned(), "state");
    store.save(&device.state).unwrap();
    let registrar = Registrar::new(
        device.state.access.domain.clone(),
        RegistrarPolicy::default(),
    );
    (
        Agent::new(device.state.clone(), store, keys, registrar),
        device,
        signer,
    )
}

/// What a device finds on flash after a power cut.
fn on_flash(dir: &std::path::Path) -> DeviceState {
    let mut store = StateStore::new(RealFlash, dir.to_owned(), "state");
    match store.load::<DeviceState>().unwrap() {
        Loaded::Main(state) => state,
        other => panic!("expected the main state file, got {other:?}"),
    }
}

/// Bob's live view on a device restarted from flash with its clock at `now`.
fn bob_after_power_cut(dir: &std::path::Path, now: u64) -> Decision {
    let mut state = on_flash(dir);
    state.clock.observe(now);
    decide(&state, &cloud("bob"), Action::LiveView, Some(1), now)
}

#[test]
fn a_read_only_command_issued_after_a_grant_ended_writes_the_floor_before_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, mut device, signer) = agent_with_timed_share(dir.path());
    // Control: a rollback to inside the window on the state as written
    // would revive bob's share; that is what the floor must prevent.
    assert_eq!(bob_after_power_cut(dir.path(), T0 + 500), Decision::Allow);

    device.now = END + 60;
    let command = device.command(
        account("alice"),
        CommandBody::Operation {
            action: Action::LiveView,
            channel: Some(1),
        },
    );
    // The device clock is still behind (it is what will be rolled back).
    agent.on_command(&signer.seal(&command).unwrap(), T0 + 400);

    assert_eq!(on_flash(dir.path()).clock.floor(), END + 60);
    assert_eq!(
        bob_after_power_cut(dir.path(), T0 + 500),
        Decision::Deny(Reason::ClockNotTrusted)
    );
}

#[test]
fn the_device_clock_passing_a_grant_end_writes_the_floor_before_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _device, _signer) = agent_with_timed_share(dir.path());
    agent.observe_clock(END - 1);
    assert!(
        on_flash(dir.path()).clock.floor() < END,
        "written before any grant ended"
    );
    agent.observe_clock(END);
    assert_eq!(on_flash(dir.path()).clock.floor(), END);
    // A restart with the clock behind the floor is not trusted; after the
    // restart at the right time, bob's share is simply over.
    for (restart_at, reason) in [
        (END - 10, Reason::ClockNotTrusted),
        (END + 5, Reason::Expired),
    ] {
        let decision = bob_after_power_cut(dir.path(), restart_at);
        assert_eq!(decision, Decision::Deny(reason), "restart at {restart_at}");
    }
}

#[test]
fn without_a_grant_ending_the_clock_readings_do_not_write_flash() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _device, _signer) = agent_with_timed_share(dir.path());
    let before = std::fs::read(dir.path().join("state")).unwrap();
    for now in (T0..END).step_by(7) {
        agent.observe_clock(now);
    }
    assert_eq!(
        std::fs::read(dir.path().join("state")).unwrap(),
        before,
        "the state file was rewritten with no grant ending"
    );
    // One write when the end passes, then none until another end.
    agent.observe_clock(END + 1);
    let written = std::fs::read(dir.path().join("state")).unwrap();
    assert_ne!(written, before);
    for now in END + 2..END + 500 {
        agent.observe_clock(now);
    }
    assert_eq!(std::fs::read(dir.path().join("state")).unwrap(), written);
}

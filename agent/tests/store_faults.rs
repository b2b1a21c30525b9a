//! The state store under disk faults and damage, through the fault-injecting
//! flash: every failed save leaves what `load` returns unchanged, a damaged
//! state file falls back to the previous good copy, and only two bad copies
//! make loading fail. The last tests drive the agent itself: a command whose
//! state cannot reach flash is refused with `StorageFailed`, and nothing of
//! it stays in memory or on disk.

use hc_agent::core::domain::{Registrar, RegistrarPolicy};
use hc_agent::core::DeviceState;
use hc_agent::shell::device::Agent;
use hc_agent::store::{Fault, FaultyFlash, Loaded, RealFlash, StateStore, StoreError};
use hc_protocol::codec;
use hc_protocol::envelope::{CommandKeys, CommandSigner};
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::topics::Leaf;
use hc_protocol::{Ack, Outcome, Reason};
use hc_testkit::fixture::*;

/// Two distinct states: a device with an owner, and the same with a share.
fn old_and_new() -> (DeviceState, DeviceState) {
    let mut device = Device::owned();
    let old = device.state.clone();
    device.expect_ok("alice", bob_live_view(None));
    (old, device.state)
}

fn faulty_store(dir: &std::path::Path) -> StateStore<FaultyFlash> {
    StateStore::new(FaultyFlash::new(), dir.to_owned(), "state")
}

/// A store in a fresh directory that saved `states`, in order.
fn store_that_saved(states: &[&DeviceState]) -> (tempfile::TempDir, StateStore<FaultyFlash>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = faulty_store(dir.path());
    for state in states {
        store.save(*state).unwrap();
    }
    (dir, store)
}

fn load_main(store: &mut StateStore<FaultyFlash>) -> DeviceState {
    match store.load::<DeviceState>().expect("load") {
        Loaded::Main(state) => state,
        other => panic!("expected the main state file, got {other:?}"),
    }
}

/// Bit rot: one bit flipped in the middle of the file.
fn flip_a_bit_in_the_middle(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, &bytes).unwrap();
}

/// Every fault of a save step (power cuts aside).
const DISK_FAULTS: [Fault; 5] = [
    Fault::ShortWrite,
    Fault::DiskFull,
    Fault::FailedSync,
    Fault::FailedRename,
    Fault::FailedDirSync,
];

/// Saves `old`, arms `fault`, tries to save `new`: the save fails and the
/// store still loads `old`; once the fault is gone, `new` saves and loads.
fn failed_save_keeps_old_state(fault: Fault) {
    let (old, new) = old_and_new();
    let (dir, mut store) = store_that_saved(&[&old]);

    store.flash().arm(fault);
    let error = store
        .save(&new)
        .expect_err("the armed fault must fail the save");
    assert!(matches!(error, StoreError::Io { .. }), "{error}");
    assert_eq!(error.reason(), Reason::StorageFailed);
    assert_eq!(
        load_main(&mut store),
        old,
        "{fault:?} changed the stored state"
    );
    assert!(
        !dir.path().join("state.tmp").exists(),
        "tmp file left behind"
    );

    store.flash().disarm();
    store.save(&new).unwrap();
    assert_eq!(load_main(&mut store), new);
}

#[test]
fn a_short_write_full_disk_or_failed_fsync_or_rename_fails_the_save_and_keeps_the_old_state() {
    for fault in DISK_FAULTS {
        failed_save_keeps_old_state(fault);
    }
}

#[test]
fn full_disk_reports_no_space_left() {
    let (old, new) = old_and_new();
    let (_dir, mut store) = store_that_saved(&[&old]);
    store.flash().arm(Fault::DiskFull);
    match store.save(&new) {
        Err(StoreError::Io { step, source, .. }) => {
            assert_eq!(step, "write");
            assert_eq!(source.raw_os_error(), Some(28), "{source}");
        }
        other => panic!("expected a write error, got {other:?}"),
    }
}

/// Saves `new` over `old` with the power cut after `cut_after` flash
/// operations; a fresh store on `dir`, as after the reboot, loads a good
/// copy: `new` if the save reported success, else `old` or `new`, never a
/// half state.
fn cut_save_then_reboot(
    store: &mut StateStore<FaultyFlash>,
    dir: &std::path::Path,
    cut_after: usize,
    old: &DeviceState,
    new: &DeviceState,
) {
    store.flash().arm(Fault::PowerCutAfter(cut_after));
    let saved = store.save(new).is_ok();
    store.flash().disarm();
    let mut rebooted = StateStore::new(RealFlash, dir.to_owned(), "state");
    let loaded = match rebooted.load::<DeviceState>() {
        Ok(Loaded::Main(state) | Loaded::Recovered { value: state, .. }) => state,
        other => panic!("cut after {cut_after}: no good copy left: {other:?}"),
    };
    if saved {
        assert_eq!(
            &loaded, new,
            "cut after {cut_after}: an acknowledged save was lost"
        );
    } else {
        assert!(
            &loaded == old || &loaded == new,
            "cut after {cut_after}: a half state loaded"
        );
    }
}

#[test]
fn power_cut_at_every_step_of_a_save_loads_the_old_or_the_new_state() {
    let (old, new) = old_and_new();
    // A save is at most a handful of flash operations; cut after each.
    for cut_after in 0..12 {
        let (dir, mut store) = store_that_saved(&[&old]);
        cut_save_then_reboot(&mut store, dir.path(), cut_after, &old, &new);
    }
}

#[test]
fn first_start_loads_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = faulty_store(dir.path());
    assert_eq!(store.load::<DeviceState>().unwrap(), Loaded::Fresh);
}

#[test]
fn a_corrupt_state_file_is_reported_and_the_previous_copy_used() {
    let (old, new) = old_and_new();
    let (dir, mut store) = store_that_saved(&[&old, &new]);

    flip_a_bit_in_the_middle(&dir.path().join("state"));

    match store.load::<DeviceState>().unwrap() {
        Loaded::Recovered { value, problem } => {
            assert_eq!(value, old);
            assert!(
                problem.contains("state"),
                "problem names the file: {problem}"
            );
        }
        other => panic!("expected recovery from state.prev, got {other:?}"),
    }
}

#[test]
fn a_truncated_state_file_is_reported_and_the_previous_copy_used() {
    let (old, new) = old_and_new();
    let (dir, mut store) = store_that_saved(&[&old, &new]);

    let path = dir.path().join("state");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();

    match store.load::<DeviceState>().unwrap() {
        Loaded::Recovered { value, .. } => assert_eq!(value, old),
        other => panic!("expected recovery from state.prev, got {other:?}"),
    }
}

#[test]
fn after_recovering_from_a_damaged_file_a_save_cut_at_any_step_keeps_a_good_copy() {
    let (old, new) = old_and_new();
    let mut third = new.clone();
    third.ledger.record(99, Outcome::Accepted);
    for cut_after in 0..12 {
        let (dir, _) = store_that_saved(&[&old, &new]);
        // `state` rots; the device restarts on `state.prev` (old).
        flip_a_bit_in_the_middle(&dir.path().join("state"));
        let mut store = faulty_store(dir.path());
        assert!(matches!(
            store.load::<DeviceState>().unwrap(),
            Loaded::Recovered { .. }
        ));

        // The next save is cut short: the damaged file must not have
        // pushed the last good copy out.
        cut_save_then_reboot(&mut store, dir.path(), cut_after, &old, &third);
    }
}

#[test]
fn both_copies_damaged_is_an_error_never_a_half_state() {
    let (old, new) = old_and_new();
    let (dir, mut store) = store_that_saved(&[&old, &new]);
    std::fs::write(dir.path().join("state"), b"garbage").unwrap();
    std::fs::write(dir.path().join("state.prev"), b"").unwrap();

    match store.load::<DeviceState>() {
        Err(StoreError::NoGoodCopy { main, prev, .. }) => {
            assert!(!main.is_empty() && !prev.is_empty());
        }
        other => panic!("expected NoGoodCopy, got {other:?}"),
    }
}

#[test]
fn a_leftover_tmp_file_is_ignored_and_removed() {
    let (old, new) = old_and_new();
    let (dir, mut store) = store_that_saved(&[&old]);
    // A save that was cut before its rename: a complete but unpublished file.
    let mut other = faulty_store(&dir.path().join("elsewhere"));
    other.save(&new).unwrap();
    std::fs::copy(
        dir.path().join("elsewhere/state"),
        dir.path().join("state.tmp"),
    )
    .unwrap();

    assert_eq!(load_main(&mut store), old);
    assert!(!dir.path().join("state.tmp").exists());
}

// --- the agent on a failing flash ---------------------------------------

fn agent_on(dir: &std::path::Path, state: DeviceState) -> (Agent<FaultyFlash>, CommandSigner) {
    let signer = CommandSigner::from_seed(1, &[9; 32]).unwrap();
    let mut keys = CommandKeys::new();
    keys.pin(1, signer.public_key());
    let mut store = faulty_store(dir);
    store.save(&state).unwrap();
    let registrar = Registrar::new(state.access.domain.clone(), RegistrarPolicy::default());
    (Agent::new(state, store, keys, registrar), signer)
}

fn acks(agent: &mut Agent<FaultyFlash>) -> Vec<Ack> {
    let mut out = Vec::new();
    while let Some(message) = agent.outbox().peek().cloned() {
        agent.outbox().sent();
        if message.leaf == Leaf::Ack {
            out.push(codec::decode::<Ack>(&message.payload, MAX_MESSAGE_BYTES).unwrap());
        }
    }
    out
}

#[test]
fn a_command_whose_state_cannot_reach_flash_is_refused_and_leaves_nothing_behind() {
    for fault in DISK_FAULTS {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::owned();
        let before = device.state.clone();
        let (mut agent, signer) = agent_on(dir.path(), before.clone());
        let command = device.command(account("alice"), bob_live_view(None));
        let envelope = signer.seal(&command).unwrap();

        agent.store_flash().arm(fault);
        agent.on_command(&envelope, T0);
        let refused = acks(&mut agent);
        assert_eq!(refused.len(), 1, "{fault:?}");
        assert_eq!(refused[0].seq, Some(command.seq));
        assert_eq!(refused[0].outcome, Outcome::Refused(Reason::StorageFailed));
        assert_eq!(agent.state(), &before, "{fault:?}: memory changed");
        let mut disk = faulty_store(dir.path());
        assert_eq!(load_main(&mut disk), before, "{fault:?}: disk changed");

        // The cloud redelivers once the flash works again: applied once.
        agent.store_flash().disarm();
        agent.on_command(&envelope, T0 + 1);
        let accepted = acks(&mut agent);
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].outcome, Outcome::Accepted, "{fault:?}");
        assert_eq!(agent.state().access.shares.len(), 1);
        assert_eq!(load_main(&mut disk), agent.state().clone());
    }
}

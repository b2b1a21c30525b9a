//! Every crash state a POSIX file system may leave during the store's real
//! saves loads an acknowledged state or a newer one, never an older one
//! (DESIGN §7). The operations of real `StateStore::save` calls are
//! recorded, every power-cut outcome at every point is rebuilt (unsynced
//! data lost, kept or torn; directory changes before the directory's fsync
//! kept or lost in any combination), and each one is loaded with the real
//! `StateStore::load`. The checker is shown to catch a store whose
//! `sync_file` or `sync_dir` does nothing.

use hc_agent::core::DeviceState;
use hc_agent::store::{Loaded, StateStore};
use hc_protocol::access::Action;
use hc_testkit::crash_states::{for_each_crash_state, MemFlash, Op, RecordingFlash};
use hc_testkit::fixture::*;
use hc_testkit::model::unshare_body;

/// The states saved in order: an owned device with 40 shares (a state file
/// of several KiB, so a torn or reordered write has many blocks), then
/// shares added and removed one by one.
fn states() -> Vec<DeviceState> {
    let name = |i: u64| format!("user-{i:02}-with-a-long-account-name");
    let share = |i: u64| share_all(&name(i), &[Action::LiveView], window(0, 4_000_000_000 + i));
    let mut device = Device::owned();
    for i in 0..40 {
        device.expect_ok("alice", share(i));
    }
    let mut out = vec![device.state.clone()];
    for i in 40..52 {
        device.expect_ok("alice", share(i));
        out.push(device.state.clone());
    }
    for i in [3, 7, 0, 45] {
        device.expect_ok("alice", unshare_body(&name(i)));
        out.push(device.state.clone());
    }
    out
}

/// Three small states: without a directory fsync every change of every save
/// stays pending, and the crash states of large files over many saves would
/// number in the millions.
fn small_states() -> Vec<DeviceState> {
    let mut device = Device::owned();
    let mut out = vec![device.state.clone()];
    for who in ["bob", "carol"] {
        device.expect_ok("alice", share_all(who, &[Action::LiveView], None));
        out.push(device.state.clone());
    }
    out
}

/// What the checker found.
struct Report {
    /// Crash states checked during each save.
    per_save: Vec<usize>,
    /// Loads that gave the previous copy (`Recovered`), all acceptable.
    recovered: usize,
    /// Crash states that loaded an older state than acknowledged, or none.
    violation_count: usize,
    /// The first few of them, described.
    violations: Vec<String>,
}

fn check(states: Vec<DeviceState>, drop_file_syncs: bool, drop_dir_syncs: bool) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let flash = RecordingFlash {
        drop_file_syncs,
        drop_dir_syncs,
        ..RecordingFlash::default()
    };
    let mut store = StateStore::new(flash, dir.path().to_owned(), "state");
    let mut save_ends = Vec::new();
    for (n, state) in states.iter().enumerate() {
        store.save(state).expect("save");
        store.flash().ops.push(Op::Acked(n));
        save_ends.push(store.flash().ops.len());
    }
    let ops = store.flash().ops.clone();
    let mut report = Report {
        per_save: vec![0; states.len()],
        recovered: 0,
        violation_count: 0,
        violations: Vec::new(),
    };
    for_each_crash_state(&ops, |crash| {
        let save = save_ends
            .iter()
            .position(|&end| crash.after_ops < end)
            .unwrap_or(states.len() - 1);
        report.per_save[save] += 1;
        let loaded = load(dir.path(), crash.disk);
        let index = |state: &DeviceState| states.iter().rposition(|s| s == state);
        let got = match &loaded {
            Ok(Loaded::Main(state)) => index(state),
            Ok(Loaded::Recovered { value, .. }) => {
                report.recovered += 1;
                index(value)
            }
            Ok(Loaded::Fresh) | Err(_) => None,
        };
        let fine = match (crash.acked, got) {
            (None, _) if matches!(loaded, Ok(Loaded::Fresh)) => true,
            (None, Some(_)) => true,
            (Some(acked), Some(got)) => got >= acked,
            _ => false,
        };
        if !fine {
            report.violation_count += 1;
        }
        if !fine && report.violations.len() < 20 {
            report.violations.push(format!(
                "after {} operations, state {:?} acknowledged, loaded {}",
                crash.after_ops,
                crash.acked,
                match (&loaded, got) {
                    (Ok(_), Some(n)) => format!("state {n}"),
                    (Ok(l), None) => format!("{l:?}").chars().take(60).collect(),
                    (Err(e), _) => e.to_string(),
                }
            ));
        }
    });
    report
}

fn load(
    dir: &std::path::Path,
    disk: MemFlash,
) -> Result<Loaded<DeviceState>, hc_agent::store::StoreError> {
    StateStore::new(disk, dir.to_owned(), "state").load::<DeviceState>()
}

#[test]
fn every_crash_state_of_every_save_loads_an_acknowledged_or_newer_state() {
    let report = check(states(), false, false);
    let total: usize = report.per_save.iter().sum();
    println!(
        "{} saves, {total} crash states checked; per save: {:?} (min {}, max {}); {} loads used the previous copy; {} violations",
        report.per_save.len(),
        report.per_save,
        report.per_save.iter().min().unwrap(),
        report.per_save.iter().max().unwrap(),
        report.recovered,
        report.violation_count
    );
    assert_eq!(report.violation_count, 0, "{:#?}", report.violations);
    assert!(
        report.per_save.iter().all(|&n| n >= 100),
        "too few crash states per save: {:?}",
        report.per_save
    );
}

/// A store whose `sync` (`sync_file` or `sync_dir`) does nothing loses
/// acknowledged states, and the checker must say so.
fn assert_the_checker_finds_lost_states(sync: &str, drop_file_syncs: bool, drop_dir_syncs: bool) {
    let report = check(small_states(), drop_file_syncs, drop_dir_syncs);
    println!(
        "{sync} a no-op: {} violations, e.g. {:?}",
        report.violation_count,
        report.violations.first()
    );
    assert!(report.violation_count > 0);
}

#[test]
fn the_checker_finds_the_lost_state_when_file_fsync_is_a_no_op() {
    assert_the_checker_finds_lost_states("sync_file", true, false);
}

#[test]
fn the_checker_finds_the_lost_state_when_directory_fsync_is_a_no_op() {
    assert_the_checker_finds_lost_states("sync_dir", false, true);
}

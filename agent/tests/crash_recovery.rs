//! Power-loss test for the state store: a child process applies and
//! persists commands in a loop, printing "ACK <seq>" after each state
//! reached flash, and is killed with SIGKILL at random moments, 200 times.
//! Every time, the state must load, be exactly the state after some command
//! (never a half state), and hold at least every acknowledged command.
//!
//! The child is this test binary itself, re-run with `CRASH_CHILD_DIR` set.

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use hc_agent::core::{apply, DeviceState};
use hc_agent::store::{Loaded, RealFlash, StateStore};
use hc_protocol::access::Action;
use hc_protocol::{ChannelScope, Command, CommandBody, Outcome};
use hc_testkit::fixture::*;

const KILLS: usize = 200;

/// The command with sequence number `seq` (after the bind at seq 1): shares
/// and unshares that make every state distinct.
fn command(seq: u64) -> Command {
    // Odd commands take back what the even one before gave, so the list
    // stays small however many commands run.
    let body = if seq % 2 == 1 {
        CommandBody::Unshare {
            accounts: [account(&format!("user{}", seq - 1)).id]
                .into_iter()
                .collect(),
        }
    } else {
        share(
            account(&format!("user{seq}")),
            &[Action::LiveView],
            ChannelScope::All,
            window(T0, T0 + seq),
        )
    };
    Command {
        serial: identity().serial,
        actor: account("alice"),
        seq,
        issued_at: T0,
        body,
    }
}

/// The state after every command up to `seq`, computed without any store.
fn expected_state(seq: u64) -> DeviceState {
    let mut device = Device::owned();
    for s in 2..=seq {
        device.state = apply(&device.state, &command(s), T0).state;
    }
    device.state
}

fn child(dir: &str) {
    let mut store = StateStore::new(RealFlash, dir.into(), "state");
    let mut state = match store.load::<DeviceState>().expect("child load") {
        Loaded::Fresh => Device::owned().state,
        Loaded::Main(state) | Loaded::Recovered { value: state, .. } => state,
    };
    loop {
        let seq = state.ledger.last_seq + 1;
        let applied = apply(&state, &command(seq), T0);
        assert_eq!(applied.outcome, Outcome::Accepted);
        store.save(&applied.state).expect("child save");
        state = applied.state;
        println!("ACK {seq}");
    }
}

/// The sequence number a child's output line acknowledges. Not only at
/// the line's start: with one test thread libtest prints `test NAME ... `
/// without a newline before the test runs, so the first acknowledgement
/// shares that line (missing it made the test fail whenever a kill came
/// right after the child's second save).
fn ack_in(line: &str) -> Option<u64> {
    let (_, seq) = line.rsplit_once("ACK ")?;
    Some(seq.trim().parse().expect("a sequence number after ACK"))
}

#[test]
fn sigkill_during_persist_never_leaves_a_half_state_nor_loses_an_acknowledged_change() {
    if let Ok(dir) = std::env::var("CRASH_CHILD_DIR") {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last_acked = 1u64;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut recovered_from_backup = 0;
    // Kills that hit a save: a tmp file was left, or state.prev was
    // needed, or the state on flash was written but not yet acknowledged.
    let mut inside_a_save = 0;
    for kill in 0..KILLS {
        let mut child = Process::new(&exe)
            .args([
                "--exact",
                "sigkill_during_persist_never_leaves_a_half_state_nor_loses_an_acknowledged_change",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CRASH_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a random number of acknowledgements (0..8) plus a random
        // sub-millisecond delay, so kills land at every step of a save.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let acks_before_kill = seed % 8;
        let delay = Duration::from_micros(seed % 1500);
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen < acks_before_kill {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(seq) = ack_in(&line) {
                        last_acked = last_acked.max(seq);
                        seen += 1;
                    }
                }
                _ => break,
            }
            assert!(Instant::now() < deadline, "child stalled");
        }
        std::thread::sleep(delay);
        let _ = child.kill();
        // Acknowledgements already written before the kill still count.
        for line in lines.map_while(Result::ok) {
            if let Some(seq) = ack_in(&line) {
                last_acked = last_acked.max(seq);
            }
        }
        let _ = child.wait();
        let tmp_left = dir.path().join("state.tmp").exists();

        let mut store = StateStore::new(RealFlash, dir.path().into(), "state");
        let mut from_backup = false;
        let state = match store
            .load::<DeviceState>()
            .unwrap_or_else(|e| panic!("kill {kill}: state does not load: {e}"))
        {
            Loaded::Fresh => {
                assert_eq!(
                    last_acked, 1,
                    "kill {kill}: acknowledged state lost entirely"
                );
                continue;
            }
            Loaded::Main(state) => state,
            Loaded::Recovered { value, .. } => {
                recovered_from_backup += 1;
                from_backup = true;
                value
            }
        };
        let seq = state.ledger.last_seq;
        if tmp_left || from_backup || seq == last_acked + 1 {
            inside_a_save += 1;
        }
        assert!(
            seq >= last_acked,
            "kill {kill}: acknowledged seq {last_acked} lost, state is at {seq}"
        );
        assert!(
            seq <= last_acked + 1,
            "kill {kill}: state at {seq} is ahead of anything written ({last_acked})"
        );
        assert_eq!(
            state,
            expected_state(seq),
            "kill {kill}: state at seq {seq} is not the state after seq {seq}"
        );
        last_acked = seq;
    }
    println!("{KILLS} kills survived; last seq {last_acked}; {inside_a_save} landed inside a save; {recovered_from_backup} loads used the previous copy");
    // The kills must exercise the save itself, not only the gaps between.
    assert!(
        inside_a_save >= KILLS / 10,
        "only {inside_a_save} of {KILLS} kills landed inside a save"
    );
}

//! Faults, end to end: the real `hc-agent` binary over mutual TLS to the
//! embedded broker, with a cloud that signs a stream of commands in which
//! applying any command twice would show (hc_testkit::model::stream_body),
//! and the agent's own core as the reference model of the state.
//!
//! - the broker killed and restarted many times while commands flow;
//! - the agent SIGKILLed at random points of command handling, 100+ times;
//! - the network cut without FIN (a proxy that stops forwarding and keeps
//!   the sockets open), detected from the keep-alive, then restored;
//! - clock jumps, at the core level with explicit time (the binary reads
//!   the system clock), plus the trusted-time floor end to end.
//!
//! Counts are in the test names and printed (`--nocapture`); docs/FAULTS.md
//! lists the outcomes.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hc_agent::core::DeviceState;
use hc_agent::store::{Loaded, RealFlash, StateStore};
use hc_protocol::access::{Action, Decision, Principal};
use hc_protocol::{AccountId, ChannelScope, CommandBody, Outcome, Reason};
use hc_testkit::cloud::{CloudOptions, RecordingCloud, TestCloud};
use hc_testkit::daemon::*;
use hc_testkit::local::{state_of, wait_local, wait_status_until};
use hc_testkit::model::{
    access_of, fresh_applications, live_view_share, live_view_share_around, stream_command, Model,
    Rng,
};
use hc_testkit::proxy::{Mode, Proxy};
use support::site;

const BROKER_RESTARTS: usize = 25;

// ------------------------------------------------------------ broker restarts

#[test]
fn broker_killed_and_restarted_25_times_mid_stream_every_command_applied_once_and_acked() {
    let mut site = site();
    let config = site.default_config();
    let mut cloud = RecordingCloud::connect(&site.pki, site.broker.port(), true);
    let agent = site.start_agent(&config);
    assert!(cloud.wait_status_from(0, true, WAIT), "device never online");
    let mut model = Model::default();
    cloud.stream_one(&mut model, Duration::from_millis(1500));

    let started = Instant::now();
    let outstanding = AtomicU64::new(0);
    let acked = AtomicU64::new(0);
    let published = AtomicU64::new(0);
    let restarts_done = AtomicBool::new(false);
    let broker = &mut site.broker;
    let (in_flight_at_restart, extra) = std::thread::scope(|s| {
        let restarter = s.spawn(|| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut in_flight = 0;
            let mut mark = 0;
            for restart in 0..BROKER_RESTARTS {
                // Each restart cuts a link that came back: a command
                // published after the previous restart was acknowledged,
                // so the agent got it on a new connection. Then a random
                // moment of the stream.
                let deadline = Instant::now() + WAIT;
                while acked.load(Ordering::SeqCst) <= mark {
                    assert!(
                        Instant::now() < deadline,
                        "no command acknowledged after restart {restart}"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(Duration::from_millis(rng.range(0, 150)));
                if outstanding.load(Ordering::SeqCst) != 0 {
                    in_flight += 1;
                }
                broker.restart().expect("broker restart");
                mark = published.load(Ordering::SeqCst);
            }
            restarts_done.store(true, Ordering::SeqCst);
            in_flight
        });
        // The stream: one command in flight at a time (SPEC 6.4), each
        // re-published every 1.5 s until acknowledged. It goes on for a
        // few commands after the last restart.
        let mut after_last = 0;
        while after_last < 5 {
            if restarts_done.load(Ordering::SeqCst) {
                after_last += 1;
            }
            outstanding.store(cloud.seq() + 1, Ordering::SeqCst);
            published.store(cloud.seq() + 1, Ordering::SeqCst);
            let seq = cloud.stream_one(&mut model, Duration::from_millis(1500));
            outstanding.store(0, Ordering::SeqCst);
            acked.store(seq, Ordering::SeqCst);
        }
        (restarter.join().unwrap(), after_last)
    });
    let elapsed = started.elapsed();
    let last = cloud.seq();
    // Late duplicates of acks may still arrive; record them too.
    cloud.record(Duration::from_millis(500));

    // Every command is acknowledged, every ack (duplicates and redeliveries
    // included) carries the outcome of the one application.
    let mut redelivered = 0;
    let mut only_by_redelivery = Vec::new();
    for seq in 1..=last {
        let acks: Vec<_> = cloud.acks_for(seq).collect();
        assert!(!acks.is_empty(), "seq {seq} applied but never acknowledged");
        for ack in &acks {
            assert_eq!(
                ack.outcome,
                Outcome::Accepted,
                "seq {seq}: {ack:?}: applied twice?"
            );
        }
        redelivered += acks.iter().filter(|a| a.redelivered).count();
        if acks.iter().all(|a| a.redelivered) {
            only_by_redelivery.push(seq);
        }
    }
    // The device applied each exactly once: its own log has one fresh
    // application per sequence number.
    let log = agent.log();
    let fresh = fresh_applications(&log);
    for seq in 1..=last {
        assert_eq!(
            fresh.get(&seq).copied().unwrap_or(0),
            1,
            "seq {seq} applied fresh {} times",
            fresh.get(&seq).copied().unwrap_or(0)
        );
    }
    assert_eq!(fresh.len() as u64, last, "applications of unknown commands");
    // And the state is exactly the state after each command once.
    let report = state_of(&site.socket());
    assert_eq!(report.last_seq, last);
    assert_eq!(&access_of(&report), model.access());
    let lost = log.matches("cloud link lost").count();
    let reconnects = log.matches("connected to the cloud").count();
    assert!(
        lost >= BROKER_RESTARTS && reconnects > BROKER_RESTARTS,
        "{BROKER_RESTARTS} restarts, but the agent lost its link {lost} times and connected {reconnects} times"
    );
    assert!(
        in_flight_at_restart >= BROKER_RESTARTS / 2,
        "only {in_flight_at_restart} of {BROKER_RESTARTS} restarts hit a command in flight"
    );
    println!(
        "broker restarts: {BROKER_RESTARTS} ({in_flight_at_restart} with a command in flight), \
         {last} commands in {elapsed:.1?} ({extra} after the last restart), links lost {lost}, agent connections \
         {reconnects}, cloud re-publications {}, acks {} of which redelivered {redelivered}, \
         commands acknowledged only by a redelivery {:?}; each applied once (log), final state = \
         model after {last} commands",
        cloud.resends,
        cloud.acks.len(),
        only_by_redelivery,
    );
}

// ------------------------------------------------------------- agent kills

const AGENT_KILLS: usize = 120;

#[test]
fn agent_sigkilled_120_times_during_command_handling_never_half_applies_nor_loses_an_acked_change()
{
    let site = site();
    let config = site.default_config();
    let mut cloud = RecordingCloud::connect(&site.pki, site.broker.port(), false);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut model = Model::default();
    // history[n]: the access state after command n; envelopes[n]: command n.
    let mut history = vec![model.access().clone()];
    let mut envelopes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut in_flight: Option<u64> = None;
    // How long a command takes from its publication to the agent's log
    // line that it accepted it (measured as the test goes).
    let mut arrival = Duration::from_millis(20);
    let started = Instant::now();
    let (mut not_applied, mut applied_unacked, mut applied_acked, mut at_startup) = (0, 0, 0, 0);

    let new_command = |cloud: &mut RecordingCloud,
                       model: &mut Model,
                       history: &mut Vec<_>,
                       envelopes: &mut Vec<Vec<u8>>| {
        let (command, envelope) = cloud.next("alice", stream_command(cloud.seq() + 1));
        assert_eq!(model.apply(&command), Outcome::Accepted);
        history.push(model.access().clone());
        envelopes.push(envelope);
        command.seq
    };

    // The state on flash after a kill: what the next start loads. It must
    // be exactly the state after some command (never a half state), hold
    // every acknowledged command, and be no newer than the newest sent.
    let mut recovered = 0;
    let mut check_flash = |kill: usize, cloud: &mut RecordingCloud, history: &[_]| -> u64 {
        cloud.drain();
        let mut store = StateStore::new(RealFlash, site.state_dir(), "state");
        let state = match store.load::<DeviceState>() {
            Ok(Loaded::Fresh) => return 0,
            Ok(Loaded::Main(state)) => state,
            Ok(Loaded::Recovered { value, .. }) => {
                recovered += 1;
                value
            }
            Err(e) => panic!("kill {kill}: the state does not load: {e}"),
        };
        let at = state.ledger.last_seq;
        let acked = cloud
            .acks
            .iter()
            .filter_map(|r| r.ack.seq)
            .max()
            .unwrap_or(0);
        assert!(
            at >= acked,
            "kill {kill}: acknowledged command {acked} lost; the state is at {at}"
        );
        assert!(
            at <= cloud.seq(),
            "kill {kill}: state at {at}, ahead of the newest command {}",
            cloud.seq()
        );
        assert_eq!(
            &state.access, &history[at as usize],
            "kill {kill}: the state is not the state after command {at} (a half state)"
        );
        at
    };
    let mut on_flash = 0;

    for kill in 0..AGENT_KILLS {
        let mut agent = site.start_agent(&config);
        if rng.range(0, 10) == 0 {
            // A kill while starting: loading the state, connecting, or
            // handling the broker's redelivery of the command in flight.
            std::thread::sleep(Duration::from_millis(rng.range(0, 80)));
            agent.kill();
            at_startup += 1;
            on_flash = check_flash(kill, &mut cloud, &history);
            continue;
        }
        wait_status_until(&site.socket(), WAIT, |s| {
            s.link == hc_protocol::local::LinkState::Connected
        })
        .unwrap_or_else(|| panic!("kill {kill}: the agent never connected"));
        // The command in flight, published again: answered as a redelivery
        // if it reached flash before the kill, or applied now, once (the
        // broker's redelivery and this copy give one fresh application).
        if let Some(seq) = in_flight.take() {
            let was_applied = on_flash == seq;
            let acked_before = cloud.acks_for(seq).count() > 0;
            match (was_applied, acked_before) {
                (false, _) => not_applied += 1,
                (true, false) => applied_unacked += 1,
                (true, true) => applied_acked += 1,
            }
            let from = cloud.acks.len();
            cloud.publish(&envelopes[seq as usize]);
            let ack = cloud
                .wait_ack_from(from, WAIT, |a| {
                    a.seq == Some(seq) && a.redelivered == was_applied
                })
                .unwrap_or_else(|| {
                    panic!(
                        "kill {kill}: command {seq} (on flash before the kill: {was_applied}) \
                         not answered as expected: {:?}",
                        cloud.acks_for(seq).collect::<Vec<_>>()
                    )
                });
            assert_eq!(ack.outcome, Outcome::Accepted, "kill {kill}: {ack:?}");
            let report = state_of(&site.socket());
            assert_eq!(report.last_seq, seq, "kill {kill}");
            assert_eq!(&access_of(&report), &history[seq as usize], "kill {kill}");
        }
        // A few commands with their acks, timing the round trip.
        for _ in 0..rng.range(0, 3) {
            let seq = new_command(&mut cloud, &mut model, &mut history, &mut envelopes);
            let ack =
                cloud.send_until_acked(seq, &envelopes[seq as usize], Duration::from_secs(3), WAIT);
            assert_eq!(ack.outcome, Outcome::Accepted, "kill {kill}: {ack:?}");
        }
        // Then one more, and SIGKILL at a random point of its handling:
        // at a uniform random time within a round trip (before it
        // arrives, while it is verified, applied, written, acknowledged,
        // or just after), or at a random time after the agent logged that
        // it verified it, which is right before it is applied and written.
        let seq = new_command(&mut cloud, &mut model, &mut history, &mut envelopes);
        let mut log = LogTail::new(&site.agent_log_path());
        cloud.publish(&envelopes[seq as usize]);
        let published = Instant::now();
        if rng.range(0, 2) == 0 {
            let delay = rng.range(0, arrival.as_micros() as u64 * 5 / 4 + 1);
            std::thread::sleep(Duration::from_micros(delay));
        } else {
            let marker = format!("command verified seq={seq} ");
            assert!(
                log.wait_for(&marker, WAIT),
                "kill {kill}: command {seq} never handled"
            );
            arrival = published.elapsed();
            std::thread::sleep(Duration::from_micros(rng.range(0, 4_000)));
        }
        agent.kill();
        in_flight = Some(seq);
        on_flash = check_flash(kill, &mut cloud, &history);
    }

    // A last start: the final state is the model's after every command.
    let _agent = site.start_agent(&config);
    if let Some(seq) = in_flight {
        // The last kill's command, counted like the others.
        match (on_flash == seq, cloud.acks_for(seq).count() > 0) {
            (false, _) => not_applied += 1,
            (true, false) => applied_unacked += 1,
            (true, true) => applied_acked += 1,
        }
        cloud.send_until_acked(seq, &envelopes[seq as usize], Duration::from_secs(3), WAIT);
    }
    let report = state_of(&site.socket());
    assert_eq!(report.last_seq, cloud.seq());
    assert_eq!(&access_of(&report), model.access());
    for seq in 1..=cloud.seq() {
        for ack in cloud.acks_for(seq) {
            assert_eq!(
                ack.outcome,
                Outcome::Accepted,
                "seq {seq}: applied twice? {ack:?}"
            );
        }
    }
    let mid_command = not_applied + applied_unacked + applied_acked;
    assert!(
        not_applied >= 5 && applied_unacked + applied_acked >= 5,
        "kills did not spread over command handling: {not_applied} before it was applied, \
         {applied_unacked} + {applied_acked} after"
    );
    println!(
        "agent SIGKILLs: {AGENT_KILLS} in {:.1?} ({at_startup} while starting, {mid_command} with a \
         command in flight: {not_applied} before it reached flash, {applied_unacked} after flash \
         before its ack was seen, {applied_acked} after its ack); {} commands, final state = model, \
         no acknowledged change lost, no half state; {recovered} loads used the previous copy",
        started.elapsed(),
        cloud.seq()
    );
}

/// Follows the agent's log file from its current end.
struct LogTail {
    file: std::fs::File,
    text: String,
}

impl LogTail {
    fn new(path: &std::path::Path) -> LogTail {
        use std::io::Seek;
        let mut file = std::fs::File::open(path).unwrap();
        file.seek(std::io::SeekFrom::End(0)).unwrap();
        LogTail {
            file,
            text: String::new(),
        }
    }

    /// Waits until `needle` appears in what was appended since `new`.
    fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        use std::io::Read;
        let deadline = Instant::now() + within;
        loop {
            let mut chunk = String::new();
            let _ = self.file.read_to_string(&mut chunk);
            self.text.push_str(&chunk);
            if self.text.contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

// ------------------------------------------------------------- network cut

#[test]
fn network_cut_without_fin_detected_within_1_5_keepalives_then_reconnect_with_backoff() {
    const KEEP_ALIVE: Duration = Duration::from_secs(5);
    let site = site();
    let proxy = Proxy::start(site.broker.addr());
    let config = site.write_agent_config("proxied.toml", |c| {
        c.cloud.port = proxy.port();
        c.cloud.keep_alive_secs = KEEP_ALIVE.as_secs();
    });
    let (mut cloud, _agent) = site.start_owned(&config);

    // Wait for a quiet link (nothing from the broker for a second), then
    // cut right after the broker's next packet: the answer to a keep-alive
    // ping, the worst moment (the next ping is a whole interval away).
    // The open connection then gets nothing, not even a FIN; new
    // connections are refused.
    let deadline = Instant::now() + WAIT;
    while proxy
        .last_reply()
        .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
    {
        assert!(Instant::now() < deadline, "the link never went quiet");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.cut_after_next_reply(Mode::Refuse);
    let deadline = Instant::now() + KEEP_ALIVE * 2;
    while proxy.mode() == Mode::Forward {
        assert!(
            Instant::now() < deadline,
            "no keep-alive traffic to cut after"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let cut = proxy.cut_at().unwrap();
    // A command sent while the link is down waits in the broker.
    let command = cloud.command("alice", live_view_share("bob", None));
    cloud.publish_raw(cloud.seal(&command));

    // Detected: the agent's link state leaves Connected.
    wait_status_until(&site.socket(), KEEP_ALIVE * 3, |s| {
        s.link != hc_protocol::local::LinkState::Connected
    })
    .expect("the cut was never detected");
    let detected = cut.elapsed();
    let limit = KEEP_ALIVE * 3 / 2 + Duration::from_secs(1);
    assert!(
        detected <= limit,
        "cut detected after {detected:.1?}, more than 1.5 keep-alive intervals ({:.1?}) + 1 s",
        KEEP_ALIVE * 3 / 2
    );

    // While the network refuses connections the agent retries with its
    // backoff: attempts keep coming, never further apart than the cap
    // (1 s) allows, never in a tight loop.
    let deadline = Instant::now() + WAIT;
    while proxy.refused() < 4 {
        assert!(Instant::now() < deadline, "the agent stopped retrying");
        std::thread::sleep(Duration::from_millis(10));
    }
    let attempts = proxy.refused_at();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    let cap = Duration::from_millis(1000);
    for gap in &gaps {
        // The cap, plus the time a refused attempt takes to fail.
        assert!(*gap <= cap + Duration::from_millis(500), "gaps {gaps:?}");
    }
    let span = *attempts.last().unwrap() - attempts[0];
    assert!(
        span >= Duration::from_millis(50),
        "{} attempts within {span:?}: no backoff",
        attempts.len()
    );

    // The network comes back: the agent reconnects within the cap and the
    // command sent during the cut is applied and acknowledged.
    proxy.set_mode(Mode::Forward);
    let restored = Instant::now();
    wait_status_until(&site.socket(), WAIT, |s| {
        s.link == hc_protocol::local::LinkState::Connected
    })
    .expect("never reconnected");
    let reconnect = restored.elapsed();
    assert!(
        reconnect <= cap + Duration::from_secs(2),
        "reconnected {reconnect:.1?} after the network came back"
    );
    let ack = cloud.wait_ack(Some(command.seq));
    assert_eq!(ack.outcome, Outcome::Accepted);
    let state = state_of(&site.socket());
    assert_eq!(state.shares.len(), 1, "{state:?}");
    println!(
        "network cut (no FIN) right after a ping answer: detected after {detected:.2?} \
         (keep-alive {KEEP_ALIVE:?}, limit {limit:?}); {} refused attempts with gaps {gaps:.2?}; \
         reconnected {reconnect:.2?} after the network came back; the command sent during the \
         cut was applied and acknowledged",
        attempts.len()
    );
}

// ------------------------------------------------------------- clock jumps
//
// The binary reads the system clock, so jumps are driven through the core
// with explicit time, observing every reading before deciding, as the event
// loop does (agent/src/shell/device: observe_clock on every command,
// local request and timer). access_rules.rs already covers a rollback
// after expiry and a clock behind a command's issue time for shares;
// access_properties.rs covers rollbacks in random runs. Added here: forward
// jumps followed by rollbacks, installer grants, the reason in command acks,
// the floor across a restart (store round trip), and the same end to end.

use hc_testkit::fixture;

fn observe(d: &mut fixture::Device, t: u64) {
    d.now = t;
    d.state.clock.observe(t);
}

fn cloud_principal(id: &str) -> Principal {
    Principal::Cloud(AccountId::new(id).unwrap())
}

fn timed_site() -> fixture::Device {
    use fixture::{window, T0};
    let grants = hc_protocol::InstallerGrants {
        live_view: Some(hc_protocol::Grant {
            validity: window(T0, T0 + 1_000),
        }),
        site_info: Some(hc_protocol::Grant {
            validity: window(T0, T0 + 1_000),
        }),
        ..Default::default()
    };
    let mut d = fixture::Device::handed_over(grants);
    for (who, validity) in [("bob", window(T0, T0 + 1_000)), ("carol", None)] {
        d.expect_ok(
            "alice",
            fixture::share(
                fixture::account(who),
                &[Action::LiveView],
                ChannelScope::All,
                validity,
            ),
        );
    }
    d
}

#[test]
fn clock_jumps_forward_then_back_over_6_readings_never_revive_a_share_or_an_installer_grant() {
    use fixture::T0;
    use Reason::*;
    let mut d = timed_site();
    let deny = |r| Decision::Deny(r);
    // (device clock reading, bob's timed share, the installer's timed
    // grant). Real time is T0+100 .. T0+210; the clock jumps to T0+5000
    // and back.
    let steps = [
        (T0 + 100, Decision::Allow, Decision::Allow),
        (T0 + 5_000, deny(Expired), deny(Expired)),
        (T0 + 200, deny(ClockNotTrusted), deny(ClockNotTrusted)),
        (T0 + 210, deny(ClockNotTrusted), deny(ClockNotTrusted)),
        (T0 + 4_999, deny(ClockNotTrusted), deny(ClockNotTrusted)),
        (T0 + 5_000, deny(Expired), deny(Expired)),
    ];
    for (i, (t, bob, inst)) in steps.into_iter().enumerate() {
        observe(&mut d, t);
        if i == 3 {
            // A fresh command issued at the real time arrives while the
            // clock is back: its issue time does not lower the floor.
            d.expect_ok("alice", CommandBody::RequestState);
        }
        let at = t - T0;
        assert_eq!(
            d.decide(&cloud_principal("bob"), Action::LiveView, Some(1)),
            bob,
            "bob at T0+{at}"
        );
        assert_eq!(
            d.decide(&cloud_principal("inst"), Action::LiveView, Some(1)),
            inst,
            "installer at T0+{at}"
        );
        // What does not depend on time is not affected by any jump.
        for who in ["alice", "carol"] {
            assert_eq!(
                d.decide(&cloud_principal(who), Action::LiveView, Some(1)),
                Decision::Allow,
                "{who} at T0+{at}"
            );
        }
        assert_eq!(
            d.decide(
                &Principal::Local(hc_protocol::access::LocalLevel::Guest),
                Action::LiveView,
                Some(1)
            ),
            Decision::Allow
        );
    }
}

#[test]
fn a_forward_jump_into_a_future_window_then_back_is_not_trusted_until_the_clock_catches_up() {
    use fixture::{window, T0};
    use Reason::*;
    let dave = fixture::share_all("dave", &[Action::Playback], window(T0 + 2_000, T0 + 3_000));
    let mut d = fixture::Device::owned_and_shared(dave);
    let steps = [
        (T0 + 100, Decision::Deny(NotYetValid)),
        // The device cannot tell a jump from the passing of time: the
        // window opens by its clock.
        (T0 + 2_500, Decision::Allow),
        (T0 + 150, Decision::Deny(ClockNotTrusted)),
        (T0 + 2_499, Decision::Deny(ClockNotTrusted)),
        (T0 + 2_500, Decision::Allow),
        (T0 + 3_000, Decision::Deny(Expired)),
        (T0 + 2_600, Decision::Deny(ClockNotTrusted)),
    ];
    for (t, expected) in steps {
        observe(&mut d, t);
        assert_eq!(
            d.decide(&cloud_principal("dave"), Action::Playback, Some(2)),
            expected,
            "dave at T0+{}",
            t - T0
        );
    }
}

#[test]
fn a_clock_behind_the_floor_refuses_timed_operations_and_audit_requests_with_clock_not_trusted() {
    use fixture::T0;
    let mut d = timed_site();
    // A command issued at T0+500 by the cloud's clock; the device clock
    // then reads T0+300 (behind the floor).
    d.now = T0 + 500;
    d.expect_ok("alice", CommandBody::RequestState);
    observe(&mut d, T0 + 300);
    assert!(!d.state.clock.is_trusted(d.now));
    let operation = CommandBody::Operation {
        action: Action::LiveView,
        channel: Some(1),
    };
    for (who, body, expected) in [
        (
            "bob",
            operation.clone(),
            Outcome::Refused(Reason::ClockNotTrusted),
        ),
        (
            "inst",
            operation.clone(),
            Outcome::Refused(Reason::ClockNotTrusted),
        ),
        (
            "inst",
            CommandBody::RequestAudit { max: 5 },
            Outcome::Refused(Reason::ClockNotTrusted),
        ),
        ("carol", operation.clone(), Outcome::Accepted),
        ("alice", operation.clone(), Outcome::Accepted),
        (
            "alice",
            CommandBody::RequestAudit { max: 5 },
            Outcome::Accepted,
        ),
    ] {
        let applied = d.run(who, body.clone());
        assert_eq!(applied.outcome, expected, "{who} {body:?}");
        let acked = applied.effects.iter().any(
            |e| matches!(e, hc_agent::core::Effect::Ack(a) if a.outcome == expected && !a.redelivered),
        );
        assert!(acked, "the ack carries the outcome: {:?}", applied.effects);
    }
}

#[test]
fn the_trusted_time_floor_survives_a_restart_so_a_rollback_while_off_is_still_caught() {
    use fixture::T0;
    let mut d = timed_site();
    // The device ran to T0+800 and then handled a change issued at T0+800.
    observe(&mut d, T0 + 800);
    d.now = T0 + 800;
    d.expect_ok(
        "alice",
        fixture::share_all("erin", &[Action::LiveView], None),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::new(RealFlash, dir.path().into(), "state");
    store.save(&d.state).unwrap();
    // Power off; the clock comes back at T0+400 (inside bob's window).
    let mut store = StateStore::new(RealFlash, dir.path().into(), "state");
    let Loaded::Main(state) = store.load::<hc_agent::core::DeviceState>().unwrap() else {
        panic!("state not loaded");
    };
    assert_eq!(state.clock.floor(), T0 + 800);
    d.state = state;
    observe(&mut d, T0 + 400);
    assert_eq!(
        d.decide(&cloud_principal("bob"), Action::LiveView, Some(1)),
        Decision::Deny(Reason::ClockNotTrusted)
    );
    assert_eq!(
        d.decide(&cloud_principal("erin"), Action::LiveView, Some(1)),
        Decision::Allow
    );
}

/// Without signed time (the cloud does not answer time requests, as before
/// the first answer after a boot), the floor rule of SPEC.md §8.3 alone
/// decides. With signed time the same command suspends nothing
/// (`trusted_time.rs`).
#[test]
fn end_to_end_without_signed_time_a_command_from_a_cloud_clock_ahead_suspends_timed_shares_across_a_sigkill_until_the_device_clock_catches_up(
) {
    const AHEAD: u64 = 6;
    let site = site();
    let config = site.default_config();
    let options = CloudOptions {
        answer_time: false,
        ..CloudOptions::default()
    };
    let mut cloud = TestCloud::connect_with(&site.pki, site.broker.port(), options);
    let mut agent = site.start_agent(&config);
    assert!(cloud.wait_status(true, WAIT), "device never online");
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);
    let now = hc_agent::shell::clock::now_secs();
    assert_eq!(
        cloud
            .send("alice", live_view_share_around("bob", now))
            .outcome,
        Outcome::Accepted
    );
    let bob = || cloud_principal("bob");
    let mut local = wait_local(&site.socket());
    assert_eq!(
        local.authorize(bob(), Action::LiveView, Some(1)).unwrap(),
        Decision::Allow
    );
    // A change signed by a cloud whose clock is AHEAD seconds ahead of the
    // device's: the device clock is now behind the trusted-time floor.
    let mut command = cloud.command("alice", live_view_share("carol", None));
    command.issued_at = now + AHEAD;
    cloud.publish_raw(cloud.seal(&command));
    assert_eq!(cloud.wait_ack(Some(command.seq)).outcome, Outcome::Accepted);
    let check_suspended = |local: &mut hc_agent::client::LocalClient| {
        assert_eq!(
            local.authorize(bob(), Action::LiveView, Some(1)).unwrap(),
            Decision::Deny(Reason::ClockNotTrusted)
        );
        for who in ["alice", "carol"] {
            assert_eq!(
                local
                    .authorize(cloud_principal(who), Action::LiveView, Some(1))
                    .unwrap(),
                Decision::Allow,
                "{who}"
            );
        }
        let status = local.status().unwrap();
        assert!(!status.clock_trusted);
    };
    check_suspended(&mut local);
    // The floor was stored with the change: a SIGKILL does not reset it.
    agent.kill();
    let _agent = site.start_agent(&config);
    let mut local = wait_local(&site.socket());
    check_suspended(&mut local);
    assert_eq!(local.list_access().unwrap().trusted_time_floor, now + AHEAD);
    // Once the device clock reaches the floor, bob's share works again.
    let back = wait_status_until(&site.socket(), Duration::from_secs(AHEAD + 5), |s| {
        s.clock_trusted
    })
    .expect("the clock never caught up with the floor");
    assert_eq!(
        local.authorize(bob(), Action::LiveView, Some(1)).unwrap(),
        Decision::Allow
    );
    println!("clock behind the floor by {AHEAD} s: timed share suspended (ClockNotTrusted) before and after a SIGKILL, owner and untimed share unaffected, trusted again after {back:.1?}");
}

/// A broker address that accepts TCP and then answers nothing at all (a
/// blackhole: no TLS handshake, no FIN): each connect must give up after
/// `cloud.connect_timeout_secs`, back off and try again, and connect once
/// the network answers (issue 13).
#[test]
fn a_blackholed_broker_times_out_each_connect_then_backs_off_and_connects_when_it_answers() {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    let site = site();
    let proxy = Proxy::start(site.broker.addr());
    proxy.set_mode(Mode::Blackhole);
    let config = site.write_agent_config("blackholed.toml", |c| {
        c.cloud.port = proxy.port();
        c.cloud.connect_timeout_secs = CONNECT_TIMEOUT.as_secs();
    });
    let cloud = site.cloud();
    let agent = site.start_agent(&config);
    // Record when each connection attempt reaches the proxy.
    let mut attempts: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempts.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "attempts stopped:\n{}",
            agent.log()
        );
        if proxy.accepted() > attempts.len() {
            attempts.push(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps {
        // Each attempt waits the whole connect timeout, then the backoff
        // (cap 1 s in the test configuration) before the next.
        assert!(
            *gap >= CONNECT_TIMEOUT - Duration::from_millis(100),
            "an attempt gave up before the connect timeout: {gaps:?}"
        );
        assert!(
            *gap <= CONNECT_TIMEOUT + Duration::from_millis(1_000 + 700),
            "more than timeout + backoff cap between attempts: {gaps:?}"
        );
    }
    assert!(
        !cloud.wait_status(true, Duration::from_millis(100)),
        "online through a blackhole"
    );
    let log = agent.log();
    let timeouts = log.matches("timed out").count() + log.matches("timeout").count();
    assert!(timeouts >= 3, "the log names no connect timeout:\n{log}");
    // The network answers again: the agent connects.
    proxy.set_mode(Mode::Forward);
    assert!(
        cloud.wait_status(true, WAIT),
        "never online after the blackhole:\n{}",
        agent.log()
    );
    println!(
        "blackhole: {} attempts, gaps {gaps:.2?} (connect timeout {CONNECT_TIMEOUT:?}, backoff cap 1 s), online once forwarded",
        attempts.len()
    );
}

// ------------------------------------------------------ mosquitto kill -9

const MOSQUITTO_KILLS: usize = 10;

/// mosquitto, a real broker process, killed with SIGKILL right after a
/// command was published (its persistence loses what came since its last
/// save, the queued command included), then started again: the cloud
/// re-publishes every command until it is acknowledged, and every command
/// is applied exactly once (issue 13).
#[test]
fn mosquitto_killed_9_during_a_command_stream_the_cloud_resends_and_each_command_applies_once() {
    use hc_testkit::broker::BrokerConfig;
    use hc_testkit::mosquitto::{skip_without_mosquitto, Mosquitto};
    if skip_without_mosquitto("mosquitto_killed_9_during_a_command_stream") {
        return;
    }
    let site = support::site_with_broker(|_| BrokerConfig::insecure_plaintext());
    let mut mosquitto = Mosquitto::start(&site.pki).unwrap();
    let config = site.write_agent_config("mosquitto.toml", |c| c.cloud.port = mosquitto.port());
    let mut cloud = RecordingCloud::connect(&site.pki, mosquitto.port(), true);
    let agent = site.start_agent(&config);
    assert!(cloud.wait_status_from(0, true, WAIT), "device never online");
    let mut model = Model::default();
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let started = Instant::now();
    for _ in 0..MOSQUITTO_KILLS {
        cloud.stream_one(&mut model, Duration::from_millis(1500));
        // A command published, and the broker killed 0-20 ms later: mostly
        // before it reached the device, sometimes after.
        let (command, envelope) = cloud.next("alice", stream_command(cloud.seq() + 1));
        cloud.publish(&envelope);
        std::thread::sleep(Duration::from_millis(rng.range(0, 20)));
        mosquitto.kill_and_restart().expect("mosquitto restart");
        let ack = cloud.send_until_acked(
            command.seq,
            &envelope,
            Duration::from_millis(1500),
            Duration::from_secs(60),
        );
        assert_eq!(model.apply(&command), Outcome::Accepted);
        assert_eq!(
            ack.outcome,
            Outcome::Accepted,
            "seq {}: {ack:?}",
            command.seq
        );
    }
    cloud.stream_one(&mut model, Duration::from_millis(1500));
    let last = cloud.seq();
    cloud.record(Duration::from_millis(500));
    for seq in 1..=last {
        assert!(
            cloud.acks_for(seq).all(|a| a.outcome == Outcome::Accepted),
            "seq {seq}"
        );
    }
    let log = agent.log();
    let fresh = fresh_applications(&log);
    for seq in 1..=last {
        assert_eq!(
            fresh.get(&seq).copied().unwrap_or(0),
            1,
            "seq {seq} applied fresh not once"
        );
    }
    let report = state_of(&site.socket());
    assert_eq!(report.last_seq, last);
    assert_eq!(&access_of(&report), model.access());
    assert!(
        cloud.resends > 0,
        "no command was ever lost by the broker: the resend path was not exercised"
    );
    println!(
        "mosquitto kill -9: {MOSQUITTO_KILLS} kills, {last} commands in {:.1?}, cloud re-publications {}, \
         links lost {}; each command applied once (log), final state = model",
        started.elapsed(),
        cloud.resends,
        log.matches("cloud link lost").count()
    );
}

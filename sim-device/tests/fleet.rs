//! Fleet mode on a small fleet: every device connects with its own
//! certificate, applies the signed commands sent to it and acknowledges
//! each, and every device comes back after the broker restarts (on a
//! NATS cluster: every device of the node killed fails over to another). (The
//! 10,000-device figures are a measurement, in docs/SIMULATOR.md, not a
//! test.)

use std::time::Duration;

use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::fleet::{self, FleetOptions, Restartable, Target};
use sim_device::mosquitto::{skip_without_mosquitto, Mosquitto};
use sim_device::nats::{skip_without_nats, NatsCluster};
use sim_device::pki::Pki;

fn options(devices: usize) -> FleetOptions {
    FleetOptions {
        devices,
        connect_deadline: Duration::from_secs(30),
        commands: devices * 3,
        prefix: "FLT".into(),
        ..FleetOptions::default()
    }
}

fn run(
    options: &FleetOptions,
    pki: &Pki,
    target: &Target,
    broker: &mut dyn Restartable,
) -> fleet::FleetReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lines = Vec::new();
    let report = runtime
        .block_on(fleet::run(
            options,
            pki,
            target,
            [3; 32],
            Some(broker),
            &mut |line: &str| lines.push(line.to_owned()),
        ))
        .unwrap_or_else(|e| panic!("fleet failed: {e}\n{}", lines.join("\n")));
    assert!(!lines.is_empty(), "the fleet reports its progress");
    report
}

fn assert_fleet_kept_its_promises(report: &fleet::FleetReport, devices: usize) {
    assert_eq!(report.connected, devices);
    assert_eq!(report.connect.count, devices);
    assert!(report.bytes_per_device() > 0, "memory was measured");
    assert_eq!(
        report.commands.as_ref().map(|c| c.latency.count),
        Some(devices * 3),
        "{report:?}"
    );
    assert!(report.commands.as_ref().is_some_and(|c| c.all_applied()));
    if let Some(after) = &report.commands_after_restart {
        assert!(after.all_applied(), "{report:?}");
    }
    assert_eq!(report.dropped, devices, "{report:?}");
    assert_eq!(report.reconnected, devices, "{report:?}");
    let curve = report.reconnect.as_ref().expect("a reconnect curve");
    assert_eq!(curve.counts.iter().sum::<usize>(), devices);
}

/// A PKI in `dir` with a certificate for every device of `options`.
fn fleet_pki(dir: &std::path::Path, options: &FleetOptions) -> Pki {
    let serials = fleet::serials(options);
    let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    Pki::generate(dir, &refs).unwrap()
}

#[test]
fn a_fleet_on_the_embedded_broker_connects_applies_every_command_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(12);
    let pki = fleet_pki(dir.path(), &options);
    let mut broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).unwrap();
    let target = Target::single(broker.host(), broker.port());
    let report = run(&options, &pki, &target, &mut broker);
    assert_fleet_kept_its_promises(&report, 12);
}

#[test]
fn a_fleet_on_mosquitto_with_per_device_acl_connects_applies_every_command_and_reconnects() {
    if skip_without_mosquitto("fleet on mosquitto") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = options(12);
    let pki = fleet_pki(dir.path(), &options);
    let mut broker = Mosquitto::start(&pki).unwrap();
    let target = Target::single(broker.host(), broker.port());
    let report = run(&options, &pki, &target, &mut broker);
    assert_fleet_kept_its_promises(&report, 12);
}

#[test]
fn a_fleet_on_a_nats_cluster_connects_applies_every_command_and_fails_over() {
    if skip_without_nats("fleet on a NATS cluster") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = options(12);
    let pki = fleet_pki(dir.path(), &options);
    let mut cluster = NatsCluster::start(&pki).unwrap();
    let endpoints = cluster.endpoints();
    let target = Target {
        host: endpoints[0].host().into(),
        port: endpoints[0].port(),
        more: endpoints[1..]
            .iter()
            .map(|e| (e.host().to_owned(), e.port()))
            .collect(),
    };
    let report = run(&options, &pki, &target, &mut cluster);
    assert_eq!(report.connected, 12);
    assert_eq!(
        report.commands.as_ref().map(|c| c.latency.count),
        Some(12 * 3),
        "{report:?}"
    );
    assert!(report.commands.as_ref().is_some_and(|c| c.all_applied()));
    if let Some(after) = &report.commands_after_restart {
        assert!(after.all_applied(), "{report:?}");
    }
    // The devices spread over the nodes; node 0's came back elsewhere.
    assert!(report.dropped > 0 && report.dropped < 12, "{report:?}");
    assert_eq!(report.reconnected, report.dropped, "{report:?}");
    assert_eq!(report.unexpected_losses, 0, "{report:?}");
    // Node 0 was restarted after the curve and serves again.
    assert!(cluster.is_running(0));
}

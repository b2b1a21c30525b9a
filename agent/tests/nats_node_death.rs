//! A node of a clustered broker dies under the device (issue 18): the real
//! `hc-agent` on a three-node NATS cluster (the test kit's, JetStream R3),
//! reaching each node through a proxy that stands for its network, with a
//! persistent cloud on another node streaming commands in which applying
//! one twice would show.
//!
//! 1. `kill -9` of the node serving the device mid-stream: the device must
//!    be back on another node within 15 s, and every command acknowledged
//!    and applied exactly once. (The test kit's reconnect spread of 1 s:
//!    the default 10 s, herd control for a fleet, adds up to 10 s to a
//!    lone device's return; docs/SCALING.md.)
//! 2. Its node dies again while the device cannot reach the cluster (every
//!    proxy refusing): a killed node never publishes the will, so the
//!    retained status still says online; it must read offline, by the
//!    rule the field tools use (`DeviceStatus::offline_since`, SPEC §2.4),
//!    once two refresh intervals and the margin have passed, and online
//!    again when the device is back.

mod support;

use std::time::{Duration, Instant};

use hc_protocol::messages::STATUS_MARGIN_SECS;
use hc_testkit::agent_config::{self, add_endpoints};
use hc_testkit::cloud::{unix_ms, RecordingCloud};
use hc_testkit::daemon::{device_config, AgentProcess, SERIAL, WAIT};
use hc_testkit::local::state_of;
use hc_testkit::model::{access_of, fresh_applications, Model};
use hc_testkit::nats::{skip_without_nats, NatsCluster};
use hc_testkit::pki::Pki;
use hc_testkit::ports::BrokerAddr;
use hc_testkit::proxy::{Mode, Proxy};

/// The device's status refresh: the shortest the configuration allows.
const REFRESH_SECS: u64 = 5;
/// How soon the device must be back on another node after its node died.
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);
const RESEND: Duration = Duration::from_millis(1_500);

/// The cloud's clock, Unix seconds (what a field tool compares with).
fn unix_now() -> u64 {
    unix_ms() / 1000
}

/// Waits until `cluster` reports the device connected to a node other
/// than `not`; returns that node.
fn wait_served_elsewhere(cluster: &mut NatsCluster, not: Option<usize>, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        match cluster.node_serving(SERIAL) {
            Some(node) if Some(node) != not => return node,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the device is not on another node after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_node_loses_no_command_and_a_device_gone_with_it_reads_offline() {
    if skip_without_nats("a_killed_node_loses_no_command_and_a_device_gone_with_it_reads_offline") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), &[SERIAL]).unwrap();
    let mut cluster = NatsCluster::start(&pki).expect("the NATS cluster");
    let proxies: Vec<Proxy> = cluster
        .endpoints()
        .iter()
        .map(|node| Proxy::start(node.addr()))
        .collect();
    let through = |proxy: &Proxy| BrokerAddr::new(([127, 0, 0, 1], proxy.port()).into());

    let mut config = device_config(&pki, dir.path(), proxies[0].port());
    let more: Vec<BrokerAddr> = proxies[1..].iter().map(through).collect();
    add_endpoints(&mut config, &more);
    config.cloud.status_refresh_secs = REFRESH_SECS;
    let config_path = dir.path().join("agent.toml");
    agent_config::write(&config, &config_path).unwrap();
    let socket = config.local_socket.path.clone();
    let agent = AgentProcess::start(
        &support::agent_binary(),
        &config_path,
        &dir.path().join("agent.log"),
    );

    let first = wait_served_elsewhere(&mut cluster, None, WAIT);
    // The cloud on a node that stays up, on a persistent session.
    let cloud_node = (first + 1) % 3;
    let mut cloud =
        RecordingCloud::connect(&pki, cluster.endpoint(cloud_node).unwrap().port(), true);
    let mut model = Model::default();

    // 1. The node serving the device killed mid-stream (the stream starts
    //    with alice's bind).
    for _ in 0..6 {
        cloud.stream_one(&mut model, RESEND);
    }
    let victim = cluster.node_serving(SERIAL).expect("the device's node");
    assert_ne!(victim, cloud_node);
    cluster.kill(victim).unwrap();
    let killed_at = Instant::now();
    let now_on = wait_served_elsewhere(&mut cluster, Some(victim), 2 * FAILOVER_WITHIN);
    let back_after = killed_at.elapsed();
    assert!(
        back_after <= FAILOVER_WITHIN,
        "the device was back on node {now_on} only {back_after:?} after its node died"
    );
    let first_after = cloud.stream_one(&mut model, RESEND);
    let acked_after = killed_at.elapsed();
    for _ in 0..10 {
        cloud.stream_one(&mut model, RESEND);
    }
    cloud.record(Duration::from_millis(500));
    let last = cloud.seq();
    let fresh = fresh_applications(&agent.log());
    for seq in 1..=last {
        assert!(
            cloud.acks_for(seq).next().is_some(),
            "seq {seq} never acknowledged"
        );
        assert_eq!(fresh.get(&seq).copied(), Some(1), "seq {seq} applied once");
    }
    let report = state_of(&socket);
    assert_eq!(report.last_seq, last);
    assert_eq!(&access_of(&report), model.access());
    cluster.restart(victim).expect("the killed node restarts");
    println!(
        "node {victim} killed: the device was back on node {now_on} {back_after:?} later and \
         acknowledged seq {first_after} {acked_after:?} after the kill; {last} commands, each \
         applied once, {} re-publications",
        cloud.resends
    );

    // 2. Its node dies while the device cannot reach the cluster. A reader
    //    that connects afterwards to a node that stayed up gets the
    //    retained status, as a field tool does.
    // Its node now (it may have moved since it first came back: NATS
    // closes connections it cannot serve while leaders are elected).
    let serving = wait_served_elsewhere(&mut cluster, None, WAIT);
    for proxy in &proxies {
        proxy.set_mode(Mode::Refuse);
    }
    cluster.kill(serving).unwrap();
    let gone_at = Instant::now();
    cluster.restart(serving).expect("the node restarts");
    let reader_node = (serving + 1) % 3;
    let mut reader =
        RecordingCloud::connect(&pki, cluster.endpoint(reader_node).unwrap().port(), false);
    let due = Duration::from_secs(2 * REFRESH_SECS + STATUS_MARGIN_SECS + 5);
    let offline_since = loop {
        reader.record(Duration::from_millis(500));
        if let Some(&(_, status)) = reader.statuses.last() {
            assert!(status.online, "a will was published: {status:?}");
            if let Some(since) = status.offline_since(unix_now()) {
                break since;
            }
        }
        assert!(
            gone_at.elapsed() < due,
            "the status still reads online {due:?} after the device went: {:?}",
            reader.statuses.last()
        );
    };
    let read_offline_after = gone_at.elapsed();
    assert!(
        unix_now().saturating_sub(offline_since) <= 2 * REFRESH_SECS + STATUS_MARGIN_SECS + 2,
        "offline since {offline_since}: the last refresh before the node died"
    );

    for proxy in &proxies {
        proxy.set_mode(Mode::Forward);
    }
    // Back: a status written after it reconnected (a redelivery of the old
    // retained one may come first).
    let back_by = Instant::now() + Duration::from_secs(30);
    loop {
        reader.record(Duration::from_millis(500));
        let fresh = reader
            .statuses
            .last()
            .is_some_and(|(_, s)| s.online && s.offline_since(unix_now()).is_none());
        if fresh {
            break;
        }
        assert!(
            Instant::now() < back_by,
            "the device did not come back: {:?}\n{}",
            reader.statuses.last(),
            agent.log()
        );
    }
    cloud.stream_one(&mut model, RESEND);
    println!(
        "device cut off, its node killed: the retained status (no will) read offline since \
         {offline_since} after {read_offline_after:?}; online again once the network was back"
    );
}

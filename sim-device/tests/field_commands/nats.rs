//! On a NATS cluster, a device whose node dies while the device is cut
//! off (its network to every node down): the killed node never publishes
//! its will, so the retained status keeps saying online. The field tools
//! must call the device offline once its status is overdue (two refresh
//! intervals and the margin, SPEC §2.4), and never "Network busy", and
//! online again when it is back.

use hc_testkit::proxy::{Mode, Proxy};
use sim_device::nats::skip_without_nats;
use sim_device::ports::BrokerAddr;

use super::*;

/// The recorder's status refresh: the shortest the configuration allows.
const REFRESH_SECS: u64 = 5;

/// Runs `status` until its line for `serial` contains `wanted`, at most
/// `within`; the last run.
fn status_until(bench: &Bench, serial: &str, wanted: &str, within: Duration) -> Run {
    let deadline = Instant::now() + within;
    loop {
        let run = bench.run(&["status", "--serial", serial]);
        assert!(!run.stdout.contains("Network busy"), "{run:?}");
        if line_of(&run.stdout, serial).contains(wanted) || Instant::now() >= deadline {
            return run;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn on_nats_a_device_gone_with_its_node_is_reported_offline_not_network_busy() {
    if skip_without_nats("on_nats_a_device_gone_with_its_node_is_reported_offline_not_network_busy")
    {
        return;
    }
    let mut bench = Bench::on(&["NVR-1"], |pki| {
        Broker::Nats(NatsCluster::start(pki).expect("the NATS cluster"))
    });
    let Broker::Nats(cluster) = &bench.broker else {
        unreachable!("started on NATS")
    };
    // The recorder reaches each node through a proxy: its network.
    let proxies: Vec<Proxy> = cluster
        .endpoints()
        .iter()
        .map(|node| Proxy::start(node.addr()))
        .collect();
    let through: Vec<BrokerAddr> = proxies
        .iter()
        .map(|p| BrokerAddr::new(([127, 0, 0, 1], p.port()).into()))
        .collect();
    let mut spec = RecorderSpec::new("NVR-1");
    spec.more_endpoints = through[1..].to_vec();
    spec.status_refresh_secs = REFRESH_SECS;
    let _nvr1 = Recorder::start(
        &bench.pki,
        through[0].host(),
        through[0].port(),
        bench.command_key,
        spec,
    )
    .expect("the recorder starts");
    // Online first: a command published before the device's subscription
    // exists (a JetStream consumer on NATS) waits in its session.
    let run = status_until(&bench, "NVR-1", ": online", Duration::from_secs(20));
    assert!(
        line_of(&run.stdout, "NVR-1").contains(": online"),
        "{run:?}"
    );
    bench.bind_owner("NVR-1", "alice");
    bench.accounts(&["bob"]);

    // Cut off, then its node killed (and started again, so that the
    // cluster is whole for the field tools' clean sessions).
    for proxy in &proxies {
        proxy.set_mode(Mode::Refuse);
    }
    let gone_at = Instant::now();
    let Broker::Nats(cluster) = &mut bench.broker else {
        unreachable!("started on NATS")
    };
    let node = cluster.node_serving("NVR-1").expect("the device's node");
    cluster.kill(node).expect("kill -9");
    cluster.restart(node).expect("the node starts again");

    let due = Duration::from_secs(2 * REFRESH_SECS + 30 + 10);
    let run = status_until(&bench, "NVR-1", "offline since", due);
    assert!(
        line_of(&run.stdout, "NVR-1").contains("offline since"),
        "still not offline {:?} after the device went: {run:?}",
        gone_at.elapsed()
    );
    let share = bench.run(&["share", "--serial", "NVR-1", "--to", "bob"]);
    assert!(!share.succeeded(), "{share:?}");
    assert!(share.stdout.contains("offline since"), "{share:?}");
    assert!(!share.stdout.contains("Network busy"), "{share:?}");
    println!(
        "NVR-1 cut off and its node killed: `status` said offline after {:?}",
        gone_at.elapsed()
    );

    for proxy in &proxies {
        proxy.set_mode(Mode::Forward);
    }
    let run = status_until(&bench, "NVR-1", ": online", Duration::from_secs(30));
    assert!(
        !line_of(&run.stdout, "NVR-1").contains("offline"),
        "{run:?}"
    );
    bench.ok(&["share", "--serial", "NVR-1", "--to", "bob"]);
}

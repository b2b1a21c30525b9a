//! Several broker endpoints (the nodes of a cluster), end to end with the
//! real binary: a device whose first endpoint refuses connects through the
//! next at once, and one whose node dies under it is back through another
//! node within the 15 s issue 18 asks for, with commands flowing again.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use hc_agent::shell::config::{Config, EndpointConfig};
use hc_protocol::command::bind_proof;
use hc_protocol::local::LinkState;
use hc_protocol::{AccountId, BindRole, CommandBody, Outcome, Serial};
use hc_testkit::daemon::*;
use hc_testkit::local::wait_status_until;
use hc_testkit::proxy::{Mode, Proxy};
use support::site;

/// Two endpoints on localhost, `first` at the place this device starts
/// from (its serial picks the place).
fn two_endpoints(config: &mut Config, first: u16, second: u16) {
    let set = |c: &mut Config, a: u16, b: u16| {
        c.cloud.port = a;
        c.cloud.endpoints = vec![EndpointConfig {
            host: "localhost".into(),
            port: b,
        }];
    };
    set(config, first, second);
    if config.first_endpoint() != 0 {
        set(config, second, first);
    }
}

fn attempts_in(log: &str) -> usize {
    log.matches("connecting to the cloud").count()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_refused_first_endpoint_fails_over_to_the_next_at_once() {
    let site = site();
    let config = site.write_agent_config("two.toml", |c| {
        two_endpoints(c, closed_port(), site.broker.port())
    });
    let started = Instant::now();
    let agent = site.start_agent(&config);
    let connected = wait_status_until(&site.socket(), Duration::from_secs(5), |s| {
        s.link == LinkState::Connected
    });
    assert!(connected.is_some(), "never connected: {}", agent.log());
    // The backoff's first delay would be up to backoff_base_ms; the
    // failover spread is at most 250 ms.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(attempts_in(&agent.log()), 2, "{}", agent.log());
}

#[test]
fn a_node_that_dies_under_the_device_is_left_for_another_within_15_s() {
    let site = site();
    let node_a = Proxy::start(site.broker.addr());
    let node_b = Proxy::start(site.broker.addr());
    let config = site.write_agent_config("cluster.toml", |c| {
        two_endpoints(c, node_a.port(), node_b.port())
    });
    let agent = site.start_agent(&config);
    let socket = site.socket();
    let connected = |within| wait_status_until(&socket, within, |s| s.link == LinkState::Connected);
    assert!(connected(WAIT).is_some(), "{}", agent.log());
    assert_eq!(
        (node_a.accepted(), node_b.accepted()),
        (1, 0),
        "it starts at node A"
    );
    let mut cloud = site.cloud();
    let bind = |cloud: &mut hc_testkit::cloud::TestCloud, actor: &str| {
        let proof = bind_proof(
            CODE.as_bytes(),
            &Serial::new(SERIAL).unwrap(),
            &AccountId::new(actor).unwrap(),
        );
        cloud.send(
            actor,
            CommandBody::Bind {
                role: BindRole::Installer,
                proof,
            },
        )
    };
    assert_eq!(bind(&mut cloud, "inst").outcome, Outcome::Accepted);

    // Node A dies: its connections go silent, new ones are closed.
    node_a.set_mode(Mode::Refuse);
    let died = Instant::now();
    assert!(
        wait_status_until(&socket, WAIT, |s| s.link != LinkState::Connected).is_some(),
        "the dead node was not noticed: {}",
        agent.log()
    );
    assert!(
        connected(Duration::from_secs(15)).is_some(),
        "{}",
        agent.log()
    );
    let back_in = died.elapsed();
    assert!(back_in < Duration::from_secs(15), "{back_in:?}");
    assert!(node_b.accepted() >= 1, "back through node B");
    eprintln!("back through node B {back_in:?} after node A died");
    let ack = cloud.send("inst", CommandBody::SetCloudService { enabled: false });
    assert_eq!(ack.outcome, Outcome::Accepted, "commands flow again");
}

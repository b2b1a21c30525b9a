//! The cloud link's timing, end to end with the real binary: a broker slow
//! to answer is waited for (one TCP connection per attempt, nothing
//! cancels a connect in flight), a renamed domain is registered at once
//! rather than at the next periodic check, and a local client stalled
//! inside a frame header is closed after the stall timeout.

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use hc_protocol::ddns::DomainRegistration;
use hc_protocol::local::{LinkState, RegistrationState};
use hc_protocol::topics::Leaf;
use hc_protocol::{CommandBody, Outcome, Text};
use hc_testkit::daemon::*;
use hc_testkit::local::{status_of, wait_local, wait_status_until};
use hc_testkit::proxy::Proxy;
use support::site;

/// How long the slow broker holds its first answer on every connection.
const SLOW: Duration = Duration::from_secs(3);

fn attempts_in(log: &str) -> usize {
    log.matches("connecting to the cloud").count()
}

#[test]
fn a_broker_slow_to_answer_is_connected_on_the_first_attempt_at_start_and_after_a_restart() {
    let mut site = site();
    let proxy = Proxy::start(site.broker.addr());
    proxy.delay_replies(SLOW);
    let config = site.write_agent_config("slow.toml", |c| c.cloud.port = proxy.port());
    let started = Instant::now();
    let agent = site.start_agent(&config);
    let socket = site.socket();
    let connected = |within| wait_status_until(&socket, within, |s| s.link == LinkState::Connected);
    assert!(
        connected(SLOW * 4).is_some(),
        "never connected through a broker {SLOW:?} slow to answer"
    );
    assert!(started.elapsed() >= SLOW);
    assert_eq!(attempts_in(&agent.log()), 1, "{}", agent.log());
    assert_eq!(
        proxy.accepted(),
        1,
        "one TCP connection for the one attempt"
    );

    site.broker.restart().unwrap();
    assert!(
        wait_status_until(&socket, WAIT, |s| s.link != LinkState::Connected).is_some(),
        "the restart was not noticed"
    );
    assert!(connected(SLOW * 4).is_some(), "never reconnected");
    let attempts = attempts_in(&agent.log());
    assert!(attempts >= 2);
    assert_eq!(
        proxy.accepted(),
        attempts,
        "exactly one TCP connection per attempt: {}",
        agent.log()
    );
    assert!(
        !agent.log().contains("no answer in time"),
        "an attempt was given up: {}",
        agent.log()
    );
}

#[test]
fn a_renamed_domain_is_registered_within_100_ms_and_the_status_speaks_of_the_new_name() {
    let site = site();
    // The field defaults: a network check every 30 s, one registration of
    // a name per minute at most.
    let config = site.write_agent_config("field-defaults.toml", |c| {
        c.domain.check_interval_secs = 30;
        c.domain.min_interval_secs = 60;
    });
    let mut cloud = site.cloud();
    let _agent = site.start_agent(&config);
    cloud
        .wait_for(Leaf::DomainRegister, WAIT, |p| {
            decode::<DomainRegistration>(&p.payload)
        })
        .expect("first registration");
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);
    let mut local = wait_local(&site.socket());

    let command = cloud.command(
        "alice",
        CommandBody::SetDomain {
            name: Text::new("porch-cam").unwrap(),
        },
    );
    let sent = Instant::now();
    cloud.publish_raw(cloud.seal(&command));
    let registration = cloud
        .wait_for(Leaf::DomainRegister, WAIT, |p| {
            decode::<DomainRegistration>(&p.payload).filter(|r| r.domain.as_str() == "porch-cam")
        })
        .expect("the new name was not registered");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "registered {took:?} after the command"
    );
    let status = local.status().unwrap();
    assert_eq!(status.domain.as_str(), "porch-cam");
    assert_eq!(status.registration, RegistrationState::Pending);
    assert!(registration.attempt >= 2);
}

#[test]
fn a_local_client_stalled_inside_the_frame_header_is_closed_after_the_stall_timeout() {
    let site = site();
    let _agent = site.start_agent(&site.default_config());
    let _ready = wait_local(&site.socket());
    let mut stalled = UnixStream::connect(site.socket()).unwrap();
    stalled.write_all(&[0, 0]).unwrap();
    let started = Instant::now();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut stalled, &mut byte);
    let took = started.elapsed();
    assert!(
        matches!(read, Ok(0)),
        "expected the agent to close the connection, got {read:?}"
    );
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "closed after {took:?}, the stall timeout is 5 s"
    );
    // Others were served meanwhile.
    assert_eq!(status_of(&site.socket()).serial.as_str(), SERIAL);
}

//! One message cannot cut a device off: a QoS 1 command larger than the
//! agent's MQTT packet limit, delivered by mosquitto (which has no limit by
//! default), breaks the connection; the persistent session redelivers it
//! at every reconnect. After `POISON_STRIKES` such losses the agent starts
//! a clean session once, the broker drops the message, and the cloud's
//! later commands flow.

mod support;

use std::time::Duration;

use hc_agent::core::link::POISON_STRIKES;
use hc_protocol::limits::MAX_MQTT_PACKET_BYTES;
use hc_protocol::{CommandBody, Outcome};
use hc_testkit::broker::BrokerConfig;
use hc_testkit::cloud::TestCloud;
use hc_testkit::daemon::*;
use hc_testkit::mosquitto::{skip_without_mosquitto, Mosquitto};
use support::site_with_broker;

const DISCARDED: &str = "the broker's session was started afresh";

#[test]
fn an_oversized_command_costs_a_few_reconnects_and_later_commands_flow() {
    if skip_without_mosquitto("an_oversized_command_costs_a_few_reconnects_and_later_commands_flow")
    {
        return;
    }
    // The embedded broker is not used; mosquitto is the broker.
    let site = site_with_broker(|_| BrokerConfig::insecure_plaintext());
    let mosquitto = Mosquitto::start(&site.pki).unwrap();
    let config = site.write_agent_config("agent.toml", |c| c.cloud.port = mosquitto.port());
    let mut cloud = TestCloud::connect(&site.pki, mosquitto.port());
    let agent = site.start_agent(&config);
    assert!(cloud.wait_status(true, WAIT), "{}", agent.log());
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);

    cloud.publish_raw(vec![0u8; MAX_MQTT_PACKET_BYTES + 40 * 1024]);
    // The link gets past the message.
    agent.wait_logged(DISCARDED, 1, Duration::from_secs(60));
    let log = agent.log();
    let losses = log
        .matches("the broker sent a message the device cannot take")
        .count();
    assert_eq!(losses, usize::from(POISON_STRIKES), "{log}");

    // The cloud goes on; the message is gone for good.
    let ack = cloud.send("alice", CommandBody::RequestState);
    assert_eq!(ack.outcome, Outcome::Accepted);
    std::thread::sleep(Duration::from_secs(2));
    let later = agent.log();
    assert_eq!(
        later.matches("cloud link lost").count(),
        losses,
        "the link broke again:\n{later}"
    );
}

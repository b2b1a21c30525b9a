//! Provisioning by claim certificate (SPEC §6.7) with the real `hc-agent`
//! binary on mosquitto and its claim ACL: the device has only its batch's
//! claim certificate; the test plays the cloud's CA on the provisioning
//! topics. A refused answer leaves it asking again with the same key; the
//! issued certificate brings it online on its device topics; a SIGHUP
//! reload and a restart keep it there, without the claim. Skipped without
//! mosquitto unless `CI` is set.

mod support;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::local::LinkState;
use hc_protocol::provisioning::{self, ProvisionAnswer, ProvisionRequest};
use hc_protocol::{Reason, Serial};
use hc_testkit::cloud::{tls_client_config, unix_ms, CloudOptions, TestCloud};
use hc_testkit::daemon::*;
use hc_testkit::local::{wait_local, wait_status_until};
use hc_testkit::model::bind_owner_body;
use hc_testkit::mosquitto::{skip_without_mosquitto, Mosquitto};
use hc_testkit::pki::Pki;
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport};
use support::site;

const CLAIM: &str = "claim-B9";

/// The cloud's side of provisioning: subscribed to every request, which
/// its connection's thread hands over (topic checked) on the channel.
fn provisioning_cloud(pki: &Pki, port: u16) -> (Client, mpsc::Receiver<ProvisionRequest>) {
    let mut options = MqttOptions::new("prov-cloud", "localhost", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls_client_config(pki, &pki.cloud().cert, &pki.cloud().key)),
    )));
    let (client, mut connection) = Client::new(options, 16);
    client
        .subscribe("prov/+/+/request", QoS::AtLeastOnce)
        .unwrap();
    let (subscribed_tx, subscribed) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let (claim, serial) = provisioning::parse_request_topic(&p.topic).unwrap();
                    assert_eq!((claim, serial.as_str()), (CLAIM, SERIAL));
                    let request = hc_protocol::decode(&p.payload, MAX_MESSAGE_BYTES).unwrap();
                    if tx.send(request).is_err() {
                        return;
                    }
                }
                // Disconnected by the test: gone for good, so that the test
                // cloud after it keeps the name `cloud`.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    subscribed.recv_timeout(WAIT).expect("subscribed");
    (client, rx)
}

/// The next provisioning request.
fn next_request(requests: &mpsc::Receiver<ProvisionRequest>) -> ProvisionRequest {
    requests.recv_timeout(WAIT).expect("a provisioning request")
}

fn answer(client: &Client, answer: &ProvisionAnswer) {
    let serial = Serial::new(SERIAL).unwrap();
    client
        .publish(
            provisioning::answer_topic(CLAIM, &serial),
            QoS::AtLeastOnce,
            false,
            hc_protocol::encode(answer, MAX_MESSAGE_BYTES).unwrap(),
        )
        .unwrap();
}

#[test]
fn a_device_with_only_a_claim_certificate_provisions_itself_and_stays_provisioned() {
    if skip_without_mosquitto(
        "a_device_with_only_a_claim_certificate_provisions_itself_and_stays_provisioned",
    ) {
        return;
    }
    let site = site();
    let pki = Pki::load(site.pki.dir()).unwrap();
    let claim = pki.claim("B9").unwrap();
    let mosquitto = Mosquitto::start(&pki).unwrap();
    let config = site.write_agent_config("agent.toml", |c| {
        c.cloud.port = mosquitto.port();
        c.cloud.cert = site.dir.path().join("device.pem");
        c.cloud.key = site.dir.path().join("device.key");
        c.cloud.claim_cert = Some(claim.cert.clone());
        c.cloud.claim_key = Some(claim.key.clone());
        c.cloud.renew_retry_secs = 1;
    });
    // mosquitto names every client of the cloud certificate `cloud`
    // (use_username_as_clientid): one cloud connection at a time.
    let (client, requests) = provisioning_cloud(&pki, mosquitto.port());
    let mut agent = site.start_agent(&config);

    // Refused: it asks again, with the same key.
    let first = next_request(&requests);
    assert_eq!(first.check(CODE.as_bytes()), Ok(()));
    answer(
        &client,
        &ProvisionAnswer::Refused(Reason::BadVerificationProof),
    );
    agent.wait_logged("provisioning refused by the cloud", 1, WAIT);
    let again = next_request(&requests);
    assert_eq!(again.public_key, first.public_key);
    assert_ne!(
        wait_local(&site.socket()).status().unwrap().link,
        LinkState::Connected
    );

    // Issued: online on its own topics, with its own certificate.
    let now = unix_ms() / 1000;
    // Longer than the renewal margin (30 days): no renewal starts.
    let not_after = now + 400 * 24 * 3600;
    let certificate = pki
        .issue_for_key(SERIAL, &again.public_key, now - 60, not_after)
        .unwrap();
    answer(
        &client,
        &ProvisionAnswer::Issued {
            certificate: certificate.iter().copied().collect(),
        },
    );
    agent.wait_logged("provisioned: the device certificate is stored", 1, WAIT);
    client.disconnect().unwrap();
    drop(requests);
    let mut cloud = TestCloud::connect_with(&pki, mosquitto.port(), CloudOptions::default());
    assert!(cloud.wait_status(true, WAIT), "{}", agent.log());
    let online = |within| {
        wait_status_until(&site.socket(), within, |s| {
            s.link == LinkState::Connected && s.certificate_not_after == Some(not_after)
        })
    };
    online(WAIT).expect("online with the provisioned certificate");
    let credentials = site.state_dir().join("credentials");
    assert!(credentials.join("current.pem").is_file());
    assert!(!credentials.join("pending.key").exists());
    assert_eq!(
        cloud.send("alice", bind_owner_body("alice")).outcome,
        hc_protocol::Outcome::Accepted
    );

    // A reload keeps the provisioned pair (there is no factory one).
    agent.hangup();
    agent.wait_logged("configuration reloaded", 1, WAIT);

    // A restart connects with it at once; the claim is not used again.
    agent.kill();
    let agent = site.start_agent(&config);
    online(WAIT).expect("online again after a restart");
    // The log spans both runs: the claim was used by the first alone.
    assert_eq!(
        agent
            .log()
            .matches("provisioning with the claim certificate")
            .count(),
        1
    );
    assert_eq!(wait_local(&site.socket()).status().unwrap().last_seq, 1);
}

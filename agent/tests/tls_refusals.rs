//! The agent refuses every cloud link it must not trust, with the real
//! binary: an expired broker certificate, a certificate of the right CA
//! that is not a server certificate, a broker offering only TLS 1.2 when the 1.2
//! fallback is not configured (mosquitto), and a plaintext MQTT broker.
//! Each refusal is shown by the agent's own log (several attempts, each
//! failing with the expected TLS error, none connected) and by its link
//! state, and each test has a control: the same agent configuration,
//! changed only in the point under test, connects.
//!
//! Covered elsewhere, not repeated here: a broker certificate from another
//! CA (daemon.rs, a_broker_certificate_from_another_ca_is_refused); the
//! broker refusing clients without a certificate or with one of another CA,
//! and the per-device ACL of mosquitto, which keeps a device certificate
//! from reading or writing another device's topics
//! (sim-device/tests/broker_tls.rs: mosquitto_refuses_clients_without_a_valid_certificate,
//! mosquitto_confines_device_reads_to_its_own_subtree,
//! mosquitto_confines_device_writes_to_its_own_subtree).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hc_protocol::local::LinkState;
use hc_testkit::broker::BrokerConfig;
use hc_testkit::cloud::{tls_client_config, TestCloud};
use hc_testkit::daemon::*;
use hc_testkit::local::{wait_local, wait_status_until};
use hc_testkit::mosquitto::{skip_without_mosquitto, Mosquitto, MosquittoConfig, TlsVersions};
use support::{site, site_with_broker};

const ATTEMPTS: usize = 3;

/// Waits until the agent has failed to connect `ATTEMPTS` times, each
/// with an error containing one of `expected`, without ever connecting;
/// returns the first error line.
fn refused(agent: &AgentProcess, socket: &Path, expected: &[&str]) -> String {
    let deadline = Instant::now() + WAIT * 2;
    let mut local = wait_local(socket);
    loop {
        let log = agent.log();
        assert!(
            !log.contains("connected to the cloud"),
            "the agent connected:\n{log}"
        );
        assert_ne!(local.status().unwrap().link, LinkState::Connected);
        let failures: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("cloud connection failed"))
            .collect();
        for line in &failures {
            assert!(
                expected.iter().any(|e| line.contains(e)),
                "unexpected error (expected one of {expected:?}): {line}"
            );
        }
        if failures.len() >= ATTEMPTS {
            return failures[0].to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "only {} failed attempts:\n{log}",
            failures.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The control for a broker-side change: the same agent configuration
/// connects to a broker with the site's own certificate.
fn connects_to_a_good_broker(site: &Site) {
    let good =
        hc_testkit::broker::EmbeddedBroker::start(BrokerConfig::from_pki(&site.pki)).unwrap();
    let config = site.write_agent_config("good.toml", |c| {
        c.cloud.port = good.port();
    });
    connects(site, &config);
}

/// The control: the agent connects with `config`.
fn connects(site: &Site, config: &Path) {
    let _agent = site.start_agent(config);
    wait_status_until(&site.socket(), WAIT, |s| s.link == LinkState::Connected)
        .expect("the control configuration did not connect");
}

#[test]
fn an_expired_broker_certificate_is_refused_3_times() {
    let site = site_with_broker(|pki| {
        let expired = pki.expired_server().unwrap();
        BrokerConfig::mutual_tls(pki.ca_cert().to_owned(), expired.cert, expired.key)
    });
    let agent = site.start_agent(&site.default_config());
    let error = refused(&agent, &site.socket(), &["Expired", "expired"]);
    drop(agent);
    // Control: the same CA and configuration, a current certificate.
    connects_to_a_good_broker(&site);
    println!(
        "expired broker certificate: refused {ATTEMPTS} times ({error}); a current one connects"
    );
}

#[test]
fn a_client_certificate_of_the_right_ca_presented_by_the_broker_is_refused_3_times() {
    // The cloud's client certificate: signed by the pinned CA, but issued
    // to "cloud" for client authentication only. (A stolen client
    // certificate and key cannot impersonate the broker.)
    let site = site_with_broker(|pki| {
        BrokerConfig::mutual_tls(
            pki.ca_cert().to_owned(),
            pki.cloud().cert.clone(),
            pki.cloud().key.clone(),
        )
    });
    let agent = site.start_agent(&site.default_config());
    let error = refused(
        &agent,
        &site.socket(),
        &["does not allow extended key usage for server authentication"],
    );
    drop(agent);
    connects_to_a_good_broker(&site);
    println!("a client certificate of the right CA as the broker's: refused {ATTEMPTS} times ({error}); the broker's own connects");
}

#[test]
fn a_plaintext_mqtt_broker_is_refused_3_times() {
    let site = site_with_broker(|_| BrokerConfig::insecure_plaintext());
    let agent = site.start_agent(&site.default_config());
    // The broker reads the ClientHello as MQTT, fails and closes.
    let error = refused(
        &agent,
        &site.socket(),
        &["tls handshake eof", "InvalidContentType", "corrupt message"],
    );
    drop(agent);
    // Control: the test-only plaintext switch, against the same broker.
    let config = site.write_agent_config("plain.toml", |c| {
        c.cloud.insecure_plaintext = true;
    });
    connects(&site, &config);
    println!("plaintext MQTT broker: refused {ATTEMPTS} times ({error}); connects only with insecure_plaintext");
}

#[test]
fn a_broker_offering_only_tls_1_2_is_refused_3_times_unless_the_fallback_is_configured() {
    if skip_without_mosquitto(
        "a_broker_offering_only_tls_1_2_is_refused_3_times_unless_the_fallback_is_configured",
    ) {
        return;
    }
    let site = site();
    let mosquitto = Mosquitto::start_with(
        &site.pki,
        MosquittoConfig {
            port: 0,
            tls: TlsVersions::Tls12Only,
        },
    )
    .unwrap();
    let config = site.write_agent_config("tls13.toml", |c| {
        c.cloud.port = mosquitto.port();
    });
    let agent = site.start_agent(&config);
    let error = refused(
        &agent,
        &site.socket(),
        &["ProtocolVersion", "protocol version", "incompatible"],
    );
    drop(agent);
    // Control: the configured fallback, against the same mosquitto; the
    // cloud sees the device online there.
    let cloud = TestCloud::connect(&site.pki, mosquitto.port());
    let config = site.write_agent_config("tls12.toml", |c| {
        c.cloud.port = mosquitto.port();
        c.cloud.allow_tls12 = true;
    });
    let _agent = site.start_agent(&config);
    assert!(
        cloud.wait_status(true, WAIT),
        "no online status through mosquitto:\n{}",
        mosquitto.log()
    );
    println!("TLS 1.2-only mosquitto: refused {ATTEMPTS} times without the fallback ({error}); with allow_tls12 the device is online");
}

/// mosquitto takes the client id from the certificate
/// (`use_identity_as_username` + `use_username_as_clientid`, SPEC.md 3.2):
/// a device certificate (OTHER-1) that asks for this device's client id and
/// a persistent session gets a session of its own, so it neither takes over
/// this device's session (no `session_present`), nor throws the agent off
/// the broker, nor receives the commands queued for it.
#[test]
fn another_device_certificate_cannot_take_over_this_device_session_on_mosquitto() {
    if skip_without_mosquitto(
        "another_device_certificate_cannot_take_over_this_device_session_on_mosquitto",
    ) {
        return;
    }
    const OTHER: &str = "OTHER-1";
    const TRIES: usize = 3;
    let site = site_with_broker(|_| BrokerConfig::insecure_plaintext());
    let mut pki = hc_testkit::pki::Pki::load(site.pki.dir()).unwrap();
    let other = pki.add_device(OTHER).unwrap();
    let mosquitto = Mosquitto::start(&pki).unwrap();
    let config = site.write_agent_config("agent.toml", |c| {
        c.cloud.port = mosquitto.port();
    });
    let agent = site.start_agent(&config);
    wait_status_until(&site.socket(), WAIT, |s| s.link == LinkState::Connected)
        .expect("the agent never connected to mosquitto");
    let mut cloud = TestCloud::connect(&pki, mosquitto.port());

    for attempt in 1..=TRIES {
        // OTHER-1's certificate, this device's client id, a persistent session.
        let mut options = rumqttc::MqttOptions::new(SERIAL, "localhost", mosquitto.port());
        options.set_clean_session(false);
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls_client_config(
                &pki,
                &other.cert,
                &other.key,
            ))),
        ));
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        let deadline = Instant::now() + WAIT;
        let session_present = loop {
            assert!(Instant::now() < deadline, "attempt {attempt}: no CONNACK");
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
                    break ack.session_present
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(error)) => panic!("attempt {attempt}: OTHER-1 refused: {error}"),
            }
        };
        // From the second attempt on, the session present is OTHER-1's
        // own, from the first.
        assert!(
            attempt > 1 || !session_present,
            "OTHER-1 was handed this device's session"
        );
        client
            .subscribe(
                hc_protocol::topics::topic(
                    &hc_protocol::Serial::new(SERIAL).unwrap(),
                    hc_protocol::topics::Leaf::Command,
                ),
                rumqttc::QoS::AtLeastOnce,
            )
            .unwrap();
        // A command for this device while OTHER-1 is connected: the agent
        // gets and acknowledges it; OTHER-1 gets nothing.
        // (`send` panics without the acknowledgement.)
        if attempt == 1 {
            cloud.bind_owner("owner-a");
        } else {
            cloud.send("owner-a", hc_protocol::CommandBody::RequestState);
        }
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
                connection.recv_timeout(Duration::from_millis(100))
            {
                panic!(
                    "attempt {attempt}: OTHER-1 received {} meant for {SERIAL}",
                    p.topic
                );
            }
        }
        drop(client);
    }
    let log = agent.log();
    assert_eq!(
        log.matches("cloud link lost").count(),
        0,
        "another device's certificate threw this device off mosquitto:\n{log}\n{}",
        mosquitto.log()
    );
    println!("OTHER-1's certificate with this device's client id, {TRIES} times: its own session each time, the agent stayed connected and answered");
}

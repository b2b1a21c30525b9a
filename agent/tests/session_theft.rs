//! A session taken over is noticed: on a broker that does not bind the
//! client id to the certificate (mosquitto without
//! `use_username_as_clientid`, or NATS), another device's certificate
//! connecting with this device's client id kicks it off, again and again.
//! The agent reports a contested session: an audit entry, a counter in
//! the state report, a warning in its log.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_protocol::local::LinkState;
use hc_protocol::messages::AuditEvent;
use hc_testkit::broker::BrokerConfig;
use hc_testkit::cloud::tls_client_config;
use hc_testkit::daemon::*;
use hc_testkit::local::{wait_local, wait_status_until};
use hc_testkit::mosquitto::{skip_without_mosquitto, Mosquitto};
use hc_testkit::pki::Pki;
use support::site_with_broker;

const OTHER: &str = "OTHER-1";

/// OTHER-1's certificate with this device's client id, connecting again
/// whenever it is dropped, until `stop`.
fn thief(pki: &Pki, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let other = pki.device(OTHER).expect("OTHER-1's certificate");
    let tls = Arc::new(tls_client_config(pki, &other.cert, &other.key));
    std::thread::spawn(move || {
        let mut options = rumqttc::MqttOptions::new(SERIAL, "localhost", port);
        options.set_clean_session(false);
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
        let (_client, mut connection) = rumqttc::Client::new(options, 10);
        while !stop.load(Ordering::SeqCst) {
            if let Ok(Err(_)) = connection.recv_timeout(Duration::from_millis(200)) {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    })
}

#[test]
fn a_session_taken_over_by_another_certificate_is_detected_and_reported() {
    if skip_without_mosquitto(
        "a_session_taken_over_by_another_certificate_is_detected_and_reported",
    ) {
        return;
    }
    let site = site_with_broker(|_| BrokerConfig::insecure_plaintext());
    let mut pki = Pki::load(site.pki.dir()).unwrap();
    pki.add_device(OTHER).unwrap();
    let mut mosquitto = Mosquitto::start(&pki).unwrap();
    // The broker setup SPEC §3.2 warns against: the client id is not bound
    // to the certificate.
    let conf = mosquitto.dir().join("mosquitto.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("use_username_as_clientid true\n"));
    std::fs::write(&conf, text.replace("use_username_as_clientid true\n", "")).unwrap();
    mosquitto.restart().unwrap();

    let config = site.write_agent_config("agent.toml", |c| c.cloud.port = mosquitto.port());
    let agent = site.start_agent(&config);
    wait_status_until(&site.socket(), WAIT, |s| s.link == LinkState::Connected)
        .expect("the agent never connected to mosquitto");
    let mut local = wait_local(&site.socket());
    assert_eq!(local.list_access().unwrap().sessions_contested, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let thief = thief(&pki, mosquitto.port(), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(45);
    let contested = loop {
        let report = local.list_access().unwrap();
        if report.sessions_contested > 0 {
            break report.sessions_contested;
        }
        assert!(
            Instant::now() < deadline,
            "the takeovers went unnoticed:\n{}\n{}",
            agent.log(),
            mosquitto.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, Ordering::SeqCst);
    thief.join().unwrap();

    assert!(contested >= 1);
    let audit = local.recent_audit(32).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.event == AuditEvent::SessionContested),
        "{audit:?}"
    );
    assert!(agent
        .log()
        .contains("another client may be taking its session"));
}

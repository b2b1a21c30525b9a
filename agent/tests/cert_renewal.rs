//! Certificate renewal over the link (SPEC §6.6), end to end: the real
//! `hc-agent` binary on mosquitto, whose ACL (SPEC §3.2) confines the
//! device to its topics and which checks client certificates' validity,
//! and the test cloud, which answers the device's certificate request with
//! a certificate from the PKI's CA in a signed `InstallCertificate`.
//!
//! The device starts with a certificate that ends in under a minute; it
//! renews it while commands flow, none lost or applied twice, switches to
//! the new pair, and keeps working once the old certificate has expired,
//! which mosquitto then refuses. A second test kills the agent with
//! SIGKILL at each step of a renewal: it always comes back online, with the
//! old pair or the new one.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hc_protocol::certificate::CertificateRequest;
use hc_protocol::local::{LinkState, StatusReply};
use hc_protocol::topics::Leaf;
use hc_protocol::{Ack, CommandBody, Outcome};
use hc_testkit::cloud::{unix_ms, CloudOptions, TestCloud};
use hc_testkit::daemon::*;
use hc_testkit::local::{state_of, wait_local, wait_status_until};
use hc_testkit::model::{access_of, bind_owner_body, fresh_applications, stream_body, Model};
use hc_testkit::mosquitto::{skip_without_mosquitto, Mosquitto};
use hc_testkit::pki::Pki;
use support::site;

/// How long the factory certificate lives from the start of a test.
const OLD_LIFETIME: u64 = 40;
/// Renewal is due this long before the old certificate's end: at once.
const RENEW_BEFORE_END: u64 = 38;
/// Stream commands sent in each batch.
const BATCH: u64 = 8;

fn now_s() -> u64 {
    unix_ms() / 1000
}

struct Renewing {
    site: Site,
    pki: Pki,
    mosquitto: Mosquitto,
    config: PathBuf,
    cloud: TestCloud,
    /// When the factory certificate ends.
    old_not_after: u64,
}

/// A device whose certificate ends in `OLD_LIFETIME` seconds, on mosquitto,
/// with a cloud that also reads certificate requests.
fn renewing() -> Renewing {
    let site = site();
    let mut pki = Pki::load(site.pki.dir()).unwrap();
    let start = now_s();
    let old_not_after = start + OLD_LIFETIME;
    pki.add_device_valid(SERIAL, start - 60, old_not_after)
        .unwrap();
    let mosquitto = Mosquitto::start(&pki).unwrap();
    let config = site.write_agent_config("agent.toml", |c| {
        c.cloud.port = mosquitto.port();
        c.cloud.renew_before_end_secs = RENEW_BEFORE_END;
        c.cloud.renew_retry_secs = 3;
    });
    let mut options = CloudOptions::default();
    options.leaves.push(Leaf::CertificateRequest);
    let cloud = TestCloud::connect_with(&pki, mosquitto.port(), options);
    Renewing {
        site,
        pki,
        mosquitto,
        config,
        cloud,
        old_not_after,
    }
}

impl Renewing {
    fn status(&self) -> StatusReply {
        wait_local(&self.site.socket()).status().unwrap()
    }

    fn wait_online(&self, within: Duration) -> StatusReply {
        wait_status_until(&self.site.socket(), within, |s| {
            s.link == LinkState::Connected
        })
        .expect("the agent did not come online");
        self.status()
    }

    /// The next certificate request, its proof checked as the cloud does.
    fn next_request(&self) -> CertificateRequest {
        self.cloud
            .wait_for(Leaf::CertificateRequest, Duration::from_secs(20), |p| {
                decode::<CertificateRequest>(&p.payload)
            })
            .map(|request| {
                assert!(request.proof_holds(), "{request:?}");
                assert_eq!(request.serial.as_str(), SERIAL);
                request
            })
            .expect("no certificate request")
    }

    /// What the cloud issues for `request`: valid for an hour.
    fn issue(&self, request: &CertificateRequest) -> (Vec<u8>, u64) {
        let not_after = now_s() + 3600;
        let der = self
            .pki
            .issue_for_key(SERIAL, &request.public_key, now_s() - 60, not_after)
            .unwrap();
        (der, not_after)
    }

    /// Signs and publishes `body` as alice's, applying it to the model
    /// unless it is the certificate; does not wait for its ack.
    fn publish(&mut self, model: &mut Model, body: CommandBody) -> u64 {
        let command = self.cloud.command("alice", body);
        self.cloud.publish_raw(self.cloud.seal(&command));
        if !matches!(command.body, CommandBody::InstallCertificate { .. }) {
            assert_eq!(model.apply(&command), Outcome::Accepted, "{command:?}");
        }
        command.seq
    }

    fn publish_batch(&mut self, model: &mut Model, stream: &mut u64) {
        for _ in 0..BATCH {
            *stream += 1;
            self.publish(model, stream_body(*stream));
        }
    }

    /// Waits until every command up to the last one sent is acknowledged,
    /// keeping the acks by sequence number: a reconnect (the switch to the
    /// new pair, a broker restart) may bring a command or an ack twice,
    /// the second marked as a redelivery.
    fn acks(&self, into: &mut BTreeMap<u64, Vec<Ack>>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while (2..=self.cloud.seq).any(|seq| !into.contains_key(&seq)) {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .unwrap_or_else(|| panic!("acks missing: have {:?}", into.keys()));
            for ack in self.cloud.collect_acks(1, left) {
                let seq = ack.seq.expect("every envelope verified");
                into.entry(seq).or_default().push(ack);
            }
        }
    }
}

fn install(certificate: &[u8]) -> CommandBody {
    CommandBody::InstallCertificate {
        certificate: certificate.iter().copied().collect(),
    }
}

/// Whether mosquitto accepts an MQTT connection with `cert` / `key`.
fn broker_accepts(pki: &Pki, port: u16, cert: &std::path::Path, key: &std::path::Path) -> bool {
    use rumqttc::{Client, Event, MqttOptions, Packet, TlsConfiguration, Transport};
    let mut options = MqttOptions::new(SERIAL, "localhost", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        std::sync::Arc::new(hc_testkit::cloud::tls_client_config(pki, cert, key)),
    )));
    let (_client, mut connection) = Client::new(options, 10);
    for event in connection.iter().take(5) {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return ack.code == rumqttc::ConnectReturnCode::Success
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn a_certificate_near_its_end_is_renewed_while_commands_flow_and_outlives_the_old_one() {
    if skip_without_mosquitto(
        "a_certificate_near_its_end_is_renewed_while_commands_flow_and_outlives_the_old_one",
    ) {
        return;
    }
    let mut r = renewing();
    let agent = r.site.start_agent(&r.config);
    r.wait_online(WAIT);
    assert_eq!(r.status().certificate_not_after, Some(r.old_not_after));
    assert_eq!(r.cloud.bind_owner("alice").outcome, Outcome::Accepted);
    let mut model = Model::default();
    let bind = hc_protocol::Command {
        serial: hc_protocol::Serial::new(SERIAL).unwrap(),
        actor: account("alice"),
        seq: 1,
        issued_at: now_s(),
        body: bind_owner_body("alice"),
    };
    assert_eq!(model.apply(&bind), Outcome::Accepted);
    r.cloud.drain();

    // The device asks at once (the end is nearer than the margin), with
    // the same key until it has a certificate.
    let request = r.next_request();
    assert_eq!(request.current_not_after, r.old_not_after);
    let again = r.next_request();
    assert_eq!(
        again.public_key, request.public_key,
        "a new key per request"
    );

    // Commands flow before, with and after the certificate.
    let mut acked = BTreeMap::new();
    let mut stream = 1;
    r.publish_batch(&mut model, &mut stream);
    let (certificate, new_not_after) = r.issue(&request);
    let installed = r.publish(&mut model, install(&certificate));
    r.publish_batch(&mut model, &mut stream);
    r.acks(&mut acked);
    assert_eq!(acked[&installed][0].outcome, Outcome::Accepted);

    // It reconnects with the new pair at once.
    agent.wait_logged("connected with the renewed certificate", 1, WAIT);
    let status = r.wait_online(WAIT);
    assert_eq!(status.certificate_not_after, Some(new_not_after));
    let current = r.site.state_dir().join("credentials/current.pem");
    assert!(current.is_file());
    r.publish_batch(&mut model, &mut stream);
    r.acks(&mut acked);

    // The old certificate expires; the broker restarts and takes the
    // device back with the new one, and refuses the old one.
    let old = r.pki.device(SERIAL).unwrap().clone();
    let expired_at = r.old_not_after + 2;
    while now_s() < expired_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    r.mosquitto.kill_and_restart().unwrap();
    let back = wait_status_until(&r.site.socket(), Duration::from_secs(30), |s| {
        s.link == LinkState::Connected
    })
    .expect("the device did not come back after the old certificate expired");
    assert_eq!(r.status().certificate_not_after, Some(new_not_after));
    eprintln!("back on the broker {back:?} after its restart");
    assert!(
        !broker_accepts(&r.pki, r.mosquitto.port(), &old.cert, &old.key),
        "mosquitto still takes the expired certificate"
    );
    // The broker's log since its restart, after the old certificate's
    // end: it took the device (which only the new certificate can be
    // now), and refused the old certificate's handshake.
    let log = r.mosquitto.log();
    let since_restart = log.rsplit("running").next().unwrap_or("");
    for line in since_restart.lines() {
        eprintln!("mosquitto: {line}");
    }
    assert!(
        since_restart.contains(&format!("as {SERIAL} (")),
        "{since_restart}"
    );
    assert!(
        since_restart.contains("certificate verify failed"),
        "{since_restart}"
    );
    r.publish_batch(&mut model, &mut stream);
    r.acks(&mut acked);

    // Every command acknowledged and accepted (again, unchanged, when it
    // came twice across a reconnect), and applied once.
    let last = r.cloud.seq;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (2..=last).collect::<Vec<_>>()
    );
    for (seq, acks) in &acked {
        assert!(
            acks.iter().all(|a| a.outcome == Outcome::Accepted),
            "seq {seq}: {acks:?}"
        );
    }
    let applied = fresh_applications(&agent.log());
    for seq in 1..=last {
        assert_eq!(applied.get(&seq), Some(&1), "seq {seq}");
    }
    let report = state_of(&r.site.socket());
    assert_eq!(report.last_seq, last);
    assert_eq!(report.certificate_not_after, Some(new_not_after));
    assert_eq!(access_of(&report), *model.access());
    drop(agent);
}

#[test]
fn a_certificate_that_fails_its_checks_is_refused_with_the_reason_and_the_old_pair_stays() {
    if skip_without_mosquitto(
        "a_certificate_that_fails_its_checks_is_refused_with_the_reason_and_the_old_pair_stays",
    ) {
        return;
    }
    let mut r = renewing();
    let _agent = r.site.start_agent(&r.config);
    r.wait_online(WAIT);
    assert_eq!(r.cloud.bind_owner("alice").outcome, Outcome::Accepted);
    let request = r.next_request();
    let unrelated = r.pki.generate_unrelated().unwrap();
    let now = now_s();
    let foreign = unrelated
        .issue_for_key(SERIAL, &request.public_key, now - 60, now + 3600)
        .unwrap();
    let mut model = Model::default();
    let seq = r.publish(&mut model, install(&foreign));
    assert_eq!(
        r.cloud.wait_ack(Some(seq)).outcome,
        Outcome::Refused(hc_protocol::Reason::CertificateNotTrusted)
    );
    assert!(!r.site.state_dir().join("credentials/next.pem").exists());
    assert_eq!(r.status().certificate_not_after, Some(r.old_not_after));
    // A good one is still taken afterwards.
    let (good, not_after) = r.issue(&request);
    let seq = r.publish(&mut model, install(&good));
    assert_eq!(r.cloud.wait_ack(Some(seq)).outcome, Outcome::Accepted);
    let status = wait_status_until(&r.site.socket(), WAIT, |s| {
        s.certificate_not_after == Some(not_after) && s.link == LinkState::Connected
    });
    assert!(status.is_some(), "not switched to the good certificate");
}

/// SIGKILL at each step of a renewal: after the request, with the
/// certificate command in flight, right after its acknowledgement, and
/// after the switch. Every restart comes back online, with the old pair
/// or the new one; the redelivered command is answered, never lost.
#[test]
fn a_renewal_killed_at_each_step_comes_back_with_the_old_or_the_new_pair() {
    if skip_without_mosquitto(
        "a_renewal_killed_at_each_step_comes_back_with_the_old_or_the_new_pair",
    ) {
        return;
    }
    let mut r = renewing();
    let mut agent = r.site.start_agent(&r.config);
    r.wait_online(WAIT);
    assert_eq!(r.cloud.bind_owner("alice").outcome, Outcome::Accepted);
    let mut model = Model::default();

    // 1. Killed after the request: it asks again for the same key.
    let request = r.next_request();
    agent.kill();
    r.cloud.drain();
    let mut agent = r.site.start_agent(&r.config);
    assert_eq!(
        r.wait_online(WAIT).certificate_not_after,
        Some(r.old_not_after)
    );
    let again = r.next_request();
    assert_eq!(again.public_key, request.public_key);

    // 2. Killed with the certificate command in flight: whichever side of
    // the write the kill fell on, it comes back with one pair, and the
    // command is answered (the broker redelivers it if it was not
    // acknowledged).
    let (certificate, new_not_after) = r.issue(&request);
    let seq = r.publish(&mut model, install(&certificate));
    agent.kill();
    let mut agent = r.site.start_agent(&r.config);
    let status = r.wait_online(WAIT);
    assert!(
        [Some(r.old_not_after), Some(new_not_after)].contains(&status.certificate_not_after),
        "{status:?}"
    );
    let ack = r.cloud.wait_for(Leaf::Ack, Duration::from_secs(20), |p| {
        decode::<Ack>(&p.payload).filter(|a| a.seq == Some(seq))
    });
    let ack = match ack {
        Some(ack) => ack,
        // Acknowledged before the kill and read past: the device's ledger
        // holds it.
        None => {
            assert!(state_of(&r.site.socket()).last_seq >= seq);
            Ack {
                seq: Some(seq),
                outcome: Outcome::Accepted,
                redelivered: true,
            }
        }
    };
    assert_eq!(ack.outcome, Outcome::Accepted);
    wait_status_until(&r.site.socket(), WAIT, |s| {
        s.certificate_not_after == Some(new_not_after) && s.link == LinkState::Connected
    })
    .expect("never switched to the new pair");

    // 3. Killed after the switch: the new pair is the one in use.
    agent.kill();
    let _agent = r.site.start_agent(&r.config);
    assert_eq!(
        r.wait_online(WAIT).certificate_not_after,
        Some(new_not_after)
    );
    assert!(r.site.state_dir().join("credentials/current.pem").is_file());
    assert!(!r.site.state_dir().join("credentials/next.pem").exists());
    assert!(!r.site.state_dir().join("credentials/pending.key").exists());
}

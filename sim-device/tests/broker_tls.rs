//! The embedded broker and mosquitto, exercised with a real MQTT client
//! (rumqttc over rustls with the ring provider, the PKI's CA as the only
//! trust anchor): who may connect, what reaches whom, and what survives a
//! broker restart.
//!
//! The mosquitto tests are skipped with a printed reason when mosquitto is
//! not installed, and fail instead when the environment variable `CI` is
//! set.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protocol::topics::{topic, Leaf};
use protocol::Serial;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, LastWill, MqttOptions, Packet, Publish, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::mosquitto::{skip_without_mosquitto, Mosquitto, MosquittoConfig, TlsVersions};
use sim_device::pki::{CertFiles, Pki};

/// How long to wait for something that must happen.
const WAIT: Duration = Duration::from_secs(5);
/// Large enough for the 64 KiB payload test.
const MAX_PACKET: usize = 256 * 1024;

// ---------------------------------------------------------------- helpers

/// A rustls client configuration from PEM files: `ca` as the only trust
/// anchor, `identity` as the client certificate (none: no client auth),
/// TLS 1.3 and 1.2 unless `tls13_only`.
fn client_tls(ca: &Path, identity: Option<&CertFiles>, tls13_only: bool) -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("parse the CA")).expect("add the CA");
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("protocol versions")
    .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .expect("read the certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("parse the certificate");
            let key = PrivateKeyDer::from_pem_file(&files.key).expect("read the key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
    }
}

/// How a test client connects.
struct Conn<'a> {
    port: u16,
    id: &'a str,
    /// `None`: plain TCP.
    tls: Option<rustls::ClientConfig>,
    clean: bool,
    will: Option<LastWill>,
}

impl<'a> Conn<'a> {
    fn tls(port: u16, id: &'a str, ca: &Path, identity: Option<&CertFiles>) -> Conn<'a> {
        Conn {
            port,
            id,
            tls: Some(client_tls(ca, identity, false)),
            clean: true,
            will: None,
        }
    }

    fn persistent(mut self) -> Self {
        self.clean = false;
        self
    }

    async fn connect(self) -> Result<Peer, String> {
        let mut options = MqttOptions::new(self.id, "localhost", self.port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(self.clean)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(tls) = self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        if let Some(will) = self.will {
            options.set_last_will(will);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let session_present = tokio::time::timeout(WAIT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        return if ack.code == ConnectReturnCode::Success {
                            Ok(ack.session_present)
                        } else {
                            Err(format!("CONNACK {:?}", ack.code))
                        };
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| "no CONNACK in time".to_owned())??;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Stops at the first error: no silent reconnects in tests.
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    if tx.send(packet).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Peer {
            client,
            rx,
            pending: VecDeque::new(),
            task,
            session_present,
        })
    }
}

/// A connected test client; incoming packets are queued for the test.
struct Peer {
    client: AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<Packet>,
    pending: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
    session_present: bool,
}

impl Peer {
    /// The first incoming packet `pick` accepts, leaving the others queued.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
        if let Some(i) = self.pending.iter().position(|p| pick(p).is_some()) {
            let packet = self.pending.remove(i).expect("position is valid");
            return pick(&packet).expect("picked before");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(packet)) => match pick(&packet) {
                    Some(found) => return found,
                    None => self.pending.push_back(packet),
                },
                Ok(None) => panic!("connection ended while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}; got {:?}", self.pending),
            }
        }
    }

    /// Subscribes at QoS 1 and returns the broker's answer.
    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        self.expect("SUBACK", |p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes[0]),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    async fn publish(&mut self, topic: &str, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .expect("queue PUBLISH");
        self.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
            .await;
    }

    async fn next_publish(&mut self) -> Publish {
        self.expect("PUBLISH", |p| match p {
            Packet::Publish(publish) => Some(publish.clone()),
            _ => None,
        })
        .await
    }

    /// Ends the connection without DISCONNECT, as a crash would.
    fn kill(self) {
        self.task.abort();
    }
}

fn pki(serials: &[&str]) -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), serials).unwrap();
    (dir, pki)
}

fn embedded(pki: &Pki) -> EmbeddedBroker {
    EmbeddedBroker::start(BrokerConfig::from_pki(pki)).expect("start the embedded broker")
}

fn device<'a>(port: u16, pki: &'a Pki, serial: &'a str) -> Conn<'a> {
    Conn::tls(port, serial, pki.ca_cert(), pki.device(serial))
}

fn cloud<'a>(port: u16, pki: &'a Pki) -> Conn<'a> {
    Conn::tls(port, "cloud", pki.ca_cert(), Some(pki.cloud()))
}

/// The device receives, on its own command topic, what the cloud publishes
/// there (small and 64 KiB payloads).
async fn device_receives_cloud_commands(port: u16, pki: &Pki) {
    let mut s1 = device(port, pki, "S1")
        .connect()
        .await
        .expect("S1 connects");
    assert_eq!(
        s1.subscribe("dev/S1/cmd").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let mut cloud = cloud(port, pki).connect().await.expect("cloud connects");
    cloud
        .publish("dev/S1/cmd", false, b"hello S1".to_vec())
        .await;
    let got = s1.next_publish().await;
    assert_eq!(got.topic, "dev/S1/cmd");
    assert_eq!(got.payload.as_ref(), b"hello S1");

    let big = vec![0x5a_u8; 64 * 1024];
    cloud.publish("dev/S1/cmd", false, big.clone()).await;
    assert_eq!(s1.next_publish().await.payload.as_ref(), &big[..]);
}

/// Connects, expecting a refusal whose message contains `reason`.
async fn refused(conn: Conn<'_>, reason: &str) -> String {
    match conn.connect().await {
        Ok(_) => panic!("the connection was accepted"),
        Err(e) => {
            assert!(e.contains(reason), "refused for another reason: {e}");
            e
        }
    }
}

// ---------------------------------------------------------- embedded broker

#[tokio::test]
async fn embedded_device_receives_what_the_cloud_publishes() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    device_receives_cloud_commands(broker.port(), &pki).await;
}

/// A client without a certificate is refused in the handshake.
async fn refuses_no_certificate(port: u16, pki: &Pki) -> String {
    refused(
        Conn::tls(port, "S1", pki.ca_cert(), None),
        "CertificateRequired",
    )
    .await
}

/// A client trusting the right CA but presenting a certificate from
/// `other` is refused in the handshake.
async fn refuses_another_ca(port: u16, pki: &Pki, other: &Pki) -> String {
    refused(
        Conn::tls(port, "S1", pki.ca_cert(), other.device("S1")),
        "UnknownCA",
    )
    .await
}

/// S1's persistent session.
async fn persistent_s1(port: u16, pki: &Pki) -> Peer {
    device(port, pki, "S1")
        .persistent()
        .connect()
        .await
        .unwrap()
}

/// S1 comes back to its persistent session and gets what was queued.
async fn back_on_session(port: u16, pki: &Pki, queued: &[u8]) {
    let mut s1 = persistent_s1(port, pki).await;
    assert!(s1.session_present);
    assert_eq!(s1.next_publish().await.payload.as_ref(), queued);
}

/// The cloud finds the retained `dev/S1/state` of [`cloud_retains`].
async fn assert_state_retained(cloud: &mut Peer) {
    cloud.subscribe("dev/S1/state").await;
    assert_eq!(cloud.next_publish().await.payload.as_ref(), b"retained");
}

#[tokio::test]
async fn embedded_refuses_a_client_without_a_certificate() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    let error = refuses_no_certificate(broker.port(), &pki).await;
    eprintln!("refused as expected: {error}");
    // The broker still serves good clients afterwards.
    device(broker.port(), &pki, "S1").connect().await.unwrap();
}

#[tokio::test]
async fn embedded_refuses_a_client_certificate_from_another_ca() {
    let (_dir, pki) = pki(&["S1"]);
    let other = pki.generate_unrelated().unwrap();
    let broker = embedded(&pki);
    let error = refuses_another_ca(broker.port(), &pki, &other).await;
    eprintln!("refused as expected: {error}");
}

#[tokio::test]
async fn clients_refuse_an_unrelated_or_expired_broker_certificate() {
    let (_dir, pki) = pki(&["S1"]);
    let other = pki.generate_unrelated().unwrap();
    let expired = pki.expired_server().unwrap();
    for (what, server, reason) in [
        ("unrelated", other.server(), "UnknownIssuer"),
        ("expired", &expired, "certificate expired"),
    ] {
        let broker = EmbeddedBroker::start(BrokerConfig::mutual_tls(
            pki.ca_cert().to_owned(),
            server.cert.clone(),
            server.key.clone(),
        ))
        .unwrap();
        let error = refused(device(broker.port(), &pki, "S1"), reason).await;
        eprintln!("{what} broker certificate refused as expected: {error}");
    }
}

#[tokio::test]
async fn embedded_keeps_retained_state_and_publishes_the_last_will() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    let mut conn = device(broker.port(), &pki, "S1");
    conn.will = Some(LastWill::new(
        "dev/S1/status",
        b"offline".to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    let mut s1 = conn.connect().await.unwrap();
    s1.publish("dev/S1/status", true, b"online".to_vec()).await;
    s1.publish("dev/S1/state", true, b"state-1".to_vec()).await;

    // A cloud that subscribes later gets the retained state.
    let mut cloud = cloud(broker.port(), &pki).connect().await.unwrap();
    cloud.subscribe("dev/+/state").await;
    let state = cloud.next_publish().await;
    assert_eq!(
        (state.topic.as_str(), state.payload.as_ref(), state.retain),
        ("dev/S1/state", &b"state-1"[..], true)
    );
    cloud.subscribe("dev/+/status").await;
    assert_eq!(cloud.next_publish().await.payload.as_ref(), b"online");

    // The device dies without DISCONNECT: the will goes out, and is
    // retained for whoever subscribes next.
    s1.kill();
    let will = cloud.next_publish().await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_ref()),
        ("dev/S1/status", &b"offline"[..])
    );
    let mut late = Conn::tls(broker.port(), "cloud-2", pki.ca_cert(), Some(pki.cloud()))
        .connect()
        .await
        .unwrap();
    late.subscribe("dev/S1/status").await;
    assert_eq!(late.next_publish().await.payload.as_ref(), b"offline");
}

#[tokio::test]
async fn embedded_persistent_session_survives_a_restart() {
    let (_dir, pki) = pki(&["S1"]);
    let mut broker = embedded(&pki);
    let port = broker.port();
    let mut s1 = persistent_s1(port, &pki).await;
    s1.subscribe("dev/S1/cmd").await;

    cloud_retains(port, &pki).await;

    broker.restart().unwrap();
    assert_eq!(broker.port(), port);
    // The old connection was cut.
    tokio::time::timeout(WAIT, async { while s1.rx.recv().await.is_some() {} })
        .await
        .expect("the connection ends with the restart");

    // Queued for the offline device...
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    cloud
        .publish("dev/S1/cmd", false, b"while away".to_vec())
        .await;
    // ...and delivered when it comes back to its session.
    back_on_session(port, &pki, b"while away").await;
    // Retained messages survive too.
    assert_state_retained(&mut cloud).await;
}

/// The cloud publishes a retained `dev/S1/state`.
async fn cloud_retains(port: u16, pki: &Pki) {
    let mut cloud = Conn::tls(port, "cloud-r", pki.ca_cert(), Some(pki.cloud()))
        .connect()
        .await
        .unwrap();
    cloud
        .publish("dev/S1/state", true, b"retained".to_vec())
        .await;
}

#[tokio::test]
async fn embedded_stop_frees_the_port_for_a_new_broker() {
    let (_dir, pki) = pki(&["S1"]);
    let broker = embedded(&pki);
    let port = broker.port();
    let _s1 = device(port, &pki, "S1").connect().await.unwrap();
    broker.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let again = EmbeddedBroker::start(BrokerConfig::from_pki(&pki).with_port(port)).unwrap();
    assert_eq!(again.port(), port);
    device_receives_cloud_commands(port, &pki).await;
}

#[tokio::test]
async fn embedded_insecure_plaintext_listener_works_without_tls() {
    let broker = EmbeddedBroker::start(BrokerConfig::insecure_plaintext()).unwrap();
    let plain = |id| Conn {
        port: broker.port(),
        id,
        tls: None,
        clean: true,
        will: None,
    };
    let mut s1 = plain("S1").connect().await.unwrap();
    s1.subscribe("dev/S1/cmd").await;
    let mut cloud = plain("cloud").connect().await.unwrap();
    cloud.publish("dev/S1/cmd", false, b"plain".to_vec()).await;
    assert_eq!(s1.next_publish().await.payload.as_ref(), b"plain");
}

// ---------------------------------------------------------------- mosquitto

/// A PKI for `serials` and mosquitto started with it; `None` (the test
/// skips) without mosquitto.
fn with_mosquitto(test: &str, serials: &[&str]) -> Option<(tempfile::TempDir, Pki, Mosquitto)> {
    if skip_without_mosquitto(test) {
        return None;
    }
    let (dir, pki) = pki(serials);
    let broker = Mosquitto::start(&pki).expect("start mosquitto");
    Some((dir, pki, broker))
}

#[tokio::test]
async fn mosquitto_device_receives_what_the_cloud_publishes() {
    let Some((_dir, pki, broker)) = with_mosquitto(
        "mosquitto_device_receives_what_the_cloud_publishes",
        &["S1"],
    ) else {
        return;
    };
    device_receives_cloud_commands(broker.port(), &pki).await;
}

#[tokio::test]
async fn mosquitto_refuses_clients_without_a_valid_certificate() {
    let Some((_dir, pki, broker)) = with_mosquitto(
        "mosquitto_refuses_clients_without_a_valid_certificate",
        &["S1"],
    ) else {
        return;
    };
    let other = pki.generate_unrelated().unwrap();
    let error = refuses_no_certificate(broker.port(), &pki).await;
    eprintln!("no certificate: refused as expected: {error}");
    let error = refuses_another_ca(broker.port(), &pki, &other).await;
    eprintln!("other CA: refused as expected: {error}");
}

#[tokio::test]
async fn mosquitto_confines_device_reads_to_its_own_subtree() {
    let Some((_dir, pki, broker)) = with_mosquitto(
        "mosquitto_confines_device_reads_to_its_own_subtree",
        &["S1", "S2"],
    ) else {
        return;
    };
    let port = broker.port();
    let mut s1 = device(port, &pki, "S1").connect().await.unwrap();
    let s2 = Serial::new("S2").unwrap();
    let other = s1.subscribe(&topic(&s2, Leaf::Command)).await;
    eprintln!("S1 subscribing to dev/S2/cmd: {other:?}");
    // Every one of S2's leaves, and a wildcard over every device, must not
    // leak either.
    for leaf in Leaf::ALL {
        s1.subscribe(&topic(&s2, leaf)).await;
    }
    s1.subscribe("dev/#").await;
    s1.subscribe("dev/S1/cmd").await;

    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    // The cloud writes every leaf of S2's tree (state and status retained,
    // as S2 itself would: the state report carries S2's access list).
    for leaf in Leaf::ALL {
        cloud
            .publish(&topic(&s2, leaf), leaf.is_retained(), b"for S2".to_vec())
            .await;
    }
    cloud.publish("dev/S1/cmd", false, b"for S1".to_vec()).await;
    // Messages from one publisher arrive in order: any of S2's would have
    // come first.
    let got = s1.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        ("dev/S1/cmd", &b"for S1"[..])
    );
    // Overlapping subscriptions may deliver S1's command once per filter;
    // never S2's.
    while let Ok(Some(packet)) =
        tokio::time::timeout(Duration::from_millis(300), s1.rx.recv()).await
    {
        if let Packet::Publish(p) = packet {
            assert_eq!(p.topic, "dev/S1/cmd");
        }
    }
}

#[tokio::test]
async fn mosquitto_confines_device_writes_to_its_own_subtree() {
    let Some((_dir, pki, broker)) = with_mosquitto(
        "mosquitto_confines_device_writes_to_its_own_subtree",
        &["S1", "S2"],
    ) else {
        return;
    };
    let port = broker.port();
    let s1_serial = Serial::new("S1").unwrap();
    let s2_serial = Serial::new("S2").unwrap();
    // Every leaf of S2's subtree, whichever way it normally flows, and the
    // one S1 ends with.
    let forged: Vec<String> = Leaf::ALL
        .into_iter()
        .map(|leaf| topic(&s2_serial, leaf))
        .collect();
    let own = topic(&s1_serial, Leaf::Ack);
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    for filter in forged.iter().chain([&own]) {
        assert_eq!(
            cloud.subscribe(filter).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            "the cloud subscribes to {filter}"
        );
    }

    let mut s1 = device(port, &pki, "S1").connect().await.unwrap();
    // Refused publishes are still acknowledged in MQTT 3.1.1, then dropped.
    // Retained where the real messages are, so a forgery that got through
    // would also stay for later subscribers.
    for (leaf, forged_topic) in Leaf::ALL.into_iter().zip(&forged) {
        s1.publish(forged_topic, leaf.is_retained(), b"forged".to_vec())
            .await;
    }
    s1.publish(&own, false, b"mine".to_vec()).await;
    // In order from one publisher: a forged message would have come first.
    let got = cloud.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        (own.as_str(), &b"mine"[..]),
        "the first message the cloud got"
    );
    // And nothing after it either.
    while let Ok(Some(packet)) =
        tokio::time::timeout(Duration::from_millis(300), cloud.rx.recv()).await
    {
        if let Packet::Publish(p) = packet {
            panic!("the cloud received {} ({:?})", p.topic, p.payload);
        }
    }
    eprintln!(
        "S1 forged {} publishes, one per leaf of S2's subtree ({}): none reached the cloud",
        forged.len(),
        forged.join(", ")
    );
}

#[tokio::test]
async fn mosquitto_restart_keeps_the_port_and_persistent_sessions() {
    let Some((_dir, pki, mut broker)) = with_mosquitto(
        "mosquitto_restart_keeps_the_port_and_persistent_sessions",
        &["S1"],
    ) else {
        return;
    };
    let port = broker.port();
    let mut s1 = persistent_s1(port, &pki).await;
    s1.subscribe("dev/S1/cmd").await;
    s1.client.disconnect().await.unwrap();
    s1.kill();

    // Queued for the offline device, then the broker restarts.
    let mut cloud = cloud(port, &pki).connect().await.unwrap();
    cloud.publish("dev/S1/cmd", false, b"queued".to_vec()).await;
    cloud_retains(port, &pki).await;
    broker.restart().unwrap();
    assert_eq!(broker.port(), port);

    back_on_session(port, &pki, b"queued").await;
    let mut cloud = self::cloud(port, &pki).connect().await.unwrap();
    assert_state_retained(&mut cloud).await;
}

#[tokio::test]
async fn mosquitto_tls12_only_refuses_a_tls13_only_client() {
    if skip_without_mosquitto("mosquitto_tls12_only_refuses_a_tls13_only_client") {
        return;
    }
    let (_dir, pki) = pki(&["S1"]);
    let broker = Mosquitto::start_with(
        &pki,
        MosquittoConfig {
            port: 0,
            tls: TlsVersions::Tls12Only,
        },
    )
    .unwrap();
    let mut strict = device(broker.port(), &pki, "S1");
    strict.tls = Some(client_tls(pki.ca_cert(), pki.device("S1"), true));
    let error = refused(strict, "ProtocolVersion").await;
    eprintln!("TLS 1.3-only client refused as expected: {error}");
    // A client that allows TLS 1.2 gets in.
    device(broker.port(), &pki, "S1").connect().await.unwrap();
}

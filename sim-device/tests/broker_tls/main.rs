//! The embedded broker and mosquitto, exercised with a real MQTT client
//! (rumqttc over rustls with the ring provider, the PKI's CA as the only
//! trust anchor): who may connect, what reaches whom, and what survives a
//! broker restart.
//!
//! The mosquitto tests are skipped with a printed reason when mosquitto is
//! not installed, and fail instead when the environment variable `CI` is
//! set.

mod embedded;
mod mosquitto;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hc_protocol::provisioning;
use hc_protocol::topics::{topic, Leaf};
use hc_protocol::Serial;
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

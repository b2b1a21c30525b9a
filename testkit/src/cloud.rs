//! The cloud side of the daemon tests and the measurements: MQTT clients
//! with the PKI's cloud certificate that sign commands for the site's
//! device ([`SERIAL`]) and read what it publishes. [`TestCloud`] waits for
//! what a test expects; [`RecordingCloud`] keeps a record of everything: every
//! ack (with the time it arrived) and every status, on an MQTT session that
//! can be persistent (so acks published while the cloud's own connection is
//! down, during a broker restart, are queued for it), and re-publishes a
//! command envelope until it is acknowledged, as protocol/SPEC.md section
//! 6.5 allows ("MAY re-publish the same envelope").

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hc_protocol::envelope::CommandSigner;
use hc_protocol::messages::{DeviceStatus, StateReport};
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{Ack, Command, CommandBody, Serial};
use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::daemon::{account, decode, signer, SERIAL, WAIT};
use crate::model::bind_owner_body;
use crate::pki::Pki;

/// A backend connection's MQTT client id: never a valid serial (SPEC §3.2),
/// so it can never take over a device's session, and accepted by every
/// broker the project runs on: longer than `MAX_SERIAL_LEN`, in letters,
/// digits and `-` only (NATS refuses a dot, which the SPEC once suggested).
pub fn backend_client_id(role: &str, instance: u32) -> String {
    let id = format!("{role}-backend-{:010}-{instance:010}", std::process::id());
    format!(
        "{id:-<width$}",
        width = hc_protocol::limits::MAX_SERIAL_LEN + 1
    )
}

/// A rustls client configuration that trusts `pki`'s CA and presents `cert`.
pub fn tls_client_config(pki: &Pki, cert: &Path, key: &Path) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.ca_cert()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// How a cloud client connects and what it listens to.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    /// The client id's prefix (the process id and a counter follow).
    pub name: &'static str,
    /// The device topics it subscribes to (for every device).
    pub leaves: Vec<Leaf>,
    /// Clean session off, so that the broker queues for it while it is away.
    pub persistent: bool,
    pub keep_alive: Duration,
    /// Requests the client may have outstanding.
    pub capacity: usize,
    /// TCP_NODELAY on its socket, as a cloud service would have it (so that
    /// measured figures are the agent's and the broker's, not Nagle's
    /// algorithm in the test client).
    pub nodelay: bool,
    /// Answer every time request (when `leaves` has `TimeRequest`) at
    /// once, signed, with this process's clock, as the real cloud does;
    /// off, the test sees the requests and answers as it likes.
    pub answer_time: bool,
}

impl Default for CloudOptions {
    /// Every topic the device publishes, a clean session, keep-alive 5 s,
    /// time requests answered.
    fn default() -> Self {
        CloudOptions {
            name: "cloud",
            leaves: vec![
                Leaf::Ack,
                Leaf::State,
                Leaf::Status,
                Leaf::Audit,
                Leaf::DomainRegister,
                Leaf::TimeRequest,
            ],
            persistent: false,
            keep_alive: Duration::from_secs(5),
            capacity: 256,
            nodelay: false,
            answer_time: true,
        }
    }
}

/// Answers a time request at once with this process's clock (radius 0),
/// signed with the cloud's current key.
fn answer_time(client: &Client, signer: &Mutex<CommandSigner>, publish: &Publish) {
    if let Some((serial, Leaf::TimeRequest)) = topics::parse(&publish.topic) {
        let answer = match signer.lock() {
            Ok(signer) => signer.answer_time_request(&serial, &publish.payload, unix_ms(), 0),
            Err(_) => None,
        };
        if let Some(answer) = answer {
            let topic = topics::topic(&serial, Leaf::TimeAnswer);
            let _ = client.try_publish(topic, QoS::AtMostOnce, false, answer);
        }
    }
}

/// This process's wall clock, Unix milliseconds: the cloud's time.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The cloud side of the tests: subscribes to device topics and signs
/// commands.
pub struct TestCloud {
    client: Client,
    rx: mpsc::Receiver<Publish>,
    pub seq: u64,
    signer: CommandSigner,
    /// The key time answers are signed with: the commands' one, so that a
    /// rotation (`use_signer`) moves both.
    time_signer: Arc<Mutex<CommandSigner>>,
    /// How often the cloud's own connection (re)connected.
    pub connects: Arc<AtomicU32>,
}

impl TestCloud {
    /// Connects to the broker on `port` with the PKI's cloud certificate,
    /// with the [`CloudOptions::default`].
    pub fn connect(pki: &Pki, port: u16) -> TestCloud {
        TestCloud::connect_with(pki, port, CloudOptions::default())
    }

    /// Connects and returns once every subscription is in place.
    pub fn connect_with(pki: &Pki, port: u16, options: CloudOptions) -> TestCloud {
        static CLIENTS: AtomicU32 = AtomicU32::new(0);
        let id = CLIENTS.fetch_add(1, Ordering::Relaxed);
        let cloud = pki.cloud();
        let mut mqtt = MqttOptions::new(backend_client_id(options.name, id), "localhost", port);
        mqtt.set_keep_alive(options.keep_alive);
        mqtt.set_clean_session(!options.persistent);
        mqtt.set_max_packet_size(512 * 1024, 512 * 1024);
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_client_config(pki, &cloud.cert, &cloud.key)),
        )));
        let (client, mut connection) = Client::new(mqtt, options.capacity);
        connection
            .eventloop
            .network_options
            .set_tcp_nodelay(options.nodelay);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let subscriber = client.clone();
        let connects: Arc<AtomicU32> = Arc::default();
        let counter = connects.clone();
        let leaves = options.leaves.clone();
        let time_signer = Arc::new(Mutex::new(signer()));
        let answering = options.answer_time.then(|| time_signer.clone());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    // Subscribe on every connection: a broker restart may
                    // have lost the session.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        for leaf in &leaves {
                            let _ = subscriber
                                .try_subscribe(topics::all_devices(*leaf), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(signer) = &answering {
                            answer_time(&subscriber, signer, &p);
                        }
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        for _ in &options.leaves {
            ready_rx
                .recv_timeout(WAIT)
                .expect("cloud client subscribed");
        }
        TestCloud {
            client,
            rx,
            seq: 0,
            signer: signer(),
            time_signer,
            connects,
        }
    }

    pub fn command(&mut self, actor: &str, body: CommandBody) -> Command {
        self.seq += 1;
        Command {
            serial: Serial::new(SERIAL).unwrap(),
            actor: account(actor),
            seq: self.seq,
            issued_at: hc_agent::shell::clock::now_secs(),
            body,
        }
    }

    pub fn seal(&self, command: &Command) -> Vec<u8> {
        self.signer.seal(command).unwrap()
    }

    pub fn publish_raw(&self, payload: Vec<u8>) {
        self.publish_to(Leaf::Command, payload);
    }

    pub fn publish_to(&self, leaf: Leaf, payload: Vec<u8>) {
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), leaf);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    /// The command signer (for hand-made time answers).
    pub fn signer(&self) -> &CommandSigner {
        &self.signer
    }

    /// Signs commands and time answers from now on with the key of `seed`
    /// under `key_id` (a key rotation, SPEC §6.2).
    pub fn use_signer(&mut self, key_id: u8, seed: &[u8; 32]) {
        self.signer = CommandSigner::from_seed(key_id, seed).unwrap();
        if let Ok(mut time) = self.time_signer.lock() {
            *time = CommandSigner::from_seed(key_id, seed).unwrap();
        }
    }

    /// Signs, publishes and waits for the acknowledgement of `seq`.
    pub fn send(&mut self, actor: &str, body: CommandBody) -> Ack {
        let command = self.command(actor, body);
        self.publish_raw(self.seal(&command));
        self.wait_ack(Some(command.seq))
    }

    /// `owner` binds the device as its owner (with the right proof).
    pub fn bind_owner(&mut self, owner: &str) -> Ack {
        self.send(owner, bind_owner_body(owner))
    }

    /// The next message on `leaf` that `accept` likes.
    pub fn wait_for<T>(
        &self,
        leaf: Leaf,
        within: Duration,
        mut accept: impl FnMut(&Publish) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), leaf);
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let publish = self.rx.recv_timeout(left).ok()?;
            if publish.topic == topic {
                if let Some(value) = accept(&publish) {
                    return Some(value);
                }
            }
        }
    }

    pub fn wait_ack(&self, seq: Option<u64>) -> Ack {
        self.wait_for(Leaf::Ack, WAIT, |p| {
            decode::<Ack>(&p.payload).filter(|a| a.seq == seq)
        })
        .unwrap_or_else(|| panic!("no ack for seq {seq:?}"))
    }

    /// Waits for a status saying `online` (or offline); whether one came.
    pub fn wait_status(&self, online: bool, within: Duration) -> bool {
        self.wait_status_value(online, within).is_some()
    }

    /// Waits for a status saying `online` (or offline), and returns it
    /// whole (its time and refresh interval too).
    pub fn wait_status_value(&self, online: bool, within: Duration) -> Option<DeviceStatus> {
        self.wait_for(Leaf::Status, within, |p| {
            decode::<DeviceStatus>(&p.payload).filter(|s| s.online == online)
        })
    }

    pub fn wait_state(&self, mut accept: impl FnMut(&StateReport) -> bool) -> StateReport {
        self.wait_for(Leaf::State, WAIT, |p| {
            decode::<StateReport>(&p.payload).filter(|s| accept(s))
        })
        .expect("no matching state report")
    }

    /// Collects every message on `leaf` for `during`.
    pub fn collect(&self, leaf: Leaf, during: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        let deadline = Instant::now() + during;
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), leaf);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(p) if p.topic == topic => out.push(p),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        out
    }

    pub fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// One ack as the cloud received it.
#[derive(Debug, Clone, Copy)]
pub struct AckRecord {
    pub at: Instant,
    pub ack: Ack,
}

pub struct RecordingCloud {
    pub cloud: TestCloud,
    /// Every ack received, in arrival order.
    pub acks: Vec<AckRecord>,
    /// Every status received (online or not), in arrival order.
    pub statuses: Vec<(Instant, DeviceStatus)>,
    /// How often a command was published again because no ack came.
    pub resends: u64,
}

impl RecordingCloud {
    /// Connects to the broker on `port` with the PKI's cloud certificate,
    /// for acks, status and state. `persistent`: clean session off, so the
    /// broker queues for it.
    pub fn connect(pki: &Pki, port: u16, persistent: bool) -> RecordingCloud {
        let options = CloudOptions {
            name: "rec-cloud",
            leaves: vec![Leaf::Ack, Leaf::Status, Leaf::State],
            persistent,
            capacity: 1024,
            ..CloudOptions::default()
        };
        RecordingCloud {
            cloud: TestCloud::connect_with(pki, port, options),
            acks: Vec::new(),
            statuses: Vec::new(),
            resends: 0,
        }
    }

    /// The sequence number of the last command made.
    pub fn seq(&self) -> u64 {
        self.cloud.seq
    }

    /// The next command (next seq, issued now) and its envelope.
    pub fn next(&mut self, actor: &str, body: CommandBody) -> (Command, Vec<u8>) {
        let command = self.cloud.command(actor, body);
        let envelope = self.cloud.seal(&command);
        (command, envelope)
    }

    pub fn publish(&self, envelope: &[u8]) {
        self.cloud.publish_raw(envelope.to_vec());
    }

    /// Records one incoming message, or returns false after `within`.
    fn receive(&mut self, within: Duration) -> bool {
        let Ok(p) = self.cloud.rx.recv_timeout(within) else {
            return false;
        };
        let serial = Serial::new(SERIAL).unwrap();
        let now = Instant::now();
        if p.topic == topics::topic(&serial, Leaf::Ack) {
            if let Some(ack) = decode::<Ack>(&p.payload) {
                self.acks.push(AckRecord { at: now, ack });
            }
        } else if p.topic == topics::topic(&serial, Leaf::Status) {
            if let Some(status) = decode::<DeviceStatus>(&p.payload) {
                self.statuses.push((now, status));
            }
        }
        true
    }

    /// Records what has arrived already, without waiting.
    pub fn drain(&mut self) {
        while self.receive(Duration::ZERO) {}
    }

    /// Records everything that arrives for `during`.
    pub fn record(&mut self, during: Duration) {
        let deadline = Instant::now() + during;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.receive(left);
        }
    }

    /// Records until an ack after index `from` of `self.acks` satisfies
    /// `accept`; returns it, or None after `within`.
    pub fn wait_ack_from(
        &mut self,
        from: usize,
        within: Duration,
        mut accept: impl FnMut(&Ack) -> bool,
    ) -> Option<Ack> {
        let deadline = Instant::now() + within;
        let mut checked = from;
        loop {
            while checked < self.acks.len() {
                let ack = self.acks[checked].ack;
                checked += 1;
                if accept(&ack) {
                    return Some(ack);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.receive(left);
        }
    }

    /// Publishes `envelope` and re-publishes it every `resend_after` until
    /// an ack for `seq` arrives (any ack already recorded counts too);
    /// panics after `give_up`.
    pub fn send_until_acked(
        &mut self,
        seq: u64,
        envelope: &[u8],
        resend_after: Duration,
        give_up: Duration,
    ) -> Ack {
        let start = Instant::now();
        let from = self.acks.len();
        self.publish(envelope);
        loop {
            if let Some(ack) = self.wait_ack_from(from, resend_after, |a| a.seq == Some(seq)) {
                return ack;
            }
            assert!(
                start.elapsed() < give_up,
                "no ack for seq {seq} within {give_up:?} ({} resends so far)",
                self.resends
            );
            self.resends += 1;
            self.publish(envelope);
        }
    }

    /// Publishes the next command of the stream in which applying any
    /// command twice would show ([`crate::model::stream_command`]) and waits
    /// for its ack, re-publishing every `resend` (for at most 30 s); checks
    /// the outcome against `model` and applies it there. Returns its seq.
    pub fn stream_one(&mut self, model: &mut crate::model::Model, resend: Duration) -> u64 {
        let (command, envelope) = self.next("alice", crate::model::stream_command(self.seq() + 1));
        let seq = command.seq;
        let ack = self.send_until_acked(seq, &envelope, resend, Duration::from_secs(30));
        let expected = model.apply(&command);
        assert_eq!(
            expected,
            hc_protocol::Outcome::Accepted,
            "the stream is all valid"
        );
        assert_eq!(ack.outcome, expected, "seq {seq}: {ack:?}");
        seq
    }

    /// Waits for a status `online` newer than index `from`.
    pub fn wait_status_from(&mut self, from: usize, online: bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.statuses[from.min(self.statuses.len())..]
                .iter()
                .any(|(_, s)| s.online == online)
            {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.receive(left);
        }
    }

    /// Every ack recorded for `seq`.
    pub fn acks_for(&self, seq: u64) -> impl Iterator<Item = &Ack> {
        self.acks
            .iter()
            .map(|r| &r.ack)
            .filter(move |a| a.seq == Some(seq))
    }
}

impl TestCloud {
    /// The next `n` acks in arrival order (fewer after `within`); other
    /// messages are dropped.
    pub fn collect_acks(&self, n: usize, within: Duration) -> Vec<Ack> {
        let topic = topics::topic(&Serial::new(SERIAL).unwrap(), Leaf::Ack);
        let deadline = Instant::now() + within;
        let mut acks = Vec::with_capacity(n);
        while acks.len() < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.rx.recv_timeout(left) {
                Ok(p) if p.topic == topic => {
                    if let Some(ack) = decode::<Ack>(&p.payload) {
                        acks.push(ack);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        acks
    }
}

#[cfg(test)]
mod backend_id_tests {
    use super::backend_client_id;
    use hc_protocol::Serial;

    #[test]
    fn a_backend_client_id_is_never_a_serial_and_has_no_dot() {
        for (role, n) in [("cloud", 0), ("c", 7), ("demo-cloud", u32::MAX)] {
            let id = backend_client_id(role, n);
            assert!(Serial::new(&id).is_err(), "{id} is a valid serial");
            assert!(!id.contains('.'), "{id}");
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{id}"
            );
        }
        assert_ne!(backend_client_id("cloud", 1), backend_client_id("cloud", 2));
    }
}

//! The cloud's MQTT connection: options and TLS, connecting and
//! subscribing to every device's acknowledgements, state reports, online
//! status, domain registrations and time requests (answered at once,
//! signed with the command key), the state shared with the event task
//! that receives them, and waiting for what devices report.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hc_protocol::codec;
use hc_protocol::ddns::DomainRegistration;
use hc_protocol::envelope::CommandSigner;
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::messages::{DeviceStatus, StateReport};
use hc_protocol::provisioning;
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{Ack, Serial};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::certificates::{self, Issued, Issuer, DEFAULT_CERTIFICATE_LIFETIME};
use super::restore;
use super::seed::{load_or_create_seed, signer};
use super::{now_secs, DriverError, DEFAULT_ACK_TIMEOUT, DEFAULT_CONNECT_TIMEOUT};
use crate::cloud::model::{CloudModel, Registration};
use crate::pki::Pki;

/// How to reach the broker and who to be.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    /// Broker host: must match the broker certificate (`localhost` or
    /// `127.0.0.1` for the PKI's).
    pub host: String,
    pub port: u16,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub seed: [u8; 32],
    pub ack_timeout: Duration,
    pub connect_timeout: Duration,
    /// The MQTT client id; unique per process, so that several cloud
    /// processes (demo, field engineer) do not take over each other, and
    /// the same across the reconnects of one client.
    pub client_id: String,
    /// A persistent session (clean session off): what NATS needs, where a
    /// clean session's QoS 1 subscriptions are new replicated JetStream
    /// consumers at every connect, whose creation times out while the
    /// node chosen to lead one is dead. The subscriptions are removed at
    /// [`Cloud::shutdown`], so that a finished process's session queues
    /// nothing.
    pub persistent: bool,
    /// Answer certificate requests with certificates from this CA (SPEC
    /// §6.6); `None`: requests are not answered.
    pub issuer: Option<Issuer>,
}

impl CloudOptions {
    /// The PKI's CA and `cloud` certificate, and its command key seed
    /// (created if missing).
    pub fn from_pki(pki: &Pki, host: &str, port: u16) -> Result<CloudOptions, DriverError> {
        Ok(Self::with_seed(
            pki,
            host,
            port,
            load_or_create_seed(pki.dir())?,
        ))
    }

    /// The same with a given seed.
    pub fn with_seed(pki: &Pki, host: &str, port: u16, seed: [u8; 32]) -> CloudOptions {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        CloudOptions {
            host: host.to_owned(),
            port,
            ca: pki.ca_cert().to_owned(),
            cert: pki.cloud().cert.clone(),
            key: pki.cloud().key.clone(),
            seed,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            client_id: hc_testkit::cloud::backend_client_id("cloud", n),
            persistent: false,
            issuer: Some(Issuer {
                pki: pki.clone(),
                lifetime: DEFAULT_CERTIFICATE_LIFETIME,
            }),
        }
    }
}

fn tls_config(options: &CloudOptions) -> Result<rustls::ClientConfig, DriverError> {
    let tls = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        DriverError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&options.ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls("CA", &options.ca, &e))?;
    for ca in cas {
        roots.add(ca).map_err(|e| tls("CA", &options.ca, &e))?;
    }
    let chain = CertificateDer::pem_file_iter(&options.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls("certificate", &options.cert, &e))?;
    let key =
        PrivateKeyDer::from_pem_file(&options.key).map_err(|e| tls("key", &options.key, &e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| DriverError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls("identity", &options.cert, &e))
}

/// What the driver knows about one device's link.
#[derive(Debug, Default)]
pub(super) struct DeviceLink {
    pub(super) next_seq: Option<u64>,
    /// The retained status as last decoded (`None`: none, or undecodable).
    pub(super) status: Option<DeviceStatus>,
    /// Sequence numbers sent and not yet acknowledged, oldest first.
    pub(super) pending: VecDeque<u64>,
    /// The last certificate issued to the device.
    pub(super) certificate: Option<Issued>,
    /// The provisioning answer issued to the device (by claim).
    pub(super) provisioned: Option<Issued>,
}

impl DeviceLink {
    /// Whether the device counts as online at the cloud's `now` (its
    /// status not overdue, `DeviceStatus::offline_since`); `None` without
    /// a status.
    pub(super) fn online(&self, now: u64) -> Option<bool> {
        self.status.map(|s| s.offline_since(now).is_none())
    }
}

/// The state the event task and the operations share.
pub(super) struct Shared {
    pub(super) model: CloudModel,
    pub(super) links: HashMap<Serial, DeviceLink>,
    waiters: HashMap<(Serial, u64), oneshot::Sender<Ack>>,
    subacks: usize,
    last_error: Option<String>,
    stopping: bool,
    /// The task re-sending pending handovers, while there are some.
    pub(super) resender: Option<tokio::task::JoinHandle<()>>,
}

impl Shared {
    fn subscribed(&self) -> bool {
        // Every device leaf, and the provisioning requests.
        self.subacks > INBOUND.len()
    }

    /// Takes the device's next sequence number for a command whose
    /// acknowledgement goes to `waiter`.
    pub(super) fn reserve_seq(&mut self, serial: &Serial, waiter: oneshot::Sender<Ack>) -> u64 {
        let link = self.links.entry(serial.clone()).or_default();
        let seq = link.next_seq.unwrap_or(1);
        link.next_seq = Some(seq + 1);
        link.pending.push_back(seq);
        self.waiters.insert((serial.clone(), seq), waiter);
        seq
    }

    pub(super) fn forget(&mut self, serial: &Serial, seq: u64) {
        self.waiters.remove(&(serial.clone(), seq));
        if let Some(link) = self.links.get_mut(serial) {
            link.pending.retain(|s| *s != seq);
        }
    }
}

/// What the cloud subscribes to.
const INBOUND: [Leaf; 6] = [
    Leaf::Ack,
    Leaf::State,
    Leaf::Status,
    Leaf::DomainRegister,
    Leaf::TimeRequest,
    Leaf::CertificateRequest,
];

/// Every provisioning request (SPEC §6.7).
const PROVISION_REQUESTS: &str = "prov/+/+/request";

/// The simulated cloud, connected.
pub struct Cloud {
    pub(super) client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Receiver<u64>,
    pub(super) signer: Arc<CommandSigner>,
    ack_timeout: Duration,
    task: Option<tokio::task::JoinHandle<()>>,
    /// On a persistent session: unsubscribe before disconnecting.
    persistent: bool,
}

impl Cloud {
    /// Connects and subscribes; returns once the subscriptions are
    /// acknowledged (retained states and statuses then arrive in the
    /// background). Must run inside a tokio runtime.
    pub async fn connect(options: CloudOptions, model: CloudModel) -> Result<Cloud, DriverError> {
        let tls = tls_config(&options)?;
        let mut mqtt = MqttOptions::new(
            options.client_id.clone(),
            options.host.clone(),
            options.port,
        );
        mqtt.set_keep_alive(Duration::from_secs(5));
        mqtt.set_clean_session(!options.persistent);
        mqtt.set_max_packet_size(256 * 1024, 256 * 1024);
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
        let (client, mut eventloop) = AsyncClient::new(mqtt, 256);
        eventloop
            .network_options
            .set_connection_timeout(options.connect_timeout.as_secs().max(1));
        // Small messages must not wait for Nagle (about 40 ms each).
        eventloop.network_options.set_tcp_nodelay(true);
        let shared = Arc::new(Mutex::new(Shared {
            model,
            links: HashMap::new(),
            waiters: HashMap::new(),
            subacks: 0,
            last_error: None,
            stopping: false,
            resender: None,
        }));
        let (tx, rx) = watch::channel(0u64);
        let task = tokio::spawn(event_task(
            eventloop,
            client.clone(),
            signer(&options.seed),
            shared.clone(),
            tx,
            signer(&options.seed),
            options.issuer.clone(),
        ));
        let mut cloud = Cloud {
            client,
            shared,
            changes: rx,
            signer: Arc::new(signer(&options.seed)),
            ack_timeout: options.ack_timeout,
            task: Some(task),
            persistent: options.persistent,
        };
        let deadline = Instant::now() + options.connect_timeout;
        if !cloud.wait_until(deadline, Shared::subscribed).await {
            let last_error = cloud
                .lock()
                .last_error
                .clone()
                .unwrap_or_else(|| "no answer".into());
            if let Some(task) = cloud.task.take() {
                task.abort();
            }
            return Err(DriverError::Connect {
                addr: format!("{}:{}", options.host, options.port),
                timeout: options.connect_timeout,
                last_error,
            });
        }
        Ok(cloud)
    }

    /// The same connection for a background task: it neither owns nor
    /// stops the event task.
    pub(super) fn detached(&self) -> Cloud {
        Cloud {
            client: self.client.clone(),
            shared: self.shared.clone(),
            changes: self.changes.clone(),
            signer: self.signer.clone(),
            ack_timeout: self.ack_timeout,
            task: None,
            persistent: self.persistent,
        }
    }

    /// Waits for anything to arrive (or `timeout`).
    pub(super) async fn next_change(&self, timeout: Duration) {
        let mut changes = self.changes.clone();
        changes.borrow_and_update();
        let _ = tokio::time::timeout(timeout, changes.changed()).await;
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the cloud-side model.
    pub fn with_model<R>(&self, f: impl FnOnce(&mut CloudModel) -> R) -> R {
        f(&mut self.lock().model)
    }

    /// The command key's public key (what devices pin).
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    pub fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// The cloud's clock.
    pub fn now(&self) -> u64 {
        now_secs()
    }

    /// Whether the device counts as online now by its retained status and
    /// the cloud's clock (an online status not refreshed in time does not,
    /// SPEC §2.4): `None` if no status was seen.
    pub fn online(&self, serial: &Serial) -> Option<bool> {
        let now = self.now();
        self.lock().links.get(serial).and_then(|l| l.online(now))
    }

    /// The device's retained status as last received: `None` if never seen.
    pub fn status(&self, serial: &Serial) -> Option<DeviceStatus> {
        self.lock().links.get(serial).and_then(|l| l.status)
    }

    /// The device's last state report.
    pub fn state(&self, serial: &Serial) -> Option<StateReport> {
        self.lock().model.report(serial).cloned()
    }

    /// Waits until `check` holds or `deadline` passes; true if it held.
    pub(super) async fn wait_until(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&Shared) -> bool,
    ) -> bool {
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            if check(&self.lock()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return check(&self.lock()),
            }
        }
    }

    /// Waits for the device to count as `online` (see [`Cloud::online`];
    /// it looks again whenever a message arrives, so a status that goes
    /// stale while nothing arrives is seen at the timeout).
    pub async fn wait_online(&self, serial: &Serial, online: bool, timeout: Duration) -> bool {
        self.wait_until(Instant::now() + timeout, |s| {
            s.links.get(serial).and_then(|l| l.online(now_secs())) == Some(online)
        })
        .await
    }

    /// Waits until the device's retained status (online or offline) is
    /// known; `None` if it is still unknown after `timeout`.
    pub async fn wait_status_known(&self, serial: &Serial, timeout: Duration) -> Option<bool> {
        self.wait_until(Instant::now() + timeout, |s| {
            s.links.get(serial).is_some_and(|l| l.status.is_some())
        })
        .await;
        self.online(serial)
    }

    /// Waits until no message has arrived for `quiet`, or `limit` passed:
    /// the retained states and statuses a fresh subscription brings come
    /// in one burst, so a quiet gap means they are all here.
    pub async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            let gap_end = (Instant::now() + quiet).min(deadline);
            match tokio::time::timeout_at(gap_end, changes.changed()).await {
                // Something arrived: start a new gap, unless time is up.
                Ok(Ok(())) if Instant::now() < deadline => {}
                _ => return,
            }
        }
    }

    /// Waits for a state report of the device that satisfies `check`.
    pub async fn wait_state(
        &self,
        serial: &Serial,
        mut check: impl FnMut(&StateReport) -> bool,
        timeout: Duration,
    ) -> Option<StateReport> {
        let mut found = None;
        self.wait_until(Instant::now() + timeout, |s| {
            found = s.model.report(serial).filter(|r| check(r)).cloned();
            found.is_some()
        })
        .await;
        found
    }

    /// Waits until the device registered `domain` with the cloud.
    pub async fn wait_registration(
        &self,
        serial: &Serial,
        domain: &str,
        timeout: Duration,
    ) -> Option<Registration> {
        let mut found = None;
        self.wait_until(Instant::now() + timeout, |s| {
            found = s
                .model
                .registration_of(serial)
                .filter(|r| r.domain.as_str() == domain)
                .cloned();
            found.is_some()
        })
        .await;
        found
    }

    /// Disconnects from the broker.
    pub async fn shutdown(mut self) {
        self.lock().stopping = true;
        if let Some(resender) = self.lock().resender.take() {
            resender.abort();
        }
        if self.persistent {
            // Sent before the DISCONNECT, in order: the session the
            // broker keeps holds no subscription, so nothing queues.
            for leaf in INBOUND {
                let _ = self.client.unsubscribe(topics::all_devices(leaf)).await;
            }
            let _ = self.client.unsubscribe(PROVISION_REQUESTS).await;
        }
        let _ = self.client.disconnect().await;
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if let Some(resender) = self.lock().resender.take() {
                resender.abort();
            }
        }
    }
}

async fn event_task(
    mut eventloop: EventLoop,
    client: AsyncClient,
    time_signer: CommandSigner,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Sender<u64>,
    restorer: CommandSigner,
    issuer: Option<Issuer>,
) {
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    let bump = || changes.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                lock().subacks = 0;
                for leaf in INBOUND {
                    let _ = client.try_subscribe(topics::all_devices(leaf), QoS::AtLeastOnce);
                }
                let _ = client.try_subscribe(PROVISION_REQUESTS, QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let mut s = lock();
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    s.last_error = Some("the broker refused a subscription (ACL?)".into());
                } else {
                    s.subacks += 1;
                }
                drop(s);
                bump();
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if let Some((claim, serial)) = provisioning::parse_request_topic(&publish.topic) {
                    if let Some(issuer) = &issuer {
                        certificates::provision(
                            &client,
                            issuer,
                            &mut lock(),
                            claim,
                            serial,
                            &publish.payload,
                        );
                    }
                    continue;
                }
                match topics::parse(&publish.topic) {
                    Some((serial, Leaf::TimeRequest)) => {
                        answer_time(&client, &time_signer, &serial, &publish.payload);
                        continue;
                    }
                    Some((serial, Leaf::CertificateRequest)) => {
                        if let Some(issuer) = &issuer {
                            certificates::answer(
                                &client,
                                &restorer,
                                issuer,
                                &mut lock(),
                                serial,
                                &publish.payload,
                            );
                        }
                        continue;
                    }
                    Some((serial, leaf)) => {
                        on_publish(
                            &client,
                            &restorer,
                            &mut lock(),
                            serial,
                            leaf,
                            &publish.payload,
                        );
                    }
                    None => {}
                }
                bump();
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) if lock().stopping => return,
            Ok(_) => {}
            Err(e) => {
                let stopping = {
                    let mut s = lock();
                    s.subacks = 0;
                    s.last_error = Some(e.to_string());
                    s.stopping
                };
                bump();
                if stopping {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Answers a device's time request with the cloud's clock (radius 0: the
/// simulated cloud's clock is the machine's), at QoS 0 as SPEC.md §8.4 has
/// it.
fn answer_time(client: &AsyncClient, signer: &CommandSigner, serial: &Serial, request: &[u8]) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    if let Some(answer) = signer.answer_time_request(serial, request, now_ms, 0) {
        let topic = topics::topic(serial, Leaf::TimeAnswer);
        let _ = client.try_publish(topic, QoS::AtMostOnce, false, answer);
    }
}

fn on_publish(
    client: &AsyncClient,
    restorer: &CommandSigner,
    shared: &mut Shared,
    serial: Serial,
    leaf: Leaf,
    payload: &[u8],
) {
    // A claim certificate may write under `dev/claim-...` (the device
    // patterns match its name); no device is called so (SPEC §6.7).
    if serial.as_str().starts_with(provisioning::CLAIM_PREFIX) {
        return;
    }
    match leaf {
        Leaf::Ack => {
            if let Ok(ack) = codec::decode::<Ack>(payload, MAX_MESSAGE_BYTES) {
                on_ack(shared, serial, ack);
            }
        }
        Leaf::State => {
            if let Ok(report) = codec::decode::<StateReport>(payload, MAX_MESSAGE_BYTES) {
                on_state(client, restorer, shared, serial, report);
            }
        }
        Leaf::Status => {
            let status = codec::decode::<DeviceStatus>(payload, MAX_MESSAGE_BYTES).ok();
            shared.links.entry(serial).or_default().status = status;
        }
        Leaf::DomainRegister => {
            if let Ok(registration) = codec::decode(payload, MAX_MESSAGE_BYTES) {
                on_domain_registration(client, shared, serial, registration);
            }
        }
        Leaf::Command
        | Leaf::Audit
        | Leaf::DomainResult
        | Leaf::TimeRequest
        | Leaf::TimeAnswer
        | Leaf::CertificateRequest => {}
    }
}

/// Hands the acknowledgement to the command waiting for it.
fn on_ack(shared: &mut Shared, serial: Serial, ack: Ack) {
    // An ack without a sequence number answers an envelope the device
    // could not verify: it belongs to the oldest pending.
    let seq = ack.seq.or_else(|| {
        shared
            .links
            .get(&serial)
            .and_then(|l| l.pending.front().copied())
    });
    if let Some(seq) = seq {
        if let Some(waiter) = shared.waiters.remove(&(serial.clone(), seq)) {
            let _ = waiter.send(ack);
        }
        if let Some(link) = shared.links.get_mut(&serial) {
            link.pending.retain(|s| *s != seq);
        }
    }
}

/// Learns the device's state and next sequence number; restores a device
/// that reports itself behind.
fn on_state(
    client: &AsyncClient,
    restorer: &CommandSigner,
    shared: &mut Shared,
    serial: Serial,
    report: StateReport,
) {
    if report.serial != serial {
        return;
    }
    let link = shared.links.entry(serial.clone()).or_default();
    let learned = report.last_seq + 1;
    let seq = link.next_seq.map_or(learned, |n| n.max(learned));
    link.next_seq = Some(seq);
    if report.behind {
        let record = shared.model.report(serial.as_str());
        if let Some(command) = record.and_then(|r| restore::restore_command(r, seq)) {
            link.next_seq = Some(seq + 1);
            restore::publish(client, restorer, &serial, &command);
        }
    }
    shared.model.on_state_report(report);
}

/// Answers a domain registration with the model's result.
fn on_domain_registration(
    client: &AsyncClient,
    shared: &mut Shared,
    serial: Serial,
    registration: DomainRegistration,
) {
    // The sim has no NAT: the public address the cloud "sees" is the
    // device's LAN address.
    let seen_from = registration.lan_address;
    let result = shared
        .model
        .on_domain_registration(&serial, &registration, seen_from, now_secs());
    if let Ok(bytes) = codec::encode(&result, MAX_MESSAGE_BYTES) {
        let _ = client.try_publish(
            topics::topic(&serial, Leaf::DomainResult),
            QoS::AtLeastOnce,
            false,
            bytes,
        );
    }
}

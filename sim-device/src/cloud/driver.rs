//! The simulated cloud on the wire: one MQTT connection over mutual TLS as
//! the `cloud` client certificate (rumqttc + rustls with the ring
//! provider, the PKI's CA as the only trust anchor), subscribed to every
//! device's acknowledgements, state reports, online status and domain
//! registrations.
//!
//! - **Sequence numbers.** Each device's next command sequence number is
//!   learned from its retained `StateReport.last_seq` when the device is
//!   first seen, then grows by one per command. A real cloud persists the
//!   number per device (and is the only writer); here several processes
//!   (the demo, field-engineer commands) may command the same device, and
//!   the retained report does not move on refused or read-only commands,
//!   so a learned number can be stale. The device then answers
//!   `redelivered` or `ReplayedSequence` without applying anything, and
//!   the driver jumps ahead (16, 32, 64, ... past the stale number) and
//!   sends again, within the same time budget.
//! - **Command key.** Commands are signed with a [`CommandSigner`] (key id
//!   [`COMMAND_KEY_ID`]) whose seed lives in the PKI directory as
//!   [`SEED_FILE`] (64 hex digits), so that separate processes sign with the
//!   same key; devices pin its public key in their configuration.
//! - **Network busy.** [`Cloud::send`] waits at most the acknowledgement
//!   timeout (3 s by default) in all: for the device to be online (its
//!   retained status) with a known state, then for the `Ack` with the
//!   command's sequence number. A device that is offline gets nothing
//!   published (so nothing surfaces on it later); one that does not answer
//!   in time gives `CloudError::NetworkBusy`, and as with the real service
//!   the command may still be applied later: the device's state report
//!   stays the truth.
//! - **Domain registrations** are answered from the model, with the
//!   device's LAN address as the public address the cloud "sees".

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::access::Action;
use protocol::codec;
use protocol::ddns::DomainRegistration;
use protocol::envelope::CommandSigner;
use protocol::limits::{MAX_MESSAGE_BYTES, RECENT_OUTCOMES};
use protocol::messages::{DeviceStatus, StateReport};
use protocol::topics::{self, Leaf};
use protocol::{
    AccountId, AccountRef, Ack, ChannelScope, Command, CommandBody, Outcome, Permissions, Reason,
    Serial, Validity,
};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::model::{
    CloudError, CloudModel, InvitationId, PerDevice, Planned, Registration, Resolution, SiteId,
};
use crate::pki::Pki;

/// How long a command waits for its acknowledgement by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long [`Cloud::connect`] waits for the broker by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an accepted change waits for the device's new state report.
const STATE_WAIT: Duration = Duration::from_secs(2);
/// The command key's id, as pinned in device configurations.
pub const COMMAND_KEY_ID: u8 = 1;
/// The command key's seed in the PKI directory (64 hex digits).
pub const SEED_FILE: &str = "cloud-command-key.seed";
/// Stale sequence numbers are retried at most this often per command.
const MAX_SEQ_RETRIES: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{path}: {message}")]
    Seed { path: PathBuf, message: String },
    #[error("TLS files: {0}")]
    Tls(String),
    #[error("cannot connect to the broker at {addr} within {timeout:?}: {last_error}")]
    Connect {
        addr: String,
        timeout: Duration,
        last_error: String,
    },
}

// ------------------------------------------------------------------ the command key

/// The command key seed in `pki_dir`; created (random, mode 0600) if the
/// directory has none yet.
pub fn load_or_create_seed(pki_dir: &Path) -> Result<[u8; 32], DriverError> {
    let path = pki_dir.join(SEED_FILE);
    if path.exists() {
        return load_seed(pki_dir);
    }
    let seed_err = |message: String| DriverError::Seed {
        path: path.clone(),
        message,
    };
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| seed_err("no randomness".into()))?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let text = format!("{}\n", agent::shell::config::encode_hex(&seed));
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| seed_err(e.to_string()))?;
            Ok(seed)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_seed(pki_dir),
        Err(e) => Err(seed_err(e.to_string())),
    }
}

/// The command key seed in `pki_dir`, which must exist.
pub fn load_seed(pki_dir: &Path) -> Result<[u8; 32], DriverError> {
    let path = pki_dir.join(SEED_FILE);
    let text = fs::read_to_string(&path).map_err(|e| DriverError::Seed {
        path: path.clone(),
        message: format!(
            "{e} (the cloud command key is created by `sim-device broker --pki DIR` or the demo)"
        ),
    })?;
    let bytes = agent::shell::config::decode_hex(&text).filter(|b| b.len() == 32);
    let bytes = bytes.ok_or_else(|| DriverError::Seed {
        path,
        message: "must hold 64 hex digits".into(),
    })?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes);
    Ok(seed)
}

/// The signer for a seed.
pub fn signer(seed: &[u8; 32]) -> CommandSigner {
    // An Ed25519 seed of 32 bytes is always accepted.
    CommandSigner::from_seed(COMMAND_KEY_ID, seed).expect("a 32-byte Ed25519 seed")
}

/// The public key devices pin, for a seed.
pub fn command_public_key(seed: &[u8; 32]) -> [u8; 32] {
    signer(seed).public_key()
}

/// The cloud's clock, Unix seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ------------------------------------------------------------------ options

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
    /// processes (demo, field engineer) do not take over each other.
    pub client_id: String,
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
            client_id: format!("cloud-{}-{n}", std::process::id()),
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

// ------------------------------------------------------------------ shared state

/// What the driver knows about one device's link.
#[derive(Debug, Default)]
struct Link {
    next_seq: Option<u64>,
    online: Option<bool>,
    /// Sequence numbers sent and not yet acknowledged, oldest first.
    pending: VecDeque<u64>,
}

struct Shared {
    model: CloudModel,
    links: HashMap<Serial, Link>,
    waiters: HashMap<(Serial, u64), oneshot::Sender<Ack>>,
    subacks: usize,
    last_error: Option<String>,
    stopping: bool,
}

impl Shared {
    fn subscribed(&self) -> bool {
        self.subacks >= INBOUND.len()
    }

    fn forget(&mut self, serial: &Serial, seq: u64) {
        self.waiters.remove(&(serial.clone(), seq));
        if let Some(link) = self.links.get_mut(serial) {
            link.pending.retain(|s| *s != seq);
        }
    }
}

/// What the cloud subscribes to.
const INBOUND: [Leaf; 4] = [Leaf::Ack, Leaf::State, Leaf::Status, Leaf::DomainRegister];

// ------------------------------------------------------------------ the cloud

/// The simulated cloud, connected.
pub struct Cloud {
    client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Receiver<u64>,
    signer: CommandSigner,
    ack_timeout: Duration,
    task: Option<tokio::task::JoinHandle<()>>,
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
        mqtt.set_clean_session(true);
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
        }));
        let (tx, rx) = watch::channel(0u64);
        let task = tokio::spawn(event_task(eventloop, client.clone(), shared.clone(), tx));
        let mut cloud = Cloud {
            client,
            shared,
            changes: rx,
            signer: signer(&options.seed),
            ack_timeout: options.ack_timeout,
            task: Some(task),
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

    fn lock(&self) -> MutexGuard<'_, Shared> {
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

    /// The device's retained online status: `None` if never seen.
    pub fn online(&self, serial: &Serial) -> Option<bool> {
        self.lock().links.get(serial).and_then(|l| l.online)
    }

    /// The device's last state report.
    pub fn state(&self, serial: &Serial) -> Option<StateReport> {
        self.lock().model.report(serial).cloned()
    }

    /// Waits until `check` holds or `deadline` passes; true if it held.
    async fn wait_until(&self, deadline: Instant, mut check: impl FnMut(&Shared) -> bool) -> bool {
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

    /// Waits for the device's status to be `online`.
    pub async fn wait_online(&self, serial: &Serial, online: bool, timeout: Duration) -> bool {
        self.wait_until(Instant::now() + timeout, |s| {
            s.links.get(serial).and_then(|l| l.online) == Some(online)
        })
        .await
    }

    /// Waits until the device's retained status (online or offline) is
    /// known; `None` if it is still unknown after `timeout`.
    pub async fn wait_status_known(&self, serial: &Serial, timeout: Duration) -> Option<bool> {
        self.wait_until(Instant::now() + timeout, |s| {
            s.links.get(serial).is_some_and(|l| l.online.is_some())
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

    fn busy(&self, serial: &Serial) -> CloudError {
        CloudError::NetworkBusy {
            serial: serial.to_string(),
            waited_ms: self.ack_timeout.as_millis() as u64,
        }
    }

    /// Signs and sends one command and waits for its acknowledgement, all
    /// within the acknowledgement timeout: `NetworkBusy` if the device is
    /// offline or does not answer in time. A refusal by the device is an
    /// `Ack` with `Outcome::Refused`, not an error.
    pub async fn send(
        &self,
        serial: &Serial,
        actor: AccountRef,
        body: CommandBody,
    ) -> Result<Ack, CloudError> {
        let deadline = Instant::now() + self.ack_timeout;
        let ready = self
            .wait_until(deadline, |s| {
                s.links
                    .get(serial)
                    .is_some_and(|l| l.online == Some(true) && l.next_seq.is_some())
            })
            .await;
        if !ready {
            return Err(self.busy(serial));
        }
        let mut retries = 0;
        loop {
            let (tx, rx) = oneshot::channel();
            let seq = {
                let mut shared = self.lock();
                let link = shared.links.entry(serial.clone()).or_default();
                let seq = link.next_seq.unwrap_or(1);
                link.next_seq = Some(seq + 1);
                link.pending.push_back(seq);
                shared.waiters.insert((serial.clone(), seq), tx);
                seq
            };
            let command = Command {
                serial: serial.clone(),
                actor: actor.clone(),
                seq,
                issued_at: now_secs(),
                body: body.clone(),
            };
            let envelope = match self.signer.seal(&command) {
                Ok(envelope) => envelope,
                Err(e) => {
                    self.lock().forget(serial, seq);
                    return Err(CloudError::Invalid {
                        what: "command",
                        message: e.to_string(),
                    });
                }
            };
            let topic = topics::topic(serial, Leaf::Command);
            if self
                .client
                .publish(topic, QoS::AtLeastOnce, false, envelope)
                .await
                .is_err()
            {
                self.lock().forget(serial, seq);
                return Err(self.busy(serial));
            }
            let ack = match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(ack)) => ack,
                _ => {
                    self.lock().forget(serial, seq);
                    return Err(self.busy(serial));
                }
            };
            let stale =
                ack.redelivered || ack.outcome == Outcome::Refused(Reason::ReplayedSequence);
            if stale && retries < MAX_SEQ_RETRIES {
                // Another cloud process used this number: jump past it.
                let jump = (RECENT_OUTCOMES as u64) << retries;
                let mut shared = self.lock();
                let link = shared.links.entry(serial.clone()).or_default();
                link.next_seq = Some(link.next_seq.unwrap_or(0).max(seq + 1 + jump));
                retries += 1;
                continue;
            }
            return Ok(ack);
        }
    }

    /// Sends a planned command; on acceptance records its commit in the
    /// model and waits (briefly) for the device's new state report, so
    /// that what follows sees the change.
    pub async fn execute(&self, planned: Planned) -> Result<(), CloudError> {
        let expect_change = {
            let shared = self.lock();
            expects_state_change(shared.model.report(&planned.serial), &planned.body)
        };
        let ack = self
            .send(&planned.serial, planned.actor.clone(), planned.body.clone())
            .await?;
        match ack.outcome {
            Outcome::Accepted => {
                self.with_model(|m| m.commit(&planned.on_accept));
                if let (true, Some(seq)) = (expect_change, ack.seq) {
                    self.wait_state(&planned.serial, |r| r.last_seq >= seq, STATE_WAIT)
                        .await;
                }
                Ok(())
            }
            Outcome::Refused(reason) => Err(CloudError::DeviceRefused {
                serial: planned.serial.to_string(),
                reason,
            }),
        }
    }

    async fn execute_each(&self, plans: PerDevice<Planned>) -> PerDevice<()> {
        let mut results = Vec::with_capacity(plans.len());
        for (serial, plan) in plans {
            let result = match plan {
                Ok(planned) => self.execute(planned).await,
                Err(e) => Err(e),
            };
            results.push((serial, result));
        }
        results
    }

    // ---------------------------------------------------------- product operations

    /// The installer adds a device to its site with the verification code.
    pub async fn add_to_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        serial: &str,
        code: &str,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_add_to_site(installer, site, serial, code))?;
        self.execute(planned).await
    }

    /// An end user adds a device to its own account.
    pub async fn bind_owner(
        &self,
        owner: &AccountId,
        serial: &str,
        code: &str,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_bind_owner(owner, serial, code))?;
        self.execute(planned).await
    }

    /// The invitee accepts: the site is handed over and each device gets
    /// its `Handover`; the outcome per device.
    pub async fn accept_invitation(
        &self,
        invitation: InvitationId,
        account: &AccountId,
    ) -> Result<PerDevice<()>, CloudError> {
        let now = self.now();
        let plan = self.with_model(|m| m.accept_invitation(invitation, account, now))?;
        let plans = plan
            .commands
            .into_iter()
            .map(|p| (p.serial.clone(), Ok(p)))
            .collect();
        Ok(self.execute_each(plans).await)
    }

    /// The owner shares a device with an account named by email, phone
    /// number or user name. `Ok` is the product's "Shared".
    pub async fn share(
        &self,
        owner: &AccountId,
        serial: &str,
        with: &str,
        permissions: Permissions,
        channels: ChannelScope,
        validity: Option<Validity>,
    ) -> Result<(), CloudError> {
        let planned = self
            .with_model(|m| m.plan_share(owner, serial, with, permissions, channels, validity))?;
        match self.execute(planned).await {
            Err(CloudError::DeviceRefused {
                reason: Reason::CrossRegion,
                ..
            }) => Err(CloudError::CrossRegionShare),
            other => other,
        }
    }

    /// The owner stops sharing with one or several accounts.
    pub async fn unshare(
        &self,
        owner: &AccountId,
        serial: &str,
        accounts: &[&str],
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_unshare(owner, serial, accounts))?;
        self.execute(planned).await
    }

    /// The owner stops sharing with everyone ("Delete All").
    pub async fn unshare_all(&self, owner: &AccountId, serial: &str) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_unshare_all(owner, serial))?;
        self.execute(planned).await
    }

    /// The receiver deletes the shared device from its own side.
    pub async fn leave_share(&self, receiver: &AccountId, serial: &str) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_leave_share(receiver, serial))?;
        self.execute(planned).await
    }

    /// The installer switches the cloud service of one device.
    pub async fn set_cloud_service(
        &self,
        installer: &AccountId,
        serial: &str,
        enabled: bool,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_set_cloud_service(installer, serial, enabled))?;
        self.execute(planned).await
    }

    /// The installer switches the cloud service of every device of a site.
    pub async fn set_cloud_service_for_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        enabled: bool,
    ) -> Result<PerDevice<()>, CloudError> {
        let plans =
            self.with_model(|m| m.plan_set_cloud_service_for_site(installer, site, enabled))?;
        Ok(self.execute_each(plans).await)
    }

    /// The installer deletes the device from the owner's account.
    pub async fn remove_from_owner(
        &self,
        installer: &AccountId,
        serial: &str,
    ) -> Result<(), CloudError> {
        let planned = self.with_model(|m| m.plan_remove_from_owner(installer, serial))?;
        self.execute(planned).await
    }

    /// The owner changes the device domain name.
    pub async fn set_domain(
        &self,
        owner: &AccountId,
        serial: &str,
        name: &str,
    ) -> Result<(), CloudError> {
        let now = self.now();
        let planned = self.with_model(|m| m.plan_set_domain(owner, serial, name, now))?;
        self.execute(planned).await
    }

    /// Resolves a device domain for `requester` (cloud time now).
    pub fn resolve_domain(
        &self,
        requester: &AccountId,
        name: &str,
    ) -> Result<Resolution, CloudError> {
        let now = self.now();
        self.with_model(|m| m.resolve_domain(requester, name, now))
    }

    /// Asks the device, through the cloud, whether `actor` may do `action`
    /// on `channel` now (the device decides; a denial is `DeviceRefused`).
    pub async fn operation(
        &self,
        actor: &AccountId,
        serial: &str,
        action: Action,
        channel: Option<u16>,
    ) -> Result<(), CloudError> {
        let (account, device) = self.with_model(|m| {
            let account = m.account(actor)?.account_ref();
            let device = m.device(serial)?.serial.clone();
            Ok::<_, CloudError>((account, device))
        })?;
        self.execute(Planned::new(
            device,
            account,
            CommandBody::Operation { action, channel },
        ))
        .await
    }

    /// Disconnects from the broker.
    pub async fn shutdown(mut self) {
        self.lock().stopping = true;
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
        }
    }
}

/// Whether a device that accepts `body` publishes a new state report.
fn expects_state_change(report: Option<&StateReport>, body: &CommandBody) -> bool {
    match body {
        CommandBody::Operation { .. } | CommandBody::RequestAudit { .. } => false,
        CommandBody::SetCloudService { enabled } => {
            report.is_none_or(|r| r.cloud_service != *enabled)
        }
        CommandBody::SetDomain { name } => {
            report.is_none_or(|r| r.domain.as_str() != name.as_str())
        }
        _ => true,
    }
}

// ------------------------------------------------------------------ the event task

async fn event_task(
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Sender<u64>,
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
                on_publish(&client, &mut lock(), &publish.topic, &publish.payload);
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

fn on_publish(client: &AsyncClient, shared: &mut Shared, topic: &str, payload: &[u8]) {
    let Some((serial, leaf)) = topics::parse(topic) else {
        return;
    };
    match leaf {
        Leaf::Ack => {
            let Ok(ack) = codec::decode::<Ack>(payload, MAX_MESSAGE_BYTES) else {
                return;
            };
            // An ack without a sequence number answers an envelope the
            // device could not verify: it belongs to the oldest pending.
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
        Leaf::State => {
            let Ok(report) = codec::decode::<StateReport>(payload, MAX_MESSAGE_BYTES) else {
                return;
            };
            if report.serial != serial {
                return;
            }
            let link = shared.links.entry(serial).or_default();
            let learned = report.last_seq + 1;
            link.next_seq = Some(link.next_seq.map_or(learned, |n| n.max(learned)));
            shared.model.on_state_report(report);
        }
        Leaf::Status => {
            let online = codec::decode::<DeviceStatus>(payload, MAX_MESSAGE_BYTES)
                .ok()
                .map(|s| s.online);
            shared.links.entry(serial).or_default().online = online;
        }
        Leaf::DomainRegister => {
            let Ok(registration) = codec::decode::<DomainRegistration>(payload, MAX_MESSAGE_BYTES)
            else {
                return;
            };
            // The sim has no NAT: the public address the cloud "sees" is
            // the device's LAN address.
            let seen_from = registration.lan_address;
            let result =
                shared
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
        Leaf::Command | Leaf::Audit | Leaf::DomainResult => {}
    }
}

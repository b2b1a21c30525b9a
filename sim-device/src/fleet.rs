//! Fleet load: many simulated devices in one process, each with its own
//! mutual-TLS MQTT session, its own access list and the agent's own core
//! (`apply`, full-jitter `Backoff`), against one broker. Measures what a
//! cloud operator cares about: how fast a fleet connects, what one device
//! costs in memory, how command acknowledgements behave under load, and
//! whether reconnects after a broker restart spread out (no thundering
//! herd).
//!
//! A fleet device is not the whole agent (no state file, no local socket,
//! no interface polling): ten thousand of those would measure the file
//! system, not the link. It keeps what shapes the broker's load: the TLS
//! session, the topic tree, the signed-command path and the backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::core::backoff::{Backoff, BackoffPolicy};
use agent::core::{apply, DeviceState, Effect, Identity};
use agent::shell::tls::{client_config, TlsFiles};
use protocol::access::Action;
use protocol::codec;
use protocol::command::bind_proof;
use protocol::envelope::{self, CommandKeys, CommandSigner};
use protocol::limits::{MAX_COMMAND_BYTES, MAX_MESSAGE_BYTES};
use protocol::topics::{self, Leaf};
use protocol::{
    AccountId, AccountRef, Ack, BindRole, ChannelScope, Command, CommandBody, Outcome, Permissions,
    Region, Serial, Text,
};
use ring::rand::{SecureRandom, SystemRandom};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, Semaphore};

use crate::pki::Pki;

/// Handshakes in progress at once while the fleet first connects: a
/// listen backlog overflow would add SYN retries of a second or more and
/// measure the kernel, not the broker.
const CONNECT_CONCURRENCY: usize = 200;
/// Shares each fleet device holds besides its owner.
const SHARES_PER_DEVICE: usize = 4;
const REGION: &str = "EU";
const CODE: &str = "ABCDEF";
const CHANNELS: u16 = 8;
/// The agent's own connection timeout (`cloud.connect_timeout_secs`).
const AGENT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Width of one bar of the reconnect curve.
const CURVE_BUCKET: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet setup: {0}")]
    Setup(String),
    #[error("only {connected} of {devices} devices connected within {secs} s")]
    NotAllConnected {
        connected: usize,
        devices: usize,
        secs: u64,
    },
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> FleetError + '_ {
    move |e| FleetError::Setup(format!("{what}: {e}"))
}

/// Where the fleet connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub devices: usize,
    /// How long the whole fleet may take to connect.
    pub connect_deadline: Duration,
    /// Signed commands sent through the cloud, spread over the devices,
    /// to measure command → acknowledgement latency under load.
    pub commands: usize,
    /// The serial prefix; device i is `{prefix}-{i:05}`.
    pub prefix: String,
    /// The agent's `reconnect_spread_ms` (see agent::core::backoff).
    pub reconnect_spread: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            devices: 100,
            connect_deadline: Duration::from_secs(60),
            commands: 1000,
            prefix: "FLEET".into(),
            reconnect_spread: BackoffPolicy::default().reconnect_spread,
        }
    }
}

pub fn serials(options: &FleetOptions) -> Vec<String> {
    (0..options.devices)
        .map(|i| format!("{}-{i:05}", options.prefix))
        .collect()
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms (n = {})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.count
        )
    }
}

/// Reconnects per bucket after a broker restart.
#[derive(Debug, Clone, Default)]
pub struct ReconnectCurve {
    pub bucket: Duration,
    /// Reconnects in each bucket, from the first reconnect to the last.
    pub counts: Vec<usize>,
    /// From the broker listening again to the last device back.
    pub all_back_after: Duration,
}

impl ReconnectCurve {
    pub fn from_times(mut times: Vec<Duration>, bucket: Duration) -> ReconnectCurve {
        times.sort_unstable();
        let (Some(first), Some(last)) = (times.first().copied(), times.last().copied()) else {
            return ReconnectCurve {
                bucket,
                ..ReconnectCurve::default()
            };
        };
        let buckets = ((last - first).as_nanos() / bucket.as_nanos()) as usize + 1;
        let mut counts = vec![0; buckets];
        for t in &times {
            counts[((*t - first).as_nanos() / bucket.as_nanos()) as usize] += 1;
        }
        ReconnectCurve {
            bucket,
            counts,
            all_back_after: last,
        }
    }

    /// Mean reconnects per bucket over the reconnect window.
    pub fn mean(&self) -> f64 {
        if self.counts.is_empty() {
            return 0.0;
        }
        self.counts.iter().sum::<usize>() as f64 / self.counts.len() as f64
    }

    pub fn peak(&self) -> usize {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    /// Peak over mean: 1.0 is a perfectly even spread.
    pub fn peak_to_mean(&self) -> f64 {
        let mean = self.mean();
        if mean == 0.0 {
            0.0
        } else {
            self.peak() as f64 / mean
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    pub devices: usize,
    pub connected: usize,
    pub all_connected_after: Duration,
    pub connect: Percentiles,
    /// Before any device was built.
    pub rss_before_bytes: u64,
    pub rss_connected_bytes: u64,
    pub command_latency: Percentiles,
    pub commands_refused: usize,
    pub commands_unanswered: usize,
    pub reconnect: Option<ReconnectCurve>,
    pub reconnected: usize,
    /// Failed attempts by kind while the fleet first connected.
    pub connect_failures: Vec<(&'static str, usize)>,
    /// Failed attempts by kind after the broker restart.
    pub reconnect_failures: Vec<(&'static str, usize)>,
}

fn report_failure(counts: &mut Vec<(&'static str, usize)>, kind: &'static str) {
    match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += 1,
        None => counts.push((kind, 1)),
    }
}

/// "3 timed out, 1 connection refused", or "none".
pub fn describe_failures(counts: &[(&'static str, usize)]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FleetReport {
    pub fn bytes_per_device(&self) -> u64 {
        self.rss_connected_bytes
            .saturating_sub(self.rss_before_bytes)
            .checked_div(self.devices as u64)
            .unwrap_or(0)
    }
}

/// What devices tell the coordinator.
#[derive(Debug)]
enum DeviceEvent {
    /// `took`: from the start of this device's attempt to its ConnAck.
    Connected {
        device: usize,
        at: Instant,
        took: Duration,
    },
    Disconnected,
    /// An attempt to connect failed, and how.
    Failed(&'static str),
}

/// A short name for why a connection attempt failed, for the report.
fn failure_kind(error: &rumqttc::ConnectionError) -> &'static str {
    use rumqttc::ConnectionError as E;
    match error {
        E::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused",
            std::io::ErrorKind::ConnectionReset => "connection reset",
            std::io::ErrorKind::TimedOut => "timed out",
            std::io::ErrorKind::UnexpectedEof => "closed by the broker",
            _ => "other I/O error",
        },
        E::NetworkTimeout | E::FlushTimeout => "timed out",
        E::Tls(_) => "TLS error",
        E::ConnectionRefused(_) => "refused by the broker (CONNACK)",
        E::MqttState(_) => "connection lost",
        _ => "other",
    }
}

/// The resident set size of this process, from /proc.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Raises the open-file limit to its hard maximum: each device is a socket,
/// and a broker started from here inherits the limit.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

fn account(id: &str) -> Result<AccountRef, FleetError> {
    Ok(AccountRef {
        id: AccountId::new(id).map_err(setup("account"))?,
        region: Region::new(REGION).map_err(setup("region"))?,
    })
}

/// A device bound to its owner with a few shares, built through the core
/// (as the cloud would have), with sequence numbers 1..=1+SHARES.
fn initial_state(serial: &Serial, now: u64) -> Result<DeviceState, FleetError> {
    let identity = Identity {
        serial: serial.clone(),
        region: Region::new(REGION).map_err(setup("region"))?,
        channel_count: CHANNELS,
        verification_code: Text::new(CODE).map_err(setup("code"))?,
    };
    let owner = account("owner")?;
    let mut state = DeviceState::new(identity).map_err(setup("state"))?;
    let mut bodies = vec![CommandBody::Bind {
        role: BindRole::Owner,
        proof: bind_proof(CODE.as_bytes(), serial, &owner.id),
    }];
    for i in 0..SHARES_PER_DEVICE {
        bodies.push(CommandBody::Share {
            account: account(&format!("friend{i}"))?,
            permissions: Permissions::of(&[Action::LiveView, Action::Playback]),
            channels: ChannelScope::All,
            validity: None,
        });
    }
    for (i, body) in bodies.into_iter().enumerate() {
        let command = Command {
            serial: serial.clone(),
            actor: owner.clone(),
            seq: i as u64 + 1,
            issued_at: now,
            body,
        };
        let applied = apply(&state, &command, now);
        if applied.outcome != Outcome::Accepted {
            return Err(FleetError::Setup(format!(
                "initial command {} refused: {:?}",
                command.seq, applied.outcome
            )));
        }
        state = applied.state;
    }
    Ok(state)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_u32(rng: &SystemRandom) -> u32 {
    let mut bytes = [0u8; 4];
    let _ = rng.fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

fn mqtt_options(
    client_id: &str,
    target: &Target,
    tls: rustls::ClientConfig,
    keep_alive: Duration,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, target.host.clone(), target.port);
    options.set_keep_alive(keep_alive);
    options.set_clean_session(false);
    // Small windows: a device handles one command at a time.
    options.set_inflight(4);
    options.set_max_packet_size(MAX_COMMAND_BYTES + 512, MAX_MESSAGE_BYTES + 512);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    options
}

fn device_tls(pki: &Pki, serial: &str) -> Result<rustls::ClientConfig, FleetError> {
    let files = pki
        .device(serial)
        .ok_or_else(|| FleetError::Setup(format!("no certificate for {serial}")))?;
    let mut config = client_config(&TlsFiles {
        ca: pki.ca_cert(),
        cert: &files.cert,
        key: &files.key,
        allow_tls12: false,
    })
    .map_err(setup("device TLS"))?;
    // A session cache per device is memory the fleet does not need: a
    // restarted broker has new ticket keys anyway.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// One simulated device: its link, its state, its backoff.
struct Device {
    index: usize,
    serial: Serial,
    state: DeviceState,
    keys: Arc<CommandKeys>,
    backoff: BackoffPolicy,
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Device {
    async fn run(
        mut self,
        events: mpsc::UnboundedSender<DeviceEvent>,
        first_connect: Arc<Semaphore>,
    ) {
        let rng = SystemRandom::new();
        let mut backoff = Backoff::new(self.backoff);
        let started = Instant::now();
        let millis = || started.elapsed().as_millis() as u64;
        let mut permit = first_connect.acquire_owned().await.ok();
        let mut attempt_started = Instant::now();
        let mut connected = false;
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    permit = None;
                    connected = true;
                    backoff.on_connected(millis());
                    let _ = self.client.try_subscribe(
                        topics::topic(&self.serial, Leaf::Command),
                        QoS::AtLeastOnce,
                    );
                    let _ = events.send(DeviceEvent::Connected {
                        device: self.index,
                        at: Instant::now(),
                        took: attempt_started.elapsed(),
                    });
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.on_command(&publish.payload),
                Ok(_) => {
                    // A reconnect leaves room for 100 replayed requests.
                    if self.eventloop.pending.is_empty() && self.eventloop.pending.capacity() > 0 {
                        self.eventloop.pending = std::collections::VecDeque::new();
                    }
                }
                Err(error) => {
                    if !connected {
                        let _ = events.send(DeviceEvent::Failed(failure_kind(&error)));
                    }
                    if permit.is_some() {
                        // Give the slot to another device while this one waits.
                        permit = None;
                    }
                    if connected {
                        connected = false;
                        backoff.on_disconnected(millis());
                        let _ = events.send(DeviceEvent::Disconnected);
                    }
                    let delay = backoff.on_connect_failed(random_u32(&rng));
                    tokio::time::sleep(delay).await;
                    attempt_started = Instant::now();
                }
            }
        }
    }

    fn on_command(&mut self, payload: &[u8]) {
        let now = now_secs();
        let ack = match envelope::open(payload, &self.keys, &self.serial) {
            Ok(command) => {
                let applied = apply(&self.state, &command, now);
                self.state = applied.state;
                applied.effects.iter().find_map(|effect| match effect {
                    Effect::Ack(ack) => Some(*ack),
                    _ => None,
                })
            }
            Err(e) => Some(Ack {
                seq: None,
                outcome: Outcome::Refused(e.reason()),
                redelivered: false,
            }),
        };
        if let Some(ack) = ack {
            if let Ok(bytes) = codec::encode(&ack, MAX_MESSAGE_BYTES) {
                let _ = self.client.try_publish(
                    topics::topic(&self.serial, Leaf::Ack),
                    QoS::AtLeastOnce,
                    false,
                    bytes,
                );
            }
        }
    }
}

/// The cloud's side of the latency measurement: sends signed shares to
/// devices and times their acknowledgements.
struct LatencyProbe {
    client: AsyncClient,
    eventloop: EventLoop,
    signer: CommandSigner,
}

impl LatencyProbe {
    async fn connect(
        pki: &Pki,
        target: &Target,
        signer: CommandSigner,
    ) -> Result<Self, FleetError> {
        let files = pki.cloud();
        let tls = client_config(&TlsFiles {
            ca: pki.ca_cert(),
            cert: &files.cert,
            key: &files.key,
            allow_tls12: false,
        })
        .map_err(setup("cloud TLS"))?;
        let mut options = mqtt_options("cloud-fleet-probe", target, tls, Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(FleetError::Setup(format!("cloud connect: {e}"))),
            }
        }
        client
            .subscribe(topics::all_devices(Leaf::Ack), QoS::AtLeastOnce)
            .await
            .map_err(setup("cloud subscribe"))?;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(FleetError::Setup(format!("cloud subscribe: {e}"))),
            }
        }
        Ok(LatencyProbe {
            client,
            eventloop,
            signer,
        })
    }

    /// Sends `count` commands, one at a time in flight per device and up to
    /// `window` in flight overall, round-robin over `serials`; returns the
    /// latencies, the refused count and the unanswered count.
    async fn run(
        mut self,
        serials: &[Serial],
        count: usize,
        window: usize,
    ) -> Result<(Vec<Duration>, usize, usize), FleetError> {
        // The devices' ledgers end at 1 + SHARES_PER_DEVICE.
        let mut next_seq = vec![2 + SHARES_PER_DEVICE as u64; serials.len()];
        let mut in_flight: std::collections::HashMap<(String, u64), (usize, Instant)> =
            std::collections::HashMap::new();
        let mut busy = vec![false; serials.len()];
        let mut latencies = Vec::with_capacity(count);
        let mut refused = 0;
        let mut sent = 0;
        let mut cursor = 0;
        let deadline =
            Instant::now() + Duration::from_secs(60) + Duration::from_millis(count as u64 * 5);
        while latencies.len() + refused < count && Instant::now() < deadline {
            while sent < count && in_flight.len() < window {
                let device = cursor % serials.len();
                cursor += 1;
                if busy[device] {
                    // window <= devices, so a free device comes round.
                    continue;
                }
                let seq = next_seq[device];
                next_seq[device] += 1;
                // Every command changes the state: the share flips between
                // two permission sets.
                let permissions = if seq % 2 == 0 {
                    Permissions::of(&[Action::LiveView])
                } else {
                    Permissions::of(&[Action::LiveView, Action::Playback])
                };
                let body = CommandBody::Share {
                    account: account("probe")?,
                    permissions,
                    channels: ChannelScope::All,
                    validity: None,
                };
                let command = Command {
                    serial: serials[device].clone(),
                    actor: account("owner")?,
                    seq,
                    issued_at: now_secs(),
                    body,
                };
                let sealed = self.signer.seal(&command).map_err(setup("seal"))?;
                busy[device] = true;
                in_flight.insert(
                    (serials[device].as_str().to_owned(), seq),
                    (device, Instant::now()),
                );
                self.client
                    .publish(
                        topics::topic(&serials[device], Leaf::Command),
                        QoS::AtLeastOnce,
                        false,
                        sealed,
                    )
                    .await
                    .map_err(setup("publish"))?;
                sent += 1;
            }
            let event = tokio::time::timeout(Duration::from_secs(5), self.eventloop.poll()).await;
            match event {
                Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                    let Some((serial, Leaf::Ack)) = topics::parse(&publish.topic) else {
                        continue;
                    };
                    let Ok(ack) = codec::decode::<Ack>(&publish.payload, MAX_MESSAGE_BYTES) else {
                        continue;
                    };
                    let Some(seq) = ack.seq else { continue };
                    if let Some((device, at)) = in_flight.remove(&(serial.as_str().to_owned(), seq))
                    {
                        busy[device] = false;
                        match ack.outcome {
                            Outcome::Accepted => latencies.push(at.elapsed()),
                            Outcome::Refused(_) => refused += 1,
                        }
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(FleetError::Setup(format!("cloud link: {e}"))),
                Err(_) => break,
            }
        }
        let unanswered = count - latencies.len() - refused;
        Ok((latencies, refused, unanswered))
    }
}

/// A broker the fleet can restart to measure the reconnect curve.
pub trait Restartable {
    fn restart(&mut self) -> Result<(), String>;
}

/// Runs the fleet: connect all, measure memory, send commands, and if a
/// broker to restart is given, restart it and record the reconnect curve.
/// `progress` gets one line per phase.
pub async fn run(
    options: &FleetOptions,
    pki: &Pki,
    target: &Target,
    command_seed: [u8; 32],
    broker: Option<&mut dyn Restartable>,
    progress: &mut dyn FnMut(&str),
) -> Result<FleetReport, FleetError> {
    let signer = CommandSigner::from_seed(1, &command_seed).map_err(setup("command key"))?;
    let mut keys = CommandKeys::new();
    keys.pin(1, signer.public_key());
    let keys = Arc::new(keys);
    let serials = serials(options);
    let now = now_secs();

    // Devices are spawned as they are built, never held in a list first:
    // a list freed after spawning stays in the allocator and in the RSS.
    let rss_empty = rss_bytes();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let first_connect = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(serials.len());
    let mut serial_ids = Vec::with_capacity(serials.len());
    for (index, name) in serials.iter().enumerate() {
        let serial = Serial::new(name).map_err(setup("serial"))?;
        let tls = device_tls(pki, name)?;
        let (client, mut eventloop) =
            AsyncClient::new(mqtt_options(name, target, tls, Duration::from_secs(60)), 8);
        // As the agent: a handshake queued behind a busy broker is not dead.
        eventloop
            .network_options
            .set_connection_timeout(AGENT_CONNECT_TIMEOUT_SECS);
        eventloop.network_options.set_tcp_nodelay(true);
        // rumqttc reserves room for 100 events per connection (14 KiB); a
        // device sees one at a time, and the queue grows if it must.
        eventloop.state.events = std::collections::VecDeque::new();
        let device = Device {
            index,
            state: initial_state(&serial, now)?,
            serial: serial.clone(),
            keys: keys.clone(),
            backoff: BackoffPolicy {
                reconnect_spread: options.reconnect_spread,
                ..BackoffPolicy::default()
            },
            client,
            eventloop,
        };
        handles.push(tokio::spawn(
            device.run(events_tx.clone(), first_connect.clone()),
        ));
        serial_ids.push(serial);
        if index % 64 == 63 {
            // Let the first devices start their handshakes meanwhile.
            tokio::task::yield_now().await;
        }
    }
    drop(events_tx);

    let mut connected_at: Vec<Option<Duration>> = vec![None; options.devices];
    let mut connect_failures = Vec::new();
    let mut connected = 0usize;
    let deadline = started + options.connect_deadline;
    while connected < options.devices {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(DeviceEvent::Connected { device, took, .. })) => {
                if connected_at[device].is_none() {
                    connected_at[device] = Some(took);
                    connected += 1;
                    if connected % 1000 == 0 {
                        progress(&format!(
                            "{connected} connected after {:.1} s",
                            started.elapsed().as_secs_f64()
                        ));
                    }
                }
            }
            Ok(Some(DeviceEvent::Failed(kind))) => report_failure(&mut connect_failures, kind),
            Ok(Some(DeviceEvent::Disconnected)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let all_connected_after = started.elapsed();
    // Let subscriptions settle before measuring memory and commands.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_bytes();
    let mut connect_times: Vec<Duration> = connected_at.iter().flatten().copied().collect();
    let mut report = FleetReport {
        devices: options.devices,
        connected,
        all_connected_after,
        connect: Percentiles::of(&mut connect_times),
        rss_before_bytes: rss_empty,
        rss_connected_bytes: rss_connected,
        connect_failures,
        ..FleetReport::default()
    };
    progress(&format!(
        "{connected}/{} connected in {:.2} s; connect time {}; {:.1} KiB per connected device (process RSS growth / devices); failed attempts: {}",
        options.devices,
        all_connected_after.as_secs_f64(),
        report.connect,
        report.bytes_per_device() as f64 / 1024.0,
        describe_failures(&report.connect_failures)
    ));
    if connected < options.devices {
        for handle in handles {
            handle.abort();
        }
        return Err(FleetError::NotAllConnected {
            connected,
            devices: options.devices,
            secs: options.connect_deadline.as_secs(),
        });
    }

    if options.commands > 0 {
        let probe = LatencyProbe::connect(pki, target, signer).await?;
        let window = options.devices.min(64);
        let (mut latencies, refused, unanswered) =
            probe.run(&serial_ids, options.commands, window).await?;
        report.command_latency = Percentiles::of(&mut latencies);
        report.commands_refused = refused;
        report.commands_unanswered = unanswered;
        progress(&format!(
            "{} commands over {} devices (up to {window} in flight): {}; refused {refused}, unanswered {unanswered}",
            options.commands, options.devices, report.command_latency
        ));
    }

    if let Some(broker) = broker {
        // Drain stale events, then restart and time every reconnect.
        while events.try_recv().is_ok() {}
        broker
            .restart()
            .map_err(|e| FleetError::Setup(format!("restart: {e}")))?;
        let back = Instant::now();
        progress("broker restarted; waiting for every device to reconnect");
        let mut reconnect_times = Vec::with_capacity(options.devices);
        let mut seen = vec![false; options.devices];
        let reconnect_deadline = back + Duration::from_secs(180);
        while reconnect_times.len() < options.devices {
            let wait = reconnect_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, events.recv()).await {
                Ok(Some(DeviceEvent::Connected { device, at, .. })) => {
                    if !seen[device] {
                        seen[device] = true;
                        reconnect_times.push(at.saturating_duration_since(back));
                    }
                }
                Ok(Some(DeviceEvent::Failed(kind))) => {
                    report_failure(&mut report.reconnect_failures, kind)
                }
                Ok(Some(DeviceEvent::Disconnected)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        report.reconnected = reconnect_times.len();
        progress(&format!(
            "failed attempts while reconnecting: {}",
            describe_failures(&report.reconnect_failures)
        ));
        let curve = ReconnectCurve::from_times(reconnect_times, CURVE_BUCKET);
        progress(&format!(
            "{}/{} reconnected, the last {:.2} s after the broker was back; peak {} per {} ms, mean {:.1}, peak/mean {:.2}",
            report.reconnected,
            options.devices,
            curve.all_back_after.as_secs_f64(),
            curve.peak(),
            CURVE_BUCKET.as_millis(),
            curve.mean(),
            curve.peak_to_mean()
        ));
        report.reconnect = Some(curve);
    }

    for handle in handles {
        handle.abort();
    }
    Ok(report)
}

impl Restartable for crate::mosquitto::Mosquitto {
    fn restart(&mut self) -> Result<(), String> {
        crate::mosquitto::Mosquitto::restart(self).map_err(|e| e.to_string())
    }
}

impl Restartable for crate::broker::EmbeddedBroker {
    fn restart(&mut self) -> Result<(), String> {
        crate::broker::EmbeddedBroker::restart(self).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
    }

    #[test]
    fn an_even_reconnect_spread_has_a_peak_to_mean_of_one() {
        let times: Vec<Duration> = (0..100).map(|i| Duration::from_millis(i * 10)).collect();
        let curve = ReconnectCurve::from_times(times, Duration::from_millis(250));
        assert_eq!(curve.counts, vec![25, 25, 25, 25]);
        assert_eq!(curve.peak_to_mean(), 1.0);
    }

    #[test]
    fn a_thundering_herd_shows_in_the_peak_to_mean() {
        let mut times: Vec<Duration> = vec![Duration::ZERO; 90];
        times.extend((1..=10).map(|i| Duration::from_millis(i * 250)));
        let curve = ReconnectCurve::from_times(times, Duration::from_millis(250));
        assert!(curve.peak_to_mean() > 5.0, "{:?}", curve.counts);
    }

    #[test]
    fn a_fleet_device_starts_bound_with_its_shares() {
        let serial = Serial::new("FLEET-00001").unwrap();
        let state = initial_state(&serial, 1_800_000_000).unwrap();
        assert_eq!(state.access.shares.len(), SHARES_PER_DEVICE);
        assert_eq!(state.ledger.last_seq, 1 + SHARES_PER_DEVICE as u64);
    }
}

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
//!
//! `stats` holds what is measured, `device` one simulated device, `probe`
//! the cloud's latency measurement, `verdict` the judgment of a run
//! against the targets; this module runs the phases in order.

mod device;
mod probe;
mod stats;
mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_agent::core::backoff::BackoffPolicy;
use hc_protocol::envelope::{CommandKeys, CommandSigner};
use hc_protocol::Serial;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::pki::Pki;
use device::{DeviceEvent, Launch};
use probe::LatencyProbe;
use stats::report_failure;

pub use stats::{
    describe_failures, rss_bytes, CommandFigures, FleetReport, Percentiles, ReconnectCurve,
};
pub use verdict::{verdict, Verdict};

/// Handshakes in progress at once while the fleet first connects: a
/// listen backlog overflow would add SYN retries of a second or more and
/// measure the kernel, not the broker.
const CONNECT_CONCURRENCY: usize = 200;
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
    /// The cluster's other nodes: every device gets `host`/`port` and
    /// these, starts at the one its serial picks and fails over as the
    /// agent does. Empty for a single broker.
    pub more: Vec<(String, u16)>,
}

impl Target {
    /// One broker at `host`:`port`.
    pub fn single(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
            more: Vec::new(),
        }
    }

    /// Every endpoint, `host`/`port` first.
    pub fn endpoints(&self) -> Vec<(String, u16)> {
        std::iter::once((self.host.clone(), self.port))
            .chain(self.more.iter().cloned())
            .collect()
    }
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
    /// The agent's `reconnect_spread_ms` (see hc_agent::core::backoff).
    pub reconnect_spread: Duration,
    /// Devices switched on per second while the fleet first connects
    /// (`None`: all at once, handshakes limited only by
    /// `CONNECT_CONCURRENCY`). A NATS cluster creates a replicated
    /// JetStream consumer for every device's subscription, far fewer a
    /// second than it completes TLS handshakes (docs/SCALING.md).
    pub connect_rate: Option<u32>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            devices: 100,
            connect_deadline: Duration::from_secs(60),
            commands: 1000,
            prefix: "FLEET".into(),
            reconnect_spread: BackoffPolicy::default().reconnect_spread,
            connect_rate: None,
        }
    }
}

pub fn serials(options: &FleetOptions) -> Vec<String> {
    (0..options.devices)
        .map(|i| format!("{}-{i:05}", options.prefix))
        .collect()
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whose links a [`Restartable::restart`] cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outage {
    /// Every client's: the broker restarted.
    All,
    /// These clients' (MQTT client ids): one node of a cluster died.
    Clients(Vec<String>),
}

/// A broker the fleet can restart to measure the reconnect curve.
pub trait Restartable {
    /// Restarts the broker, or takes one node of a cluster down; whose
    /// links that cut.
    fn restart(&mut self) -> Result<Outage, String>;
    /// What `restart` did, for the progress line.
    fn what(&self) -> &'static str {
        "broker restarted"
    }
    /// After the reconnect curve: brings back what `restart` left down
    /// (a cluster's node); what it did, if anything.
    fn recover(&mut self) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// The fleet's device tasks, aborted when dropped.
struct Running {
    handles: Vec<JoinHandle<()>>,
    serials: Vec<Serial>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
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
    // The probes sign with it; each owns one (a signer is not Clone).
    let signer = || CommandSigner::from_seed(1, &command_seed).map_err(setup("command key"));
    let mut keys = CommandKeys::new();
    keys.pin(1, signer()?.public_key());
    let now = now_secs();

    // Devices are spawned as they are built, never held in a list first:
    // a list freed after spawning stays in the allocator and in the RSS.
    let rss_empty = rss_bytes();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let started = Instant::now();
    let launch = Launch {
        pki,
        endpoints: Arc::new(target.endpoints()),
        keys: Arc::new(keys),
        now,
        backoff: BackoffPolicy {
            reconnect_spread: options.reconnect_spread,
            ..BackoffPolicy::default()
        },
        events: events_tx,
        first_connect: Arc::new(Semaphore::new(CONNECT_CONCURRENCY)),
    };
    let fleet = spawn_all(options, &launch).await?;
    drop(launch);

    let mut report = connect_all(options, &mut events, started, progress).await;
    report.rss_before_bytes = rss_empty;
    progress(&format!(
        "{}/{} connected in {:.2} s; connect time {}; {:.1} KiB per connected device (process RSS growth / devices); failed attempts: {}",
        report.connected,
        options.devices,
        report.all_connected_after.as_secs_f64(),
        report.connect,
        report.bytes_per_device() as f64 / 1024.0,
        describe_failures(&report.connect_failures)
    ));
    if report.connected < options.devices {
        return Err(FleetError::NotAllConnected {
            connected: report.connected,
            devices: options.devices,
            secs: options.connect_deadline.as_secs(),
        });
    }
    let mut next_seq = probe::first_seqs(fleet.serials.len());
    if options.commands > 0 {
        let probe = LatencyProbe::connect(pki, target, signer()?).await?;
        let commands = measure_commands(options, probe, &fleet.serials, &mut next_seq).await?;
        progress(&commands.describe(options, "commands"));
        report.commands = Some(commands);
    }
    if let Some(broker) = broker {
        measure_reconnect(options, broker, &mut events, &mut report, progress).await?;
        if options.commands > 0 {
            // What the restart (or a node's death) must not break: every
            // device takes commands again.
            let probe = LatencyProbe::connect(pki, target, signer()?).await?;
            let commands = measure_commands(options, probe, &fleet.serials, &mut next_seq).await?;
            progress(&commands.describe(options, "commands after the restart"));
            report.commands_after_restart = Some(commands);
        }
    }
    drop(fleet);
    Ok(report)
}

/// Builds and spawns every device, letting the first ones start their
/// handshakes meanwhile.
async fn spawn_all(options: &FleetOptions, launch: &Launch<'_>) -> Result<Running, FleetError> {
    let names = serials(options);
    let mut fleet = Running {
        handles: Vec::with_capacity(names.len()),
        serials: Vec::with_capacity(names.len()),
    };
    for (index, name) in names.iter().enumerate() {
        let switch_on = match options.connect_rate.filter(|r| *r > 0) {
            Some(rate) => Duration::from_secs_f64(index as f64 / f64::from(rate)),
            None => Duration::ZERO,
        };
        let (handle, serial) = launch.spawn(index, name, switch_on)?;
        fleet.handles.push(handle);
        fleet.serials.push(serial);
        if index % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    Ok(fleet)
}

/// Waits (at most the connect deadline) for every device's first
/// connection; the report's connection figures and memory.
async fn connect_all(
    options: &FleetOptions,
    events: &mut mpsc::UnboundedReceiver<DeviceEvent>,
    started: Instant,
    progress: &mut dyn FnMut(&str),
) -> FleetReport {
    let mut connected_at: Vec<Option<Duration>> = vec![None; options.devices];
    let mut subscribed_seen = vec![false; options.devices];
    let mut subscribed = 0usize;
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
                    if connected.is_multiple_of(1000) {
                        progress(&format!(
                            "{connected} connected after {:.1} s",
                            started.elapsed().as_secs_f64()
                        ));
                    }
                }
            }
            Ok(Some(DeviceEvent::Subscribed { device })) => {
                if !std::mem::replace(&mut subscribed_seen[device], true) {
                    subscribed += 1;
                }
            }
            Ok(Some(DeviceEvent::Failed { kind, took })) => {
                report_failure(&mut connect_failures, kind, took)
            }
            Ok(Some(DeviceEvent::Disconnected { .. })) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let all_connected_after = started.elapsed();
    // Commands wait for every device's subscription (on NATS, each is a
    // replicated JetStream consumer, created well after the CONNACK).
    while subscribed < connected {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(DeviceEvent::Subscribed { device })) => {
                if !std::mem::replace(&mut subscribed_seen[device], true) {
                    subscribed += 1;
                }
            }
            Ok(Some(DeviceEvent::Failed { kind, took })) => {
                report_failure(&mut connect_failures, kind, took)
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    progress(&format!(
        "{subscribed}/{connected} subscribed to their commands after {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    // Let the last subscriptions settle before measuring memory and commands.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut connect_times: Vec<Duration> = connected_at.iter().flatten().copied().collect();
    FleetReport {
        devices: options.devices,
        connected,
        all_connected_after,
        connect: Percentiles::of(&mut connect_times),
        rss_connected_bytes: rss_bytes(),
        connect_failures,
        ..FleetReport::default()
    }
}

/// Sends the signed commands and records their acknowledgement latency.
async fn measure_commands(
    options: &FleetOptions,
    probe: LatencyProbe,
    serials: &[Serial],
    next_seq: &mut Vec<u64>,
) -> Result<CommandFigures, FleetError> {
    let window = options.devices.min(64);
    let (mut latencies, refused, unanswered) = probe
        .run(serials, options.commands, window, next_seq)
        .await?;
    Ok(CommandFigures {
        window,
        latency: Percentiles::of(&mut latencies),
        refused,
        unanswered,
    })
}

/// Restarts the broker (or kills a cluster's node) and times the
/// reconnect of every device whose link that cut.
async fn measure_reconnect(
    options: &FleetOptions,
    broker: &mut dyn Restartable,
    events: &mut mpsc::UnboundedReceiver<DeviceEvent>,
    report: &mut FleetReport,
    progress: &mut dyn FnMut(&str),
) -> Result<(), FleetError> {
    // Drain stale events, then restart and time every reconnect.
    while events.try_recv().is_ok() {}
    let outage = broker
        .restart()
        .map_err(|e| FleetError::Setup(format!("restart: {e}")))?;
    let back = Instant::now();
    // The devices expected back.
    let mut expected = vec![false; options.devices];
    match &outage {
        Outage::All => expected.fill(true),
        Outage::Clients(ids) => {
            let index: std::collections::HashMap<String, usize> = serials(options)
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, i))
                .collect();
            for id in ids {
                if let Some(&i) = index.get(id) {
                    expected[i] = true;
                }
            }
        }
    }
    let dropped = expected.iter().filter(|e| **e).count();
    report.dropped = dropped;
    progress(&format!(
        "{}; waiting for the {dropped} devices whose link it cut to reconnect",
        broker.what()
    ));
    let mut reconnect_times = Vec::with_capacity(dropped);
    let mut seen = vec![false; options.devices];
    let reconnect_deadline = back + Duration::from_secs(180);
    while reconnect_times.len() < dropped {
        let wait = reconnect_deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(DeviceEvent::Connected { device, at, .. })) => {
                if expected[device] && !seen[device] {
                    seen[device] = true;
                    reconnect_times.push(at.saturating_duration_since(back));
                }
            }
            Ok(Some(DeviceEvent::Failed { kind, took })) => {
                report_failure(&mut report.reconnect_failures, kind, took)
            }
            Ok(Some(DeviceEvent::Disconnected { device })) => {
                if !expected[device] {
                    report.unexpected_losses += 1;
                }
            }
            Ok(Some(DeviceEvent::Subscribed { .. })) => {}
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
        "{}/{dropped} reconnected, the first {:.2} s, 95 % by {:.2} s and the last {:.2} s after the {}; peak {} per {} ms, mean {:.1}, peak/mean {:.2}",
        report.reconnected,
        curve.first_back.as_secs_f64(),
        curve.back_after(0.95).as_secs_f64(),
        curve.all_back_after.as_secs_f64(),
        match outage {
            Outage::All => "broker was back",
            Outage::Clients(_) => "node died",
        },
        curve.peak(),
        CURVE_BUCKET.as_millis(),
        curve.mean(),
        curve.peak_to_mean()
    ));
    report.reconnect = Some(curve);
    let started = Instant::now();
    if let Some(done) = broker
        .recover()
        .map_err(|e| FleetError::Setup(format!("recover: {e}")))?
    {
        progress(&format!(
            "{done} in {:.2} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

impl Restartable for crate::mosquitto::Mosquitto {
    fn restart(&mut self) -> Result<Outage, String> {
        crate::mosquitto::Mosquitto::restart(self).map_err(|e| e.to_string())?;
        Ok(Outage::All)
    }
}

impl Restartable for crate::broker::EmbeddedBroker {
    fn restart(&mut self) -> Result<Outage, String> {
        crate::broker::EmbeddedBroker::restart(self).map_err(|e| e.to_string())?;
        Ok(Outage::All)
    }
}

/// The node of a NATS cluster the fleet kills.
const KILLED_NODE: usize = 0;

/// A cluster "restarts" as one node's death: SIGKILL of node 0 (its
/// devices fail over to the other nodes), restarted after the curve.
impl Restartable for crate::nats::NatsCluster {
    fn restart(&mut self) -> Result<Outage, String> {
        let clients = self.clients_on(KILLED_NODE).map_err(|e| e.to_string())?;
        self.kill(KILLED_NODE).map_err(|e| e.to_string())?;
        Ok(Outage::Clients(clients))
    }

    fn what(&self) -> &'static str {
        "NATS node 0 killed (SIGKILL)"
    }

    fn recover(&mut self) -> Result<Option<String>, String> {
        crate::nats::NatsCluster::restart(self, KILLED_NODE).map_err(|e| e.to_string())?;
        Ok(Some(
            "node 0 restarted and accepting MQTT connections".into(),
        ))
    }
}

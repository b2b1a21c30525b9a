//! A simulated recorder: the real agent library running in-process, with
//! simulated channels and firmware clients.
//!
//! [`Recorder::start`] writes an agent configuration (`agent.toml`, the
//! same file `hc-agent --config` reads) into the recorder's directory:
//! serial, region, channels, verification code, state directory, the
//! broker on loopback with the PKI's CA and the device's certificate, the
//! cloud's command key pinned, a local socket in the directory that only
//! the current user may use, and the domain ports. It then runs
//! `hc_agent::shell::daemon::run` on its own thread, on a current-thread
//! tokio runtime inside a `LocalSet`, until [`Recorder::stop`].
//!
//! The firmware clients ([`Recorder::live_view`], [`Recorder::playback`],
//! [`Recorder::configure`]) do what the recorder's streaming and web
//! servers do: ask the agent over the local socket before serving, and
//! serve only on `Allow`. They return the agent's decision.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hc_agent::client::{ClientError, LocalClient};
use hc_agent::core::renewal::DEFAULT_RENEWAL;
use hc_agent::shell::clock::Clocks;
use hc_agent::shell::config::Config;
use hc_protocol::access::{Action, Decision, Principal};
use hc_protocol::local::StatusReply;
use hc_testkit::agent_config;

use crate::cloud::driver::COMMAND_KEY_ID;
use crate::pki::Pki;

/// How long [`Recorder::start`] waits for the agent's local socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a firmware client waits for the agent's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("the PKI has no certificate for device {0}")]
    NoCertificate(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent configuration: {0}")]
    Config(String),
    #[error("the agent stopped: {0}")]
    AgentStopped(String),
    #[error("the agent's local socket {path} did not come up within {timeout:?}")]
    NotReady { path: PathBuf, timeout: Duration },
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// What the recorder is.
#[derive(Debug, Clone)]
pub struct RecorderSpec {
    pub serial: String,
    pub region: String,
    pub channels: u16,
    /// The code printed on the label.
    pub verification_code: String,
    pub http_port: u16,
    pub https_port: u16,
    pub rtsp_port: u16,
    pub sdk_port: u16,
    /// The agent's log level (its logs go to the process's global
    /// `tracing` subscriber, if any).
    pub log_level: String,
    /// How far the recorder's wall clock is off, in seconds (negative:
    /// behind), as a recorder without NTP or with a flat RTC battery: the
    /// agent reads this clock instead of the host's (only its wall clock;
    /// the monotonic clock is the host's).
    pub wall_clock_offset_secs: i64,
    /// Where its files (configuration, state, socket) live: kept, so that
    /// a recorder started again there finds its state. `None`: a fresh
    /// temporary directory, removed when it stops.
    pub home: Option<PathBuf>,
    /// More broker endpoints after the one [`Recorder::start`] is given:
    /// the other nodes of a cluster (`[[cloud.endpoints]]`).
    pub more_endpoints: Vec<hc_testkit::ports::BrokerAddr>,
    /// How often the online status is re-published
    /// (`cloud.status_refresh_secs`; a cloud takes a status older than
    /// two of these and a margin for a device gone).
    pub status_refresh_secs: u64,
    /// Renew the device certificate no later than this before it ends
    /// (`cloud.renew_before_end_secs`; SPEC §6.6).
    pub renew_before_end_secs: u64,
    /// Ask for a certificate again after this long without one
    /// (`cloud.renew_retry_secs`).
    pub renew_retry_secs: u64,
    /// The factory claim certificate of the recorder's batch: set, the
    /// recorder has no certificate of its own and provisions itself with
    /// this one first (SPEC §6.7).
    pub claim: Option<hc_testkit::pki::CertFiles>,
}

impl RecorderSpec {
    /// An 8-channel EU recorder with code `ABCDEF` and the usual ports.
    pub fn new(serial: &str) -> RecorderSpec {
        RecorderSpec {
            serial: serial.to_owned(),
            region: "EU".into(),
            channels: 8,
            verification_code: "ABCDEF".into(),
            http_port: 80,
            https_port: 443,
            rtsp_port: 554,
            sdk_port: 8000,
            log_level: "warn".into(),
            wall_clock_offset_secs: 0,
            home: None,
            more_endpoints: Vec::new(),
            status_refresh_secs: 300,
            renew_before_end_secs: DEFAULT_RENEWAL.before_end.as_secs(),
            renew_retry_secs: DEFAULT_RENEWAL.retry.as_secs(),
            claim: None,
        }
    }
}

/// Where the recorder keeps its files.
#[derive(Debug)]
enum Home {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl Home {
    fn path(&self) -> &Path {
        match self {
            Home::Temporary(dir) => dir.path(),
            Home::Given(path) => path,
        }
    }
}

/// Maps an I/O failure on `path` to [`RecorderError::Io`].
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RecorderError {
    let path = path.to_owned();
    move |source| RecorderError::Io { path, source }
}

/// A running simulated recorder. Stops on drop.
#[derive(Debug)]
pub struct Recorder {
    spec: RecorderSpec,
    home: Home,
    config_path: PathBuf,
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// The effective uid of this process: the one the agent's socket allows.
pub use hc_testkit::agent_config::current_uid;

/// The agent configuration text for a recorder whose files live in `dir`.
pub fn config_text(
    spec: &RecorderSpec,
    dir: &Path,
    pki: &Pki,
    broker_host: &str,
    broker_port: u16,
    command_key: &[u8; 32],
) -> Result<String, RecorderError> {
    let mut config = match &spec.claim {
        Some(claim) => {
            agent_config::loopback_claiming(pki, &spec.serial, dir, broker_port, command_key, claim)
        }
        None => agent_config::loopback(pki, &spec.serial, dir, broker_port, command_key)
            .ok_or_else(|| RecorderError::NoCertificate(spec.serial.clone()))?,
    };
    config.region = spec.region.clone();
    config.channels = spec.channels;
    config.verification_code = spec.verification_code.clone();
    config.cloud.host = broker_host.into();
    agent_config::add_endpoints(&mut config, &spec.more_endpoints);
    config.cloud.status_refresh_secs = spec.status_refresh_secs;
    config.cloud.renew_before_end_secs = spec.renew_before_end_secs;
    config.cloud.renew_retry_secs = spec.renew_retry_secs;
    config.cloud.backoff_base_ms = 200;
    config.cloud.backoff_cap_ms = 2_000;
    config.command_keys[0].id = COMMAND_KEY_ID;
    config.local_socket.mode = 0o600;
    config.domain.http_port = spec.http_port;
    config.domain.https_port = spec.https_port;
    config.domain.rtsp_port = spec.rtsp_port;
    config.domain.sdk_port = spec.sdk_port;
    config.log.level = spec.log_level.clone();
    Ok(format!(
        "# Written by sim-device for the simulated recorder {}.\n{}",
        spec.serial,
        agent_config::to_toml(&config)
    ))
}

impl Recorder {
    /// Starts a recorder with its files in `spec.home` (created if
    /// needed), or a fresh temporary directory. `broker_host` must match
    /// the broker certificate (`127.0.0.1` or `localhost` for the PKI's);
    /// `command_key` is the cloud's command public key. Returns once the
    /// agent's local socket answers.
    pub fn start(
        pki: &Pki,
        broker_host: &str,
        broker_port: u16,
        command_key: [u8; 32],
        spec: RecorderSpec,
    ) -> Result<Recorder, RecorderError> {
        let home = match &spec.home {
            // Absolute, so that the configuration works from any directory.
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
                Home::Given(dir.canonicalize().map_err(io_error(dir))?)
            }
            None => Home::Temporary(
                tempfile::Builder::new()
                    .prefix(&format!("sim-recorder-{}-", spec.serial))
                    .tempdir()
                    .map_err(io_error(&std::env::temp_dir()))?,
            ),
        };
        Self::start_with_home(pki, broker_host, broker_port, command_key, spec, home)
    }

    fn start_with_home(
        pki: &Pki,
        broker_host: &str,
        broker_port: u16,
        command_key: [u8; 32],
        spec: RecorderSpec,
        home: Home,
    ) -> Result<Recorder, RecorderError> {
        let dir = home.path().to_owned();
        std::fs::create_dir_all(dir.join("state")).map_err(io_error(&dir))?;
        let text = config_text(&spec, &dir, pki, broker_host, broker_port, &command_key)?;
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, text).map_err(io_error(&config_path))?;
        let config =
            Config::load(&config_path).map_err(|e| RecorderError::Config(e.to_string()))?;
        let socket = config.local_socket.path.clone();
        let clocks = Clocks::with_wall_offset(spec.wall_clock_offset_secs.saturating_mul(1000));

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("agent-{}", spec.serial))
            .spawn(move || run_agent(config, clocks, stop_rx))
            .map_err(io_error(&dir))?;
        let mut recorder = Recorder {
            spec,
            home,
            config_path,
            socket,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        recorder.wait_ready()?;
        Ok(recorder)
    }

    fn wait_ready(&mut self) -> Result<(), RecorderError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let message = match self.thread.take().map(JoinHandle::join) {
                    Some(Ok(Err(message))) => message,
                    Some(Err(_)) => "the agent thread panicked".into(),
                    _ => "the agent ended at start".into(),
                };
                return Err(RecorderError::AgentStopped(message));
            }
            if LocalClient::connect(&self.socket, CLIENT_TIMEOUT)
                .and_then(|mut c| c.status())
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RecorderError::NotReady {
                    path: self.socket.clone(),
                    timeout: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn serial(&self) -> &str {
        &self.spec.serial
    }

    pub fn spec(&self) -> &RecorderSpec {
        &self.spec
    }

    /// The recorder's directory (configuration, state, socket).
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// The agent configuration file it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The agent's local socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// True while the agent runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// A fresh connection to the agent, as a firmware process opens one.
    pub fn client(&self) -> Result<LocalClient, RecorderError> {
        Ok(LocalClient::connect(&self.socket, CLIENT_TIMEOUT)?)
    }

    /// Asks the agent: may `principal` do `action` on `channel` now?
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        channel: Option<u16>,
    ) -> Result<Decision, RecorderError> {
        Ok(self
            .client()?
            .authorize(principal.clone(), action, channel)?)
    }

    /// The streaming server is asked for live view of `channel`: it asks
    /// the agent and streams only on `Allow`.
    pub fn live_view(
        &self,
        principal: &Principal,
        channel: u16,
    ) -> Result<Decision, RecorderError> {
        self.authorize(principal, Action::LiveView, Some(channel))
    }

    /// The streaming server is asked for playback of `channel`.
    pub fn playback(&self, principal: &Principal, channel: u16) -> Result<Decision, RecorderError> {
        self.authorize(principal, Action::Playback, Some(channel))
    }

    /// The web server is asked to change the configuration.
    pub fn configure(&self, principal: &Principal) -> Result<Decision, RecorderError> {
        self.authorize(principal, Action::ConfigWrite, None)
    }

    /// The agent's status (link, switches, domain registration).
    pub fn status(&self) -> Result<StatusReply, RecorderError> {
        Ok(self.client()?.status()?)
    }

    /// Stops the agent (it marks the device offline on its way out) and
    /// waits for it.
    pub fn stop(mut self) -> Result<(), RecorderError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), RecorderError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(message))) => Err(RecorderError::AgentStopped(message)),
            Some(Err(_)) => Err(RecorderError::AgentStopped(
                "the agent thread panicked".into(),
            )),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The agent thread: a current-thread runtime with a `LocalSet`, as on the
/// device.
fn run_agent(
    config: Config,
    clocks: Clocks,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let shutdown = async move {
        let _ = stop.await;
    };
    local
        .block_on(
            &runtime,
            hc_agent::shell::daemon::run_with_clocks(config, clocks, None, shutdown),
        )
        .map_err(|e| e.to_string())
}

//! The daemon harness: a site (a temp dir with a generated PKI and the
//! embedded TLS broker) that writes agent configurations and starts the real
//! `hc-agent` binary as a child process, plus the constants the device of a
//! site has. The binary is the caller's: an integration test of `hc-agent`
//! passes the one cargo built for it ([`agent_binary`]), the measurements a
//! release build.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use hc_agent::shell::config::Config;
use hc_protocol::envelope::CommandSigner;
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::Outcome;

use crate::agent_config;
use crate::broker::{BrokerConfig, EmbeddedBroker};
use crate::cloud::TestCloud;
use crate::pki::Pki;

pub use crate::fixture::account;

pub const SERIAL: &str = "E2E-NVR-1";
pub const CODE: &str = "ABCDEF";
pub const SEED: [u8; 32] = [7; 32];
pub const WAIT: Duration = Duration::from_secs(10);

/// The agent binary: `HC_AGENT_BIN` when set (a release build, or a QEMU
/// wrapper for a cross build: cross/qemu-agent.sh), else `built` (what
/// `option_env!("CARGO_BIN_EXE_hc-agent")` gives an integration test of
/// `hc-agent`; cargo sets it for those only, so the caller reads it), else
/// `target/release/hc-agent`.
pub fn agent_binary(built: Option<&str>) -> PathBuf {
    if let Some(path) = std::env::var_os("HC_AGENT_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(built.unwrap_or("target/release/hc-agent"))
}

/// The cloud's command signer; the site's agents pin its public key.
pub fn signer() -> CommandSigner {
    CommandSigner::from_seed(1, &SEED).unwrap()
}

/// The seed of the key a test rotates to ([`next_signer`]).
pub const NEXT_SEED: [u8; 32] = [8; 32];

/// The key the cloud rotates to, under id 2: no configuration pins it; a
/// test adds it with `AddCommandKey` (SPEC §6.2).
pub fn next_signer() -> CommandSigner {
    CommandSigner::from_seed(2, &NEXT_SEED).unwrap()
}

/// [`agent_config::loopback`] for the device [`SERIAL`] of `pki`, files in
/// `dir`, the broker on `port`, the [`signer`]'s key pinned.
pub fn device_config(pki: &Pki, dir: &Path, port: u16) -> Config {
    agent_config::loopback(pki, SERIAL, dir, port, &signer().public_key())
        .unwrap_or_else(|| panic!("the PKI has no certificate for {SERIAL}"))
}

pub struct Site {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub broker: EmbeddedBroker,
    /// The agent binary [`Site::start_agent`] runs.
    pub agent: PathBuf,
}

impl Site {
    /// A site running `agent` (see [`agent_binary`]).
    pub fn new(agent: impl Into<PathBuf>) -> Site {
        Site::with_broker(agent, BrokerConfig::from_pki)
    }

    /// A site whose embedded broker is started from `broker(&pki)` instead
    /// of the PKI's own mutual-TLS configuration.
    pub fn with_broker(
        agent: impl Into<PathBuf>,
        broker: impl FnOnce(&Pki) -> BrokerConfig,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path().join("pki"), &[SERIAL]).unwrap();
        let broker = EmbeddedBroker::start(broker(&pki)).unwrap();
        Site {
            dir,
            pki,
            broker,
            agent: agent.into(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    pub fn ports_file(&self) -> PathBuf {
        self.dir.path().join("ports")
    }

    /// The agent's log file (appended to by every agent of the site).
    pub fn agent_log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// The configuration of the site's device: [`agent_config::loopback`]
    /// against the site's broker, with the firmware's ports file.
    pub fn agent_config(&self) -> Config {
        let mut config = device_config(&self.pki, self.dir.path(), self.broker.port());
        config.domain.ports_file = Some(self.ports_file());
        config
    }

    /// Writes [`Site::agent_config`], changed by `change`, as `file` in the
    /// site's directory.
    pub fn write_agent_config(&self, file: &str, change: impl FnOnce(&mut Config)) -> PathBuf {
        let mut config = self.agent_config();
        change(&mut config);
        let path = self.dir.path().join(file);
        agent_config::write(&config, &path).unwrap();
        path
    }

    /// Writes the site's configuration, unchanged, as `agent.toml`.
    pub fn default_config(&self) -> PathBuf {
        self.write_agent_config("agent.toml", |_| {})
    }

    pub fn start_agent(&self, config: &Path) -> AgentProcess {
        AgentProcess::start(&self.agent, config, &self.agent_log_path())
    }

    /// The agent with extra environment variables (for example a
    /// libfaketime preload that shifts its wall clock alone).
    pub fn start_agent_with_env(&self, config: &Path, env: &[(&str, String)]) -> AgentProcess {
        AgentProcess::start_with_env(&self.agent, config, &self.agent_log_path(), env)
    }

    pub fn cloud(&self) -> TestCloud {
        TestCloud::connect(&self.pki, self.broker.port())
    }

    /// A cloud, then the agent with `config`; returns once the cloud saw
    /// the device online.
    pub fn start_online(&self, config: &Path) -> (TestCloud, AgentProcess) {
        let cloud = self.cloud();
        let agent = self.start_agent(config);
        assert!(
            cloud.wait_status(true, WAIT),
            "device never online:\n{}",
            agent.log()
        );
        (cloud, agent)
    }

    /// [`Site::start_online`], then alice binds the device as its owner.
    pub fn start_owned(&self, config: &Path) -> (TestCloud, AgentProcess) {
        let (mut cloud, agent) = self.start_online(config);
        assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);
        (cloud, agent)
    }
}

pub struct AgentProcess {
    pub child: Child,
    log: PathBuf,
}

impl AgentProcess {
    pub fn start(binary: &Path, config: &Path, log: &Path) -> AgentProcess {
        AgentProcess::start_with_env(binary, config, log, &[])
    }

    pub fn start_with_env(
        binary: &Path,
        config: &Path,
        log: &Path,
        env: &[(&str, String)],
    ) -> AgentProcess {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Process::new(binary)
            .arg("--config")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap();
        AgentProcess {
            child,
            log: log.to_owned(),
        }
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the agent has logged `text` at least `times` times;
    /// fails, with the log, if it has not within `within`.
    pub fn wait_logged(&self, text: &str, times: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged {times} time(s) within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGHUP: the agent reloads its configuration.
    pub fn hangup(&self) {
        let status = Process::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {}", self.child.id());
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Process::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the agent exits by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log());
        }
    }
}

/// Decodes a message the agent published (None if it does not decode).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    hc_protocol::codec::decode(bytes, MAX_MESSAGE_BYTES).ok()
}

/// Reads a whole file as text (empty if missing).
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

//! A real mosquitto (the Debian package) as a child process, for tests: the
//! third-party broker the agent must work with. One TLS listener on
//! 127.0.0.1 with client certificates from the [`Pki`] (the certificate CN
//! is the MQTT user name), no anonymous access, persistence in a temporary
//! directory, and an ACL that confines each device to its own subtree:
//!
//! ```text
//! device {serial}: read  dev/{serial}/cmd, dev/{serial}/domain/result
//!                  write dev/{serial}/ack, state, status, audit, domain/register
//! cloud:           readwrite dev/#
//! ```
//!
//! Tests that need mosquitto call [`skip_without_mosquitto`]: without the
//! binary they are skipped with a printed reason, unless the environment
//! variable `CI` is set, in which case they fail.
//!
//! Notes:
//! - Run as root, mosquitto 2 drops privileges to the `mosquitto` user
//!   before it reads the ACL and the key files (0600, owned by root). The
//!   configuration therefore says `user root` when this process runs as
//!   root (mosquitto prints a warning about that into its log).
//! - mosquitto 2's `tls_version` is a minimum. To offer only TLS 1.2
//!   ([`TlsVersions::Tls12Only`]), the child gets an `OPENSSL_CONF` with
//!   `MaxProtocol = TLSv1.2` (and only ECDHE-ECDSA AEAD suites).

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::{Pki, CLOUD_CN};
use crate::ports::{deref_to_broker_addr, BrokerAddr};

/// How long to wait for mosquitto to listen, and to exit on SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Where mosquitto is looked for besides `PATH` (Debian installs it into
/// /usr/sbin, which is not on every user's `PATH`).
const EXTRA_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// The device subtree rules, `%u` being the certificate CN (the NATS
/// cluster's permissions are converted from these, [`crate::nats`]).
pub const DEVICE_ACL: [&str; 10] = [
    "pattern read dev/%u/cmd",
    "pattern read dev/%u/domain/result",
    "pattern read dev/%u/time/answer",
    "pattern write dev/%u/ack",
    "pattern write dev/%u/state",
    "pattern write dev/%u/status",
    "pattern write dev/%u/audit",
    "pattern write dev/%u/domain/register",
    "pattern write dev/%u/time/request",
    "pattern write dev/%u/cert/request",
];

/// The ACL lines that let a claim certificate (user = its CN) provision
/// devices and do nothing else (SPEC §3.2, §6.7). A claim name is never a
/// serial, so the device patterns above open no device's topics to it.
pub const CLAIM_ACL: [&str; 2] = [
    "pattern write prov/%u/+/request",
    "pattern read prov/%u/+/answer",
];

#[derive(Debug, thiserror::Error)]
pub enum MosquittoError {
    #[error("the mosquitto binary was not found (apt-get install mosquitto)")]
    NotInstalled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reserve a port on 127.0.0.1: {0}")]
    NoPort(#[source] std::io::Error),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mosquitto exited ({status}) while starting; its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("mosquitto did not listen on {addr} within {timeout:?}; its log:\n{log}")]
    NotListening {
        addr: SocketAddr,
        timeout: Duration,
        log: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MosquittoError + '_ {
    move |source| MosquittoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The path of the mosquitto binary, if installed.
pub fn mosquitto_binary() -> Option<PathBuf> {
    crate::skip::find_program("mosquitto", None, &EXTRA_DIRS)
}

/// True if the mosquitto binary is installed.
pub fn mosquitto_available() -> bool {
    mosquitto_binary().is_some()
}

/// For tests: `false` if mosquitto is installed (run the test); `true`
/// after printing why `test` is skipped if it is not. Panics instead of
/// skipping when the environment variable `CI` is set: there, a missing
/// mosquitto is a failure, never a silent pass.
pub fn skip_without_mosquitto(test: &str) -> bool {
    crate::skip::skip_unless(
        mosquitto_available(),
        test,
        "mosquitto is not installed (apt-get install mosquitto)",
    )
}

/// The TLS versions the listener offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersions {
    /// TLS 1.3 only (the default, as the design asks of the cloud link).
    #[default]
    Tls13Only,
    /// TLS 1.2 only, AEAD suites only: for the agent's 1.2 fallback.
    Tls12Only,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct MosquittoConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub tls: TlsVersions,
}

/// A running mosquitto. Stopped on drop; its temporary directory
/// (configuration, ACL, persistence, log) goes with it.
#[derive(Debug)]
pub struct Mosquitto {
    binary: PathBuf,
    dir: tempfile::TempDir,
    addr: BrokerAddr,
    tls: TlsVersions,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts mosquitto with TLS 1.3 on a free port.
    pub fn start(pki: &Pki) -> Result<Mosquitto, MosquittoError> {
        Self::start_with(pki, MosquittoConfig::default())
    }

    /// Starts mosquitto as configured and returns once it listens.
    pub fn start_with(pki: &Pki, config: MosquittoConfig) -> Result<Mosquitto, MosquittoError> {
        let binary = mosquitto_binary().ok_or(MosquittoError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("sim-mosquitto-")
            .tempdir()
            .map_err(io_err(&std::env::temp_dir()))?;
        let addr = reserve_port(config.port)?;
        write_files(dir.path(), pki, addr.port(), config.tls)?;
        let mut mosquitto = Mosquitto {
            binary,
            dir,
            addr: BrokerAddr::new(addr),
            tls: config.tls,
            child: None,
        };
        // A free port found by binding and closing it can be taken before
        // mosquitto binds it (it then exits): with any port allowed, try
        // another.
        let attempts = if config.port == 0 { 5 } else { 1 };
        for attempt in 1.. {
            match mosquitto.spawn() {
                Ok(()) => break,
                Err(MosquittoError::Exited { .. }) if attempt < attempts => {
                    mosquitto.addr = BrokerAddr::new(reserve_port(0)?);
                    write_files(mosquitto.dir.path(), pki, mosquitto.addr.port(), config.tls)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(mosquitto)
    }

    /// The TLS versions offered.
    pub fn tls(&self) -> TlsVersions {
        self.tls
    }

    /// The temporary directory with `mosquitto.conf`, `acl`, `data/` and
    /// `mosquitto.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What mosquitto logged so far (connections, refusals, errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// True while the child process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops mosquitto (SIGTERM: it saves its persistence file) and starts
    /// it again with the same configuration, port and persistence:
    /// persistent sessions, their queued messages and retained messages
    /// survive.
    pub fn restart(&mut self) -> Result<(), MosquittoError> {
        self.terminate();
        self.spawn()
    }

    /// Kills mosquitto with SIGKILL (it saves nothing: what it received
    /// since its last autosave of the persistence file is lost, queued
    /// QoS 1 messages included) and starts it again on the same port with
    /// what its persistence file holds.
    pub fn kill_and_restart(&mut self) -> Result<(), MosquittoError> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn()
    }

    /// Stops mosquitto (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(mut self) {
        self.terminate();
    }

    fn spawn(&mut self) -> Result<(), MosquittoError> {
        let dir = self.dir.path();
        let log_path = dir.join("mosquitto.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.tls == TlsVersions::Tls12Only {
            command.env("OPENSSL_CONF", dir.join("openssl.cnf"));
        }
        let child = command.spawn().map_err(|source| MosquittoError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(MosquittoError::Exited {
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            if TcpStream::connect_timeout(&self.addr.addr(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.terminate();
                return Err(MosquittoError::NotListening {
                    addr: self.addr.addr(),
                    timeout: START_TIMEOUT,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn terminate(&mut self) {
        if let Some(child) = self.child.take() {
            crate::child::terminate(child, STOP_TIMEOUT);
        }
    }
}

deref_to_broker_addr!(Mosquitto);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn reserve_port(port: u16) -> Result<SocketAddr, MosquittoError> {
    crate::ports::reserve(port).map_err(MosquittoError::NoPort)
}

/// The ACL file: each device confined to its own subtree, the cloud on all.
pub fn acl_text() -> String {
    let mut acl =
        String::from("# Each device (user = certificate CN = serial) on its own subtree.\n");
    for line in DEVICE_ACL {
        acl.push_str(line);
        acl.push('\n');
    }
    acl.push_str("# Claim certificates (user = claim-{batch}) on the provisioning topics only.\n");
    for line in CLAIM_ACL {
        acl.push_str(line);
        acl.push('\n');
    }
    let _ = write!(
        acl,
        "\nuser {CLOUD_CN}\ntopic readwrite dev/#\ntopic readwrite prov/#\n"
    );
    acl
}

fn write_files(dir: &Path, pki: &Pki, port: u16, tls: TlsVersions) -> Result<(), MosquittoError> {
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(io_err(&data))?;
    let acl = dir.join("acl");
    fs::write(&acl, acl_text()).map_err(io_err(&acl))?;

    let mut conf = String::from("# Written by sim-device for a test run.\n");
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Otherwise mosquitto drops to the `mosquitto` user before reading
        // the ACL and the (root-owned, 0600) key.
        conf.push_str("user root\n");
    }
    let _ = write!(
        conf,
        "per_listener_settings false\n\
         allow_anonymous false\n\
         acl_file {acl}\n\
         persistence true\n\
         persistence_location {data}/\n\
         log_dest stderr\n\
         log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
         connection_messages true\n\
         # Nagle plus delayed acknowledgements would add about 40 ms to\n\
         # every small message; a cloud broker for commands turns it off.\n\
         set_tcp_nodelay true\n\
         \n\
         listener {port} 127.0.0.1\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_username_as_clientid true\n",
        acl = acl.display(),
        data = data.display(),
        ca = pki.ca_cert().display(),
        cert = pki.server().cert.display(),
        key = pki.server().key.display(),
    );
    match tls {
        TlsVersions::Tls13Only => conf.push_str("tls_version tlsv1.3\n"),
        TlsVersions::Tls12Only => {
            conf.push_str(
                "tls_version tlsv1.2\n\
                 ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305\n",
            );
            // mosquitto has no maximum version setting; OpenSSL has.
            let openssl = dir.join("openssl.cnf");
            fs::write(
                &openssl,
                "openssl_conf = default_conf\n\
                 [default_conf]\nssl_conf = ssl_sect\n\
                 [ssl_sect]\nsystem_default = system_default_sect\n\
                 [system_default_sect]\nMaxProtocol = TLSv1.2\n",
            )
            .map_err(io_err(&openssl))?;
        }
    }
    let conf_path = dir.join("mosquitto.conf");
    fs::write(&conf_path, conf).map_err(io_err(&conf_path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_confines_devices_and_opens_dev_to_the_cloud() {
        let acl = acl_text();
        assert!(acl.contains("pattern read dev/%u/cmd\n"));
        assert!(acl.contains("pattern write dev/%u/domain/register\n"));
        assert!(acl.ends_with("user cloud\ntopic readwrite dev/#\ntopic readwrite prov/#\n"));
        // Every leaf of the topic tree has exactly one rule, in the right
        // direction.
        for leaf in hc_protocol::topics::Leaf::ALL {
            let access = if leaf.is_inbound() { "read" } else { "write" };
            let rule = format!("pattern {access} dev/%u/{}\n", leaf.path());
            assert_eq!(acl.matches(&rule).count(), 1, "{rule}");
        }
    }
}

//! Agent configurations beyond [`Site::write_config`]: another broker port
//! (a proxy, mosquitto), another device certificate, a shorter keep-alive,
//! another local-socket allow-list. The text is the one `write_config`
//! writes, with these values substituted.

use std::path::{Path, PathBuf};

use super::{signer, Site, CODE, SERIAL};

/// What differs from the default agent configuration of a [`Site`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file name inside the site's directory.
    pub file: String,
    /// The broker (or proxy) port on `localhost`.
    pub port: u16,
    /// The CA the agent pins.
    pub ca: PathBuf,
    /// The serial whose device certificate and key the agent presents.
    pub cert_of: String,
    pub keep_alive_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// The local socket's uid allow-list.
    pub allowed_uids: Vec<u32>,
    /// Of those, the uids that may switch platform access.
    pub admin_uids: Vec<u32>,
    /// Appended to `[cloud]` (e.g. `allow_tls12 = true`).
    pub cloud_extra: String,
}

impl Site {
    /// The default configuration's values (as `default_config` writes them).
    pub fn agent_config(&self) -> AgentConfig {
        AgentConfig {
            file: "agent.toml".into(),
            port: self.broker.port(),
            ca: self.pki.ca_cert().to_owned(),
            cert_of: SERIAL.into(),
            keep_alive_secs: 5,
            backoff_base_ms: 100,
            backoff_cap_ms: 1000,
            allowed_uids: vec![current_uid()],
            admin_uids: vec![current_uid()],
            cloud_extra: String::new(),
        }
    }

    /// Writes `config` into the site's directory.
    pub fn write_agent_config(&self, config: &AgentConfig) -> PathBuf {
        let device = self
            .pki
            .device(&config.cert_of)
            .unwrap_or_else(|| panic!("no device certificate for {}", config.cert_of));
        let list = |uids: &[u32]| {
            uids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let uids = list(&config.allowed_uids);
        let admin_uids = list(&config.admin_uids);
        let text = format!(
            r#"serial = "{SERIAL}"
region = "EU"
channels = 8
verification_code = "{CODE}"
state_dir = "{state}"

[cloud]
host = "localhost"
port = {port}
ca = "{ca}"
cert = "{cert}"
key = "{key}"
keep_alive_secs = {keep_alive}
backoff_base_ms = {base}
backoff_cap_ms = {cap}
{extra}

[[command_keys]]
id = 1
public_key = "{public}"

[local_socket]
path = "{socket}"
allowed_uids = [{uids}]
admin_uids = [{admin_uids}]

[domain]
http_port = 80
https_port = 443
rtsp_port = 554
sdk_port = 8000
ports_file = "{ports}"
check_interval_secs = 1
min_interval_secs = 1

[log]
level = "debug"
"#,
            state = self.state_dir().display(),
            port = config.port,
            ca = config.ca.display(),
            cert = device.cert.display(),
            key = device.key.display(),
            keep_alive = config.keep_alive_secs,
            base = config.backoff_base_ms,
            cap = config.backoff_cap_ms,
            extra = config.cloud_extra,
            public = agent::shell::config::encode_hex(&signer().public_key()),
            socket = self.socket().display(),
            uids = uids,
            ports = self.ports_file().display(),
        );
        let path = self.dir.path().join(&config.file);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The agent's log file (appended to by every agent of the site).
    pub fn agent_log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }
}

/// The uid this test runs as.
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}

/// Reads a whole file as text (empty if missing).
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Site {
    /// A site whose embedded broker is started from `broker(&pki)` instead
    /// of the PKI's own mutual-TLS configuration.
    pub fn with_broker(
        broker: impl FnOnce(&sim_device::pki::Pki) -> sim_device::broker::BrokerConfig,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pki = sim_device::pki::Pki::generate(dir.path().join("pki"), &[SERIAL]).unwrap();
        let config = broker(&pki);
        let broker = sim_device::broker::EmbeddedBroker::start(config).unwrap();
        Site { dir, pki, broker }
    }
}

//! The agent's configuration file (TOML): its tables as types and their
//! parsing. Everything a firmware integrator sets lives here;
//! `agent.example.toml` at the crate root documents each key. What the
//! values must satisfy is `check`'s, how a refusal reads is `error`'s.

use std::path::{Path, PathBuf};

use hc_protocol::ddns::ServicePorts;
use serde::{Deserialize, Serialize};

/// Where the daemon and `ctl` read the configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/hc-agent/agent.toml";

mod check;
mod error;

pub use check::log_level;
use error::one_line;
pub use error::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// The whole configuration file (`agent.example.toml` documents each key).
pub struct Config {
    /// The device serial: MQTT client id and certificate subject.
    pub serial: String,
    /// The cloud region the device belongs to; accounts of another region
    /// are refused.
    pub region: String,
    /// Video channels the recorder has (numbered from 1).
    pub channels: u16,
    /// The code printed on the device's label, the key of the bind proof.
    pub verification_code: String,
    /// Where the state file lives (on flash).
    pub state_dir: PathBuf,
    /// The cloud link.
    pub cloud: CloudConfig,
    /// The pinned command verification keys (current and next).
    #[serde(default)]
    pub command_keys: Vec<CommandKeyConfig>,
    /// The local socket for the firmware's processes.
    pub local_socket: LocalSocketConfig,
    /// Domain registration.
    #[serde(default)]
    pub domain: DomainConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// The `[cloud]` table: where the broker is and how to reach it.
pub struct CloudConfig {
    /// The broker's host name (also the name its certificate must carry).
    pub host: String,
    /// The broker's MQTT-over-TLS port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The cloud CA certificate (PEM). The only trust anchor: system roots
    /// are never used.
    pub ca: PathBuf,
    /// The device certificate (PEM); its subject is the serial.
    pub cert: PathBuf,
    /// The device private key (PEM); must not be readable by group or others.
    pub key: PathBuf,
    /// The CA that issued the device certificate, when it is not `ca` (a
    /// separate device CA, SPEC §3.2): `--check-config` checks the
    /// certificate against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ca: Option<PathBuf>,
    /// The factory claim certificate shared by the device's production
    /// batch (SPEC §6.7): while the device has no certificate of its own
    /// (`cert` missing, nothing renewed yet), it connects with this one to
    /// the provisioning topics only and asks for its certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_cert: Option<PathBuf>,
    /// The claim certificate's private key (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_key: Option<PathBuf>,
    /// The MQTT keep-alive; silence for 1.5 of these is a dead link.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// How long one connection attempt (TCP, TLS, CONNECT, CONNACK) may
    /// take before it is given up; a clustered broker under load or one
    /// recovering its store can take seconds to answer.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How often the retained online status is published again while
    /// connected. A cloud takes a status not refreshed within two of these
    /// (and a margin) for a device gone (SPEC §2.4), which is what tells it
    /// when a broker node dies without publishing the last will; shorter
    /// notices that sooner, at one small publish per interval per device.
    #[serde(default = "default_status_refresh")]
    pub status_refresh_secs: u64,
    /// Renew the device certificate once this share of its lifetime has
    /// passed, in percent (SPEC §6.6).
    #[serde(default = "default_renew_at_percent")]
    pub renew_at_percent: u8,
    /// Renew it no later than this before it ends, whatever the share.
    #[serde(default = "default_renew_before_end")]
    pub renew_before_end_secs: u64,
    /// Ask for a certificate again after this long without one.
    #[serde(default = "default_renew_retry")]
    pub renew_retry_secs: u64,
    /// Offer TLS 1.2 (AEAD suites only) as a fallback. Off by default.
    #[serde(default)]
    pub allow_tls12: bool,
    /// Plain MQTT without TLS. For tests on loopback only; never in the field.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// The first reconnect delay's bound (full jitter, doubling).
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// The largest reconnect delay.
    #[serde(default = "default_backoff_cap_ms")]
    pub backoff_cap_ms: u64,
    /// After the broker closed an established connection, delays start
    /// from this instead of the base (herd control, see core::backoff).
    #[serde(default = "default_reconnect_spread_ms")]
    pub reconnect_spread_ms: u64,
    /// More nodes of the same broker cluster, after `host`/`port`: each
    /// device starts at its own place in the list (by serial) and fails
    /// over to the next endpoint when one refuses, times out or drops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// One more broker node (`[[cloud.endpoints]]`).
pub struct EndpointConfig {
    /// The node's host name (also the name its certificate must carry).
    pub host: String,
    /// Its MQTT-over-TLS port.
    #[serde(default = "default_port")]
    pub port: u16,
}

/// Most broker endpoints a configuration may list (`host` and
/// `endpoints` together).
pub const MAX_BROKER_ENDPOINTS: usize = 8;

impl Config {
    /// Every broker endpoint, `host`/`port` first.
    pub fn broker_endpoints(&self) -> Vec<(String, u16)> {
        let first = (self.cloud.host.clone(), self.cloud.port);
        core::iter::once(first)
            .chain(
                self.cloud
                    .endpoints
                    .iter()
                    .map(|e| (e.host.clone(), e.port)),
            )
            .collect()
    }

    /// How many broker endpoints there are: `host`/`port` and `endpoints`.
    pub fn endpoint_count(&self) -> usize {
        1 + self.cloud.endpoints.len()
    }

    /// Where in the endpoint list this device starts: spread over a fleet
    /// by its serial (FNV-1a), so that the devices share the nodes.
    pub fn first_endpoint(&self) -> u8 {
        first_endpoint(&self.serial, self.endpoint_count())
    }
}

/// Where in a list of `count` broker endpoints (at least one) device
/// `serial` starts: FNV-1a of the serial, modulo `count`.
pub fn first_endpoint(serial: &str, count: usize) -> u8 {
    let count = u32::try_from(count).unwrap_or(u32::MAX).max(1);
    let hash = serial.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % count) as u8
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// One pinned command verification key.
pub struct CommandKeyConfig {
    /// The key id envelopes name.
    pub id: u8,
    /// The Ed25519 public key, 64 hex digits.
    pub public_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// The `[local_socket]` table.
pub struct LocalSocketConfig {
    /// The socket file.
    pub path: PathBuf,
    /// User ids whose processes may connect.
    pub allowed_uids: Vec<u32>,
    /// User ids whose processes may switch platform access on behalf of
    /// the device admin: the process that authenticated the admin (the web
    /// server, say). Each must also be in `allowed_uids`. The request's own
    /// "admin" level is the caller's word; this list is the device's.
    /// Default: none, so no process can cut the cloud link until set.
    #[serde(default)]
    pub admin_uids: Vec<u32>,
    /// File mode of the socket (owner and group only by default).
    #[serde(default = "default_socket_mode")]
    pub mode: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// The `[domain]` table: the service ports registered with the domain
/// name, and how often they are checked.
pub struct DomainConfig {
    /// The web server's port.
    pub http_port: u16,
    /// The web server's TLS port.
    pub https_port: u16,
    /// The streaming server's port.
    pub rtsp_port: u16,
    /// The SDK server's port.
    pub sdk_port: u16,
    /// A file the firmware rewrites when its service ports change, with
    /// lines `http=80`, `https=443`, `rtsp=554`, `sdk=8000`, and port
    /// mappings `map=tcp:80:8080`. Read on every check; overrides the ports
    /// above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_file: Option<PathBuf>,
    /// How often the LAN address and ports are checked.
    #[serde(default = "default_check_secs")]
    pub check_interval_secs: u64,
    /// Registrations are never sent more often than this.
    #[serde(default = "default_min_interval")]
    pub min_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// The `[log]` table.
pub struct LogConfig {
    /// error, warn, info, debug or trace.
    #[serde(default = "default_level")]
    pub level: String,
    /// Log to the syslog socket instead of standard output (standard error
    /// when the socket cannot be reached).
    #[serde(default)]
    pub syslog: bool,
    /// The syslog socket.
    #[serde(default = "default_syslog_socket")]
    pub syslog_socket: PathBuf,
}

fn default_port() -> u16 {
    8883
}
fn default_keep_alive() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_status_refresh() -> u64 {
    300
}
fn default_renew_at_percent() -> u8 {
    crate::core::renewal::DEFAULT_RENEWAL.lifetime_percent
}
fn default_renew_before_end() -> u64 {
    crate::core::renewal::DEFAULT_RENEWAL.before_end.as_secs()
}
fn default_renew_retry() -> u64 {
    crate::core::renewal::DEFAULT_RENEWAL.retry.as_secs()
}
fn default_backoff_base_ms() -> u64 {
    1_000
}
fn default_reconnect_spread_ms() -> u64 {
    crate::core::backoff::DEFAULT_RECONNECT_SPREAD.as_millis() as u64
}
fn default_backoff_cap_ms() -> u64 {
    120_000
}
fn default_socket_mode() -> u32 {
    0o660
}
fn default_check_secs() -> u64 {
    30
}
fn default_min_interval() -> u64 {
    60
}
fn default_level() -> String {
    "info".into()
}
fn default_syslog_socket() -> PathBuf {
    "/dev/log".into()
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            http_port: 80,
            https_port: 443,
            rtsp_port: 554,
            sdk_port: 8000,
            ports_file: None,
            check_interval_secs: default_check_secs(),
            min_interval_secs: default_min_interval(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_level(),
            syslog: false,
            syslog_socket: default_syslog_socket(),
        }
    }
}

impl DomainConfig {
    /// The configured service ports (the ports file, when set, overrides
    /// them at each check).
    pub fn ports(&self) -> ServicePorts {
        ServicePorts {
            http: self.http_port,
            https: self.https_port,
            rtsp: self.rtsp_port,
            sdk: self.sdk_port,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates the text of the configuration file at `path`
    /// (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: one_line(text, &e),
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// Hex (either case, surrounding blanks ignored) to bytes; `None` if it is
/// not whole bytes of hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lower-case hex, for writing keys into configuration files.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

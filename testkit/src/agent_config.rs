//! Agent configuration files as the tests, the simulator and the
//! measurements write them: an `hc_agent::shell::config::Config` value, built
//! here and changed by the caller, serialized with `toml`. No text
//! templates, so a key the agent renames or adds cannot drift apart from
//! the files written for it.

use std::io;
use std::path::Path;

use hc_agent::core::renewal::DEFAULT_RENEWAL;
use hc_agent::shell::config::{
    encode_hex, CloudConfig, CommandKeyConfig, Config, DomainConfig, EndpointConfig,
    LocalSocketConfig, LogConfig,
};

use crate::pki::{CertFiles, Pki};
use crate::ports::BrokerAddr;

/// The configuration of a device on loopback, as the tests run it (callers
/// change what they need): device `serial` of `pki` (its certificate and
/// key; None if the PKI has none), an 8-channel EU recorder with code
/// `ABCDEF`, its files (state, socket) in `dir`, the broker on
/// `localhost:port`, `command_key` pinned as key 1, short timings
/// (keep-alive 5 s, backoff 100 ms to 1 s, domain checks every second), the
/// local socket open to this process's uid as user and admin, log level
/// debug.
pub fn loopback(
    pki: &Pki,
    serial: &str,
    dir: &Path,
    port: u16,
    command_key: &[u8; 32],
) -> Option<Config> {
    let device = pki.device(serial)?;
    Some(loopback_with(
        pki,
        serial,
        dir,
        port,
        command_key,
        device.clone(),
    ))
}

/// [`loopback`] for a device that has no certificate of its own yet and
/// provisions itself with the claim certificate `claim` (SPEC §6.7): its
/// `cert` and `key` name files in `dir` that do not exist.
pub fn loopback_claiming(
    pki: &Pki,
    serial: &str,
    dir: &Path,
    port: u16,
    command_key: &[u8; 32],
    claim: &CertFiles,
) -> Config {
    let own = CertFiles {
        cert: dir.join("device.pem"),
        key: dir.join("device.key"),
    };
    let mut config = loopback_with(pki, serial, dir, port, command_key, own);
    config.cloud.claim_cert = Some(claim.cert.clone());
    config.cloud.claim_key = Some(claim.key.clone());
    config
}

fn loopback_with(
    pki: &Pki,
    serial: &str,
    dir: &Path,
    port: u16,
    command_key: &[u8; 32],
    device: CertFiles,
) -> Config {
    Config {
        serial: serial.into(),
        region: "EU".into(),
        channels: 8,
        verification_code: crate::daemon::CODE.into(),
        state_dir: dir.join("state"),
        cloud: CloudConfig {
            host: "localhost".into(),
            port,
            ca: pki.ca_cert().to_owned(),
            cert: device.cert.clone(),
            key: device.key.clone(),
            device_ca: None,
            claim_cert: None,
            claim_key: None,
            keep_alive_secs: 5,
            // The agent's default.
            connect_timeout_secs: 10,
            // The agent's default.
            status_refresh_secs: 300,
            // The agent's defaults: test certificates live for decades.
            renew_at_percent: DEFAULT_RENEWAL.lifetime_percent,
            renew_before_end_secs: DEFAULT_RENEWAL.before_end.as_secs(),
            renew_retry_secs: DEFAULT_RENEWAL.retry.as_secs(),
            allow_tls12: false,
            insecure_plaintext: false,
            backoff_base_ms: 100,
            backoff_cap_ms: 1_000,
            // The agent's default.
            reconnect_spread_ms: 1_000,
            endpoints: Vec::new(),
        },
        command_keys: vec![CommandKeyConfig {
            id: 1,
            public_key: encode_hex(command_key),
        }],
        local_socket: LocalSocketConfig {
            path: dir.join("agent.sock"),
            allowed_uids: vec![current_uid()],
            admin_uids: vec![current_uid()],
            mode: 0o660,
        },
        domain: DomainConfig {
            check_interval_secs: 1,
            min_interval_secs: 1,
            ..DomainConfig::default()
        },
        log: LogConfig {
            level: "debug".into(),
            ..LogConfig::default()
        },
    }
}

/// Adds `more` as further broker endpoints (`[[cloud.endpoints]]`, the
/// other nodes of a cluster such as [`crate::nats::NatsCluster`]) after
/// `cloud.host`/`cloud.port`.
pub fn add_endpoints(config: &mut Config, more: &[BrokerAddr]) {
    config
        .cloud
        .endpoints
        .extend(more.iter().map(|addr| EndpointConfig {
            host: addr.host().into(),
            port: addr.port(),
        }));
}

/// The configuration file's text.
pub fn to_toml(config: &Config) -> String {
    toml::to_string(config).expect("an agent configuration serializes to TOML")
}

/// Writes `config` to `path`.
pub fn write(config: &Config, path: &Path) -> io::Result<()> {
    std::fs::write(path, to_toml(config))
}

/// The effective uid of this process: the one an agent it starts runs as.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_configuration_loads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path().join("pki"), &["RT-1"]).unwrap();
        let mut config = loopback(&pki, "RT-1", dir.path(), 18_883, &[9; 32]).unwrap();
        // Every optional key set, so that each is written and read back.
        config.cloud.allow_tls12 = true;
        config.domain.ports_file = Some(dir.path().join("ports"));
        config.local_socket.mode = 0o600;
        for (name, config) in [
            ("with ports file", config.clone()),
            ("without", {
                config.domain.ports_file = None;
                config
            }),
        ] {
            let path = dir.path().join("agent.toml");
            write(&config, &path).unwrap();
            // `load` validates too.
            let read = Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(format!("{read:?}"), format!("{config:?}"), "{name}");
        }
    }
}

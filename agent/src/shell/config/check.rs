//! What a parsed configuration must hold before the agent uses it: every
//! value that can be checked without touching files, each refusal naming
//! the key to fix (file checks, such as certificates and key modes, are
//! `--check-config`'s).

use std::ops::RangeInclusive;

use hc_protocol::envelope::{CommandKeys, PUBLIC_KEY_LEN};
use hc_protocol::limits::{MAX_CHANNELS, MAX_COMMAND_KEYS, MAX_LOCAL_PEERS};
use hc_protocol::{DomainName, Region, Serial, Text};

use super::error::{in_range, invalid};
use super::{decode_hex, Config, ConfigError};
use crate::core::Identity;

impl Config {
    /// Checks every value that can be checked without touching files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.identity()?;
        self.command_keys()?;
        if self.cloud.claim_cert.is_some() != self.cloud.claim_key.is_some() {
            return Err(invalid(
                "cloud.claim_cert",
                "claim_cert and claim_key go together",
            ));
        }
        if self.local_socket.allowed_uids.len() > MAX_LOCAL_PEERS {
            return Err(invalid(
                "local_socket.allowed_uids",
                format!("at most {MAX_LOCAL_PEERS} entries"),
            ));
        }
        if let Some(uid) = self
            .local_socket
            .admin_uids
            .iter()
            .find(|uid| !self.local_socket.allowed_uids.contains(uid))
        {
            return Err(invalid(
                "local_socket.admin_uids",
                format!("uid {uid} is not in allowed_uids"),
            ));
        }
        if self.local_socket.mode & 0o007 != 0 {
            return Err(invalid(
                "local_socket.mode",
                "must not give others any access",
            ));
        }
        self.check_ranges()?;
        if self.endpoint_count() > super::MAX_BROKER_ENDPOINTS {
            return Err(invalid(
                "cloud.endpoints",
                format!(
                    "at most {} endpoints with cloud.host",
                    super::MAX_BROKER_ENDPOINTS
                ),
            ));
        }
        if self.cloud.host.is_empty() {
            return Err(invalid("cloud.host", "must not be empty"));
        }
        if self.cloud.endpoints.iter().any(|e| e.host.is_empty()) {
            return Err(invalid("cloud.endpoints.host", "must not be empty"));
        }
        if self.cloud.backoff_cap_ms < self.cloud.backoff_base_ms {
            return Err(invalid(
                "cloud.backoff_cap_ms",
                "must be at least backoff_base_ms",
            ));
        }
        log_level(&self.log.level)?;
        Ok(())
    }

    /// Every number within what the agent can use: no value can overflow a
    /// duration, a deadline or a 16-bit wire field.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let (c, d) = (&self.cloud, &self.domain);
        let ranges: [(&'static str, u64, RangeInclusive<u64>); 12] = [
            ("cloud.keep_alive_secs", c.keep_alive_secs, 5..=65_535),
            (
                "cloud.connect_timeout_secs",
                c.connect_timeout_secs,
                1..=300,
            ),
            // Shorter would load a fleet's broker for little; longer than a
            // day, a device gone would stay "online" for days.
            (
                "cloud.status_refresh_secs",
                c.status_refresh_secs,
                5..=86_400,
            ),
            (
                "cloud.renew_at_percent",
                u64::from(c.renew_at_percent),
                1..=99,
            ),
            // Up to a year before the end; a longer margin would renew a
            // ten-year certificate from its first day.
            (
                "cloud.renew_before_end_secs",
                c.renew_before_end_secs,
                0..=31_536_000,
            ),
            ("cloud.renew_retry_secs", c.renew_retry_secs, 1..=86_400),
            ("cloud.backoff_base_ms", c.backoff_base_ms, 1..=60_000),
            ("cloud.backoff_cap_ms", c.backoff_cap_ms, 1..=3_600_000),
            (
                "cloud.reconnect_spread_ms",
                c.reconnect_spread_ms,
                0..=3_600_000,
            ),
            (
                "domain.check_interval_secs",
                d.check_interval_secs,
                1..=86_400,
            ),
            ("domain.min_interval_secs", d.min_interval_secs, 0..=86_400),
            (
                "local_socket.mode",
                u64::from(self.local_socket.mode),
                0..=0o777,
            ),
        ];
        ranges
            .into_iter()
            .try_for_each(|(key, value, range)| in_range(key, value, range))
    }

    /// The device's identity (serial, region, channels, code), checked.
    pub fn identity(&self) -> Result<Identity, ConfigError> {
        let serial = Serial::new(&self.serial).map_err(|e| invalid("serial", e.to_string()))?;
        DomainName::from_serial(&serial).map_err(|e| {
            invalid(
                "serial",
                format!("does not give a default domain name: {e}"),
            )
        })?;
        if self.channels == 0 || usize::from(self.channels) > MAX_CHANNELS {
            return Err(invalid("channels", format!("1 to {}", MAX_CHANNELS)));
        }
        if self.verification_code.len() < 6 {
            return Err(invalid("verification_code", "at least 6 characters"));
        }
        Ok(Identity {
            serial,
            region: Region::new(&self.region).map_err(|e| invalid("region", e.to_string()))?,
            channel_count: self.channels,
            verification_code: Text::new(&self.verification_code)
                .map_err(|e| invalid("verification_code", e.to_string()))?,
        })
    }

    /// The pinned command keys, decoded and checked (at least one).
    pub fn command_keys(&self) -> Result<CommandKeys, ConfigError> {
        if self.command_keys.is_empty() {
            return Err(invalid(
                "command_keys",
                "at least one cloud command key must be pinned",
            ));
        }
        let mut keys = CommandKeys::new();
        for key in &self.command_keys {
            let bytes = decode_hex(&key.public_key)
                .filter(|b| b.len() == PUBLIC_KEY_LEN)
                .ok_or_else(|| invalid("command_keys.public_key", "must be 64 hex digits"))?;
            let mut public = [0u8; PUBLIC_KEY_LEN];
            public.copy_from_slice(&bytes);
            if !keys.pin(key.id, public) {
                return Err(invalid(
                    "command_keys",
                    format!("at most {MAX_COMMAND_KEYS} keys, each with its own id"),
                ));
            }
        }
        Ok(keys)
    }
}

/// Parses a log level name.
pub fn log_level(name: &str) -> Result<tracing::Level, ConfigError> {
    name.parse()
        .map_err(|_| invalid("log.level", "one of error, warn, info, debug, trace"))
}

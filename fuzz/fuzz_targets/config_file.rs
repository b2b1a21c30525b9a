//! The agent's configuration file: any text through `Config::parse` (TOML,
//! then validation), and a configuration that passes turned into what the
//! daemon builds from it (identity, command keys, the link's timing, the
//! log level, the link itself). No text may panic: a supervisor would
//! restart a panicking agent forever without naming the key.
#![no_main]

use std::path::Path;

use hc_agent::core::link::Link;
use hc_agent::shell::config::{log_level, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = config.identity();
    let _ = config.command_keys();
    let _ = log_level(&config.log.level);
    let _ = config.domain.ports();
    let policy = hc_agent::shell::link_policy(&config);
    let _ = Link::new(policy, true, 0);
});

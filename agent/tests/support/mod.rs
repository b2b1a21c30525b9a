//! The agent binary the daemon tests run. Cargo sets
//! `CARGO_BIN_EXE_hc-agent` only while compiling this package's
//! integration tests, so it is read here and handed to the test kit;
//! `HC_AGENT_BIN` still wins (a release build, or cross/qemu-agent.sh).
#![allow(dead_code)]

use std::path::PathBuf;

use hc_testkit::broker::BrokerConfig;
use hc_testkit::daemon::Site;
use hc_testkit::pki::Pki;

pub fn agent_binary() -> PathBuf {
    hc_testkit::daemon::agent_binary(option_env!("CARGO_BIN_EXE_hc-agent"))
}

/// A site with the embedded TLS broker, running this binary.
pub fn site() -> Site {
    Site::new(agent_binary())
}

/// A site whose broker is configured by `broker`, running this binary.
pub fn site_with_broker(broker: impl FnOnce(&Pki) -> BrokerConfig) -> Site {
    Site::with_broker(agent_binary(), broker)
}

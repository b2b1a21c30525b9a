//! The agent's local socket, as the tests use it: wait until it answers,
//! read the state and the status.

use std::path::Path;
use std::time::{Duration, Instant};

use hc_agent::client::LocalClient;
use hc_protocol::local::StatusReply;
use hc_protocol::messages::StateReport;

use crate::daemon::WAIT;

/// A client on `path`, once the agent answers there (a `Status` request
/// succeeds), or a panic after `WAIT`.
pub fn wait_local(path: &Path) -> LocalClient {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut client) = LocalClient::connect(path, Duration::from_secs(5)) {
            if client.status().is_ok() {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "local socket never came up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The agent's current state report, straight from its memory.
pub fn state_of(path: &Path) -> StateReport {
    wait_local(path).list_access().expect("ListAccess")
}

pub fn status_of(path: &Path) -> StatusReply {
    wait_local(path).status().expect("Status")
}

/// Polls `Status` until `accept` holds; returns how long it took, or None
/// after `within`.
pub fn wait_status_until(
    path: &Path,
    within: Duration,
    mut accept: impl FnMut(&StatusReply) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    let mut client = wait_local(path);
    loop {
        let status = client.status().expect("Status");
        if accept(&status) {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

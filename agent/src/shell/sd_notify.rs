//! systemd's notification protocol without libsystemd: when `NOTIFY_SOCKET`
//! is set, datagrams to it say `READY=1` (the local socket answers),
//! `STOPPING=1`, and `WATCHDOG=1` every half `WATCHDOG_USEC` from the event
//! loop itself, so a hung loop is what the watchdog sees. Without the
//! variable (every other init) nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::{debug, warn};

/// Where notifications go.
pub(super) struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, if any (a path, or `@name`
    /// for an abstract socket).
    pub(super) fn from_env() -> Option<Notifier> {
        let target = std::env::var("NOTIFY_SOCKET").ok()?;
        let address = match target.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())
            }
            None => SocketAddr::from_pathname(&target),
        };
        let notifier = address.and_then(|address| {
            Ok(Notifier {
                socket: UnixDatagram::unbound()?,
                address,
            })
        });
        match notifier {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                warn!(socket = %target, error = %e, "NOTIFY_SOCKET is not usable");
                None
            }
        }
    }

    /// Sends one notification (`READY=1`, ...); a failure is logged only.
    pub(super) fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            debug!(error = %e, state, "sd_notify failed");
        }
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is
    /// set for this process (`WATCHDOG_PID` absent or ours).
    pub(super) fn watchdog_interval() -> Option<Duration> {
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.trim() != std::process::id().to_string() {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

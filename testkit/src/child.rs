//! The server processes the test kit starts (mosquitto, nats-server):
//! stopped as an init system would, SIGTERM first, SIGKILL after a grace
//! period, and always reaped.

use std::process::Child;
use std::time::{Duration, Instant};

/// Sends SIGTERM to `child`, waits up to `grace` for it to exit, then
/// kills it; reaps it either way.
pub(crate) fn terminate(mut child: Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

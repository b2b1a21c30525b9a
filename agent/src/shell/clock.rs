//! The device's wall clock, read in one place. The core never reads a
//! clock; the shell passes this reading in (and the driver's monotonic
//! deadlines come from tokio's `Instant`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds from the device clock (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long until the wall clock reads `at` (Unix seconds), to the
/// millisecond; zero if it already does.
pub fn until(at: u64) -> Duration {
    let target = UNIX_EPOCH + Duration::from_secs(at);
    target
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

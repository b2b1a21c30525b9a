//! The device's clocks, read in one place. The core never reads a clock;
//! the shell passes these readings in (and the driver's own deadlines come
//! from tokio's `Instant`).
//!
//! Two clocks: the wall clock, which on a recorder is often wrong and may
//! be set at any moment, and a monotonic clock that anchors signed time
//! (SPEC.md §8.4). The monotonic clock is `CLOCK_BOOTTIME`, which keeps
//! counting while the system is suspended (`std::time::Instant` is
//! `CLOCK_MONOTONIC` on Linux, which stops); on a kernel without it (before
//! 2.6.39) the agent falls back on `CLOCK_MONOTONIC` and logs so once: a
//! suspended device's trusted time then lags by the time it slept, until
//! its next time answer (see docs/FIRMWARE.md).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One reading of both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// The monotonic clock, milliseconds since boot.
    pub mono_ms: u64,
    /// The wall clock, Unix milliseconds (0 before 1970).
    pub wall_ms: u64,
}

/// The clocks an agent reads: the system's, or (for a simulated recorder
/// sharing a process with others) the system's with the wall clock
/// shifted, as a recorder with a wrong real-time clock would read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clocks {
    wall_offset_ms: i64,
}

impl Clocks {
    /// The system's clocks as they are (what the daemon uses).
    pub fn system() -> Clocks {
        Clocks::default()
    }

    /// The system's clocks with the wall clock `offset_ms` off (negative:
    /// behind).
    pub fn with_wall_offset(offset_ms: i64) -> Clocks {
        Clocks {
            wall_offset_ms: offset_ms,
        }
    }

    /// Reads both clocks.
    pub fn read(&self) -> Reading {
        let wall = i128::from(wall_ms()) + i128::from(self.wall_offset_ms);
        Reading {
            mono_ms: mono_ms(),
            wall_ms: u64::try_from(wall.max(0)).unwrap_or(u64::MAX),
        }
    }
}

/// Unix seconds from the system wall clock (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    wall_ms() / 1000
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where monotonic readings come from, chosen at the first reading.
enum MonoSource {
    Boottime,
    /// `CLOCK_MONOTONIC` from this instant on, offset by the boot-time
    /// reading the fallback started from (0).
    Monotonic(Instant),
}

fn mono_ms() -> u64 {
    static SOURCE: OnceLock<MonoSource> = OnceLock::new();
    let source = SOURCE.get_or_init(|| match boottime() {
        Some(_) => MonoSource::Boottime,
        None => {
            tracing::warn!("CLOCK_BOOTTIME is not available: signed time is anchored to CLOCK_MONOTONIC, which stops while the system is suspended");
            MonoSource::Monotonic(Instant::now())
        }
    });
    let elapsed = match source {
        MonoSource::Boottime => boottime().unwrap_or_default(),
        MonoSource::Monotonic(start) => start.elapsed(),
    };
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// `CLOCK_BOOTTIME`, or `None` where the kernel does not have it.
// The one unsafe block of the crate: a libc call with an out-pointer.
#[allow(unsafe_code)]
fn boottime() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec that
    // clock_gettime fills; it keeps no pointer past the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    (rc == 0 && nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_never_goes_back_and_the_wall_offset_applies() {
        let a = Clocks::system().read();
        let b = Clocks::with_wall_offset(-600_000).read();
        assert!(b.mono_ms >= a.mono_ms);
        let shift = i128::from(a.wall_ms) - i128::from(b.wall_ms);
        assert!((599_000..=601_000).contains(&shift), "{shift}");
        assert!(boottime().is_some(), "the test machine has CLOCK_BOOTTIME");
    }
}

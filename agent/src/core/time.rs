//! Trusted time. Validity windows are absolute, so a device whose clock is
//! wrong could revive expired grants. The device keeps a floor: the newest
//! cloud-signed issue time it has seen (persisted), raised further by the
//! device's own clock readings since then (so a rollback while running is
//! caught too). A clock below the floor is not trusted, and time-limited
//! grants are then denied. The floor is written to flash with every change
//! and whenever it passes a grant's end (`DeviceState::next_clock_checkpoint`),
//! so a power cut cannot take it back below an end it had passed.

use hc_protocol::{Reason, Validity};
use serde::{Deserialize, Serialize};

/// The trusted-time floor, in Unix seconds. It only ever rises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrustedClock {
    /// Newest issue time of a verified cloud command.
    pub cloud_floor: u64,
    /// Highest device clock reading or cloud time seen. Never lowered: a
    /// command's issue time cannot tell "the device clock ran ahead" from
    /// "the command waited in the broker", and lowering the floor for the
    /// latter would let a rollback revive an expired grant. The price: a
    /// device clock that jumped far ahead suspends time-limited grants
    /// (ClockNotTrusted) until real time passes the jump.
    pub observed: u64,
}

impl TrustedClock {
    /// The lowest time the device may believe it is.
    pub fn floor(&self) -> u64 {
        self.cloud_floor.max(self.observed)
    }

    /// Whether a device clock reading `now` can be believed: it is not
    /// below the floor.
    pub fn is_trusted(&self, now: u64) -> bool {
        now >= self.floor()
    }

    /// A reading of the device clock; a reading below the floor changes
    /// nothing (it is the rollback the floor exists to catch).
    pub fn observe(&mut self, now: u64) {
        self.observed = self.observed.max(now);
    }

    /// A verified command's issue time.
    pub fn vouch(&mut self, issued_at: u64) {
        self.cloud_floor = self.cloud_floor.max(issued_at);
        self.observed = self.observed.max(issued_at);
    }

    /// Whether a grant with this window holds at `now`.
    pub fn check_window(&self, window: Option<Validity>, now: u64) -> Result<(), Reason> {
        let Some(window) = window else {
            return Ok(());
        };
        if !self.is_trusted(now) {
            return Err(Reason::ClockNotTrusted);
        }
        if now < window.not_before {
            return Err(Reason::NotYetValid);
        }
        if now >= window.not_after {
            return Err(Reason::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Option<Validity> = Some(Validity {
        not_before: 100,
        not_after: 200,
    });

    #[test]
    fn untimed_grants_do_not_depend_on_the_clock() {
        let clock = TrustedClock {
            cloud_floor: 1_000,
            observed: 0,
        };
        assert_eq!(clock.check_window(None, 0), Ok(()));
    }

    #[test]
    fn window_is_half_open() {
        let clock = TrustedClock::default();
        assert_eq!(clock.check_window(WINDOW, 99), Err(Reason::NotYetValid));
        assert_eq!(clock.check_window(WINDOW, 100), Ok(()));
        assert_eq!(clock.check_window(WINDOW, 199), Ok(()));
        assert_eq!(clock.check_window(WINDOW, 200), Err(Reason::Expired));
    }

    #[test]
    fn clock_behind_the_cloud_floor_is_not_trusted() {
        let mut clock = TrustedClock::default();
        clock.vouch(150);
        assert_eq!(
            clock.check_window(WINDOW, 120),
            Err(Reason::ClockNotTrusted)
        );
        assert_eq!(clock.check_window(WINDOW, 150), Ok(()));
    }

    #[test]
    fn rollback_after_an_observed_reading_is_not_trusted() {
        let mut clock = TrustedClock::default();
        clock.observe(250);
        assert_eq!(clock.check_window(WINDOW, 250), Err(Reason::Expired));
        clock.observe(150);
        assert_eq!(
            clock.check_window(WINDOW, 150),
            Err(Reason::ClockNotTrusted)
        );
    }

    #[test]
    fn an_older_cloud_time_never_lowers_the_floor() {
        let mut clock = TrustedClock::default();
        clock.observe(250);
        clock.vouch(150);
        assert_eq!(clock.floor(), 250);
        assert_eq!(
            clock.check_window(WINDOW, 160),
            Err(Reason::ClockNotTrusted)
        );
    }
}

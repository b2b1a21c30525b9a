//! Which broker endpoint the next attempt uses: a device starts at its
//! own place in the list (spread over a fleet by the serial), fails over
//! to the next endpoint at once while a round of the list has endpoints
//! left to try, and backs off only when the whole round failed.

use core::time::Duration;

/// The delay before trying the next endpoint of an unfinished round: up to
/// this much, drawn from the attempt's random number, so that the devices
/// of a dead node do not all arrive at the next one in the same instant.
pub const FAILOVER_SPREAD: Duration = Duration::from_millis(250);

/// The rotation over the configured endpoints (the agent's link, and the
/// simulator's fleet devices, which fail over as the agent does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    count: u8,
    current: u8,
    /// Where the current round of attempts started.
    round_start: u8,
}

impl Endpoints {
    /// `count` endpoints (at least one), starting at `first`.
    pub fn new(count: u8, first: u8) -> Self {
        let count = count.max(1);
        let first = first % count;
        Endpoints {
            count,
            current: first,
            round_start: first,
        }
    }

    /// The endpoint the next attempt uses.
    pub fn current(&self) -> u8 {
        self.current
    }

    /// The current endpoint works: a later loss starts the next round
    /// there (a blip of a healthy node should not move the device).
    pub fn on_connected(&mut self) {
        self.round_start = self.current;
    }

    /// The attempt failed: move to the next endpoint. `Some(delay)` when
    /// the round has endpoints left to try (fail over after a short spread
    /// drawn from `random`); `None` when the whole round failed and the
    /// backoff decides.
    pub fn on_connect_failed(&mut self, random: u32) -> Option<Duration> {
        self.current = (self.current + 1) % self.count;
        if self.current != self.round_start {
            let spread = FAILOVER_SPREAD.as_millis() as u32;
            return Some(Duration::from_millis(u64::from(random % (spread + 1))));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_tries_every_endpoint_once_then_leaves_it_to_the_backoff() {
        let mut e = Endpoints::new(3, 7);
        assert_eq!(e.current(), 1, "the start is taken modulo the count");
        assert!(e.on_connect_failed(100).is_some());
        assert_eq!(e.current(), 2);
        assert_eq!(e.on_connect_failed(100), Some(Duration::from_millis(100)));
        assert_eq!(e.current(), 0);
        assert_eq!(e.on_connect_failed(100), None, "all three failed");
        assert_eq!(e.current(), 1, "the next round starts where this one did");
        assert!(e.on_connect_failed(u32::MAX).unwrap() <= FAILOVER_SPREAD);
    }

    #[test]
    fn a_working_endpoint_starts_the_next_round() {
        let mut e = Endpoints::new(2, 0);
        assert!(e.on_connect_failed(0).is_some());
        e.on_connected();
        assert_eq!(e.current(), 1);
        assert!(e.on_connect_failed(0).is_some(), "endpoint 0 is untried");
        assert_eq!(e.on_connect_failed(0), None);
        assert_eq!(e.current(), 1);
    }

    #[test]
    fn one_endpoint_always_backs_off() {
        let mut e = Endpoints::new(1, 5);
        assert_eq!(e.current(), 0);
        assert_eq!(e.on_connect_failed(0), None);
        assert_eq!(
            Endpoints::new(0, 0).current(),
            0,
            "no endpoint counts as one"
        );
    }
}

//! Reconnect backoff: full-jitter exponential delays (a uniform draw in
//! `[0, min(cap, base * 2^attempts)]`), reset once a connection has stayed
//! up for a stable period, so a flapping link keeps backing off while a
//! link that was fine for a while reconnects quickly. Randomness and time
//! come in as arguments.
//!
//! After losing a connection that was up, the delays start from the
//! reconnect spread instead of the base: when a broker restarts, a whole
//! fleet loses its connections in the same instant, and a spread sized to
//! how fast the brokers accept handshakes keeps the fleet from coming back
//! in the same second. By default the spread equals the base.

use std::time::Duration;

/// The tuning of the backoff, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The bound of the first delay (after a lost connection, the larger of
    /// this and `reconnect_spread`); each failed attempt doubles the bound.
    pub base: Duration,
    /// No delay is ever longer than this, however many attempts failed.
    pub cap: Duration,
    /// A connection up for this long resets the backoff.
    pub stable_after: Duration,
    /// Where the delays start after losing an established connection.
    pub reconnect_spread: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
            reconnect_spread: Duration::from_secs(1),
        }
    }
}

/// The backoff of one link: how many attempts failed in a row and whether
/// the last connection was up long enough to start over. Times are
/// monotonic milliseconds.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempts: u32,
    connected_at_ms: Option<u64>,
    /// An established connection was lost and none came up since.
    after_loss: bool,
}

impl Backoff {
    /// A backoff with no failed attempt yet: the first delay is bounded by
    /// the base.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            attempts: 0,
            connected_at_ms: None,
            after_loss: false,
        }
    }

    /// Attempts failed (or connections lost) since the last reset; the
    /// exponent of the next bound.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The upper bound of the next delay.
    pub fn bound(&self) -> Duration {
        let start = if self.after_loss {
            self.policy.base.max(self.policy.reconnect_spread)
        } else {
            self.policy.base
        };
        let base = start.as_millis() as u64;
        let cap = self.policy.cap.as_millis() as u64;
        let factor = 1u64.checked_shl(self.attempts.min(63)).unwrap_or(u64::MAX);
        Duration::from_millis(base.saturating_mul(factor).min(cap))
    }

    /// A connection attempt failed (or a connection was lost): the delay
    /// before the next attempt, drawn with `random`.
    pub fn on_connect_failed(&mut self, random: u32) -> Duration {
        let bound = self.bound().as_millis() as u64;
        self.attempts = self.attempts.saturating_add(1);
        self.connected_at_ms = None;
        // random / 2^32 scaled to [0, bound]; u128 avoids overflow.
        Duration::from_millis(((u128::from(random) * u128::from(bound + 1)) >> 32) as u64)
    }

    /// A connection came up at `now_ms`; it resets the backoff only if it
    /// is still up `stable_after` later (see `on_disconnected`).
    pub fn on_connected(&mut self, now_ms: u64) {
        self.connected_at_ms = Some(now_ms);
        self.after_loss = false;
    }

    /// The connection dropped at `now_ms`; a stable one resets the backoff.
    pub fn on_disconnected(&mut self, now_ms: u64) {
        if let Some(at) = self.connected_at_ms.take() {
            self.after_loss = true;
            if now_ms.saturating_sub(at) >= self.policy.stable_after.as_millis() as u64 {
                self.attempts = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(BackoffPolicy::default())
    }

    /// The default backoff after `count` failed attempts, each with `random`.
    fn after_failures(count: u32, random: u32) -> Backoff {
        let mut b = backoff();
        for _ in 0..count {
            b.on_connect_failed(random);
        }
        b
    }

    #[test]
    fn delays_never_exceed_the_exponential_bound_or_the_cap() {
        let mut b = backoff();
        for attempt in 0..200u32 {
            let bound = b.bound();
            assert!(bound <= Duration::from_secs(120));
            let expected =
                Duration::from_secs(1u64.checked_shl(attempt).unwrap_or(u64::MAX).min(120));
            assert_eq!(bound, expected, "attempt {attempt}");
            assert!(b.on_connect_failed(u32::MAX) <= bound);
        }
        assert_eq!(b.attempts(), 200);
    }

    #[test]
    fn the_largest_random_reaches_the_bound_and_zero_gives_no_delay() {
        let mut b = after_failures(2, 0);
        assert_eq!(b.bound(), Duration::from_secs(4));
        assert_eq!(
            b.clone().on_connect_failed(u32::MAX),
            Duration::from_secs(4)
        );
        assert_eq!(b.on_connect_failed(0), Duration::ZERO);
    }

    #[test]
    fn a_stable_connection_resets_and_a_flapping_one_does_not() {
        let mut b = after_failures(5, 1);
        b.on_connected(1_000);
        b.on_disconnected(5_000);
        assert_eq!(b.attempts(), 5, "up for 4 s is not stable");
        b.on_connected(10_000);
        b.on_disconnected(70_000);
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn after_losing_a_connection_delays_start_from_the_spread() {
        let mut b = Backoff::new(BackoffPolicy {
            reconnect_spread: Duration::from_secs(15),
            ..BackoffPolicy::default()
        });
        assert_eq!(
            b.bound(),
            Duration::from_secs(1),
            "a first connect uses the base"
        );
        b.on_connected(0);
        b.on_disconnected(120_000);
        assert_eq!(b.bound(), Duration::from_secs(15));
        assert_eq!(b.on_connect_failed(u32::MAX), Duration::from_secs(15));
        assert_eq!(b.bound(), Duration::from_secs(30));
        b.on_connected(200_000);
        assert_eq!(b.attempts(), 1);
        b.on_disconnected(300_000);
        assert_eq!(b.bound(), Duration::from_secs(15), "stable again: reset");
    }

    #[test]
    fn the_default_spread_is_the_base() {
        let mut b = backoff();
        b.on_connected(0);
        b.on_disconnected(120_000);
        assert_eq!(b.bound(), Duration::from_secs(1));
    }

    #[test]
    fn the_mean_delay_is_about_half_the_bound() {
        let mut sum = 0u128;
        let n = 10_000u32;
        for i in 0..n {
            let mut b = after_failures(3, 0);
            // An even spread of randoms over the u32 range.
            let random = (u64::from(i) * (u64::from(u32::MAX) / u64::from(n))) as u32;
            sum += b.on_connect_failed(random).as_millis();
        }
        let mean = sum / u128::from(n);
        assert!(
            (3_900..=4_100).contains(&mean),
            "mean {mean} ms, bound 8000 ms"
        );
    }
}

//! Reconnect backoff: full-jitter exponential delays (a uniform draw in
//! `[0, min(cap, base * 2^attempts)]`), reset once a connection has stayed
//! up for a stable period, so a flapping link keeps backing off while a
//! link that was fine for a while reconnects quickly. Randomness and time
//! come in as arguments.
//!
//! Herd control. When the broker closes an established connection (a
//! restart, a cluster node's death), it closes every device's in the same
//! instant, and a fleet that came back within the base would offer the
//! brokers all its handshakes in one second: they overflow the listen
//! queue, time out and come back in lumps. So after a loss on the
//! broker's side the delays start from the reconnect spread (10 s by
//! default: 10,000 devices on one node, at the ~1,000 handshakes a second
//! measured in docs/SCALING.md, stay under its capacity). A loss the
//! device detects on its own (keep-alive unanswered, its network failing)
//! happens at each device's own time, so it starts from the base: a
//! single device whose network blinked is back within about a second.

use std::time::Duration;

/// The reconnect spread when the configuration names none (see the module
/// header for how it was sized).
pub const DEFAULT_RECONNECT_SPREAD: Duration = Duration::from_secs(10);

/// Which side ended an established connection, as far as the device can
/// tell; it decides where the next delays start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossOrigin {
    /// The broker closed the connection (end of stream, reset): it most
    /// likely closed every other device's at the same instant.
    Broker,
    /// The device stopped hearing from the broker, or its own network or
    /// a bad packet broke the connection: a loss at this device's own time.
    Device,
}

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
    /// Where the delays start after the broker closed an established
    /// connection ([`LossOrigin::Broker`]).
    pub reconnect_spread: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
            reconnect_spread: DEFAULT_RECONNECT_SPREAD,
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
    /// The broker closed an established connection and none came up since.
    after_broker_loss: bool,
}

impl Backoff {
    /// A backoff with no failed attempt yet: the first delay is bounded by
    /// the base.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            attempts: 0,
            connected_at_ms: None,
            after_broker_loss: false,
        }
    }

    /// Attempts failed (or connections lost) since the last reset; the
    /// exponent of the next bound.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The upper bound of the next delay.
    pub fn bound(&self) -> Duration {
        let start = if self.after_broker_loss {
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
        self.after_broker_loss = false;
    }

    /// The connection dropped at `now_ms`, ended by `origin`; a stable one
    /// resets the backoff.
    pub fn on_disconnected(&mut self, now_ms: u64, origin: LossOrigin) {
        if let Some(at) = self.connected_at_ms.take() {
            self.after_broker_loss = origin == LossOrigin::Broker;
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
        b.on_disconnected(5_000, LossOrigin::Device);
        assert_eq!(b.attempts(), 5, "up for 4 s is not stable");
        b.on_connected(10_000);
        b.on_disconnected(70_000, LossOrigin::Broker);
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn after_the_broker_closed_a_connection_delays_start_from_the_spread() {
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
        b.on_disconnected(120_000, LossOrigin::Broker);
        assert_eq!(b.bound(), Duration::from_secs(15));
        assert_eq!(b.on_connect_failed(u32::MAX), Duration::from_secs(15));
        assert_eq!(b.bound(), Duration::from_secs(30));
        b.on_connected(200_000);
        assert_eq!(b.attempts(), 1);
        b.on_disconnected(300_000, LossOrigin::Broker);
        assert_eq!(b.bound(), Duration::from_secs(15), "stable again: reset");
    }

    #[test]
    fn a_loss_the_device_detected_itself_starts_from_the_base() {
        let mut b = backoff();
        b.on_connected(0);
        b.on_disconnected(120_000, LossOrigin::Device);
        assert_eq!(
            b.bound(),
            Duration::from_secs(1),
            "a blink: back within a second"
        );
        b.on_connected(130_000);
        b.on_disconnected(250_000, LossOrigin::Broker);
        assert_eq!(
            b.bound(),
            DEFAULT_RECONNECT_SPREAD,
            "a broker restart: spread"
        );
        assert!(b.on_connect_failed(u32::MAX) <= DEFAULT_RECONNECT_SPREAD);
        assert_eq!(b.bound(), 2 * DEFAULT_RECONNECT_SPREAD, "and it grows");
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

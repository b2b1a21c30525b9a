//! Subscriptions the broker refused (SUBACK return code 0x80). A
//! clustered broker refuses one when it cannot create the replicated
//! consumer behind it in time (NATS under load: "Unable to add JetStream
//! consumer ... timeout"), and a device whose command subscription was
//! refused hears nothing while its link looks healthy. So the link asks
//! again, after a jittered delay that doubles with each refusal in a row
//! (a cluster refusing because it is loaded is not helped by a herd of
//! immediate retries), for as long as the connection lasts.

use core::time::Duration;

use super::{millis, Link, LinkEvent, Phase, Transmit};

/// The bound of the first re-subscribe delay; it doubles per refusal.
pub const RESUBSCRIBE_BASE: Duration = Duration::from_secs(1);
/// No re-subscribe delay is longer than this.
pub const RESUBSCRIBE_CAP: Duration = Duration::from_secs(30);

/// The delay before subscribing again after `refusals` earlier refusals in
/// a row on this connection, drawn with `random`: never at once (half the
/// bound), plus a random share of the other half; the bound doubles from
/// `RESUBSCRIBE_BASE` up to `RESUBSCRIBE_CAP`.
pub fn resubscribe_delay(refusals: u32, random: u32) -> Duration {
    let factor = 1u64.checked_shl(refusals.min(16)).unwrap_or(u64::MAX);
    let bound = millis(RESUBSCRIBE_BASE)
        .saturating_mul(factor)
        .min(millis(RESUBSCRIBE_CAP));
    let jitter = ((u128::from(random) * u128::from(bound / 2 + 1)) >> 32) as u64;
    Duration::from_millis(bound / 2 + jitter)
}

/// Refused subscriptions of the current connection.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Resubscribe {
    /// When to subscribe again, if a refusal is waiting for it.
    pub(super) due: Option<u64>,
    /// Refusals in a row on this connection.
    refusals: u32,
}

impl Link {
    /// The broker answered a subscription of attempt `attempt`; `refused`
    /// if it refused one of its topics.
    pub fn handle_suback(&mut self, attempt: u32, refused: bool, now: u64, random: u32) {
        if !refused || !self.current(attempt) || !self.is_connected() {
            return;
        }
        if self.resubscribe.due.is_some() {
            // One re-subscribe covers every topic.
            return;
        }
        let retry_in = resubscribe_delay(self.resubscribe.refusals, random);
        self.resubscribe.refusals = self.resubscribe.refusals.saturating_add(1);
        self.resubscribe.due = Some(now + millis(retry_in));
        self.event(LinkEvent::SubscriptionRefused { retry_in });
    }

    /// Subscribes again if a refusal's delay is over.
    pub(super) fn resubscribe_if_due(&mut self, now: u64) {
        if let (Phase::Connected { .. }, Some(due)) = (self.phase, self.resubscribe.due) {
            if now >= due {
                self.resubscribe.due = None;
                self.transmit(Transmit::Subscribe);
            }
        }
    }

    /// A new connection starts with nothing refused.
    pub(super) fn reset_resubscribe(&mut self) {
        self.resubscribe = Resubscribe::default();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{connected, events, transmits};
    use super::*;

    #[test]
    fn a_refused_subscription_is_asked_for_again_later_and_later() {
        let mut link = connected(0);
        link.handle_suback(1, false, 10, u32::MAX);
        assert_eq!(link.poll_timeout().map(|t| t > 10_000), Some(true));

        link.handle_suback(1, true, 100, u32::MAX);
        assert_eq!(
            events(&mut link),
            [LinkEvent::SubscriptionRefused {
                retry_in: Duration::from_millis(1_000)
            }]
        );
        // A second refusal of the same round (another topic) adds nothing.
        link.handle_suback(1, true, 120, 0);
        assert!(events(&mut link).is_empty());
        assert_eq!(link.poll_timeout(), Some(1_100));
        link.handle_timeout(1_099, 0);
        assert!(transmits(&mut link).is_empty());
        link.handle_timeout(1_100, 0);
        assert_eq!(transmits(&mut link), [Transmit::Subscribe]);

        // Refused again: the delay doubles, never below half the bound.
        link.handle_suback(1, true, 2_000, 0);
        assert_eq!(
            events(&mut link),
            [LinkEvent::SubscriptionRefused {
                retry_in: Duration::from_millis(1_000)
            }]
        );
        link.handle_timeout(3_000, 0);
        assert_eq!(transmits(&mut link), [Transmit::Subscribe]);
        let mut now = 3_000;
        for _ in 0..10 {
            link.handle_incoming(1, now);
            link.handle_suback(1, true, now, u32::MAX);
            now = link.resubscribe.due.expect("a re-subscribe is due");
            link.handle_timeout(now, 0);
        }
        events(&mut link);
        link.handle_incoming(1, now);
        link.handle_suback(1, true, now, u32::MAX);
        assert_eq!(
            events(&mut link),
            [LinkEvent::SubscriptionRefused {
                retry_in: RESUBSCRIBE_CAP
            }]
        );
    }

    #[test]
    fn a_refusal_from_an_old_connection_or_after_a_reconnect_is_forgotten() {
        let mut link = connected(0);
        link.handle_suback(0, true, 10, 0);
        assert!(events(&mut link).is_empty(), "stale attempt");
        link.handle_suback(1, true, 10, 0);
        events(&mut link);
        link.handle_closed_by_broker(1, 20, 0);
        let retry = link.poll_timeout().unwrap();
        link.handle_timeout(retry, 0);
        transmits(&mut link);
        link.handle_connack(2, true, 0, retry + 5);
        assert_eq!(transmits(&mut link).first(), Some(&Transmit::Subscribe));
        link.handle_timeout(retry + 5_000, 0);
        assert!(
            !transmits(&mut link).contains(&Transmit::Subscribe),
            "the new connection subscribed already"
        );
    }
}

//! When the device asks for a new certificate (SPEC §6.6): the timing of a
//! renewal as a state machine of (state, input, now), which the driver
//! feeds with the certificate in use, the link's ups and downs and what the
//! credential store did, and asks what to do next. The keys and files are
//! the credential store's (`shell::credentials`); nothing here does I/O.
//!
//! A renewal is due at a fraction of the certificate's lifetime, and in any
//! case some time before its end; the request goes out while connected and
//! again every retry interval until a certificate is stored. Once one is,
//! the device reconnects so that it uses the new pair while the old one is
//! still valid: a pair the broker refuses is found out while there is time
//! to fall back and ask again.

use std::time::Duration;

/// When to renew and how often to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    /// Renew once this share of the lifetime (`not_before` to `not_after`)
    /// has passed, in percent (1 to 99).
    pub lifetime_percent: u8,
    /// Renew no later than this before `not_after`, whatever the share.
    pub before_end: Duration,
    /// Ask again after this long without a certificate.
    pub retry: Duration,
}

/// The default policy: two thirds of the lifetime, at least 30 days before
/// the end, asked again every hour.
pub const DEFAULT_RENEWAL: RenewalPolicy = RenewalPolicy {
    lifetime_percent: 66,
    before_end: Duration::from_secs(30 * 24 * 3600),
    retry: Duration::from_secs(3600),
};

/// A certificate's validity, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateValidity {
    /// Its `notBefore`.
    pub not_before: u64,
    /// Its `notAfter`.
    pub not_after: u64,
}

impl RenewalPolicy {
    /// When a certificate valid over `validity` is due for renewal.
    pub fn renew_at(&self, validity: CertificateValidity) -> u64 {
        let lifetime = validity.not_after.saturating_sub(validity.not_before);
        let percent = u64::from(self.lifetime_percent.clamp(1, 99));
        // Multiplied in u128: a lifetime near u64::MAX must not wrap.
        let share = (u128::from(lifetime) * u128::from(percent) / 100) as u64;
        let by_share = validity.not_before.saturating_add(share);
        let by_end = validity.not_after.saturating_sub(self.before_end.as_secs());
        // A certificate shorter than the margin is due from its start.
        by_share.min(by_end).max(validity.not_before)
    }
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalStep {
    /// Send a certificate request (the credential store makes the key pair
    /// first if it holds none waiting for a certificate).
    Request,
    /// Reconnect, to use the pair just stored.
    Reconnect,
}

/// The renewal state machine.
#[derive(Debug, Clone)]
pub struct Renewal {
    policy: RenewalPolicy,
    /// The certificate of the pair the device connects with.
    in_use: Option<CertificateValidity>,
    /// A new pair is stored and waits for the next connection.
    switching: bool,
    connected: bool,
    /// When the last request went out (or a stored pair was refused).
    last_request: Option<u64>,
    step: Option<RenewalStep>,
}

impl Renewal {
    /// A device connecting with a certificate valid over `in_use` (`None`:
    /// unknown, nothing is renewed), with a stored pair waiting to be used
    /// if `switching`.
    pub fn new(
        policy: RenewalPolicy,
        in_use: Option<CertificateValidity>,
        switching: bool,
    ) -> Renewal {
        Renewal {
            policy,
            in_use,
            switching,
            connected: false,
            last_request: None,
            step: None,
        }
    }

    /// The certificate of the pair in use.
    pub fn in_use(&self) -> Option<CertificateValidity> {
        self.in_use
    }

    /// When the renewal of the certificate in use is due, if it can be.
    pub fn due_at(&self) -> Option<u64> {
        self.in_use.map(|validity| self.policy.renew_at(validity))
    }

    /// The link is up. `switched`: it was the first connection with a
    /// stored pair, whose certificate (valid over `validity`) is now the
    /// one in use.
    pub fn on_connected(&mut self, switched: Option<CertificateValidity>) {
        self.connected = true;
        if let Some(validity) = switched {
            self.in_use = Some(validity);
            self.switching = false;
            self.last_request = None;
        }
    }

    /// The link is down.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// A new pair was stored: stop asking, and reconnect to use it.
    pub fn on_stored(&mut self) {
        self.switching = true;
        self.step = Some(RenewalStep::Reconnect);
    }

    /// The stored pair could not be used (the broker refused it, or it no
    /// longer loads) and was set aside at `now`: ask again after the retry
    /// interval, not at once, so that a cloud issuing bad certificates is
    /// not asked in a loop.
    pub fn on_refused(&mut self, now: u64) {
        self.switching = false;
        self.last_request = Some(now);
    }

    /// When `handle_timeout` has something to do (`None`: not until an
    /// input changes).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.step.is_some() {
            return Some(0);
        }
        if !self.connected || self.switching {
            return None;
        }
        let due = self.due_at()?;
        Some(match self.last_request {
            Some(at) => due.max(at.saturating_add(self.policy.retry.as_secs())),
            None => due,
        })
    }

    /// Time has come to `now`: what to do, if anything.
    pub fn handle_timeout(&mut self, now: u64) -> Option<RenewalStep> {
        if let Some(step) = self.step.take() {
            return Some(step);
        }
        if self.poll_timeout().is_some_and(|at| now >= at) {
            self.last_request = Some(now);
            return Some(RenewalStep::Request);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;
    const T: u64 = 1_767_225_600;

    fn policy(before_end_days: u64) -> RenewalPolicy {
        RenewalPolicy {
            before_end: Duration::from_secs(before_end_days * DAY),
            ..DEFAULT_RENEWAL
        }
    }

    fn valid(days: u64) -> CertificateValidity {
        CertificateValidity {
            not_before: T,
            not_after: T + days * DAY,
        }
    }

    #[test]
    fn a_long_certificate_is_renewed_at_its_share_of_the_lifetime() {
        // Ten years: 66% is long before the last 30 days.
        assert_eq!(policy(30).renew_at(valid(3650)), T + 3650 * DAY * 66 / 100);
    }

    #[test]
    fn a_short_certificate_is_renewed_at_the_latest_before_its_end() {
        // 60 days: 66% is day 39, but 30 days before the end is day 30.
        assert_eq!(policy(30).renew_at(valid(60)), T + 30 * DAY);
        // Shorter than the margin: due from its start.
        assert_eq!(policy(30).renew_at(valid(10)), T);
    }

    #[test]
    fn extreme_validities_do_not_overflow() {
        let all = CertificateValidity {
            not_before: 0,
            not_after: u64::MAX,
        };
        assert_eq!(
            policy(30).renew_at(all),
            (u128::from(u64::MAX) * 66 / 100) as u64
        );
        let backwards = CertificateValidity {
            not_before: T,
            not_after: 0,
        };
        assert_eq!(policy(30).renew_at(backwards), T);
    }

    #[test]
    fn nothing_is_asked_while_disconnected_or_for_an_unknown_certificate() {
        let mut unknown = Renewal::new(policy(30), None, false);
        unknown.on_connected(None);
        assert_eq!(unknown.poll_timeout(), None);

        let mut offline = Renewal::new(policy(30), Some(valid(10)), false);
        assert_eq!(offline.poll_timeout(), None);
        assert_eq!(offline.handle_timeout(T + 5 * DAY), None);
        offline.on_connected(None);
        assert_eq!(offline.poll_timeout(), Some(T));
    }

    #[test]
    fn a_request_is_repeated_every_retry_interval_until_a_pair_is_stored() {
        let mut renewal = Renewal::new(policy(30), Some(valid(60)), false);
        renewal.on_connected(None);
        let due = T + 30 * DAY;
        assert_eq!(renewal.handle_timeout(due - 1), None);
        assert_eq!(renewal.handle_timeout(due), Some(RenewalStep::Request));
        assert_eq!(renewal.poll_timeout(), Some(due + 3600));
        assert_eq!(renewal.handle_timeout(due + 3599), None);
        assert_eq!(
            renewal.handle_timeout(due + 3600),
            Some(RenewalStep::Request)
        );

        renewal.on_stored();
        assert_eq!(
            renewal.handle_timeout(due + 3601),
            Some(RenewalStep::Reconnect)
        );
        // Waiting for the switch: nothing more is asked.
        assert_eq!(renewal.poll_timeout(), None);
        assert_eq!(renewal.handle_timeout(due + 10 * DAY), None);
    }

    #[test]
    fn after_the_switch_the_new_certificate_sets_the_next_renewal() {
        let mut renewal = Renewal::new(policy(30), Some(valid(60)), true);
        renewal.on_connected(None);
        assert_eq!(renewal.poll_timeout(), None);
        renewal.on_disconnected();
        let new = CertificateValidity {
            not_before: T + 30 * DAY,
            not_after: T + 30 * DAY + 3650 * DAY,
        };
        renewal.on_connected(Some(new));
        assert_eq!(renewal.in_use(), Some(new));
        assert_eq!(renewal.poll_timeout(), Some(policy(30).renew_at(new)));
    }

    #[test]
    fn a_refused_pair_is_asked_for_again_after_the_retry_interval() {
        let mut renewal = Renewal::new(policy(30), Some(valid(10)), true);
        renewal.on_connected(None);
        renewal.on_refused(T + DAY);
        assert_eq!(renewal.poll_timeout(), Some(T + DAY + 3600));
        assert_eq!(
            renewal.handle_timeout(T + DAY + 3600),
            Some(RenewalStep::Request)
        );
    }
}

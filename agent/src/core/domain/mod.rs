//! Domain registration logic. The device registers its domain name with its
//! LAN address, service ports and router mappings; registers again when any
//! of these change; refreshes on a jittered schedule well inside the
//! cloud's expiry; never sends more often than a minimum interval; retries
//! an unanswered registration with growing delays; and stops for good on
//! "name taken" or "invalid" until the name changes. Time and randomness
//! come in as arguments.

use hc_protocol::ddns::{
    DomainOutcome, DomainRegistration, DomainResult, IpAddress, PortMapping, ServicePorts,
};
use hc_protocol::limits::MAX_PORT_MAPPINGS;
use hc_protocol::local::RegistrationState;
use hc_protocol::DomainName;

/// Where the device can be reached, as read by the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFacts {
    /// The device's address on the interface that routes to the cloud (the
    /// cloud records the public address it sees on its own).
    pub lan_address: IpAddress,
    /// The HTTP, HTTPS, RTSP and SDK ports the device serves on.
    pub ports: ServicePorts,
    /// The router's external port mappings, as the firmware reported them.
    pub mappings: heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>,
}

/// The registrar's timing, all in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// No two registrations closer than this.
    pub min_interval_secs: u64,
    /// An unanswered registration is sent again after this, doubling up to
    /// `max_retry_secs`.
    pub answer_timeout_secs: u64,
    /// The longest wait before an unanswered registration is sent again.
    pub max_retry_secs: u64,
}

impl Default for RegistrarPolicy {
    fn default() -> Self {
        RegistrarPolicy {
            min_interval_secs: 60,
            answer_timeout_secs: 30,
            max_retry_secs: 600,
        }
    }
}

/// The registration of the device's domain name: what was last sent, what
/// the cloud answered, and when to send again. Times are Unix seconds from
/// the device clock.
#[derive(Debug, Clone)]
pub struct Registrar {
    policy: RegistrarPolicy,
    domain: DomainName,
    state: RegistrationState,
    attempt: u32,
    /// What the last registration carried.
    sent: Option<(DomainName, NetworkFacts)>,
    last_sent_at: Option<u64>,
    /// When the registration is due again (refresh or retry).
    due_at: Option<u64>,
    retry_delay: u64,
    connected: bool,
}

impl Registrar {
    /// A registrar for `domain` that has sent nothing yet and waits for
    /// the link to come up (`on_connected`).
    pub fn new(domain: DomainName, policy: RegistrarPolicy) -> Self {
        Registrar {
            policy,
            domain,
            state: RegistrationState::NotRegistered,
            attempt: 0,
            sent: None,
            last_sent_at: None,
            due_at: None,
            retry_delay: policy.answer_timeout_secs,
            connected: false,
        }
    }

    /// Where the registration of the current name stands, for the status
    /// reply.
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// The name being registered (the newest one set).
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The number of the latest registration sent; the cloud's answer
    /// carries it, and only an answer to this one counts.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn stopped(&self) -> bool {
        matches!(
            self.state,
            RegistrationState::NameTaken | RegistrationState::Invalid
        )
    }

    /// Current facts; a registration to send, if one is due.
    pub fn observe(&mut self, facts: NetworkFacts, now: u64) -> Option<DomainRegistration> {
        if !self.connected || self.stopped() {
            return None;
        }
        let renamed = self
            .sent
            .as_ref()
            .is_some_and(|(domain, _)| *domain != self.domain);
        let changed = renamed || self.sent.as_ref().is_none_or(|(_, sent)| *sent != facts);
        let due = changed || self.due_at.is_some_and(|at| now >= at);
        if !due {
            return None;
        }
        // The minimum interval spaces registrations of one name; a new name
        // (a signed owner command) goes out at once.
        if let (Some(last), false) = (self.last_sent_at, renamed) {
            if now < last.saturating_add(self.policy.min_interval_secs) {
                return None;
            }
        }
        // A repeat of an unanswered registration waits longer each time.
        let retrying = self.state == RegistrationState::Pending && !changed;
        self.retry_delay = if retrying {
            self.retry_delay
                .saturating_mul(2)
                .min(self.policy.max_retry_secs)
        } else {
            self.policy.answer_timeout_secs
        };
        self.attempt = self.attempt.wrapping_add(1);
        self.last_sent_at = Some(now);
        self.due_at = Some(now.saturating_add(self.retry_delay.max(self.policy.min_interval_secs)));
        self.state = RegistrationState::Pending;
        self.sent = Some((self.domain.clone(), facts.clone()));
        Some(DomainRegistration {
            attempt: self.attempt,
            domain: self.domain.clone(),
            lan_address: facts.lan_address,
            ports: facts.ports,
            mappings: facts.mappings,
        })
    }

    /// The cloud answered. Answers to anything but the latest registration
    /// are stale and ignored.
    pub fn on_result(&mut self, result: DomainResult, now: u64, random: u32) {
        if result.attempt != self.attempt || self.state != RegistrationState::Pending {
            return;
        }
        self.retry_delay = self.policy.answer_timeout_secs;
        match result.outcome {
            DomainOutcome::Registered { expires_in, .. } => {
                let expires_in = u64::from(expires_in);
                // Refresh at 50% to 75% of the expiry, spread by `random`.
                let jitter = (u128::from(expires_in / 4) * u128::from(random)) >> 32;
                let refresh_in =
                    (expires_in / 2 + jitter as u64).max(self.policy.min_interval_secs);
                self.state = RegistrationState::Registered {
                    expires_at: now.saturating_add(expires_in),
                };
                self.due_at = Some(now.saturating_add(refresh_in));
            }
            DomainOutcome::NameTaken => {
                self.state = RegistrationState::NameTaken;
                self.due_at = None;
            }
            DomainOutcome::Invalid => {
                self.state = RegistrationState::Invalid;
                self.due_at = None;
            }
        }
    }

    /// The domain name changed: register the new name (a taken or invalid
    /// name stops being an obstacle), at the next `observe` whatever the
    /// minimum interval.
    /// What the registration state says from then on is about the new name.
    pub fn set_domain(&mut self, domain: DomainName) {
        if domain != self.domain {
            self.domain = domain;
            self.state = RegistrationState::NotRegistered;
        }
    }

    /// After a reconnect, an unanswered registration is sent again as soon
    /// as the minimum interval allows (its answer may have been lost).
    pub fn on_connected(&mut self) {
        self.connected = true;
        if self.state == RegistrationState::Pending {
            self.due_at = Some(0);
        }
    }

    /// The link is down: nothing is sent until it is up again, and a
    /// registration left unanswered is repeated then.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// When `observe` may have something to send next, at the latest.
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.stopped() {
            return None;
        }
        let min_next = self
            .last_sent_at
            .map(|t| t.saturating_add(self.policy.min_interval_secs));
        match (self.due_at, min_next) {
            (Some(due), Some(min)) => Some(due.max(min)),
            (due, None) => due,
            (None, Some(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests;

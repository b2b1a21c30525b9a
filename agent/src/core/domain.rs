//! Domain registration logic. The device registers its domain name with its
//! LAN address, service ports and router mappings; registers again when any
//! of these change; refreshes on a jittered schedule well inside the
//! cloud's expiry; never sends more often than a minimum interval; retries
//! an unanswered registration with growing delays; and stops for good on
//! "name taken" or "invalid" until the name changes. Time and randomness
//! come in as arguments.

use protocol::ddns::{
    DomainOutcome, DomainRegistration, DomainResult, IpAddress, PortMapping, ServicePorts,
};
use protocol::limits::MAX_PORT_MAPPINGS;
use protocol::local::RegistrationState;
use protocol::DomainName;

/// Where the device can be reached, as read by the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFacts {
    pub lan_address: IpAddress,
    pub ports: ServicePorts,
    pub mappings: heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// No two registrations closer than this.
    pub min_interval_secs: u64,
    /// An unanswered registration is sent again after this, doubling up to
    /// `max_retry_secs`.
    pub answer_timeout_secs: u64,
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

    pub fn state(&self) -> RegistrationState {
        self.state
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

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
mod tests {
    use super::*;

    const T: u64 = 1_000_000;
    const PORTS: ServicePorts = ServicePorts {
        http: 80,
        https: 443,
        rtsp: 554,
        sdk: 8000,
    };

    fn facts(last_octet: u8, http: u16) -> NetworkFacts {
        NetworkFacts {
            lan_address: IpAddress::V4([192, 0, 2, last_octet]),
            ports: ServicePorts { http, ..PORTS },
            mappings: heapless::Vec::new(),
        }
    }

    fn registrar() -> Registrar {
        let mut r = Registrar::new(
            DomainName::new("front-door").unwrap(),
            RegistrarPolicy::default(),
        );
        r.on_connected();
        r
    }

    fn answer(r: &mut Registrar, outcome: DomainOutcome, now: u64, random: u32) {
        let attempt = r.attempt();
        r.on_result(DomainResult { attempt, outcome }, now, random);
    }

    fn registered(expires_in: u32) -> DomainOutcome {
        DomainOutcome::Registered {
            public_address: IpAddress::V4([203, 0, 113, 1]),
            expires_in,
        }
    }

    #[test]
    fn the_first_observe_registers() {
        let mut r = registrar();
        let reg = r.observe(facts(1, 80), T).unwrap();
        assert_eq!(
            (reg.attempt, reg.domain.as_str(), reg.ports.http),
            (1, "front-door", 80)
        );
        assert_eq!(r.state(), RegistrationState::Pending);
    }

    #[test]
    fn nothing_is_sent_while_disconnected() {
        let mut r = registrar();
        r.on_disconnected();
        assert!(r.observe(facts(1, 80), T).is_none());
    }

    #[test]
    fn unchanged_facts_do_not_register_again_before_the_refresh() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        answer(&mut r, registered(3600), T, 0);
        for t in (T..T + 1799).step_by(30) {
            assert!(r.observe(facts(1, 80), t).is_none(), "at {t}");
        }
    }

    #[test]
    fn an_address_change_registers_again() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        answer(&mut r, registered(3600), T, 0);
        let reg = r.observe(facts(2, 80), T + 60).unwrap();
        assert_eq!(reg.lan_address, IpAddress::V4([192, 0, 2, 2]));
    }

    #[test]
    fn a_port_change_registers_again() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        answer(&mut r, registered(3600), T, 0);
        assert_eq!(r.observe(facts(1, 8080), T + 100).unwrap().ports.http, 8080);
    }

    #[test]
    fn a_change_sooner_than_the_minimum_interval_waits_then_goes_out_once() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        answer(&mut r, registered(3600), T, 0);
        assert!(r.observe(facts(2, 80), T + 10).is_none());
        assert!(r.observe(facts(2, 80), T + 59).is_none());
        assert!(r.observe(facts(2, 80), T + 60).is_some());
        assert!(r.observe(facts(2, 80), T + 61).is_none());
        assert_eq!(r.attempt(), 2);
    }

    #[test]
    fn refresh_happens_inside_the_expiry_with_bounded_jitter() {
        for (random, expected) in [(0u32, 1800u64), (u32::MAX, 2699)] {
            let mut r = registrar();
            r.observe(facts(1, 80), T).unwrap();
            answer(&mut r, registered(3600), T, random);
            assert!(r.observe(facts(1, 80), T + expected - 1).is_none());
            assert!(
                r.observe(facts(1, 80), T + expected).is_some(),
                "random {random}"
            );
            assert!(expected < 3600);
        }
    }

    #[test]
    fn name_taken_and_invalid_stop_registrations_until_the_name_changes() {
        for outcome in [DomainOutcome::NameTaken, DomainOutcome::Invalid] {
            let mut r = registrar();
            r.observe(facts(1, 80), T).unwrap();
            answer(&mut r, outcome, T, 0);
            for day in 0..30 {
                assert!(r.observe(facts(day as u8, 80), T + day * 86_400).is_none());
            }
            assert_eq!(r.next_wakeup(), None);
            r.set_domain(DomainName::new("front-door").unwrap());
            assert!(
                r.observe(facts(1, 80), T + 31 * 86_400).is_none(),
                "same name is still stopped"
            );
            r.set_domain(DomainName::new("back-door").unwrap());
            assert_eq!(
                r.observe(facts(1, 80), T + 31 * 86_400)
                    .unwrap()
                    .domain
                    .as_str(),
                "back-door"
            );
        }
    }

    #[test]
    fn a_new_name_is_registered_at_once_and_the_state_speaks_of_it() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        answer(&mut r, registered(3600), T, 0);
        r.set_domain(DomainName::new("porch").unwrap());
        assert_eq!(r.state(), RegistrationState::NotRegistered);
        let reg = r
            .observe(facts(1, 80), T + 1)
            .expect("not held by the minimum interval");
        assert_eq!(reg.domain.as_str(), "porch");
        assert_eq!(r.state(), RegistrationState::Pending);
        // The same name again within the minimum interval still waits.
        assert!(r.observe(facts(2, 80), T + 2).is_none());
    }

    #[test]
    fn stale_results_are_ignored() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        r.observe(facts(2, 80), T + 60).unwrap();
        r.on_result(
            DomainResult {
                attempt: 1,
                outcome: DomainOutcome::NameTaken,
            },
            T + 61,
            0,
        );
        assert_eq!(r.state(), RegistrationState::Pending);
    }

    #[test]
    fn an_unanswered_registration_is_retried_with_growing_delays_never_faster_than_the_minimum() {
        let mut r = registrar();
        r.observe(facts(1, 80), T).unwrap();
        let mut sent_at = vec![T];
        for t in T + 1..T + 10_000 {
            if r.observe(facts(1, 80), t).is_some() {
                sent_at.push(t);
            }
        }
        let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        assert!(gaps.iter().all(|g| *g >= 60), "{gaps:?}");
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
        assert!(*gaps.last().unwrap() <= 600);
    }

    #[test]
    fn attempt_numbers_grow_by_one_per_registration() {
        let mut r = registrar();
        let a = r.observe(facts(1, 80), T).unwrap().attempt;
        let b = r.observe(facts(2, 80), T + 60).unwrap().attempt;
        assert_eq!(b, a + 1);
    }
}

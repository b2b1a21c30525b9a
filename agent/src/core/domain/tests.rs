//! The registrar driven by hand: registrations, refreshes, retries, stops.
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

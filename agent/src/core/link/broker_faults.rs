//! Losses the broker causes: a packet the MQTT client cannot take (a
//! poison message, redelivered on the persistent session at every
//! reconnect until a clean session drops it), and the broker closing the
//! connection soon after accepting it (another client taking the session).

use super::{millis, Link, LinkEvent, LossCause, Phase, CONTESTED_CLOSES, QUICK_CLOSE};

impl Link {
    /// The broker closed attempt `attempt`'s connection (no DISCONNECT in
    /// MQTT 3.1.1: the socket just ends). A broker does that when another
    /// client connects with the same client id; `CONTESTED_CLOSES` such
    /// closes in a row, each within `QUICK_CLOSE` of the CONNACK, are
    /// reported as a contested session (another certificate taking this
    /// device's session over, where the broker does not bind the client id
    /// to the certificate; or a flapping broker).
    pub fn handle_closed_by_broker(&mut self, attempt: u32, now: u64, random: u32) {
        if !self.current(attempt) || !self.is_connected() {
            return self.handle_error(attempt, now, random);
        }
        if now.saturating_sub(self.connected_since) < millis(QUICK_CLOSE) {
            self.quick_closes = self.quick_closes.saturating_add(1);
        } else {
            self.quick_closes = 1;
        }
        self.poison_strikes = 0;
        self.lost(LossCause::ClosedByBroker, now, random);
        if self.quick_closes >= CONTESTED_CLOSES {
            self.quick_closes = 0;
            self.event(LinkEvent::SessionContested);
        }
    }

    /// Attempt `attempt`'s connection broke on a packet from the broker the
    /// MQTT client could not take (over the packet size limit, or
    /// malformed). The broker redelivers it on the persistent session; after
    /// `POISON_STRIKES` such losses in a row the next connection starts a
    /// clean session, which drops it.
    pub fn handle_undecodable(&mut self, attempt: u32, now: u64, random: u32) {
        if !self.current(attempt) {
            return;
        }
        match self.phase {
            Phase::Connected { .. } => {
                self.poison_strikes = self.poison_strikes.saturating_add(1);
                self.lost(LossCause::Undecodable, now, random);
            }
            _ => self.handle_error(attempt, now, random),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{connected, connecting, events, transmits};
    use super::*;
    use crate::core::link::{Transmit, POISON_STRIKES};

    #[test]
    fn a_message_that_breaks_the_connection_three_times_is_dropped_with_a_clean_session() {
        let mut link = connected(0);
        let mut now = 0;
        for attempt in 1..=u32::from(POISON_STRIKES) {
            link.handle_undecodable(attempt, now, 0);
            assert!(matches!(
                events(&mut link).as_slice(),
                [LinkEvent::Lost {
                    cause: LossCause::Undecodable,
                    ..
                }]
            ));
            now = link.poll_timeout().unwrap();
            link.handle_timeout(now, 0);
            let clean = attempt == u32::from(POISON_STRIKES);
            assert_eq!(
                transmits(&mut link),
                [Transmit::Connect {
                    attempt: attempt + 1,
                    clean_session: clean,
                    endpoint: 0,
                }]
            );
            link.handle_connack(attempt + 1, !clean, 0, now);
            let connected = events(&mut link);
            assert_eq!(connected.contains(&LinkEvent::SessionDiscarded), clean);
            transmits(&mut link);
        }
        // Back to the persistent session for the next connection.
        link.handle_undecodable(u32::from(POISON_STRIKES) + 1, now, 0);
        link.handle_timeout(link.poll_timeout().unwrap(), 0);
        assert!(matches!(
            transmits(&mut link).as_slice(),
            [Transmit::Connect {
                clean_session: false,
                ..
            }]
        ));
    }

    #[test]
    fn another_kind_of_loss_in_between_starts_the_count_again() {
        let mut link = connected(0);
        let mut attempt = 1;
        let reconnect = |link: &mut Link, attempt: &mut u32| {
            let now = link.poll_timeout().unwrap();
            link.handle_timeout(now, 0);
            let sent = transmits(link);
            *attempt += 1;
            link.handle_connack(*attempt, true, 0, now);
            events(link);
            transmits(link);
            sent
        };
        for _ in 0..2 {
            link.handle_undecodable(attempt, 0, 0);
            reconnect(&mut link, &mut attempt);
        }
        link.handle_error(attempt, 0, 0);
        reconnect(&mut link, &mut attempt);
        link.handle_undecodable(attempt, 0, 0);
        let sent = reconnect(&mut link, &mut attempt);
        assert!(
            matches!(
                sent.as_slice(),
                [Transmit::Connect {
                    clean_session: false,
                    ..
                }]
            ),
            "{sent:?}"
        );
    }

    #[test]
    fn the_broker_closing_the_session_soon_after_the_connack_three_times_is_a_contested_session() {
        let mut link = connected(0);
        let mut now = 0;
        let mut contested = Vec::new();
        for attempt in 1..=u32::from(CONTESTED_CLOSES) {
            now += 2_000;
            link.handle_closed_by_broker(attempt, now, 0);
            contested.push(events(&mut link).contains(&LinkEvent::SessionContested));
            now = link.poll_timeout().unwrap();
            link.handle_timeout(now, 0);
            transmits(&mut link);
            link.handle_connack(attempt + 1, true, 0, now);
            events(&mut link);
            transmits(&mut link);
        }
        assert_eq!(contested, [false, false, true]);
        // A connection that lasted starts the count again.
        now += millis(QUICK_CLOSE) + 1;
        link.handle_closed_by_broker(u32::from(CONTESTED_CLOSES) + 1, now, 0);
        assert!(!events(&mut link).contains(&LinkEvent::SessionContested));
    }

    #[test]
    fn a_connack_without_the_persistent_session_it_had_is_a_lost_session() {
        let mut link = connecting(0);
        link.handle_connack(1, false, 0, 10);
        assert!(
            !events(&mut link).contains(&LinkEvent::SessionLost),
            "the first one"
        );
        link.handle_error(1, 20, 0);
        link.handle_timeout(link.poll_timeout().unwrap(), 0);
        link.handle_connack(2, true, 0, 2_000);
        assert!(!events(&mut link).contains(&LinkEvent::SessionLost));
        link.handle_error(2, 2_010, 0);
        link.handle_timeout(link.poll_timeout().unwrap(), 0);
        link.handle_connack(3, false, 0, 4_000);
        assert!(events(&mut link).contains(&LinkEvent::SessionLost));
    }
}

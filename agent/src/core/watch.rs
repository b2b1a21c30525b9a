//! Watched sessions: a firmware process that holds a session (a live view,
//! a playback, a configuration session, a two-way audio channel) registers
//! it, and is told the moment the decision for it turns to deny, with the
//! reason. Revocation thereby reaches running streams, not only new ones.
//!
//! Sans-IO like the rest of the core: after anything that can change a
//! decision (a command, a local request, the clock reaching a grant's end)
//! the shell calls [`Watches::revoke_denied`] and delivers what it returns;
//! [`Watches::next_deadline`] says when time alone will next turn one of
//! the watched decisions. A decision that turns to allow needs no notice.
//! The registry is bounded in total and per connection.

use hc_protocol::access::{Action, Decision, Principal};
use hc_protocol::limits::{MAX_WATCHED_SESSIONS, MAX_WATCHES_PER_CONNECTION};
use hc_protocol::Reason;

use super::decide::{decide, window_of};
use super::state::DeviceState;

/// One watched session: who does what, held by which connection under
/// which id of the process's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watch {
    /// The local-socket connection that registered it.
    pub connection: u32,
    /// The process's own id for the session (unique on its connection).
    pub session: u32,
    /// Who holds the session.
    pub principal: Principal,
    /// What the session does.
    pub action: Action,
    /// On which channel, for channel-scoped actions.
    pub channel: Option<u16>,
}

/// A session whose decision turned to deny, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// The connection to tell.
    pub connection: u32,
    /// The process's id for the session.
    pub session: u32,
    /// The denial's reason.
    pub reason: Reason,
}

/// The watched sessions of every connection.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    entries: Vec<Watch>,
}

impl Watches {
    /// No session watched.
    pub(crate) fn new() -> Self {
        Watches::default()
    }

    /// Sessions watched in all.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is watched.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers `watch` if its decision is allow at `now`, and returns the
    /// decision: a denied session is not registered. A registration beyond
    /// the limits (`CapacityExceeded`) or with a session id its connection
    /// already uses (`SessionExists`) is refused.
    pub(crate) fn add(
        &mut self,
        state: &DeviceState,
        watch: Watch,
        now: u64,
    ) -> Result<Decision, Reason> {
        if self.find(watch.connection, watch.session).is_some() {
            return Err(Reason::SessionExists);
        }
        let on_connection = self
            .entries
            .iter()
            .filter(|w| w.connection == watch.connection)
            .count();
        if self.entries.len() >= MAX_WATCHED_SESSIONS || on_connection >= MAX_WATCHES_PER_CONNECTION
        {
            return Err(Reason::CapacityExceeded);
        }
        let decision = decide_for(state, &watch, now);
        if decision == Decision::Allow {
            self.entries.push(watch);
        }
        Ok(decision)
    }

    /// The process ended session `session` of `connection`; false if it
    /// was not watched.
    pub(crate) fn remove(&mut self, connection: u32, session: u32) -> bool {
        match self.find(connection, session) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether `connection` watches any session.
    pub(crate) fn on_connection(&self, connection: u32) -> bool {
        self.entries.iter().any(|w| w.connection == connection)
    }

    /// The connection closed: its sessions end.
    pub(crate) fn remove_connection(&mut self, connection: u32) {
        self.entries.retain(|w| w.connection != connection);
    }

    /// Every watched session whose decision is now deny, removed from the
    /// registry (each is told once).
    pub(crate) fn revoke_denied(&mut self, state: &DeviceState, now: u64) -> Vec<Revoked> {
        let mut revoked = Vec::new();
        self.entries
            .retain(|watch| match decide_for(state, watch, now) {
                Decision::Allow => true,
                Decision::Deny(reason) => {
                    revoked.push(Revoked {
                        connection: watch.connection,
                        session: watch.session,
                        reason,
                    });
                    false
                }
            });
        revoked
    }

    /// The earliest time after `now` at which a watched decision ends by
    /// time alone (the end of a share's or an installer grant's window).
    pub(crate) fn next_deadline(&self, state: &DeviceState, now: u64) -> Option<u64> {
        self.entries
            .iter()
            .filter_map(|w| window_of(state, &w.principal, w.action))
            .map(|window| window.not_after)
            .filter(|end| *end > now)
            .min()
    }

    fn find(&self, connection: u32, session: u32) -> Option<usize> {
        self.entries
            .iter()
            .position(|w| w.connection == connection && w.session == session)
    }
}

fn decide_for(state: &DeviceState, watch: &Watch, now: u64) -> Decision {
    decide(state, &watch.principal, watch.action, watch.channel, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::tests::device;
    use hc_protocol::access::LocalLevel;
    use hc_protocol::AccountId;

    fn cloud(id: &str) -> Principal {
        Principal::Cloud(AccountId::new(id).unwrap())
    }

    fn live_view(connection: u32, session: u32, principal: Principal) -> Watch {
        Watch {
            connection,
            session,
            principal,
            action: Action::LiveView,
            channel: Some(1),
        }
    }

    /// bob (timed share), carol (share), inst (timed grant), alice (owner)
    /// and a local admin, each watching live view on connection 1.
    fn watched(state: &DeviceState) -> Watches {
        let mut watches = Watches::new();
        let principals = [
            cloud("bob"),
            cloud("carol"),
            cloud("inst"),
            cloud("alice"),
            Principal::Local(LocalLevel::Admin),
        ];
        for (session, principal) in principals.into_iter().enumerate() {
            let watch = live_view(1, session as u32, principal);
            watches.add(state, watch, 100).unwrap();
        }
        watches
    }

    /// The sessions of `watched` revoked once `change` is made to the state,
    /// and what stays watched.
    fn revoked_after(change: impl FnOnce(&mut DeviceState)) -> (Vec<Revoked>, Watches) {
        let mut state = device();
        let mut watches = watched(&state);
        change(&mut state);
        (watches.revoke_denied(&state, 100), watches)
    }

    fn sessions(revoked: &[Revoked]) -> Vec<(u32, Reason)> {
        let mut out: Vec<_> = revoked.iter().map(|r| (r.session, r.reason)).collect();
        out.sort_by_key(|(session, _)| *session);
        out
    }

    #[test]
    fn a_deleted_share_revokes_only_its_sessions_once() {
        let mut state = device();
        let mut watches = watched(&state);
        assert!(watches.revoke_denied(&state, 100).is_empty());
        state
            .access
            .shares
            .retain(|s| s.account.id.as_str() != "carol");
        let revoked = watches.revoke_denied(&state, 100);
        assert_eq!(sessions(&revoked), [(1, Reason::NotAPrincipal)]);
        assert!(watches.revoke_denied(&state, 100).is_empty(), "told once");
        assert_eq!(watches.len(), 4);
    }

    #[test]
    fn the_earliest_window_end_is_the_next_deadline_and_revokes_at_that_second() {
        let state = device();
        let mut watches = watched(&state);
        assert_eq!(watches.next_deadline(&state, 100), Some(200));
        assert!(watches.revoke_denied(&state, 199).is_empty());
        let revoked = watches.revoke_denied(&state, 200);
        assert_eq!(sessions(&revoked), [(0, Reason::Expired)]);
        assert_eq!(watches.next_deadline(&state, 200), Some(300));
        let revoked = watches.revoke_denied(&state, 300);
        assert_eq!(sessions(&revoked), [(2, Reason::Expired)]);
        assert_eq!(watches.next_deadline(&state, 300), None);
    }

    #[test]
    fn the_service_switch_revokes_owner_and_shares_but_not_the_installer_or_local_users() {
        let (revoked, _) = revoked_after(|state| state.access.cloud_service = false);
        assert_eq!(
            sessions(&revoked),
            [
                (0, Reason::CloudServiceDisabled),
                (1, Reason::CloudServiceDisabled),
                (3, Reason::CloudServiceDisabled)
            ]
        );
    }

    #[test]
    fn platform_access_off_revokes_every_cloud_session_and_no_local_one() {
        let (revoked, watches) = revoked_after(|state| state.access.platform_access = false);
        assert_eq!(revoked.len(), 4);
        assert!(revoked
            .iter()
            .all(|r| r.reason == Reason::PlatformAccessOff));
        assert_eq!(watches.len(), 1, "the local admin's session stays");
    }

    #[test]
    fn a_denied_or_duplicate_session_is_not_registered() {
        let state = device();
        let mut watches = Watches::new();
        let stranger = live_view(1, 1, cloud("mallory"));
        let denied = |reason| Ok(Decision::Deny(reason));
        assert_eq!(
            watches.add(&state, stranger, 100),
            denied(Reason::NotAPrincipal)
        );
        let expired = live_view(1, 1, cloud("bob"));
        assert_eq!(watches.add(&state, expired, 250), denied(Reason::Expired));
        watches
            .add(&state, live_view(1, 1, cloud("carol")), 100)
            .unwrap();
        assert_eq!(
            watches.add(&state, live_view(1, 1, cloud("alice")), 100),
            Err(Reason::SessionExists)
        );
        watches
            .add(&state, live_view(2, 1, cloud("alice")), 100)
            .unwrap();
        assert_eq!(watches.len(), 2);
    }

    #[test]
    fn registrations_are_bounded_per_connection_and_in_total() {
        let state = device();
        let mut watches = Watches::new();
        for session in 0..MAX_WATCHES_PER_CONNECTION as u32 {
            watches
                .add(&state, live_view(1, session, cloud("carol")), 100)
                .unwrap();
        }
        assert_eq!(
            watches.add(&state, live_view(1, 9999, cloud("carol")), 100),
            Err(Reason::CapacityExceeded)
        );
        let mut connection = 2;
        while watches.len() < MAX_WATCHED_SESSIONS {
            for session in 0..MAX_WATCHES_PER_CONNECTION as u32 {
                if watches.len() < MAX_WATCHED_SESSIONS {
                    let watch = live_view(connection, session, cloud("carol"));
                    watches.add(&state, watch, 100).unwrap();
                }
            }
            connection += 1;
        }
        assert_eq!(
            watches.add(&state, live_view(connection, 0, cloud("carol")), 100),
            Err(Reason::CapacityExceeded)
        );
        watches.remove_connection(1);
        assert_eq!(
            watches.len(),
            MAX_WATCHED_SESSIONS - MAX_WATCHES_PER_CONNECTION
        );
        assert!(watches.remove(2, 0));
        assert!(!watches.remove(2, 0));
    }
}

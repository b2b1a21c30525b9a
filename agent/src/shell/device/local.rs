//! The agent's answers to the firmware's processes: access decisions,
//! watched sessions and their revocation, the platform-access switch, the
//! status. Every decision is recorded in the audit ring.

use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::local::{LocalReply, LocalRequest, StatusReply};
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent};
use hc_protocol::{Outcome, Reason};
use tracing::{info, warn};

use super::Agent;
use crate::core::watch::{Revoked, Watch};
use crate::core::{decide, local_admin_change, DeviceState, LocalChange};
use crate::store::Flash;

impl<F: Flash> Agent<F> {
    /// May `principal` do `action` on `channel`? Recorded in the audit ring.
    pub fn authorize(
        &mut self,
        principal: &Principal,
        action: Action,
        channel: Option<u16>,
        now: u64,
    ) -> Decision {
        self.observe_clock(now);
        let decision = decide(&self.state, principal, action, channel, now);
        self.record_decision(principal, action, channel, decision, now);
        decision
    }

    /// Switches platform access on behalf of a local user, asked through a
    /// process that is (`admin_process`) or is not on `admin_uids`.
    pub fn set_platform_access(
        &mut self,
        by: LocalLevel,
        admin_process: bool,
        enabled: bool,
        now: u64,
    ) -> Result<(), Reason> {
        self.local_admin_change(
            by,
            admin_process,
            LocalChange::PlatformAccess { enabled },
            now,
        )
    }

    /// A device admin's change (platform access, local unbind), asked
    /// through a process that is (`admin_process`) or is not on
    /// `admin_uids`: audited, persisted before it is answered.
    pub fn local_admin_change(
        &mut self,
        by: LocalLevel,
        admin_process: bool,
        change: LocalChange,
        now: u64,
    ) -> Result<(), Reason> {
        let (result, audit) = local_admin_change(&self.state, by, admin_process, change, now);
        if let Err(Reason::PeerNotAllowed) = result {
            warn!(
                ?by,
                ?change,
                "local admin change refused: the process is not on admin_uids"
            );
        }
        if result.is_ok() && change == LocalChange::Unbind {
            info!(?by, "unbound locally by the device admin");
        }
        self.audit.record(audit);
        let (next, effects) = result?;
        self.carry_out(next, &effects, now)
    }

    /// Answers a local-socket request arriving on `connection` from a
    /// process that `may_switch` platform access (its uid is on
    /// `local_socket.admin_uids`), or not.
    pub fn local_request(
        &mut self,
        request: LocalRequest,
        connection: u32,
        may_switch: bool,
        now: u64,
    ) -> LocalReply {
        match request {
            LocalRequest::Authorize {
                principal,
                action,
                channel,
            } => LocalReply::Decision(self.authorize(&principal, action, channel, now)),
            LocalRequest::Status => LocalReply::Status(Box::new(self.status(now))),
            LocalRequest::ListAccess => LocalReply::Access(Box::new(self.state_report())),
            LocalRequest::SetPlatformAccess { by, enabled } => {
                match self.set_platform_access(by, may_switch, enabled, now) {
                    Ok(()) => LocalReply::Done,
                    Err(reason) => LocalReply::Error(reason),
                }
            }
            LocalRequest::RecentAudit { max } => LocalReply::Audit(self.audit.recent(max)),
            LocalRequest::Watch {
                session,
                principal,
                action,
                channel,
            } => {
                let watch = Watch {
                    connection,
                    session,
                    principal,
                    action,
                    channel,
                };
                match self.watch(watch, now) {
                    Ok(decision) => LocalReply::Decision(decision),
                    Err(reason) => LocalReply::Error(reason),
                }
            }
            LocalRequest::Unwatch { session } => {
                self.watches.remove(connection, session);
                LocalReply::Done
            }
            LocalRequest::Unbind { by } => {
                match self.local_admin_change(by, may_switch, LocalChange::Unbind, now) {
                    Ok(()) => LocalReply::Done,
                    Err(reason) => LocalReply::Error(reason),
                }
            }
        }
    }

    /// The status reply at device time `now`.
    pub fn status(&self, now: u64) -> StatusReply {
        let access = &self.state.access;
        StatusReply {
            serial: self.state.identity.serial.clone(),
            link: self.link,
            bound: access.binding != hc_protocol::messages::Binding::Unbound,
            handed_over: matches!(
                access.binding,
                hc_protocol::messages::Binding::Owned {
                    installer: Some(_),
                    ..
                }
            ),
            cloud_service: access.cloud_service,
            platform_access: access.platform_access,
            domain: access.domain.clone(),
            registration: self.registrar.state(),
            last_seq: self.state.ledger.last_seq,
            clock_trusted: self.state.clock.is_trusted(now),
            reports_queued: self.outbox.len() as u32,
            reports_dropped: self.outbox.dropped(),
            clock_offset_ms: self.clock_offset_ms(),
            command_key_ids: self.key_ring().ids(),
            certificate_not_after: self.certificate_not_after,
        }
    }

    /// Registers a watched session if its decision is allow now; the
    /// registration is audited as the decision it is.
    fn watch(&mut self, watch: Watch, now: u64) -> Result<Decision, Reason> {
        self.observe_clock(now);
        let decision = self.watches.add(&self.state, watch.clone(), now)?;
        self.record_decision(&watch.principal, watch.action, watch.channel, decision, now);
        Ok(decision)
    }

    /// Every watched session whose decision is deny at `now` in `planned`
    /// (a state about to replace this one) or, without it, in this state;
    /// they are no longer watched, and the caller tells their connections.
    pub fn revoke_denied(&mut self, planned: Option<&DeviceState>, now: u64) -> Vec<Revoked> {
        if self.watches.is_empty() {
            return Vec::new();
        }
        let state = planned.unwrap_or(&self.state);
        // `now` was taken against this state's floor; a planned state may
        // have raised it (a command's issue time), and with signed time
        // the decision time is never below the floor (see `Agent::now`).
        let now = match self.time.anchor() {
            Some(_) => now.max(state.clock.floor()),
            None => now,
        };
        let revoked = self.watches.revoke_denied(state, now);
        for r in &revoked {
            info!(connection = r.connection, session = r.session, reason = %r.reason, "watched session revoked");
        }
        revoked
    }

    /// When time alone next turns a watched decision to deny (the end of a
    /// share's or an installer grant's window), in device seconds.
    pub fn next_watch_deadline(&self, now: u64) -> Option<u64> {
        self.watches.next_deadline(&self.state, now)
    }

    /// A local-socket connection closed: its watched sessions end.
    pub fn connection_closed(&mut self, connection: u32) {
        self.watches.remove_connection(connection);
    }

    /// Whether `connection` watches any session.
    pub fn watches_on(&self, connection: u32) -> bool {
        self.watches.on_connection(connection)
    }

    /// Sessions watched over all connections.
    pub fn watched_sessions(&self) -> usize {
        self.watches.len()
    }

    fn record_decision(
        &mut self,
        principal: &Principal,
        action: Action,
        channel: Option<u16>,
        decision: Decision,
        now: u64,
    ) {
        let actor = match principal {
            Principal::Cloud(id) => AuditActor::Cloud(id.clone()),
            Principal::Local(level) => AuditActor::Local(*level),
        };
        let outcome = match decision {
            Decision::Allow => Outcome::Accepted,
            Decision::Deny(reason) => Outcome::Refused(reason),
        };
        self.audit.record(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::Decision { action, channel },
            outcome,
        });
    }
}

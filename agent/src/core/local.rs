//! Requests that come from the device itself (the local socket) and change
//! state: the platform-access switch and the local unbind (recovery when
//! the owner is gone), which only a device admin may ask, through a
//! process the device trusts to have authenticated that admin (its uid on
//! `local_socket.admin_uids`). One function decides and applies both.

use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent, Binding};
use hc_protocol::{Outcome, Reason};

use super::decide::decide;
use super::effects::{Effect, Effects};
use super::state::{AccessState, DeviceState};

/// A change a device admin asks for on the local socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalChange {
    /// Switch platform access on or off.
    PlatformAccess {
        /// On or off.
        enabled: bool,
    },
    /// Unbind the device from its cloud account(s): owner, installer and
    /// shares go, the domain returns to its default; the admin's own
    /// platform-access switch stays as it is.
    Unbind,
}

impl LocalChange {
    fn action(self) -> Action {
        match self {
            LocalChange::PlatformAccess { .. } => Action::PlatformAccessSwitch,
            LocalChange::Unbind => Action::Unbind,
        }
    }

    fn audit_event(self) -> AuditEvent {
        match self {
            LocalChange::PlatformAccess { enabled } => AuditEvent::PlatformAccess { enabled },
            LocalChange::Unbind => AuditEvent::LocalUnbind,
        }
    }
}

/// Carries out `change` for a local user at level `by`, asked by a
/// process that is (`admin_process`) or is not on the device's admin
/// list: `by` is only that process's word. Ok carries the new state and
/// effects (persist first, then what the change needs: open or close the
/// cloud link, publish the state report, register the domain); Err carries
/// the reason, nothing changed. Both come with the audit entry to record.
pub fn local_admin_change(
    state: &DeviceState,
    by: LocalLevel,
    admin_process: bool,
    change: LocalChange,
    now: u64,
) -> (Result<(DeviceState, Effects), Reason>, AuditEntry) {
    let decision = if admin_process {
        decide(state, &Principal::Local(by), change.action(), None, now)
    } else {
        Decision::Deny(Reason::PeerNotAllowed)
    };
    let result = match decision {
        Decision::Deny(reason) => Err(reason),
        Decision::Allow => apply_local(state, change),
    };
    let audit = AuditEntry {
        at: now,
        actor: AuditActor::Local(by),
        event: change.audit_event(),
        outcome: match &result {
            Ok(_) => Outcome::Accepted,
            Err(r) => Outcome::Refused(*r),
        },
    };
    (result, audit)
}

fn apply_local(state: &DeviceState, change: LocalChange) -> Result<(DeviceState, Effects), Reason> {
    let mut next = state.clone();
    let mut effects = Effects::new();
    match change {
        LocalChange::PlatformAccess { enabled } => {
            if state.access.platform_access != enabled {
                next.access.platform_access = enabled;
                let _ = effects.push(Effect::Persist);
                let _ = effects.push(Effect::CloudLink { enabled });
                let _ = effects.push(Effect::PublishState);
            }
        }
        LocalChange::Unbind => {
            if state.access.binding == Binding::Unbound {
                return Err(Reason::NotBound);
            }
            next.access =
                AccessState::reset(&state.identity).map_err(|_| Reason::InvalidDomainName)?;
            next.access.platform_access = state.access.platform_access;
            let _ = effects.push(Effect::Persist);
            let _ = effects.push(Effect::PublishState);
            if next.access.domain != state.access.domain {
                let _ = effects.push(Effect::RegisterDomain);
            }
        }
    }
    Ok((next, effects))
}

/// Switches platform access: [`local_admin_change`] with
/// [`LocalChange::PlatformAccess`].
pub fn set_platform_access(
    state: &DeviceState,
    by: LocalLevel,
    admin_process: bool,
    enabled: bool,
    now: u64,
) -> (Result<(DeviceState, Effects), Reason>, AuditEntry) {
    local_admin_change(
        state,
        by,
        admin_process,
        LocalChange::PlatformAccess { enabled },
        now,
    )
}

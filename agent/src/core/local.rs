//! Requests that come from the device itself (the local socket) and change
//! state: the platform-access switch, which only a device admin may flip,
//! asked through a process the device trusts to have authenticated that
//! admin (its uid on `local_socket.admin_uids`).

use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent};
use hc_protocol::{Outcome, Reason};

use super::decide::decide;
use super::effects::{Effect, Effects};
use super::state::DeviceState;

/// Switches platform access for a local user at level `by`, asked by a
/// process that is (`admin_process`) or is not on the device's admin list:
/// `by` is only that process's word. Ok carries the new state and effects
/// (persist, then open or close the cloud link); Err carries the reason,
/// nothing changed. Both come with the audit entry to record.
pub fn set_platform_access(
    state: &DeviceState,
    by: LocalLevel,
    admin_process: bool,
    enabled: bool,
    now: u64,
) -> (Result<(DeviceState, Effects), Reason>, AuditEntry) {
    let decision = if admin_process {
        decide(
            state,
            &Principal::Local(by),
            Action::PlatformAccessSwitch,
            None,
            now,
        )
    } else {
        Decision::Deny(Reason::PeerNotAllowed)
    };
    let result = match decision {
        Decision::Deny(reason) => Err(reason),
        Decision::Allow => {
            let mut next = state.clone();
            let mut effects = Effects::new();
            if state.access.platform_access != enabled {
                next.access.platform_access = enabled;
                let _ = effects.push(Effect::Persist);
                let _ = effects.push(Effect::CloudLink { enabled });
                let _ = effects.push(Effect::PublishState);
            }
            Ok((next, effects))
        }
    };
    let audit = AuditEntry {
        at: now,
        actor: AuditActor::Local(by),
        event: AuditEvent::PlatformAccess { enabled },
        outcome: match &result {
            Ok(_) => Outcome::Accepted,
            Err(r) => Outcome::Refused(*r),
        },
    };
    (result, audit)
}

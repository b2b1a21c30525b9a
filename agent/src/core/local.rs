//! Requests that come from the device itself (the local socket) and change
//! state: the platform-access switch, which only a device admin may flip.

use protocol::access::{Action, Decision, LocalLevel, Principal};
use protocol::messages::{AuditActor, AuditEntry, AuditEvent};
use protocol::{Outcome, Reason};

use super::decide::decide;
use super::effects::{Effect, Effects};
use super::state::DeviceState;

/// Switches platform access. Ok carries the new state and effects (persist,
/// then open or close the cloud link); Err carries the reason, nothing
/// changed. Both come with the audit entry to record.
pub fn set_platform_access(
    state: &DeviceState,
    by: LocalLevel,
    enabled: bool,
    now: u64,
) -> (Result<(DeviceState, Effects), Reason>, AuditEntry) {
    let result = match decide(
        state,
        &Principal::Local(by),
        Action::PlatformAccessSwitch,
        None,
        now,
    ) {
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

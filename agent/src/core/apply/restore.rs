//! `RestoreState`: the cloud's whole record of the access state, in one
//! signed step, for a device that fell back to an older copy of its state
//! or lost it. The device checks the record as it checks every single
//! change (regions, rights within the owner's, windows, the domain), so a
//! restore can hold nothing a sequence of accepted commands could not.

use hc_protocol::limits::{MAX_DOMAIN_LEN, MAX_SHARES};
use hc_protocol::messages::Binding;
use hc_protocol::{AccountRef, DomainName, Reason, ShareEntry, Text};

use super::changes::{check_share_within_owner_rights, Change};
use super::installer::check_grants;
use crate::core::effects::Effect;
use crate::core::state::{AccessState, DeviceState};

/// The access state a `RestoreState` asks for, or why it is refused.
pub(super) fn restore(
    state: &DeviceState,
    actor: &AccountRef,
    binding: &Binding,
    shares: &heapless::Vec<ShareEntry, MAX_SHARES>,
    cloud_service: bool,
    domain: &Text<MAX_DOMAIN_LEN>,
) -> Result<Change, Reason> {
    let region = &state.identity.region;
    // The cloud acts for whoever holds the device in its record.
    let holder = binding.owner().or(binding.installer());
    if holder.is_some_and(|h| h.id != actor.id) {
        return Err(Reason::NotOwner);
    }
    let accounts = binding.owner().into_iter().chain(binding.installer());
    if accounts
        .chain(shares.iter().map(|s| &s.account))
        .any(|a| &a.region != region)
    {
        return Err(Reason::CrossRegion);
    }
    if let Binding::Owned {
        installer_grants, ..
    } = binding
    {
        check_grants(installer_grants)?;
    } else if !shares.is_empty() {
        // Only an owner shares.
        return Err(Reason::NotOwner);
    }
    check_shares(state, binding, shares)?;
    let domain = DomainName::new(domain).map_err(|_| Reason::InvalidDomainName)?;
    let next = AccessState {
        binding: binding.clone(),
        shares: Box::new(shares.clone()),
        cloud_service,
        // The device admin's own switch: not the cloud's to set.
        platform_access: state.access.platform_access,
        domain,
    };
    let domain_changed = next.domain != state.access.domain;
    Ok(Change {
        access: Some(next),
        keys: None,
        extra: domain_changed.then_some(Effect::RegisterDomain),
    })
}

/// Each share as `Share` would accept it, in strictly ascending account
/// order (the order decisions search in).
fn check_shares(
    state: &DeviceState,
    binding: &Binding,
    shares: &[ShareEntry],
) -> Result<(), Reason> {
    if shares
        .windows(2)
        .any(|w| w[0].account.id.as_str() >= w[1].account.id.as_str())
    {
        return Err(Reason::Malformed);
    }
    for share in shares {
        let holds = |a: Option<&AccountRef>| a.is_some_and(|a| a.id == share.account.id);
        if holds(binding.owner()) || holds(binding.installer()) {
            return Err(Reason::AlreadyAPrincipal);
        }
        check_share_within_owner_rights(state, share.permissions, &share.channels)?;
        if share.validity.is_some_and(|v| !v.is_well_formed()) {
            return Err(Reason::InvalidValidity);
        }
    }
    Ok(())
}

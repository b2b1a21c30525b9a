//! The device state: who holds the device and with what rights (the access
//! state), which commands were already handled (the ledger), the trusted
//! clock, the cloud's command keys once a command set them, and the
//! device's identity. This is exactly what goes to flash.

use hc_protocol::envelope::CommandKeys;
use hc_protocol::limits::{MAX_SHARES, MAX_VERIFICATION_CODE_LEN, RECENT_OUTCOMES};
use hc_protocol::messages::{Binding, StateReport};
use hc_protocol::{
    AccountId, AccountRef, DomainName, InstallerGrants, Outcome, Region, Serial, ShareEntry, Text,
};
use serde::{Deserialize, Serialize};

use super::time::TrustedClock;

/// Fixed facts about the device, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The device serial: MQTT client id, certificate subject and the
    /// default domain name. A command for another serial is refused.
    pub serial: Serial,
    /// The cloud region the device belongs to; accounts from another
    /// region are refused.
    pub region: Region,
    /// How many video channels the device has; channel numbers run from 1
    /// to `channel_count`.
    pub channel_count: u16,
    /// The verification code printed on the device label; the key of the
    /// bind proof.
    pub verification_code: Text<MAX_VERIFICATION_CODE_LEN>,
}

/// The shares a device holds, at most [`MAX_SHARES`].
pub type Shares = heapless::Vec<ShareEntry, MAX_SHARES>;

/// Who may do what. Every refused command leaves this unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessState {
    /// Who holds the device: nobody, the installer before handover, or an
    /// owner (with the installer's accepted grants after handover).
    pub binding: Binding,
    /// Sorted by account id, so a decision finds a share by binary search.
    /// Boxed: the full list is about 10 KiB, and a state moved by value
    /// through the command path (apply, plan, commit, load) would otherwise
    /// leave that many stack pages resident per copy.
    pub shares: Box<Shares>,
    /// The cloud service switch. Off (set by an installer holding the flag):
    /// the owner and shared users are denied through the cloud; local users
    /// are not affected.
    pub cloud_service: bool,
    /// The platform-access switch, set by the device admin. Off: the cloud
    /// link is closed and stays closed; local decisions go on.
    pub platform_access: bool,
    /// The device domain name: the serial by default, changed by the owner.
    pub domain: DomainName,
}

/// One handled command, kept to answer its redelivery identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandledCommand {
    /// The command's sequence number.
    pub seq: u64,
    /// What it was answered the first time.
    pub outcome: Outcome,
}

/// Which commands were handled: replay protection and redelivery answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// The highest sequence number handled; a command at or below it that
    /// is not in `recent` is a replay and is refused.
    pub last_seq: u64,
    /// The most recent handled commands, oldest first.
    pub recent: heapless::Vec<HandledCommand, RECENT_OUTCOMES>,
}

impl Ledger {
    /// The first outcome of command `seq`, if it is among the recent ones:
    /// a redelivery gets this answer again instead of being applied.
    pub fn outcome_of(&self, seq: u64) -> Option<Outcome> {
        self.recent
            .iter()
            .rev()
            .find(|h| h.seq == seq)
            .map(|h| h.outcome)
    }

    /// Remembers that command `seq` was handled with `outcome`; the oldest
    /// entry goes when `RECENT_OUTCOMES` are kept.
    pub fn record(&mut self, seq: u64, outcome: Outcome) {
        if self.recent.is_full() {
            self.recent.remove(0);
        }
        // Cannot fail: a slot was freed above.
        let _ = self.recent.push(HandledCommand { seq, outcome });
        self.last_seq = self.last_seq.max(seq);
    }

    /// Changes the recorded outcome of command `seq` (one its caller
    /// refused after the core had accepted it; see `Applied::refuse`).
    pub fn amend(&mut self, seq: u64, outcome: Outcome) {
        if let Some(handled) = self.recent.iter_mut().rev().find(|h| h.seq == seq) {
            handled.outcome = outcome;
        }
    }
}

/// The device's persistent state as one value: the core takes it and
/// returns the next one, and the store writes it whole as the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The device's fixed facts.
    pub identity: Identity,
    /// Who may do what.
    pub access: AccessState,
    /// Which cloud commands were handled.
    pub ledger: Ledger,
    /// The trusted-time floor.
    pub clock: TrustedClock,
    /// This state came from an older copy on flash (the state file was
    /// damaged or missing after a crash), so it may hold rights the cloud has
    /// since revoked: cloud principals are denied (`StateBehind`) until the
    /// cloud restores the state (`RestoreState`). Kept on flash, so a restart
    /// cannot forget it.
    pub behind: bool,
    /// The command key ring set by the cloud's key commands (`AddCommandKey`,
    /// `RemoveCommandKey`; SPEC §6.2). `None` until the first one: the keys
    /// of the configuration are used, and a reload of the configuration
    /// changes them. `Some` from the first key command on: this ring alone
    /// verifies commands and time answers, whatever the configuration pins
    /// (the configuration's keys stay the factory anchor a device without
    /// state starts from). Never empty: a key cannot remove itself.
    pub command_keys: Option<CommandKeys>,
}

impl AccessState {
    /// A freshly reset device: unbound, no shares, both switches on, the
    /// domain back to its default.
    pub fn reset(identity: &Identity) -> Result<AccessState, hc_protocol::ids::IdError> {
        Ok(AccessState {
            binding: Binding::Unbound,
            shares: Box::default(),
            cloud_service: true,
            platform_access: true,
            domain: DomainName::from_serial(&identity.serial)?,
        })
    }

    /// The owner account, once the device is bound to one.
    pub fn owner(&self) -> Option<&AccountRef> {
        self.binding.owner()
    }

    /// The installer account, before handover or after it (if the owner
    /// kept it).
    pub fn installer(&self) -> Option<&AccountRef> {
        self.binding.installer()
    }

    /// What the owner accepted for the installer at handover; `None`
    /// before handover (the installer then manages the site) or without an
    /// installer.
    pub fn installer_grants(&self) -> Option<&InstallerGrants> {
        match &self.binding {
            Binding::Owned {
                installer: Some(_),
                installer_grants,
                ..
            } => Some(installer_grants),
            _ => None,
        }
    }

    /// Where `account`'s share is in `shares` (`Ok`), or where it would be
    /// inserted to keep them sorted (`Err`), as `binary_search` answers.
    pub fn share_index(&self, account: &str) -> Result<usize, usize> {
        self.shares
            .binary_search_by(|s| s.account.id.as_str().cmp(account))
    }

    /// The share the owner gave `account`, if any.
    pub fn share_of(&self, account: &str) -> Option<&ShareEntry> {
        self.share_index(account).ok().map(|i| &self.shares[i])
    }

    /// The earliest end of a time-limited grant (share or installer grant)
    /// that lies after `after`: the moment from which a clock rolled back to
    /// `after` could revive that grant.
    pub fn next_expiry_after(&self, after: u64) -> Option<u64> {
        let shares = self.shares.iter().filter_map(|s| s.validity);
        let installer = self.installer_grants().into_iter().flat_map(|g| {
            [g.site_info, g.configuration, g.live_view, g.playback]
                .into_iter()
                .flatten()
                .filter_map(|grant| grant.validity)
        });
        shares
            .chain(installer)
            .map(|v| v.not_after)
            .filter(|&end| end > after)
            .min()
    }

    /// True when `account` is the owner or installer.
    pub fn holds_device(&self, account: &AccountId) -> bool {
        self.owner().is_some_and(|o| &o.id == account)
            || self.installer().is_some_and(|i| &i.id == account)
    }
}

impl DeviceState {
    /// The state of a device that was never bound.
    pub fn new(identity: Identity) -> Result<DeviceState, hc_protocol::ids::IdError> {
        Ok(DeviceState {
            access: AccessState::reset(&identity)?,
            identity,
            ledger: Ledger::default(),
            clock: TrustedClock::default(),
            behind: false,
            command_keys: None,
        })
    }

    /// The keys commands are verified with: the ring set by key commands,
    /// or else the configuration's `configured` keys.
    pub fn key_ring<'a>(&'a self, configured: &'a CommandKeys) -> &'a CommandKeys {
        self.command_keys.as_ref().unwrap_or(configured)
    }

    /// Once this state is on flash, the trusted-time floor at which it must
    /// be written again: the next end of a time-limited grant. When the
    /// floor in memory reaches it, a power cut followed by a clock rolled
    /// back below that end would revive the grant. Until then the floor may
    /// lag on flash without widening any grant, so flash is written only
    /// this often (plus with every change).
    pub fn next_clock_checkpoint(&self) -> Option<u64> {
        self.access.next_expiry_after(self.clock.floor())
    }

    /// The retained state report the cloud sees; `configured` are the
    /// configuration's command keys (reported while no key command set the
    /// ring).
    pub fn report(
        &self,
        agent_version: &str,
        reports_dropped: u32,
        configured: &CommandKeys,
    ) -> StateReport {
        StateReport {
            serial: self.identity.serial.clone(),
            // The version is ours and short; an over-long one is cut to empty
            // rather than failing a report.
            agent_version: Text::new(agent_version).unwrap_or_default(),
            region: self.identity.region.clone(),
            channel_count: self.identity.channel_count,
            binding: self.access.binding.clone(),
            shares: (*self.access.shares).clone(),
            cloud_service: self.access.cloud_service,
            platform_access: self.access.platform_access,
            domain: self.access.domain.clone(),
            last_seq: self.ledger.last_seq,
            trusted_time_floor: self.clock.floor(),
            reports_dropped,
            clock_offset_ms: None,
            sessions_contested: 0,
            sessions_lost: 0,
            behind: self.behind,
            command_key_ids: self.key_ring(configured).ids(),
            certificate_not_after: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hc_protocol::access::{Action, Grant, Validity};
    use hc_protocol::{ChannelScope, Permissions};

    fn window(not_before: u64, not_after: u64) -> Option<Validity> {
        Some(Validity {
            not_before,
            not_after,
        })
    }

    /// Owned by alice; installer inst keeps live view until 300 and
    /// playback; bob may watch until 200, carol without end; 4 channels.
    pub(crate) fn device() -> DeviceState {
        let identity = Identity {
            serial: Serial::new("S1").unwrap(),
            region: Region::new("EU").unwrap(),
            channel_count: 4,
            verification_code: Text::new("ABCDEF").unwrap(),
        };
        let mut state = DeviceState::new(identity).unwrap();
        let account = |id| AccountRef {
            id: AccountId::new(id).unwrap(),
            region: Region::new("EU").unwrap(),
        };
        state.access.binding = Binding::Owned {
            owner: account("alice"),
            installer: Some(account("inst")),
            installer_grants: InstallerGrants {
                live_view: Some(Grant {
                    validity: window(0, 300),
                }),
                playback: Some(Grant { validity: None }),
                ..InstallerGrants::default()
            },
        };
        for (id, validity) in [("bob", window(0, 200)), ("carol", None)] {
            state
                .access
                .shares
                .push(ShareEntry {
                    account: account(id),
                    permissions: Permissions::of(&[Action::LiveView]),
                    channels: ChannelScope::All,
                    validity,
                })
                .unwrap();
        }
        state
    }

    #[test]
    fn the_next_expiry_covers_shares_and_installer_grants_and_skips_untimed_ones() {
        let state = device();
        assert_eq!(state.access.next_expiry_after(0), Some(200));
        assert_eq!(state.access.next_expiry_after(200), Some(300));
        assert_eq!(state.access.next_expiry_after(300), None);
    }

    #[test]
    fn the_next_clock_checkpoint_is_the_next_grant_end_above_the_floor() {
        let mut state = device();
        assert_eq!(state.next_clock_checkpoint(), Some(200));
        state.clock.observe(200);
        assert_eq!(state.next_clock_checkpoint(), Some(300), "200 is reached");
        state.clock.vouch(300);
        assert_eq!(state.next_clock_checkpoint(), None);
    }
}

//! The vocabulary of access: actions, permission sets, channel scopes,
//! validity windows, shares, installer grants and principals. These are the
//! values the cloud sends in commands and the device reports back.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::coded::coded_enum;
use crate::ids::{AccountId, AccountRef};
use crate::limits::MAX_CHANNELS;

coded_enum! {
    /// Something a principal can ask to do. Wire: its code as a varint (the
    /// variant index); as a permission, bit `code` of a `Permissions` set.
    pub enum Action {
        /// Watch a channel live.
        LiveView = 0;
        /// Play back a channel's recordings.
        Playback = 1;
        /// Pan, tilt and zoom a channel's camera.
        Ptz = 2;
        /// Talk through a channel.
        TwoWayAudio = 3;
        /// Receive the device's alarm notifications.
        AlarmNotifications = 4;
        /// Read the device configuration.
        ConfigRead = 5;
        /// Change the device configuration.
        ConfigWrite = 6;
        /// Manage site information; also needed for `RequestAudit`.
        SiteInfoManagement = 7;
        /// Share the device, unshare it (owner only).
        ShareManagement = 8;
        /// Grant or revoke the installer's rights (owner only).
        InstallerManagement = 9;
        /// Switch the cloud service on or off (installer only).
        CloudServiceSwitch = 10;
        /// Switch platform access (device admin only, never through the cloud).
        PlatformAccessSwitch = 11;
        /// Remove the device from its account(s).
        Unbind = 12;
        /// Change the device domain name.
        DomainManagement = 13;
    }
}

impl Action {
    /// Actions that are about one channel and need a channel number.
    pub const fn is_channel_scoped(self) -> bool {
        matches!(
            self,
            Action::LiveView | Action::Playback | Action::Ptz | Action::TwoWayAudio
        )
    }

    /// The action's bit in a `Permissions` set: `1 << code`.
    pub const fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of actions. Wire: a `u16` varint, bit `n` = action code `n`;
/// bits without an action do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u16);

impl Permissions {
    /// The empty set.
    pub const NONE: Permissions = Permissions(0);
    const VALID_BITS: u16 = (1 << Action::ALL.len()) - 1;

    /// What an owner may hand to a shared user: operating the device, never
    /// managing who else may.
    pub const SHAREABLE: Permissions = Permissions(
        Action::LiveView.bit()
            | Action::Playback.bit()
            | Action::Ptz.bit()
            | Action::TwoWayAudio.bit()
            | Action::AlarmNotifications.bit()
            | Action::ConfigRead.bit()
            | Action::ConfigWrite.bit(),
    );

    /// The set with these bits; `None` if a bit names no action.
    pub const fn from_bits(bits: u16) -> Option<Permissions> {
        if bits & !Self::VALID_BITS == 0 {
            Some(Permissions(bits))
        } else {
            None
        }
    }

    /// The bitmap, as on the wire.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set of these actions.
    pub fn of(actions: &[Action]) -> Permissions {
        Permissions(actions.iter().fold(0, |acc, a| acc | a.bit()))
    }

    /// Whether `action` is in the set.
    pub const fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// Whether every action of this set is in `other`.
    pub const fn is_subset_of(self, other: Permissions) -> bool {
        self.0 & !other.0 == 0
    }

    /// The actions in either set.
    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = u16::deserialize(d)?;
        Permissions::from_bits(bits).ok_or_else(|| de::Error::custom("unknown permission bit"))
    }
}

/// A set of channel numbers `1..=256`. Wire: 32 raw bytes, channel `c` is
/// bit `(c-1) % 8` (least significant first) of byte `(c-1) / 8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ChannelSet([u8; MAX_CHANNELS / 8]);

impl ChannelSet {
    /// No channel.
    pub const EMPTY: ChannelSet = ChannelSet([0; MAX_CHANNELS / 8]);

    /// Channels `1..=count` (count clamped to the maximum).
    pub fn first(count: u16) -> ChannelSet {
        let mut set = ChannelSet::EMPTY;
        for c in 1..=count.min(MAX_CHANNELS as u16) {
            set.insert(c);
        }
        set
    }

    /// Builds a set; `None` if a channel is 0 or above the maximum.
    pub fn from_channels(channels: &[u16]) -> Option<ChannelSet> {
        let mut set = ChannelSet::EMPTY;
        for &c in channels {
            if !set.insert(c) {
                return None;
            }
        }
        Some(set)
    }

    /// Adds a channel; false if it is not a valid channel number.
    pub fn insert(&mut self, channel: u16) -> bool {
        match Self::position(channel) {
            Some((byte, bit)) => {
                self.0[byte] |= bit;
                true
            }
            None => false,
        }
    }

    /// Whether `channel` is in the set (never for 0 or above the maximum).
    pub fn contains(&self, channel: u16) -> bool {
        match Self::position(channel) {
            Some((byte, bit)) => self.0[byte] & bit != 0,
            None => false,
        }
    }

    /// Whether every channel of this set is in `other`.
    pub fn is_subset_of(&self, other: &ChannelSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    /// Whether the set has no channel.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    /// The highest channel in the set, if any.
    pub fn max(&self) -> Option<u16> {
        (1..=MAX_CHANNELS as u16).rev().find(|c| self.contains(*c))
    }

    /// The channels in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=MAX_CHANNELS as u16).filter(|c| self.contains(*c))
    }

    /// The 32-byte bitmap, as on the wire.
    pub fn as_bytes(&self) -> &[u8; MAX_CHANNELS / 8] {
        &self.0
    }

    fn position(channel: u16) -> Option<(usize, u8)> {
        let index = usize::from(channel).checked_sub(1)?;
        if index >= MAX_CHANNELS {
            return None;
        }
        Some((index / 8, 1 << (index % 8)))
    }
}

/// Which channels a share or grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChannelScope {
    /// Every channel the device has, now and later.
    All,
    /// Only these channels.
    Only(ChannelSet),
}

impl ChannelScope {
    /// Whether the scope covers `channel`.
    pub fn contains(&self, channel: u16) -> bool {
        match self {
            ChannelScope::All => true,
            ChannelScope::Only(set) => set.contains(channel),
        }
    }
}

/// An absolute validity window in Unix seconds, `not_before <= t < not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Validity {
    /// First second of validity, Unix seconds (inclusive).
    pub not_before: u64,
    /// First second after validity (exclusive).
    pub not_after: u64,
}

impl Validity {
    /// A window is well-formed when its end is after its start.
    pub const fn is_well_formed(&self) -> bool {
        self.not_before < self.not_after
    }
}

/// One of the installer's permissions after handover, with its optional
/// validity window (`None`: no time limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The window of the grant; `None`: no time limit.
    pub validity: Option<Validity>,
}

/// The rights the owner accepted for the installer at handover (or granted
/// later). A `None` permission is not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct InstallerGrants {
    /// Site Information Management.
    pub site_info: Option<Grant>,
    /// Configuration: reading and writing the device configuration.
    pub configuration: Option<Grant>,
    /// Live View.
    pub live_view: Option<Grant>,
    /// Playback.
    pub playback: Option<Grant>,
    /// "Allow me to disable the cloud service": lets the installer switch
    /// the cloud service and remove the device from the owner's account.
    pub may_disable_cloud: bool,
}

impl InstallerGrants {
    /// The grant that covers an action, if any. The cloud-service switch and
    /// unbind come from the flag and have no validity window.
    pub fn grant_for(&self, action: Action) -> Option<Grant> {
        match action {
            Action::SiteInfoManagement => self.site_info,
            Action::ConfigRead | Action::ConfigWrite => self.configuration,
            Action::LiveView => self.live_view,
            Action::Playback => self.playback,
            Action::CloudServiceSwitch | Action::Unbind if self.may_disable_cloud => {
                Some(Grant { validity: None })
            }
            _ => None,
        }
    }

    /// Every validity window in the grants.
    pub fn windows(&self) -> impl Iterator<Item = Validity> {
        [
            self.site_info,
            self.configuration,
            self.live_view,
            self.playback,
        ]
        .into_iter()
        .flatten()
        .filter_map(|g| g.validity)
    }
}

/// One share: what a shared user may do, on which channels, and when.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShareEntry {
    /// The shared user.
    pub account: AccountRef,
    /// What it may do; a subset of `Permissions::SHAREABLE`.
    pub permissions: Permissions,
    /// The channels its channel-scoped actions may use.
    pub channels: ChannelScope,
    /// The window of the share; `None`: no time limit.
    pub validity: Option<Validity>,
}

/// A device account's level (ONVIF-like), used over the LAN or the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LocalLevel {
    /// Device administrator.
    Admin,
    /// Device operator.
    Operator,
    /// Device guest (view only).
    Guest,
}

impl LocalLevel {
    /// What each level may do locally. The cloud-side management actions
    /// (shares, installer, cloud-service switch) are never local.
    pub fn permissions(self) -> Permissions {
        use Action::*;
        let guest = Permissions::of(&[LiveView, Playback]);
        let operator = guest.union(Permissions::of(&[
            Ptz,
            TwoWayAudio,
            AlarmNotifications,
            ConfigRead,
        ]));
        match self {
            LocalLevel::Guest => guest,
            LocalLevel::Operator => operator,
            LocalLevel::Admin => operator.union(Permissions::of(&[
                ConfigWrite,
                PlatformAccessSwitch,
                Unbind,
            ])),
        }
    }
}

/// Who asks. Cloud accounts reach the device through the cloud (relayed);
/// local users through the LAN or the device domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Principal {
    /// A cloud account, its request relayed through the cloud.
    Cloud(AccountId),
    /// A device user at this level, as authenticated by the asking process.
    Local(LocalLevel),
}

/// The answer to "may P do A on C now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied for this reason.
    Deny(crate::Reason),
}

impl Decision {
    /// Whether this is `Allow`.
    pub const fn is_allow(self) -> bool {
        matches!(self, Decision::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_with_unknown_bits_do_not_decode() {
        let bytes = postcard::to_allocvec(&(1u16 << 14)).unwrap();
        assert!(postcard::from_bytes::<Permissions>(&bytes).is_err());
        let ok = Permissions::of(&[Action::LiveView, Action::Unbind]);
        let bytes = postcard::to_allocvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<Permissions>(&bytes).unwrap(), ok);
    }

    #[test]
    fn channel_set_layout_is_lsb_first() {
        let set = ChannelSet::from_channels(&[1, 9, 256]).unwrap();
        let bytes = set.as_bytes();
        assert_eq!(bytes[0], 0b0000_0001);
        assert_eq!(bytes[1], 0b0000_0001);
        assert_eq!(bytes[31], 0b1000_0000);
        assert!(ChannelSet::from_channels(&[0]).is_none());
        assert!(ChannelSet::from_channels(&[257]).is_none());
        assert_eq!(set.max(), Some(256));
    }
}

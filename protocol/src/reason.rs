//! The closed set of denial and error reasons. The same code travels in
//! decisions, command acknowledgements and local-socket replies, so a
//! requester always learns exactly why it was refused.

use crate::coded::coded_enum;

/// Declares `Reason` (through `coded_enum!`) and its texts from one list.
macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal; )*) => {
        coded_enum! {
            /// Why something was denied or refused. On the wire: the code as a
            /// postcard varint (the variant index); unknown codes do not decode.
            pub enum Reason {
                $( $(#[$doc])* $name = $code; )*
            }
        }

        impl Reason {
            /// A sentence a field engineer or an app can show.
            pub const fn text(self) -> &'static str {
                match self {
                    $( Reason::$name => $text, )*
                }
            }
        }
    };
}

// Codes must stay equal to the declaration index: postcard encodes a unit
// variant by its index. A unit test checks this. Never renumber; append.
reasons! {
    /// The device has no owner or installer, so no cloud account may act.
    NotBound = 0, "the device is not bound to any account";
    /// The account is neither owner, installer nor a shared user.
    NotAPrincipal = 1, "the account has no access to this device";
    /// The principal exists but this action is not in its permissions.
    ActionNotGranted = 2, "the action is not granted to this account";
    /// The channel is outside the share's or grant's channel scope.
    ChannelOutOfScope = 3, "the channel is outside the granted scope";
    /// The channel does not exist on this device, or a channel was needed.
    NoSuchChannel = 4, "the device has no such channel";
    /// The grant's validity window has not started.
    NotYetValid = 5, "the grant is not valid yet";
    /// The grant's validity window has ended.
    Expired = 6, "the grant has expired";
    /// The device clock is behind the newest time the cloud vouched for.
    ClockNotTrusted = 7, "the device clock is not trusted; time-limited grants are suspended";
    /// The installer switched the cloud service off for this device.
    CloudServiceDisabled = 8, "the cloud service was disabled by the installer";
    /// The device admin switched platform access off locally.
    PlatformAccessOff = 9, "platform access is switched off on the device";
    /// The account belongs to another region than the device.
    CrossRegion = 10, "accounts from another region are not allowed";
    /// Only the owner may do this.
    NotOwner = 11, "only the owner may do this";
    /// Bind was asked while the device already has an owner or installer.
    AlreadyBound = 12, "the device is already bound to an account";
    /// The verification-code proof in a bind did not match.
    BadVerificationProof = 13, "the verification code proof is wrong";
    /// Handover was asked while the device is not managed by an installer.
    NotInstallerManaged = 14, "the device is not managed by an installer";
    /// The installer lacks the "may disable cloud service" flag.
    NotAllowedToDisableCloud = 15, "the installer may not switch the cloud service";
    /// A share asked for more permissions or channels than the owner has.
    ExceedsOwnerRights = 16, "the share grants more than the owner has";
    /// A collection on the device is full.
    CapacityExceeded = 17, "a device limit was reached";
    /// Unshare named an account the device is not shared with.
    UnknownShare = 18, "the device is not shared with that account";
    /// The domain name is not a valid DNS label.
    InvalidDomainName = 19, "the domain name is not a valid DNS label";
    /// The command's sequence number is not newer than the last applied one.
    ReplayedSequence = 20, "the command is a replay or older than the last applied one";
    /// The Ed25519 signature did not verify.
    BadSignature = 21, "the command signature is not valid";
    /// The envelope names a key id the device does not hold.
    UnknownKeyId = 22, "the command was signed with an unknown key";
    /// The command was addressed to another device serial.
    WrongDevice = 23, "the command is for another device";
    /// The bytes are not a valid message.
    Malformed = 24, "the message is malformed";
    /// The message is larger than the limit.
    TooLarge = 25, "the message is too large";
    /// A validity window whose end is not after its start.
    InvalidValidity = 26, "the validity window is empty or reversed";
    /// The new state could not be written to flash; nothing changed.
    StorageFailed = 27, "the state could not be stored; nothing was changed";
    /// The local-socket peer is not on the allow-list.
    PeerNotAllowed = 28, "this process is not allowed to use the local socket";
    /// There is no installer on this device.
    NoInstaller = 29, "the device has no installer";
    /// The envelope's format version is not supported.
    UnsupportedVersion = 30, "the message format version is not supported";
    /// The agent is shutting down or overloaded; try again.
    Busy = 31, "the device is busy; try again";
    /// Share or handover named an account that already holds the device
    /// (its owner or installer).
    AlreadyAPrincipal = 32, "the account already holds this device as owner or installer";
    /// A watch named a session id its connection already watches.
    SessionExists = 33, "the session is already watched on this connection";
    /// A per-permission share with no permission or an empty channel list
    /// (a share that only gives the domain name is `ShareDomain`).
    EmptyShare = 34, "the share grants no action or no channel; share the domain name instead";
    /// The owner named an installer while another one holds installer
    /// rights on the device.
    OtherInstaller = 35, "another installer holds rights on this device; revoke it first";
    /// A time answer that does not answer the outstanding request: a
    /// replay, another nonce, or no request outstanding.
    UnexpectedTimeAnswer = 36, "the time answer does not answer the outstanding request";
    /// A time answer that came after the round-trip bound.
    LateTimeAnswer = 37, "the time answer came too late to bound the time";
    /// The device fell back to an older copy of its state (or lost it) and
    /// may be behind the cloud: cloud principals are denied until the cloud
    /// restores its state (`RestoreState`).
    StateBehind = 38, "the device's state may be out of date; the cloud must restore it first";
    /// `AddCommandKey` under an id the device already holds a key for.
    CommandKeyIdInUse = 39, "the device already holds a command key under that id";
    /// `RemoveCommandKey` signed by the key it removes: a key may be
    /// removed only by a command signed with another key the device holds.
    KeyRemovesItself = 40, "a command key cannot remove itself; sign the removal with another key";
    /// `RemoveCommandKey` of an id the device holds no key under.
    KeyNotHeld = 41, "the device holds no command key under that id";
    /// `InstallCertificate` with a certificate that does not chain to the
    /// device CA, is not for client authentication, or is not valid now.
    CertificateNotTrusted = 42, "the certificate does not chain to the device CA or is not valid now";
    /// `InstallCertificate` with a certificate whose subject is not this
    /// device's serial.
    CertificateNotForDevice = 43, "the certificate names another device";
    /// `InstallCertificate` with a certificate for a key the device did not
    /// ask a certificate for (no renewal outstanding, or another key).
    CertificateNotRequested = 44, "the certificate is not for the key the device asked a certificate for";
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.text(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_equal_declaration_index_so_postcard_and_code_agree() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.code() as usize, index, "{reason:?}");
            let bytes = postcard::to_allocvec(reason).unwrap();
            assert_eq!(bytes, [index as u8], "{reason:?}");
            assert_eq!(Reason::from_code(reason.code()), Some(*reason));
        }
        assert_eq!(Reason::from_code(Reason::ALL.len() as u8), None);
    }
}

//! The cloud's refusals and failed exchanges ([`CloudError`]), worded as
//! the product shows them.

use std::fmt;

use hc_protocol::limits::MAX_SHARES;
use hc_protocol::Reason;

/// A cloud-side refusal or a failed exchange with the device. `Display` is
/// the message the product shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("The account doesn't exist")]
    AccountNotFound,
    #[error("Cross-regional share operation is not allowed")]
    CrossRegionShare,
    #[error("Cross-regional operation is not allowed")]
    CrossRegion,
    /// The device did not answer in time. Decided by the driver; the
    /// command may still reach the device later, so its state report stays
    /// the truth.
    #[error("Network busy: device {serial} did not answer within {}", seconds(.waited_ms))]
    NetworkBusy { serial: String, waited_ms: u64 },
    /// The device applied its own rules and refused.
    #[error("The device refused: {reason}")]
    DeviceRefused { serial: String, reason: Reason },
    #[error("The device {0} does not exist")]
    DeviceNotFound(String),
    #[error("The verification code is incorrect")]
    WrongVerificationCode,
    #[error("The device has been added by another account")]
    DeviceAlreadyAdded,
    #[error("The site does not exist")]
    SiteNotFound,
    #[error("You have no permission to manage this site")]
    NotSiteInstaller,
    #[error("The site has been handed over")]
    SiteHandedOver,
    #[error("You can send at most five invitations in one day")]
    InvitationLimit,
    #[error("The site owner has not been invited yet")]
    NothingToResend,
    #[error("The invitation does not exist")]
    UnknownInvitation,
    #[error("The invitation is no longer valid: a newer invitation was sent")]
    InvitationInvalid,
    #[error("The invitation was sent to another email address or phone number")]
    NotTheInvitee,
    #[error("Enter a valid email address or phone number")]
    InvalidContact,
    #[error(
        "No devices are added in the site: the permissions of configuration, live view and playback cannot be selected"
    )]
    NoDevicesForPermissions,
    #[error("The device {0} is not in this site")]
    DeviceNotInSite(String),
    #[error("The validity period is invalid")]
    InvalidValidity,
    #[error("Only the device owner can do this")]
    NotOwner,
    #[error("You cannot share a device with yourself")]
    CannotShareWithSelf,
    #[error("These permissions cannot be shared")]
    PermissionsNotShareable,
    #[error("The device is not shared with {0}")]
    NotSharedWith(String),
    #[error("Select at least one account")]
    NothingSelected,
    #[error("At most {MAX_SHARES} accounts can be selected")]
    TooManySelected,
    #[error("You are not allowed to disable the cloud service of this device")]
    NotAllowedToDisableCloud,
    #[error(
        "The domain name {0:?} is invalid: use a-z, 0-9 and -, at most 63 characters, not starting or ending with -"
    )]
    InvalidDomainName(String),
    #[error("The domain name {0:?} is already used by another device")]
    DomainNameTaken(String),
    #[error("The domain name {0:?} does not exist")]
    DomainNotFound(String),
    #[error("The device is not shared with this account")]
    DomainNotShared,
    #[error("The share has expired")]
    ShareExpired,
    #[error("The share is not valid yet")]
    ShareNotYetValid,
    #[error("The cloud service of this device was disabled by the installer")]
    CloudServiceDisabled,
    /// A field-engineer process acts as the device's installer or owner
    /// per its report, and there is none.
    #[error("The device {serial} has no {role}")]
    NoHolder { serial: String, role: &'static str },
    #[error("An account with this {0} already exists")]
    AccountExists(&'static str),
    #[error("Invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
}

/// `3 s`, `1.5 s`, `250 ms`.
fn seconds(ms: &u64) -> String {
    let ms = *ms;
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

impl CloudError {
    /// `what` is not valid: `message` says why.
    pub fn invalid(what: &'static str, message: impl fmt::Display) -> CloudError {
        CloudError::Invalid {
            what,
            message: message.to_string(),
        }
    }
}

/// The cloud refuses what crosses regions.
pub(super) fn require_same_region(
    a: &hc_protocol::Region,
    b: &hc_protocol::Region,
) -> Result<(), CloudError> {
    if a == b {
        Ok(())
    } else {
        Err(CloudError::CrossRegion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_busy_message_names_device_and_wait() {
        let e = CloudError::NetworkBusy {
            serial: "S1".into(),
            waited_ms: 3000,
        };
        assert_eq!(
            e.to_string(),
            "Network busy: device S1 did not answer within 3 s"
        );
    }
}

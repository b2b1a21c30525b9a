//! The simulated cloud: the cloud-side rules of the product as a pure
//! state machine ([`model`]) and the driver that talks to devices over the
//! broker as the `cloud` client certificate ([`driver`]).
//!
//! The model decides what to send; the driver signs and sends it, waits
//! for the device's acknowledgement and maps the result to the product's
//! outcome ("Shared", "Network busy", "The account doesn't exist", ...).

pub mod driver;
pub mod field;
pub mod model;

pub use driver::{Cloud, CloudOptions, DriverError, Issuer};
pub use model::{
    CloudError, CloudModel, Contact, DeviceGrant, DeviceSelection, InstallerPermissions,
    InvitationId, Planned, ShareTerms, SiteId, SiteStatus,
};

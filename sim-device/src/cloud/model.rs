//! The simulated cloud's own rules, as a pure state machine: no I/O, no
//! clock (every call that depends on time takes `now`, Unix seconds, cloud
//! time).
//!
//! The cloud and the device each enforce their own rules. This model holds
//! what only the cloud can know (accounts and how they are found, devices
//! known to the cloud with their verification codes, installers' sites,
//! invitations and their daily limit, domain registrations) and refuses
//! what the product refuses in the cloud ("The account doesn't exist",
//! "Cross-regional share operation is not allowed", a sixth invitation in a
//! day, ...). What it accepts becomes a [`Planned`] command for the device;
//! the device then applies its own rules and answers with an `Ack`. The
//! driver ([`super::driver`]) sends and maps the answers to product
//! outcomes ("Shared", "Network busy").
//!
//! For everything the device holds (owner, installer, shares, switches,
//! domain), the source of truth is the device's last retained
//! `StateReport` ([`CloudModel::on_state_report`]). Before a device was
//! ever heard of, those checks are left to the device.

use std::collections::BTreeMap;
use std::fmt;

use protocol::command::bind_proof;
use protocol::ddns::{
    DomainOutcome, DomainRegistration, DomainResult, IpAddress, PortMapping, ServicePorts,
};
use protocol::limits::{MAX_DOMAIN_LEN, MAX_SHARES};
use protocol::messages::{Binding, StateReport};
use protocol::{
    AccountId, AccountRef, BindRole, ChannelScope, CommandBody, DomainName, Grant, InstallerGrants,
    Permissions, Reason, Region, Serial, ShareEntry, Text, Validity,
};

/// "You can send at most five invitations in one day."
pub const INVITATIONS_PER_DAY: usize = 5;
/// Invitations are counted per UTC day.
pub const SECONDS_PER_DAY: u64 = 86_400;
/// A domain registration is forgotten this long after its last refresh.
pub const REGISTRATION_TTL_SECS: u32 = 600;
/// Names the cloud keeps for itself; registering one is `Invalid`.
pub const RESERVED_DOMAINS: &[&str] = &["www", "api", "cloud", "mqtt", "admin", "mail"];

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

fn invalid(what: &'static str, message: impl fmt::Display) -> CloudError {
    CloudError::Invalid {
        what,
        message: message.to_string(),
    }
}

// ------------------------------------------------------------------ accounts

/// A cloud account. Found by email, phone number or user name; the device
/// only ever sees its opaque id and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub user_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub region: Region,
}

impl Account {
    pub fn account_ref(&self) -> AccountRef {
        AccountRef {
            id: self.id.clone(),
            region: self.region.clone(),
        }
    }
}

/// What a user typed to name an account: "email address, phone number,
/// hik-connect account are supported".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Email(String),
    Phone(String),
    UserName(String),
}

impl Identifier {
    /// Classifies by form: `@` makes an email, digits (with `+ -()` and
    /// spaces) a phone number, anything else a user name.
    pub fn parse(text: &str) -> Identifier {
        let text = text.trim();
        if text.contains('@') {
            Identifier::Email(text.to_ascii_lowercase())
        } else if let Some(phone) = normalize_phone(text) {
            Identifier::Phone(phone)
        } else {
            Identifier::UserName(text.to_owned())
        }
    }
}

/// `+49 151-000 001` -> `+49151000001`; `None` if it is not a phone number
/// (other characters, or fewer than five digits).
pub fn normalize_phone(text: &str) -> Option<String> {
    let text = text.trim();
    if !text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'))
    {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 5 || text.chars().skip(1).any(|c| c == '+') {
        return None;
    }
    Some(if text.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    })
}

fn valid_email(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let (local, domain) = text.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(char::is_whitespace)
        && !domain.contains('@');
    ok.then_some(text)
}

/// How an invitation reaches the invitee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Email(String),
    Phone(String),
}

impl Contact {
    /// A validated, normalized email contact.
    pub fn email(text: &str) -> Result<Contact, CloudError> {
        valid_email(text)
            .map(Contact::Email)
            .ok_or(CloudError::InvalidContact)
    }

    /// A validated, normalized phone contact.
    pub fn phone(text: &str) -> Result<Contact, CloudError> {
        normalize_phone(text)
            .map(Contact::Phone)
            .ok_or(CloudError::InvalidContact)
    }

    fn matches(&self, account: &Account) -> bool {
        match self {
            Contact::Email(e) => account.email.as_deref() == Some(e.as_str()),
            Contact::Phone(p) => account.phone.as_deref() == Some(p.as_str()),
        }
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Email(e) => write!(f, "email {e}"),
            Contact::Phone(p) => write!(f, "phone {p}"),
        }
    }
}

// ------------------------------------------------------------------ devices

/// A device the cloud knows: from the factory (serial, verification code,
/// region) and from what it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub serial: Serial,
    /// The code printed on the label, if the cloud has it (a device first
    /// heard of through its state report has none: the device checks the
    /// bind proof itself).
    pub verification_code: Option<String>,
    pub region: Region,
    pub site: Option<SiteId>,
    /// The device's last retained state report: the truth about owner,
    /// installer, shares, switches and domain.
    pub report: Option<StateReport>,
}

/// A live (or expired, not yet replaced) domain registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub serial: Serial,
    pub domain: DomainName,
    /// The address the cloud saw the registration come from.
    pub public_address: IpAddress,
    pub lan_address: IpAddress,
    pub ports: ServicePorts,
    pub mappings: Vec<PortMapping>,
    pub registered_at: u64,
    pub expires_at: u64,
}

/// What resolving a device domain gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub domain: DomainName,
    pub serial: Serial,
    pub public_address: IpAddress,
    pub ports: ServicePorts,
    pub mappings: Vec<PortMapping>,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} http {} https {} rtsp {} sdk {}",
            ip_text(&self.public_address),
            self.ports.http,
            self.ports.https,
            self.ports.rtsp,
            self.ports.sdk
        )?;
        for m in &self.mappings {
            write!(f, " map {:?} {}->{}", m.transport, m.external, m.internal)?;
        }
        Ok(())
    }
}

/// An address as text.
pub fn ip_text(address: &IpAddress) -> String {
    match address {
        IpAddress::V4(b) => std::net::Ipv4Addr::from(*b).to_string(),
        IpAddress::V6(b) => std::net::Ipv6Addr::from(*b).to_string(),
    }
}

/// One account the device is shared to, as the owner's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAccount {
    pub account: AccountRef,
    /// The account's user name, email and phone, when the cloud knows it.
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub entry: ShareEntry,
}

impl SharedAccount {
    /// What the list shows: email, else phone, else user name, else id.
    pub fn label(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.phone.clone())
            .or_else(|| self.user_name.clone())
            .unwrap_or_else(|| self.account.id.to_string())
    }
}

/// A device shared to an account, as the receiver sees it: "the device
/// domain name & the account which shares this device".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedShare {
    pub serial: Serial,
    pub domain: DomainName,
    pub owner: AccountRef,
    pub entry: ShareEntry,
}

// ------------------------------------------------------------------ sites

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvitationId(pub u64);

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "site-{}", self.0)
    }
}

impl fmt::Display for InvitationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invitation-{}", self.0)
    }
}

/// The site status shown in the installer's site list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteStatus {
    NotInvited,
    /// Invited, but the invitee has no account yet.
    NotRegistered,
    /// Invited, the invitee has an account, but has not accepted.
    NotAccepted,
    HandedOver,
}

impl fmt::Display for SiteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SiteStatus::NotInvited => "Not Invited",
            SiteStatus::NotRegistered => "Not Registered",
            SiteStatus::NotAccepted => "Not Accepted",
            SiteStatus::HandedOver => "Handed Over",
        })
    }
}

/// Which devices of the site a permission covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelection {
    All,
    Only(Vec<Serial>),
}

impl DeviceSelection {
    pub fn includes(&self, serial: &Serial) -> bool {
        match self {
            DeviceSelection::All => true,
            DeviceSelection::Only(list) => list.contains(serial),
        }
    }
}

/// A per-device permission with its optional validity period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    pub devices: DeviceSelection,
    pub validity: Option<Validity>,
}

/// The installer's optional permissions after handover, as asked for in
/// the invitation and granted when the owner accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallerPermissions {
    /// Site Information Management.
    pub site_info: Option<Grant>,
    pub configuration: Option<DeviceGrant>,
    pub live_view: Option<DeviceGrant>,
    pub playback: Option<DeviceGrant>,
    /// "Allow me to disable the cloud service".
    pub allow_disable_cloud: bool,
}

impl InstallerPermissions {
    /// What goes into the `Handover` command for one device.
    pub fn grants_for(&self, serial: &Serial) -> InstallerGrants {
        let pick = |g: &Option<DeviceGrant>| {
            g.as_ref()
                .filter(|g| g.devices.includes(serial))
                .map(|g| Grant {
                    validity: g.validity,
                })
        };
        InstallerGrants {
            site_info: self.site_info,
            configuration: pick(&self.configuration),
            live_view: pick(&self.live_view),
            playback: pick(&self.playback),
            may_disable_cloud: self.allow_disable_cloud,
        }
    }

    fn device_grants(&self) -> impl Iterator<Item = &DeviceGrant> {
        [&self.configuration, &self.live_view, &self.playback]
            .into_iter()
            .flatten()
    }
}

/// One invitation sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: InvitationId,
    pub site: SiteId,
    pub contact: Contact,
    pub permissions: InstallerPermissions,
    pub remarks: String,
    pub sent_at: u64,
    /// A newer invitation was sent: this one can no longer be accepted.
    pub superseded: bool,
}

/// An installer's site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub installer: AccountId,
    pub region: Region,
    pub devices: Vec<Serial>,
    /// Every invitation sent, oldest first.
    pub invitations: Vec<Invitation>,
    pub owner: Option<AccountId>,
    /// The permissions the owner accepted (after handover).
    pub accepted: Option<InstallerPermissions>,
    pub handed_over_at: Option<u64>,
}

impl Site {
    pub fn current_invitation(&self) -> Option<&Invitation> {
        self.invitations.last().filter(|i| !i.superseded)
    }
}

// ------------------------------------------------------------------ plans

/// What the cloud records once the device accepted a planned command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    Nothing,
    AddToSite { site: SiteId, serial: Serial },
}

/// A command the cloud-side rules allowed: for the driver to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub serial: Serial,
    pub actor: AccountRef,
    pub body: CommandBody,
    /// Recorded by [`CloudModel::commit`] when the device accepts.
    pub on_accept: Commit,
}

impl Planned {
    /// A command with nothing to record on acceptance.
    pub fn new(serial: Serial, actor: AccountRef, body: CommandBody) -> Planned {
        Planned {
            serial,
            actor,
            body,
            on_accept: Commit::Nothing,
        }
    }
}

/// One result per device of a site.
pub type PerDevice<T> = Vec<(Serial, Result<T, CloudError>)>;

/// An accepted invitation: the site is handed over in the cloud, and each
/// device gets a `Handover` with its grants, from the new owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverPlan {
    pub site: SiteId,
    pub owner: AccountRef,
    pub commands: Vec<Planned>,
}

// ------------------------------------------------------------------ the model

/// The simulated cloud's state.
#[derive(Debug, Clone, Default)]
pub struct CloudModel {
    accounts: BTreeMap<AccountId, Account>,
    devices: BTreeMap<Serial, DeviceRecord>,
    sites: BTreeMap<SiteId, Site>,
    /// By domain name.
    registrations: BTreeMap<DomainName, Registration>,
    next_account: u32,
    next_site: u32,
    next_invitation: u64,
}

impl CloudModel {
    pub fn new() -> CloudModel {
        CloudModel::default()
    }

    // ---------------------------------------------------------- accounts

    /// Registers an account. The user name must not look like an email or
    /// a phone number, and user name, email and phone are each unique, so
    /// that every identifier finds at most one account.
    pub fn register_account(
        &mut self,
        user_name: &str,
        email: Option<&str>,
        phone: Option<&str>,
        region: &str,
    ) -> Result<AccountId, CloudError> {
        let user_name = user_name.trim();
        if user_name.is_empty()
            || !matches!(Identifier::parse(user_name), Identifier::UserName(_))
            || user_name.chars().any(char::is_control)
        {
            return Err(invalid(
                "user name",
                "must not be empty, an email address or a phone number",
            ));
        }
        let email = email
            .map(|e| valid_email(e).ok_or(CloudError::InvalidContact))
            .transpose()?;
        let phone = phone
            .map(|p| normalize_phone(p).ok_or(CloudError::InvalidContact))
            .transpose()?;
        let region = Region::new(region).map_err(|e| invalid("region", e))?;
        for account in self.accounts.values() {
            if account.user_name.eq_ignore_ascii_case(user_name) {
                return Err(CloudError::AccountExists("user name"));
            }
            if email.is_some() && account.email == email {
                return Err(CloudError::AccountExists("email address"));
            }
            if phone.is_some() && account.phone == phone {
                return Err(CloudError::AccountExists("phone number"));
            }
        }
        self.next_account += 1;
        let id = AccountId::new(&format!("acc-{:04}", self.next_account))
            .map_err(|e| invalid("account id", e))?;
        self.accounts.insert(
            id.clone(),
            Account {
                id: id.clone(),
                user_name: user_name.to_owned(),
                email,
                phone,
                region,
            },
        );
        Ok(id)
    }

    /// Finds an account by email, phone number or user name (or its id).
    pub fn find_account(&self, text: &str) -> Result<&Account, CloudError> {
        let found = match Identifier::parse(text) {
            Identifier::Email(e) => self
                .accounts
                .values()
                .find(|a| a.email.as_deref() == Some(e.as_str())),
            Identifier::Phone(p) => self
                .accounts
                .values()
                .find(|a| a.phone.as_deref() == Some(p.as_str())),
            Identifier::UserName(u) => self
                .accounts
                .values()
                .find(|a| a.user_name.eq_ignore_ascii_case(&u)),
        };
        found
            .or_else(|| {
                AccountId::new(text.trim())
                    .ok()
                    .and_then(|id| self.accounts.get(&id))
            })
            .ok_or(CloudError::AccountNotFound)
    }

    /// Makes an account known by its id and region only (user name = id,
    /// no email or phone): for a cloud process without the account
    /// directory, such as the field-engineer commands, which learn
    /// accounts from a device's state report.
    pub fn ensure_account(&mut self, account: &AccountRef) -> AccountId {
        self.accounts
            .entry(account.id.clone())
            .or_insert_with(|| Account {
                id: account.id.clone(),
                user_name: account.id.to_string(),
                email: None,
                phone: None,
                region: account.region.clone(),
            });
        account.id.clone()
    }

    pub fn account(&self, id: &AccountId) -> Result<&Account, CloudError> {
        self.accounts.get(id).ok_or(CloudError::AccountNotFound)
    }

    // ---------------------------------------------------------- devices

    /// A device the cloud knows from the factory.
    pub fn register_device(
        &mut self,
        serial: &str,
        verification_code: &str,
        region: &str,
    ) -> Result<Serial, CloudError> {
        let serial = Serial::new(serial).map_err(|e| invalid("serial", e))?;
        let region = Region::new(region).map_err(|e| invalid("region", e))?;
        let record = self
            .devices
            .entry(serial.clone())
            .or_insert_with(|| DeviceRecord {
                serial: serial.clone(),
                verification_code: None,
                region: region.clone(),
                site: None,
                report: None,
            });
        record.verification_code = Some(verification_code.to_owned());
        record.region = region;
        Ok(serial)
    }

    pub fn device(&self, serial: &str) -> Result<&DeviceRecord, CloudError> {
        Serial::new(serial)
            .ok()
            .and_then(|s| self.devices.get(&s))
            .ok_or_else(|| CloudError::DeviceNotFound(serial.to_owned()))
    }

    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    /// A retained state report arrived: it becomes the cloud's view of the
    /// device. A device not known yet is added (without a verification
    /// code). A report older than the one held (lower `last_seq`) is
    /// ignored.
    pub fn on_state_report(&mut self, report: StateReport) {
        let record = self
            .devices
            .entry(report.serial.clone())
            .or_insert_with(|| DeviceRecord {
                serial: report.serial.clone(),
                verification_code: None,
                region: report.region.clone(),
                site: None,
                report: None,
            });
        if record
            .report
            .as_ref()
            .is_some_and(|old| old.last_seq > report.last_seq)
        {
            return;
        }
        record.region = report.region.clone();
        record.report = Some(report);
    }

    /// The device's last report.
    pub fn report(&self, serial: &str) -> Option<&StateReport> {
        self.device(serial).ok()?.report.as_ref()
    }

    /// Records what the device accepted.
    pub fn commit(&mut self, commit: &Commit) {
        match commit {
            Commit::Nothing => {}
            Commit::AddToSite { site, serial } => {
                if let Some(site_record) = self.sites.get_mut(site) {
                    if !site_record.devices.contains(serial) {
                        site_record.devices.push(serial.clone());
                    }
                }
                if let Some(device) = self.devices.get_mut(serial) {
                    device.site = Some(*site);
                }
            }
        }
    }

    // ---------------------------------------------------------- binding

    fn bindable(
        &self,
        account: &Account,
        serial: &str,
        entered_code: &str,
    ) -> Result<&DeviceRecord, CloudError> {
        let device = self.device(serial)?;
        if let Some(code) = &device.verification_code {
            if code != entered_code {
                return Err(CloudError::WrongVerificationCode);
            }
        }
        if account.region != device.region {
            return Err(CloudError::CrossRegion);
        }
        let bound = device
            .report
            .as_ref()
            .is_some_and(|r| r.binding != Binding::Unbound);
        if device.site.is_some() || bound {
            return Err(CloudError::DeviceAlreadyAdded);
        }
        Ok(device)
    }

    /// An installer adds a device to its site with the device's
    /// verification code.
    pub fn plan_add_to_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        serial: &str,
        entered_code: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(installer)?;
        let site_record = self.sites.get(&site).ok_or(CloudError::SiteNotFound)?;
        if &site_record.installer != installer {
            return Err(CloudError::NotSiteInstaller);
        }
        if site_record.handed_over_at.is_some() {
            return Err(CloudError::SiteHandedOver);
        }
        let device = self.bindable(account, serial, entered_code)?;
        let proof = bind_proof(entered_code.as_bytes(), &device.serial, &account.id);
        Ok(Planned {
            serial: device.serial.clone(),
            actor: account.account_ref(),
            body: CommandBody::Bind {
                role: BindRole::Installer,
                proof,
            },
            on_accept: Commit::AddToSite {
                site,
                serial: device.serial.clone(),
            },
        })
    }

    /// An end user adds a device to its own account directly ("one device
    /// can only be added into one account").
    pub fn plan_bind_owner(
        &self,
        owner: &AccountId,
        serial: &str,
        entered_code: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(owner)?;
        let device = self.bindable(account, serial, entered_code)?;
        let proof = bind_proof(entered_code.as_bytes(), &device.serial, &account.id);
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::Bind {
                role: BindRole::Owner,
                proof,
            },
        ))
    }

    // ---------------------------------------------------------- sites

    pub fn create_site(&mut self, installer: &AccountId, name: &str) -> Result<SiteId, CloudError> {
        let region = self.account(installer)?.region.clone();
        self.next_site += 1;
        let id = SiteId(self.next_site);
        self.sites.insert(
            id,
            Site {
                id,
                name: name.to_owned(),
                installer: installer.clone(),
                region,
                devices: Vec::new(),
                invitations: Vec::new(),
                owner: None,
                accepted: None,
                handed_over_at: None,
            },
        );
        Ok(id)
    }

    pub fn site(&self, site: SiteId) -> Result<&Site, CloudError> {
        self.sites.get(&site).ok_or(CloudError::SiteNotFound)
    }

    /// Not Invited / Not Registered / Not Accepted / Handed Over.
    pub fn site_status(&self, site: SiteId) -> Result<SiteStatus, CloudError> {
        let site = self.site(site)?;
        if site.handed_over_at.is_some() {
            return Ok(SiteStatus::HandedOver);
        }
        Ok(match site.current_invitation() {
            None => SiteStatus::NotInvited,
            Some(invitation) => {
                if self
                    .accounts
                    .values()
                    .any(|a| invitation.contact.matches(a))
                {
                    SiteStatus::NotAccepted
                } else {
                    SiteStatus::NotRegistered
                }
            }
        })
    }

    /// Invitations sent for `site` on the UTC day of `now`.
    pub fn invitations_sent_today(&self, site: SiteId, now: u64) -> Result<usize, CloudError> {
        let day = now / SECONDS_PER_DAY;
        Ok(self
            .site(site)?
            .invitations
            .iter()
            .filter(|i| i.sent_at / SECONDS_PER_DAY == day)
            .count())
    }

    fn managed_site(&self, installer: &AccountId, site: SiteId) -> Result<&Site, CloudError> {
        let site_record = self.site(site)?;
        if &site_record.installer != installer {
            return Err(CloudError::NotSiteInstaller);
        }
        if site_record.handed_over_at.is_some() {
            return Err(CloudError::SiteHandedOver);
        }
        Ok(site_record)
    }

    /// The installer invites the site owner by email or phone, asking for
    /// its permissions after handover. The previous invitation becomes
    /// invalid. At most [`INVITATIONS_PER_DAY`] per site per UTC day.
    pub fn invite(
        &mut self,
        installer: &AccountId,
        site: SiteId,
        contact: Contact,
        permissions: InstallerPermissions,
        remarks: &str,
        now: u64,
    ) -> Result<InvitationId, CloudError> {
        let site_record = self.managed_site(installer, site)?;
        if permissions.device_grants().next().is_some() && site_record.devices.is_empty() {
            return Err(CloudError::NoDevicesForPermissions);
        }
        for grant in permissions.device_grants() {
            if let DeviceSelection::Only(list) = &grant.devices {
                if list.is_empty() {
                    return Err(CloudError::NoDevicesForPermissions);
                }
                if let Some(missing) = list.iter().find(|s| !site_record.devices.contains(s)) {
                    return Err(CloudError::DeviceNotInSite(missing.to_string()));
                }
            }
        }
        let windows = permissions
            .device_grants()
            .filter_map(|g| g.validity)
            .chain(permissions.site_info.and_then(|g| g.validity));
        for window in windows {
            if !window.is_well_formed() {
                return Err(CloudError::InvalidValidity);
            }
        }
        if self.invitations_sent_today(site, now)? >= INVITATIONS_PER_DAY {
            return Err(CloudError::InvitationLimit);
        }
        self.next_invitation += 1;
        let id = InvitationId(self.next_invitation);
        let site_record = self.sites.get_mut(&site).ok_or(CloudError::SiteNotFound)?;
        for old in &mut site_record.invitations {
            old.superseded = true;
        }
        site_record.invitations.push(Invitation {
            id,
            site,
            contact,
            permissions,
            remarks: remarks.to_owned(),
            sent_at: now,
            superseded: false,
        });
        Ok(id)
    }

    /// Sends the current invitation again before it is accepted (status
    /// Not Registered or Not Accepted). It is a new invitation: it counts
    /// toward the daily limit and the previous one becomes invalid.
    pub fn resend_invitation(
        &mut self,
        installer: &AccountId,
        site: SiteId,
        now: u64,
    ) -> Result<InvitationId, CloudError> {
        let current = self
            .managed_site(installer, site)?
            .current_invitation()
            .cloned()
            .ok_or(CloudError::NothingToResend)?;
        self.invite(
            installer,
            site,
            current.contact,
            current.permissions,
            &current.remarks,
            now,
        )
    }

    /// Finds an invitation by id.
    pub fn invitation(&self, id: InvitationId) -> Result<&Invitation, CloudError> {
        self.sites
            .values()
            .flat_map(|s| s.invitations.iter())
            .find(|i| i.id == id)
            .ok_or(CloudError::UnknownInvitation)
    }

    /// The invitee accepts: the site is handed over in the cloud at once
    /// and every device of the site gets a `Handover` from the new owner
    /// with the grants for that device. (A real cloud would retry a device
    /// that did not answer; the driver reports each device's outcome.)
    pub fn accept_invitation(
        &mut self,
        id: InvitationId,
        account: &AccountId,
        now: u64,
    ) -> Result<HandoverPlan, CloudError> {
        let invitation = self.invitation(id)?.clone();
        let owner = self.account(account)?.clone();
        let site = self.site(invitation.site)?;
        if site.handed_over_at.is_some() {
            return Err(CloudError::SiteHandedOver);
        }
        if invitation.superseded {
            return Err(CloudError::InvitationInvalid);
        }
        if !invitation.contact.matches(&owner) {
            return Err(CloudError::NotTheInvitee);
        }
        if owner.region != site.region {
            return Err(CloudError::CrossRegion);
        }
        let commands = site
            .devices
            .iter()
            .map(|serial| {
                Planned::new(
                    serial.clone(),
                    owner.account_ref(),
                    CommandBody::Handover {
                        installer_grants: invitation.permissions.grants_for(serial),
                    },
                )
            })
            .collect();
        let site = self
            .sites
            .get_mut(&invitation.site)
            .ok_or(CloudError::SiteNotFound)?;
        site.owner = Some(owner.id.clone());
        site.accepted = Some(invitation.permissions.clone());
        site.handed_over_at = Some(now);
        Ok(HandoverPlan {
            site: site.id,
            owner: owner.account_ref(),
            commands,
        })
    }

    // ---------------------------------------------------------- who holds a device

    /// The device's owner per its report (or the site's, before any report).
    pub fn owner_of(&self, serial: &str) -> Option<AccountId> {
        let device = self.device(serial).ok()?;
        match &device.report {
            Some(report) => match &report.binding {
                Binding::Owned { owner, .. } => Some(owner.id.clone()),
                _ => None,
            },
            None => device
                .site
                .and_then(|s| self.sites.get(&s))
                .and_then(|s| s.owner.clone()),
        }
    }

    fn require_owner(&self, actor: &AccountId, serial: &str) -> Result<&DeviceRecord, CloudError> {
        let device = self.device(serial)?;
        let known = device.report.is_some() || device.site.is_some();
        if known && self.owner_of(serial).as_ref() != Some(actor) {
            return Err(CloudError::NotOwner);
        }
        Ok(device)
    }

    // ---------------------------------------------------------- sharing

    /// The owner shares the device with an account named by email, phone
    /// number or user name.
    pub fn plan_share(
        &self,
        owner: &AccountId,
        serial: &str,
        with: &str,
        permissions: Permissions,
        channels: ChannelScope,
        validity: Option<Validity>,
    ) -> Result<Planned, CloudError> {
        let owner_account = self.account(owner)?;
        let device = self.require_owner(owner, serial)?;
        let target = self.find_account(with)?;
        if target.region != device.region {
            return Err(CloudError::CrossRegionShare);
        }
        if &target.id == owner {
            return Err(CloudError::CannotShareWithSelf);
        }
        if !permissions.is_subset_of(Permissions::SHAREABLE) || permissions == Permissions::NONE {
            return Err(CloudError::PermissionsNotShareable);
        }
        if validity.is_some_and(|v| !v.is_well_formed()) {
            return Err(CloudError::InvalidValidity);
        }
        Ok(Planned::new(
            device.serial.clone(),
            owner_account.account_ref(),
            CommandBody::Share {
                account: target.account_ref(),
                permissions,
                channels,
                validity,
            },
        ))
    }

    /// "All the accounts that this device has been shared to", from the
    /// device's last report.
    pub fn list_shares(
        &self,
        owner: &AccountId,
        serial: &str,
    ) -> Result<Vec<SharedAccount>, CloudError> {
        let device = self.require_owner(owner, serial)?;
        let Some(report) = &device.report else {
            return Ok(Vec::new());
        };
        Ok(report
            .shares
            .iter()
            .map(|entry| {
                let known = self.accounts.get(&entry.account.id);
                SharedAccount {
                    account: entry.account.clone(),
                    user_name: known.map(|a| a.user_name.clone()),
                    email: known.and_then(|a| a.email.clone()),
                    phone: known.and_then(|a| a.phone.clone()),
                    entry: entry.clone(),
                }
            })
            .collect())
    }

    /// The devices shared to `account`, with domain and sharing owner.
    pub fn shared_with(&self, account: &AccountId) -> Vec<ReceivedShare> {
        self.devices
            .values()
            .filter_map(|d| {
                let report = d.report.as_ref()?;
                let Binding::Owned { owner, .. } = &report.binding else {
                    return None;
                };
                let entry = report.shares.iter().find(|s| &s.account.id == account)?;
                Some(ReceivedShare {
                    serial: d.serial.clone(),
                    domain: report.domain.clone(),
                    owner: owner.clone(),
                    entry: entry.clone(),
                })
            })
            .collect()
    }

    /// The account id of a shared account named by email, phone, user name
    /// or id, if the device is shared with it.
    fn shared_account_id(&self, report: &StateReport, name: &str) -> Result<AccountId, CloudError> {
        let by_directory = self.find_account(name).ok().map(|a| a.id.clone());
        report
            .shares
            .iter()
            .map(|s| &s.account.id)
            .find(|id| Some(*id) == by_directory.as_ref() || id.as_str() == name.trim())
            .cloned()
            .ok_or_else(|| CloudError::NotSharedWith(name.trim().to_owned()))
    }

    /// The owner stops sharing with one or several accounts.
    pub fn plan_unshare(
        &self,
        owner: &AccountId,
        serial: &str,
        accounts: &[&str],
    ) -> Result<Planned, CloudError> {
        let owner_account = self.account(owner)?;
        let device = self.require_owner(owner, serial)?;
        if accounts.is_empty() {
            return Err(CloudError::NothingSelected);
        }
        let mut ids: heapless::Vec<AccountId, MAX_SHARES> = heapless::Vec::new();
        for name in accounts {
            let id = match &device.report {
                Some(report) => self.shared_account_id(report, name)?,
                None => self.find_account(name)?.id.clone(),
            };
            if !ids.contains(&id) {
                ids.push(id).map_err(|_| CloudError::TooManySelected)?;
            }
        }
        Ok(Planned::new(
            device.serial.clone(),
            owner_account.account_ref(),
            CommandBody::Unshare { accounts: ids },
        ))
    }

    /// "Delete All".
    pub fn plan_unshare_all(&self, owner: &AccountId, serial: &str) -> Result<Planned, CloudError> {
        let owner_account = self.account(owner)?;
        let device = self.require_owner(owner, serial)?;
        Ok(Planned::new(
            device.serial.clone(),
            owner_account.account_ref(),
            CommandBody::UnshareAll,
        ))
    }

    /// The receiver deletes a device shared to it from its own side.
    pub fn plan_leave_share(
        &self,
        receiver: &AccountId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(receiver)?;
        let device = self.device(serial)?;
        if let Some(report) = &device.report {
            if !report.shares.iter().any(|s| &s.account.id == receiver) {
                return Err(CloudError::NotSharedWith(account.user_name.clone()));
            }
        }
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::LeaveShare,
        ))
    }

    // ---------------------------------------------------------- installer after handover

    /// Checks that `installer` may switch the cloud service of `serial`:
    /// the site's installer before handover, or after handover with
    /// "Allow me to disable the cloud service".
    fn require_service_switch(
        &self,
        installer: &AccountId,
        serial: &str,
    ) -> Result<&DeviceRecord, CloudError> {
        let device = self.device(serial)?;
        let allowed = match device.report.as_ref().map(|r| &r.binding) {
            Some(Binding::InstallerManaged { installer: i }) => {
                if &i.id == installer {
                    Ok(())
                } else {
                    Err(CloudError::NotSiteInstaller)
                }
            }
            Some(Binding::Owned {
                installer: Some(i),
                installer_grants,
                ..
            }) if &i.id == installer => {
                if installer_grants.may_disable_cloud {
                    Ok(())
                } else {
                    Err(CloudError::NotAllowedToDisableCloud)
                }
            }
            Some(_) => Err(CloudError::NotSiteInstaller),
            None => {
                let site = device
                    .site
                    .and_then(|s| self.sites.get(&s))
                    .ok_or(CloudError::NotSiteInstaller)?;
                if &site.installer != installer {
                    Err(CloudError::NotSiteInstaller)
                } else if site
                    .accepted
                    .as_ref()
                    .is_some_and(|p| !p.allow_disable_cloud)
                {
                    Err(CloudError::NotAllowedToDisableCloud)
                } else {
                    Ok(())
                }
            }
        };
        allowed.map(|()| device)
    }

    /// The installer switches the cloud service of one device.
    pub fn plan_set_cloud_service(
        &self,
        installer: &AccountId,
        serial: &str,
        enabled: bool,
    ) -> Result<Planned, CloudError> {
        let account = self.account(installer)?;
        let device = self.require_service_switch(installer, serial)?;
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::SetCloudService { enabled },
        ))
    }

    /// The installer switches the cloud service of every device of a site:
    /// one plan (or refusal) per device.
    pub fn plan_set_cloud_service_for_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        enabled: bool,
    ) -> Result<PerDevice<Planned>, CloudError> {
        let site_record = self.site(site)?;
        if &site_record.installer != installer {
            return Err(CloudError::NotSiteInstaller);
        }
        Ok(site_record
            .devices
            .iter()
            .map(|serial| {
                (
                    serial.clone(),
                    self.plan_set_cloud_service(installer, serial, enabled),
                )
            })
            .collect())
    }

    /// An installer with "Allow me to disable the cloud service" deletes
    /// the device from the owner's account without the owner.
    pub fn plan_remove_from_owner(
        &self,
        installer: &AccountId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(installer)?;
        let device = self.require_service_switch(installer, serial)?;
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::Unbind,
        ))
    }

    // ---------------------------------------------------------- domains

    fn live_registration(&self, name: &DomainName, now: u64) -> Option<&Registration> {
        self.registrations.get(name).filter(|r| now < r.expires_at)
    }

    /// The owner changes the device domain name.
    pub fn plan_set_domain(
        &self,
        owner: &AccountId,
        serial: &str,
        name: &str,
        now: u64,
    ) -> Result<Planned, CloudError> {
        let account = self.account(owner)?;
        let device = self.require_owner(owner, serial)?;
        let domain =
            DomainName::new(name).map_err(|_| CloudError::InvalidDomainName(name.to_owned()))?;
        if RESERVED_DOMAINS.contains(&domain.as_str()) {
            return Err(CloudError::InvalidDomainName(name.to_owned()));
        }
        if self
            .live_registration(&domain, now)
            .is_some_and(|r| r.serial != device.serial)
        {
            return Err(CloudError::DomainNameTaken(name.to_owned()));
        }
        let text: Text<MAX_DOMAIN_LEN> = Text::new(domain.as_str())
            .map_err(|_| CloudError::InvalidDomainName(name.to_owned()))?;
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::SetDomain { name: text },
        ))
    }

    /// A device registered its domain; `seen_from` is the address the
    /// cloud saw it come from. Answers `NameTaken` while another device
    /// holds a registration of the name that has not expired, `Invalid` for
    /// a reserved name, and otherwise records it (dropping the device's
    /// registration under an older name).
    pub fn on_domain_registration(
        &mut self,
        serial: &Serial,
        registration: &DomainRegistration,
        seen_from: IpAddress,
        now: u64,
    ) -> DomainResult {
        let answer = |outcome| DomainResult {
            attempt: registration.attempt,
            outcome,
        };
        let name = &registration.domain;
        if RESERVED_DOMAINS.contains(&name.as_str()) {
            return answer(DomainOutcome::Invalid);
        }
        if self
            .live_registration(name, now)
            .is_some_and(|r| &r.serial != serial)
        {
            return answer(DomainOutcome::NameTaken);
        }
        self.registrations
            .retain(|n, r| &r.serial != serial || n == name);
        self.registrations.insert(
            name.clone(),
            Registration {
                serial: serial.clone(),
                domain: name.clone(),
                public_address: seen_from,
                lan_address: registration.lan_address,
                ports: registration.ports,
                mappings: registration.mappings.iter().copied().collect(),
                registered_at: now,
                expires_at: now + u64::from(REGISTRATION_TTL_SECS),
            },
        );
        answer(DomainOutcome::Registered {
            public_address: seen_from,
            expires_in: REGISTRATION_TTL_SECS,
        })
    }

    /// The device's current registration, if any (live or not).
    pub fn registration_of(&self, serial: &str) -> Option<&Registration> {
        self.registrations
            .values()
            .find(|r| r.serial.as_str() == serial)
    }

    /// Resolves a device domain for `requester`: only the owner (while the
    /// cloud service is on), the site's installer before handover, and
    /// accounts whose share is valid now (cloud time), per the device's
    /// last report.
    pub fn resolve_domain(
        &self,
        requester: &AccountId,
        name: &str,
        now: u64,
    ) -> Result<Resolution, CloudError> {
        let not_found = || CloudError::DomainNotFound(name.to_owned());
        let domain = DomainName::new(name).map_err(|_| not_found())?;
        let registration = self.live_registration(&domain, now).ok_or_else(not_found)?;
        let report = self
            .devices
            .get(&registration.serial)
            .and_then(|d| d.report.as_ref())
            .ok_or(CloudError::DomainNotShared)?;
        match &report.binding {
            Binding::Owned { owner, .. } if &owner.id == requester => {}
            Binding::InstallerManaged { installer } if &installer.id == requester => {}
            _ => {
                let share = report
                    .shares
                    .iter()
                    .find(|s| &s.account.id == requester)
                    .ok_or(CloudError::DomainNotShared)?;
                if let Some(window) = share.validity {
                    if now < window.not_before {
                        return Err(CloudError::ShareNotYetValid);
                    }
                    if now >= window.not_after {
                        return Err(CloudError::ShareExpired);
                    }
                }
            }
        }
        if !report.cloud_service && !matches!(report.binding, Binding::InstallerManaged { .. }) {
            return Err(CloudError::CloudServiceDisabled);
        }
        Ok(Resolution {
            domain,
            serial: registration.serial.clone(),
            public_address: registration.public_address,
            ports: registration.ports,
            mappings: registration.mappings.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_classified_by_form() {
        assert_eq!(
            Identifier::parse(" Frank@Example.com "),
            Identifier::Email("frank@example.com".into())
        );
        assert_eq!(
            Identifier::parse("+49 151-000 001"),
            Identifier::Phone("+49151000001".into())
        );
        assert_eq!(
            Identifier::parse("frank"),
            Identifier::UserName("frank".into())
        );
        assert_eq!(
            Identifier::parse("1234"),
            Identifier::UserName("1234".into())
        );
    }

    #[test]
    fn user_names_cannot_look_like_emails_or_phones() {
        let mut m = CloudModel::new();
        assert!(m.register_account("a@b.c", None, None, "EU").is_err());
        assert!(m.register_account("+4915100", None, None, "EU").is_err());
        let id = m
            .register_account("frank", Some("frank@example.com"), None, "EU")
            .unwrap();
        assert_eq!(
            m.register_account("FRANK", None, None, "EU"),
            Err(CloudError::AccountExists("user name"))
        );
        assert_eq!(m.find_account(id.as_str()).unwrap().user_name, "frank");
    }

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

//! Accounts: registration with unique user name, email and phone, and
//! finding an account by what a user typed ([`Identifier`]); the
//! [`Contact`] an invitation is sent to.

use serde::{Deserialize, Serialize};
use std::fmt;

use hc_protocol::{AccountId, AccountRef, Region};

use super::{CloudError, CloudModel};

/// A cloud account. Found by email, phone number or user name; the device
/// only ever sees its opaque id and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    pub(super) fn matches(&self, account: &Account) -> bool {
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

impl CloudModel {
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
        self.register_account_as(None, user_name, email, phone, region)
    }

    /// [`CloudModel::register_account`] with the account id chosen by the
    /// caller (the field-engineer commands name accounts as the devices
    /// see them); `None` numbers it. An id already in use is refused.
    pub fn register_account_as(
        &mut self,
        id: Option<&str>,
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
            return Err(CloudError::invalid(
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
        let region = Region::new(region).map_err(|e| CloudError::invalid("region", e))?;
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
        let id = match id {
            Some(id) => {
                let id = AccountId::new(id).map_err(|e| CloudError::invalid("account id", e))?;
                if self.accounts.contains_key(&id) {
                    return Err(CloudError::AccountExists("account id"));
                }
                id
            }
            None => {
                self.next_account += 1;
                AccountId::new(&format!("acc-{:04}", self.next_account))
                    .map_err(|e| CloudError::invalid("account id", e))?
            }
        };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_classified_by_form() {
        for (typed, classified) in [
            (
                " Frank@Example.com ",
                Identifier::Email("frank@example.com".into()),
            ),
            ("+49 151-000 001", Identifier::Phone("+49151000001".into())),
            ("frank", Identifier::UserName("frank".into())),
            ("1234", Identifier::UserName("1234".into())),
        ] {
            assert_eq!(Identifier::parse(typed), classified, "{typed:?}");
        }
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
}

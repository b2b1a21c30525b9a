//! Bounded, validated identifiers: serial numbers, account ids, regions,
//! domain names, and the generic bounded text they are built from. Each
//! checks its rules when decoded, so a value that exists is a valid one.

use core::fmt;
use core::ops::Deref;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{MAX_ACCOUNT_ID_LEN, MAX_DOMAIN_LEN, MAX_REGION_LEN, MAX_SERIAL_LEN};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is empty (every identifier has at least one byte).
    #[error("empty")]
    Empty,
    /// Longer than the type's bound, in bytes (the bound is carried).
    #[error("longer than {0} bytes")]
    TooLong(usize),
    /// A character outside the type's alphabet (SPEC.md §5).
    #[error("contains a character that is not allowed")]
    BadCharacter,
    /// A domain name starting or ending with `-`.
    #[error("starts or ends with a hyphen")]
    EdgeHyphen,
}

/// UTF-8 text of at most `N` bytes without control characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text<const N: usize>(heapless::String<N>);

impl<const N: usize> Text<N> {
    /// Checks the length and that no control character is present.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.chars().any(char::is_control) {
            return Err(IdError::BadCharacter);
        }
        let mut out = heapless::String::new();
        out.push_str(s).map_err(|_| IdError::TooLong(N))?;
        Ok(Text(out))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<const N: usize> Deref for Text<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Serialize for Text<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Decodes a string into `T` through its validating constructor, so the
/// bytes are borrowed, checked for length first, and never copied twice.
/// `what` names the type in errors (and `Text` its bound, `Text<N>`).
fn deserialize_validated<'de, D, T>(
    d: D,
    what: &'static str,
    bound: Option<usize>,
    make: fn(&str) -> Result<T, IdError>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        what: &'static str,
        bound: Option<usize>,
        make: fn(&str) -> Result<T, IdError>,
    }
    impl<'de, T> de::Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.what)?;
            match self.bound {
                Some(n) => write!(f, "<{n}>"),
                None => Ok(()),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.make)(v).map_err(|e| E::custom(e))
        }
    }
    d.deserialize_str(V { what, bound, make })
}

impl<'de, const N: usize> Deserialize<'de> for Text<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_validated(d, "Text", Some(N), Text::new)
    }
}

macro_rules! validated_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Text<{ $max }>);

        impl $name {
            /// Checks `s` against the type's length bound and alphabet.
            pub fn new(s: &str) -> Result<Self, IdError> {
                if s.is_empty() {
                    return Err(IdError::Empty);
                }
                if s.len() > $max {
                    return Err(IdError::TooLong($max));
                }
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(s)?;
                Ok($name(Text::new(s)?))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_validated(d, stringify!($name), None, $name::new)
            }
        }
    };
}

fn topic_safe(s: &str) -> Result<(), IdError> {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(IdError::BadCharacter)
    }
}

/// Visible ASCII, `0x21..=0x7E`: no space (an id is compared bytewise and
/// shown in logs and audit lines, where `carol smith` and `carol  smith`
/// must not pass for one account), no control characters, no non-ASCII
/// (no look-alike letters, no normalization questions).
fn visible_ascii(s: &str) -> Result<(), IdError> {
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(IdError::BadCharacter)
    }
}

fn dns_label(s: &str) -> Result<(), IdError> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(IdError::BadCharacter);
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(IdError::EdgeHyphen);
    }
    Ok(())
}

validated_id!(
    /// A device serial number: `[A-Za-z0-9_-]`, 1 to 48 bytes. It is the
    /// MQTT client id, the certificate subject and a topic level, which is
    /// why `/`, `+` and `#` can never appear in it.
    Serial, MAX_SERIAL_LEN, topic_safe
);
validated_id!(
    /// An opaque cloud account id: 1 to 64 bytes of visible ASCII
    /// (`0x21..=0x7E`: no space, no control or non-ASCII characters). The
    /// cloud resolves e-mails, phone numbers and user names to it; the
    /// device only ever sees the id.
    AccountId, MAX_ACCOUNT_ID_LEN, visible_ascii
);
validated_id!(
    /// A cloud region code such as `EU` or `US`: `[A-Za-z0-9_-]`, 1 to 8 bytes.
    Region, MAX_REGION_LEN, topic_safe
);
validated_id!(
    /// A device domain name: one DNS label, 1 to 63 bytes of `[a-z0-9-]`,
    /// not starting or ending with a hyphen.
    DomainName, MAX_DOMAIN_LEN, dns_label
);

impl DomainName {
    /// The default domain: the serial, lower-cased, with `_` turned into `-`,
    /// trimmed of edge hyphens and cut to the label length.
    pub fn from_serial(serial: &Serial) -> Result<DomainName, IdError> {
        let mut label: heapless::String<MAX_DOMAIN_LEN> = heapless::String::new();
        for c in serial.as_str().chars().take(MAX_DOMAIN_LEN) {
            let c = if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            };
            // Cannot overflow: at most MAX_DOMAIN_LEN ASCII chars are taken.
            let _ = label.push(c);
        }
        DomainName::new(label.trim_matches('-'))
    }
}

/// An account together with the region it lives in. Every command that
/// names an account carries its region so the device can refuse
/// cross-region accounts itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountRef {
    /// The account.
    pub id: AccountId,
    /// The region the account lives in.
    pub region: Region,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_rejects_topic_wildcards_and_separators() {
        for bad in ["a/b", "a+b", "a#", "", "a b"] {
            assert!(Serial::new(bad).is_err(), "{bad}");
        }
        assert!(Serial::new("DS-7608NI_0123").is_ok());
        assert_eq!(Serial::new(&"x".repeat(49)), Err(IdError::TooLong(48)));
    }

    #[test]
    fn account_id_is_visible_ascii_only() {
        assert!(AccountId::new("owner-0007").is_ok());
        assert!(AccountId::new("carol.smith@example.com").is_ok());
        assert!(AccountId::new("!~").is_ok(), "0x21 and 0x7E are the edges");
        for bad in [
            "carol smith",
            " carol",
            "carol ",
            "a\tb",
            "a\u{7f}b",
            "caf\u{e9}",
            "",
        ] {
            assert!(AccountId::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AccountId::new("carol smith"), Err(IdError::BadCharacter));
        assert_eq!(
            AccountId::new(&"a".repeat(65)),
            Err(IdError::TooLong(MAX_ACCOUNT_ID_LEN))
        );
    }

    #[test]
    fn domain_follows_dns_label_rules() {
        assert!(DomainName::new("front-door-nvr").is_ok());
        assert_eq!(DomainName::new("-x"), Err(IdError::EdgeHyphen));
        assert_eq!(DomainName::new("x-"), Err(IdError::EdgeHyphen));
        assert_eq!(DomainName::new("Upper"), Err(IdError::BadCharacter));
        assert_eq!(DomainName::new("a.b"), Err(IdError::BadCharacter));
        assert_eq!(DomainName::new(&"a".repeat(64)), Err(IdError::TooLong(63)));
    }

    #[test]
    fn default_domain_is_the_serial_lowercased() {
        let serial = Serial::new("DS-2CD_2043G0").unwrap();
        assert_eq!(
            DomainName::from_serial(&serial).unwrap().as_str(),
            "ds-2cd-2043g0"
        );
    }

    #[test]
    fn decoding_enforces_the_same_rules_as_construction() {
        let bytes = postcard::to_allocvec("bad/serial").unwrap();
        assert!(postcard::from_bytes::<Serial>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&"a".repeat(65)).unwrap();
        assert!(postcard::from_bytes::<AccountId>(&bytes).is_err());
        let bytes = postcard::to_allocvec("ctl\u{7}").unwrap();
        assert!(postcard::from_bytes::<Text<8>>(&bytes).is_err());
        let bytes = postcard::to_allocvec("carol smith").unwrap();
        assert!(postcard::from_bytes::<AccountId>(&bytes).is_err());
        assert!(postcard::from_bytes::<Serial>(&bytes).is_err());
        assert!(postcard::from_bytes::<Region>(&bytes).is_err());
        // Free text keeps its space.
        assert!(postcard::from_bytes::<Text<16>>(&bytes).is_ok());
    }
}

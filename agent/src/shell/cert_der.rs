//! Facts read from an X.509 certificate's DER with a minimal parser: the
//! subject common name (the device's certificate must name its serial, or
//! the broker would see another client than the one the agent believes it
//! is), the validity (when to renew, SPEC §6.6) and the subject public key
//! (a renewed certificate must carry the key the device generated). The
//! chain, the signature and the key usages are webpki's to check; this
//! only reads what webpki does not expose.

/// One DER element: its tag and its contents; `rest` follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const BIT_STRING: u8 = 0x03;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The fields of the to-be-signed certificate from the validity on:
/// `[validity, subject, subject public key info, ...]`.
fn tbs_from_validity(der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else {
        return None;
    };
    // [0] version (optional), serial, signature algorithm, issuer, then
    // the validity.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    Some(tbs)
}

/// The certificate's `notBefore` and `notAfter`, Unix seconds.
pub fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (SEQUENCE, validity, _) = element(tbs_from_validity(der)?)? else {
        return None;
    };
    let (tag, not_before, rest) = element(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// The subject public key: the bits of the subject public key info (for a
/// P-256 key, the uncompressed point).
pub fn public_key(der: &[u8]) -> Option<&[u8]> {
    let rest = element(tbs_from_validity(der)?)?.2;
    let rest = element(rest)?.2;
    let (SEQUENCE, info, _) = element(rest)? else {
        return None;
    };
    let (BIT_STRING, bits, _) = element(element(info)?.2)? else {
        return None;
    };
    // The first byte counts the unused bits of the last one: none in a key.
    match bits.split_first()? {
        (0, key) => Some(key),
        _ => None,
    }
}

/// An X.509 time (RFC 5280 §4.1.2.5: UTCTime `YYMMDDHHMMSSZ` for years
/// before 2050, GeneralizedTime `YYYYMMDDHHMMSSZ` from then on) as Unix
/// seconds.
fn time(tag: u8, text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        digits
            .get(range)?
            .iter()
            .try_fold(0u64, |acc, d| Some(acc * 10 + u64::from(d - b'0')))
    };
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = number(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let field = |at: usize| number(rest + at..rest + at + 2);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`); `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let year = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

/// The subject's common name(s), or `None` when the DER is not a
/// certificate this parser understands.
pub fn subject_common_names(der: &[u8]) -> Option<Vec<String>> {
    let rest = element(tbs_from_validity(der)?)?.2;
    let (SEQUENCE, mut name, _) = element(rest)? else {
        return None;
    };
    let mut names = Vec::new();
    while !name.is_empty() {
        let (SET, mut rdn, rest) = element(name)? else {
            return None;
        };
        name = rest;
        while !rdn.is_empty() {
            let (SEQUENCE, attribute, rest) = element(rdn)? else {
                return None;
            };
            rdn = rest;
            let (0x06, oid, value) = element(attribute)? else {
                return None;
            };
            if oid == OID_COMMON_NAME {
                let (_, text, _) = element(value)?;
                names.push(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(subject_common_names(&[]), None);
        assert_eq!(
            subject_common_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(subject_common_names(&[0x30, 0x02, 0x30, 0x00]), None);
        assert_eq!(validity(&[0x30, 0x02, 0x30, 0x00]), None);
        assert_eq!(public_key(&[]), None);
    }

    #[test]
    fn times_read_as_unix_seconds() {
        assert_eq!(time(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(time(UTC_TIME, b"260101000000Z"), Some(1_767_225_600));
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(
            time(GENERALIZED_TIME, b"20500101000000Z"),
            Some(2_524_608_000)
        );
        // Leap day, and the end of the range of UTCTime's 19xx half.
        assert_eq!(time(UTC_TIME, b"240229120000Z"), Some(1_709_208_000));
        assert_eq!(time(UTC_TIME, b"991231235959Z"), Some(946_684_799));
    }

    #[test]
    fn malformed_times_are_refused() {
        for (tag, text) in [
            (UTC_TIME, &b"260101000000"[..]),
            (UTC_TIME, b"2601010000Z"),
            (UTC_TIME, b"261301000000Z"),
            (UTC_TIME, b"260100000000Z"),
            (UTC_TIME, b"26010124000Z0"),
            (UTC_TIME, b"2601-1000000Z"),
            (GENERALIZED_TIME, b"260101000000Z"),
            (GENERALIZED_TIME, b"19600101000000Z"),
            (0x04, b"260101000000Z"),
        ] {
            assert_eq!(time(tag, text), None, "{}", String::from_utf8_lossy(text));
        }
    }
}

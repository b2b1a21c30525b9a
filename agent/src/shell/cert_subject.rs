//! The subject common name of an X.509 certificate, read from its DER with
//! a minimal parser: the device's certificate must name its serial, or the
//! broker would see another client than the one the agent believes it is.

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

/// The subject's common name(s), or `None` when the DER is not a
/// certificate this parser understands.
pub(super) fn subject_common_names(der: &[u8]) -> Option<Vec<String>> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else {
        return None;
    };
    // [0] version (optional), serial, signature algorithm, issuer,
    // validity, then the subject.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, mut name, _) = element(tbs)? else {
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
    }
}

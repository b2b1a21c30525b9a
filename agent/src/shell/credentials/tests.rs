use std::os::unix::fs::PermissionsExt;

use hc_testkit::pki::Pki;

use super::*;
use crate::shell::tls::{client_config, TlsFiles};
use crate::store::{Fault, FaultyFlash, RealFlash};

const SERIAL: &str = "NVR-RENEW-1";
/// 2026-12-01: the certificates below are valid around it.
const NOW: u64 = 1_796_083_200;
const YEAR: u64 = 365 * 24 * 3600;

struct Bench {
    _dir: tempfile::TempDir,
    pki: Pki,
    credentials_dir: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path().join("pki"), &[SERIAL]).unwrap();
        let credentials_dir = dir.path().join("state/credentials");
        Bench {
            _dir: dir,
            pki,
            credentials_dir,
        }
    }

    fn open<F: Flash>(&self, flash: F) -> Result<Credentials<F>, CredentialError> {
        let device = self.pki.device(SERIAL).unwrap();
        Credentials::open(
            self.credentials_dir.clone(),
            device.cert.clone(),
            device.key.clone(),
            self.pki.ca_cert().to_owned(),
            flash,
        )
    }

    /// What the cloud issues for `request`.
    fn issue(&self, request: &CertificateRequest) -> Vec<u8> {
        assert!(request.proof_holds());
        self.pki
            .issue_for_key(SERIAL, &request.public_key, NOW - 60, NOW + YEAR)
            .unwrap()
    }

    /// Whether `identity`'s files make a TLS client identity (the key
    /// matches the certificate), as the link would build it.
    fn usable<F: Flash>(&self, credentials: &Credentials<F>, identity: Identity) -> bool {
        let (cert, key) = credentials.files(identity);
        client_config(&TlsFiles {
            ca: self.pki.ca_cert(),
            cert: &cert,
            key: &key,
            allow_tls12: false,
        })
        .is_ok()
    }
}

fn serial() -> Serial {
    Serial::new(SERIAL).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn pem_blocks_read_back_as_the_same_bytes() {
    for len in [0, 1, 2, 3, 47, 48, 49, 500] {
        let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let block = pem("CERTIFICATE", &der);
        let read = CertificateDer::from_pem_slice(block.as_bytes()).unwrap();
        assert_eq!(read.as_ref(), &der[..], "{len} bytes");
        assert!(block.lines().all(|line| line.len() <= 64));
    }
}

#[test]
fn a_renewal_stores_a_usable_pair_and_switches_to_it() {
    let bench = Bench::new();
    let mut credentials = bench.open(RealFlash).unwrap();
    assert_eq!(mode(&bench.credentials_dir), 0o700);
    assert_eq!(credentials.identity(), Identity::Configured);
    assert!(bench.usable(&credentials, Identity::Configured));

    let request = credentials.request(&serial(), NOW + 10).unwrap();
    assert!(request.proof_holds());
    assert_eq!(request.current_not_after, NOW + 10);
    let pending = bench.credentials_dir.join(PENDING);
    assert_eq!(mode(&pending), 0o600);
    // The same key is asked for again, also after a restart.
    assert_eq!(
        credentials.request(&serial(), NOW).unwrap().public_key,
        request.public_key
    );
    let mut credentials = bench.open(RealFlash).unwrap();
    assert_eq!(
        credentials.request(&serial(), NOW).unwrap().public_key,
        request.public_key
    );

    let issued = bench.issue(&request);
    let validity = credentials.install(&issued, &serial(), NOW).unwrap();
    assert_eq!(validity.not_after, NOW + YEAR);
    assert_eq!(credentials.identity(), Identity::Next);
    assert_eq!(credentials.fallback(), Identity::Configured);
    assert!(!pending.exists());
    assert_eq!(mode(&bench.credentials_dir.join(NEXT)), 0o600);
    assert!(bench.usable(&credentials, Identity::Next));
    assert_eq!(credentials.validity(Identity::Next), Some(validity));
    // A redelivery of the same command after a restart changes nothing.
    let mut credentials = bench.open(RealFlash).unwrap();
    assert_eq!(credentials.install(&issued, &serial(), NOW), Ok(validity));

    credentials.promote().unwrap();
    assert_eq!(credentials.identity(), Identity::Current);
    // Redelivered once the pair has connected: still the same answer.
    assert_eq!(credentials.install(&issued, &serial(), NOW), Ok(validity));
    assert!(bench.usable(&credentials, Identity::Current));
    assert_eq!(credentials.validity(Identity::Current), Some(validity));
    // The next renewal asks for a fresh key.
    let again = credentials.request(&serial(), NOW).unwrap();
    assert_ne!(again.public_key, request.public_key);
}

#[test]
fn a_certificate_that_fails_a_check_is_refused_with_its_reason_and_changes_nothing() {
    let bench = Bench::new();
    let mut credentials = bench.open(RealFlash).unwrap();
    let request = credentials.request(&serial(), NOW).unwrap();
    let key = &request.public_key;
    let unrelated = bench.pki.generate_unrelated().unwrap();
    let rng = SystemRandom::new();
    let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let other_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, other.as_ref(), &rng)
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
    let cases = [
        (
            "signed by another CA",
            unrelated.issue_for_key(SERIAL, key, NOW - 60, NOW + YEAR),
            Reason::CertificateNotTrusted,
        ),
        (
            "expired",
            bench.pki.issue_for_key(SERIAL, key, NOW - YEAR, NOW - 60),
            Reason::CertificateNotTrusted,
        ),
        (
            "for another device",
            bench
                .pki
                .issue_for_key("NVR-OTHER", key, NOW - 60, NOW + YEAR),
            Reason::CertificateNotForDevice,
        ),
        (
            "for another key",
            bench
                .pki
                .issue_for_key(SERIAL, &other_key, NOW - 60, NOW + YEAR),
            Reason::CertificateNotRequested,
        ),
        (
            "not a certificate",
            Ok(vec![0x30, 0x03, 1, 2, 3]),
            Reason::CertificateNotTrusted,
        ),
    ];
    for (what, der, reason) in cases {
        let der = der.unwrap();
        assert_eq!(
            credentials.install(&der, &serial(), NOW),
            Err(reason),
            "{what}"
        );
        assert_eq!(credentials.identity(), Identity::Configured, "{what}");
        assert!(bench.credentials_dir.join(PENDING).exists(), "{what}");
    }
    // A device clock behind the cloud's (not valid yet by it) is no
    // reason to refuse.
    let ahead = bench
        .pki
        .issue_for_key(SERIAL, key, NOW + 600, NOW + YEAR)
        .unwrap();
    assert!(credentials.install(&ahead, &serial(), NOW).is_ok());
    std::fs::remove_file(bench.credentials_dir.join(NEXT)).unwrap();
    let mut credentials = bench.open(RealFlash).unwrap();
    let request = credentials.request(&serial(), NOW).unwrap();
    // The good one still installs afterwards.
    let issued = bench.issue(&request);
    assert!(credentials.install(&issued, &serial(), NOW).is_ok());

    // With no renewal outstanding, a certificate is not asked for.
    let mut fresh = Bench::new().open(RealFlash).unwrap();
    assert_eq!(
        fresh.install(&issued, &serial(), NOW),
        Err(Reason::CertificateNotRequested)
    );
}

#[test]
fn a_pending_key_left_behind_by_a_power_cut_is_not_asked_for_again() {
    let bench = Bench::new();
    let mut credentials = bench.open(RealFlash).unwrap();
    let request = credentials.request(&serial(), NOW).unwrap();
    let pending = std::fs::read(bench.credentials_dir.join(PENDING)).unwrap();
    credentials
        .install(&bench.issue(&request), &serial(), NOW)
        .unwrap();
    // The cut came before the key's removal.
    std::fs::write(bench.credentials_dir.join(PENDING), pending).unwrap();
    let mut rebooted = bench.open(RealFlash).unwrap();
    assert!(!bench.credentials_dir.join(PENDING).exists());
    let next = rebooted.request(&serial(), NOW).unwrap();
    assert_ne!(next.public_key, request.public_key);
}

#[test]
fn a_pair_set_aside_leaves_the_pair_in_use() {
    let bench = Bench::new();
    let mut credentials = bench.open(RealFlash).unwrap();
    let request = credentials.request(&serial(), NOW).unwrap();
    credentials
        .install(&bench.issue(&request), &serial(), NOW)
        .unwrap();
    credentials.set_aside().unwrap();
    assert_eq!(credentials.identity(), Identity::Configured);
    assert!(bench.credentials_dir.join(REFUSED).is_file());
}

/// Every step of a renewal's file work, one power cut after each
/// operation: after every cut the pair the device would connect with next
/// loads as a TLS identity (its key matches its certificate), and it is
/// the old pair or the new one.
#[test]
fn a_power_cut_at_any_step_leaves_the_old_or_the_new_pair_usable() {
    let mut cuts = 0;
    for after in 0.. {
        let bench = Bench::new();
        let configured = std::fs::read(&bench.pki.device(SERIAL).unwrap().cert).unwrap();
        let mut flash = FaultyFlash::new();
        flash.arm(Fault::PowerCutAfter(after));
        let finished = (|| -> Result<Vec<u8>, String> {
            let mut credentials = bench.open(flash).map_err(|e| e.to_string())?;
            let request = credentials
                .request(&serial(), NOW)
                .map_err(|e| e.to_string())?;
            let issued = bench.issue(&request);
            credentials
                .install(&issued, &serial(), NOW)
                .map_err(|e| e.to_string())?;
            credentials.promote().map_err(|e| e.to_string())?;
            Ok(issued)
        })();

        let rebooted = bench.open(RealFlash).unwrap();
        let identity = rebooted.identity();
        assert!(
            bench.usable(&rebooted, identity),
            "cut after {after} operations: {identity:?} does not load"
        );
        let (cert, _) = rebooted.files(identity);
        let der = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let old = CertificateDer::pem_slice_iter(&configured)
            .next()
            .unwrap()
            .unwrap();
        match (&finished, identity) {
            (Ok(issued), _) => {
                assert_eq!(identity, Identity::Current);
                assert_eq!(der.as_ref(), &issued[..]);
                break;
            }
            (Err(_), Identity::Configured) => assert_eq!(der, old),
            (Err(_), Identity::Next | Identity::Current) => {
                assert!(rebooted.validity(identity).is_some())
            }
        }
        cuts += 1;
    }
    // Writing the key (4 operations), the pair (4), removing the key and
    // the rename with its directory sync: every one was cut after.
    assert!(cuts >= 10, "{cuts} cuts");
}

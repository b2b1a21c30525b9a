//! A throw-away PKI for the simulator and the tests: a CA, a broker
//! certificate for `localhost` / `127.0.0.1`, one client certificate per
//! device (subject CN = serial) and one for the simulated cloud (CN
//! `cloud`), all ECDSA P-256 so that rustls (ring) and OpenSSL (mosquitto)
//! both take them.
//!
//! Layout of the directory (certificates PEM, keys PKCS#8 PEM, mode 0600):
//!
//! ```text
//! ca.pem  ca.key                     the CA
//! server.pem  server.key             the broker (SAN localhost, 127.0.0.1)
//! cloud.pem  cloud.key               the simulated cloud's client certificate
//! devices/{serial}.pem  .key         one client certificate per device
//! unrelated/...                      a second, unrelated PKI ("wrong CA" tests)
//! expired/server.pem  server.key     an expired broker certificate from the real CA
//! ```
//!
//! No certificate carries an Organization (O=): the embedded broker
//! (rumqttd with `verify-client-cert`) would take it as a tenant id and
//! prefix every topic of that client with `/tenants/{O}/`, splitting devices
//! and cloud into different topic namespaces.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256,
};

/// The subject CN of the simulated cloud's client certificate (and its
/// mosquitto user name).
pub const CLOUD_CN: &str = "cloud";

const CA_CN: &str = "hc-sim test CA";
const UNRELATED_CA_CN: &str = "hc-sim unrelated CA";
const SERVER_CN: &str = "localhost";
const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is missing: not a PKI directory (or an incomplete one)")]
    Missing { path: PathBuf },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("invalid device serial {serial:?}: {message}")]
    InvalidSerial { serial: String, message: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A certificate file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
}

impl CertFiles {
    fn in_dir(dir: &Path, stem: &str) -> CertFiles {
        CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    fn exist(&self) -> Result<(), PkiError> {
        for path in [&self.cert, &self.key] {
            if !path.is_file() {
                return Err(PkiError::Missing { path: path.clone() });
            }
        }
        Ok(())
    }
}

/// Validity of a generated certificate.
#[derive(Debug, Clone, Copy)]
enum Validity {
    /// 2024-01-01 .. 2049-12-31.
    Current,
    /// 2020-01-01 .. 2021-01-01: expired.
    Expired,
    /// From .. to, Unix seconds (short-lived certificates for renewal).
    Window(u64, u64),
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) -> Result<(), PkiError> {
        let unix = |secs: u64| {
            i64::try_from(secs)
                .ok()
                .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
                .ok_or(rcgen::Error::Time)
        };
        let (from, to) = match self {
            Validity::Current => (date_time_ymd(2024, 1, 1), date_time_ymd(2049, 12, 31)),
            Validity::Expired => (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1)),
            Validity::Window(from, to) => (unix(from)?, unix(to)?),
        };
        params.not_before = from;
        params.not_after = to;
        Ok(())
    }
}

/// A P-256 public key given as its uncompressed point, as a device's
/// certificate request carries it: what the CA signs a certificate for
/// without ever seeing the private key.
struct P256PublicKey<'a>(&'a [u8]);

impl rcgen::PublicKeyData for P256PublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy)]
enum Role {
    Server,
    Client,
}

/// A generated PKI in a directory. All paths are absolute if `dir` was.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
    ca: CertFiles,
    server: CertFiles,
    cloud: CertFiles,
    devices: BTreeMap<String, CertFiles>,
}

impl Pki {
    /// Generates a fresh PKI into `dir` (created if needed), overwriting any
    /// PKI files already there: CA, broker certificate, cloud client
    /// certificate and one client certificate per serial.
    pub fn generate(dir: impl AsRef<Path>, serials: &[&str]) -> Result<Pki, PkiError> {
        Self::generate_with_ca_name(dir.as_ref(), CA_CN, serials)
    }

    fn generate_with_ca_name(dir: &Path, ca_cn: &str, serials: &[&str]) -> Result<Pki, PkiError> {
        for serial in serials {
            check_serial(serial)?;
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let devices_dir = dir.join("devices");
        fs::create_dir_all(&devices_dir).map_err(io_err(&devices_dir))?;

        let ca = CertFiles::in_dir(dir, "ca");
        let ca_key = new_key()?;
        let ca_params = ca_params(ca_cn);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        write_key(&ca.key, &ca_key)?;
        write_public(&ca.cert, &ca_cert.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server = CertFiles::in_dir(dir, "server");
        issue(&issuer, &server, SERVER_CN, Role::Server, Validity::Current)?;
        let cloud = CertFiles::in_dir(dir, CLOUD_CN);
        issue(&issuer, &cloud, CLOUD_CN, Role::Client, Validity::Current)?;

        let mut pki = Pki {
            dir: dir.to_owned(),
            ca,
            server,
            cloud,
            devices: BTreeMap::new(),
        };
        for serial in serials {
            pki.issue_device(&issuer, serial, Validity::Current)?;
        }
        Ok(pki)
    }

    /// Opens a PKI generated earlier into `dir` (by [`Pki::generate`]),
    /// with every device certificate found in `dir/devices`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Pki, PkiError> {
        let dir = dir.as_ref();
        let ca = CertFiles::in_dir(dir, "ca");
        let server = CertFiles::in_dir(dir, "server");
        let cloud = CertFiles::in_dir(dir, CLOUD_CN);
        for files in [&ca, &server, &cloud] {
            files.exist()?;
        }
        let devices_dir = dir.join("devices");
        let mut devices = BTreeMap::new();
        if devices_dir.is_dir() {
            for entry in fs::read_dir(&devices_dir).map_err(io_err(&devices_dir))? {
                let entry = entry.map_err(io_err(&devices_dir))?;
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                    continue;
                }
                let Some(serial) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if check_serial(serial).is_err() {
                    continue;
                }
                let files = CertFiles::in_dir(&devices_dir, serial);
                files.exist()?;
                devices.insert(serial.to_owned(), files);
            }
        }
        Ok(Pki {
            dir: dir.to_owned(),
            ca,
            server,
            cloud,
            devices,
        })
    }

    /// [`Pki::load`] if `dir` holds a PKI, else [`Pki::generate`]; then
    /// issues a certificate for every serial in `serials` that lacks one.
    pub fn load_or_generate(dir: impl AsRef<Path>, serials: &[&str]) -> Result<Pki, PkiError> {
        let dir = dir.as_ref();
        if !dir.join("ca.pem").exists() {
            return Self::generate(dir, serials);
        }
        let mut pki = Self::load(dir)?;
        for serial in serials {
            if !pki.devices.contains_key(*serial) {
                pki.add_device(serial)?;
            }
        }
        Ok(pki)
    }

    /// Issues (or re-issues) the client certificate of device `serial`.
    pub fn add_device(&mut self, serial: &str) -> Result<CertFiles, PkiError> {
        check_serial(serial)?;
        let issuer = self.issuer()?;
        self.issue_device(&issuer, serial, Validity::Current)
    }

    fn issue_device(
        &mut self,
        issuer: &Issuer<'_, KeyPair>,
        serial: &str,
        validity: Validity,
    ) -> Result<CertFiles, PkiError> {
        let files = CertFiles::in_dir(&self.dir.join("devices"), serial);
        issue(issuer, &files, serial, Role::Client, validity)?;
        self.devices.insert(serial.to_owned(), files.clone());
        Ok(files)
    }

    /// Re-issues the client certificate (and key) of device `serial`, valid
    /// from `not_before` to `not_after` (Unix seconds): a certificate near
    /// its end, for renewal tests.
    pub fn add_device_valid(
        &mut self,
        serial: &str,
        not_before: u64,
        not_after: u64,
    ) -> Result<CertFiles, PkiError> {
        check_serial(serial)?;
        let issuer = self.issuer()?;
        self.issue_device(&issuer, serial, Validity::Window(not_before, not_after))
    }

    /// The claim certificate of production batch `batch` (SPEC §6.7): a
    /// client certificate with CN `claim-{batch}`, shared by every device
    /// of the batch, in `{dir}/claims/claim-{batch}.{pem,key}`; issued if
    /// missing.
    pub fn claim(&self, batch: &str) -> Result<CertFiles, PkiError> {
        let cn = format!("{}{batch}", hc_protocol::provisioning::CLAIM_PREFIX);
        // Topic-safe like a serial (it is the claim's topic level).
        check_topic_name(&cn)?;
        let dir = self.dir.join("claims");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let files = CertFiles::in_dir(&dir, &cn);
        if files.exist().is_err() {
            issue(
                &self.issuer()?,
                &files,
                &cn,
                Role::Client,
                Validity::Current,
            )?;
        }
        Ok(files)
    }

    /// A client certificate (DER) for device `serial` and the P-256 public
    /// key `public_key` (uncompressed point), valid from `not_before` to
    /// `not_after` (Unix seconds): what the cloud issues in answer to a
    /// certificate request.
    pub fn issue_for_key(
        &self,
        serial: &str,
        public_key: &[u8],
        not_before: u64,
        not_after: u64,
    ) -> Result<Vec<u8>, PkiError> {
        let mut params = leaf_params(serial, Role::Client)?;
        Validity::Window(not_before, not_after).apply(&mut params)?;
        let cert = params.signed_by(&P256PublicKey(public_key), &self.issuer()?)?;
        Ok(cert.der().to_vec())
    }

    /// The CA, re-opened from its files.
    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key_pem = read_text(&self.ca.key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadFile {
            path: self.ca.key.clone(),
            message: e.to_string(),
        })?;
        let cert_pem = read_text(&self.ca.cert)?;
        Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::BadFile {
            path: self.ca.cert.clone(),
            message: e.to_string(),
        })
    }

    /// A second, unrelated PKI (its own CA key and a different CA name)
    /// with the same device serials, in `{dir}/unrelated`: its server
    /// certificate must be refused by clients that trust this PKI's CA, and
    /// its client certificates by a broker using this PKI. Regenerated on
    /// every call.
    pub fn generate_unrelated(&self) -> Result<Pki, PkiError> {
        let serials: Vec<&str> = self.devices.keys().map(String::as_str).collect();
        Self::generate_with_ca_name(&self.dir.join("unrelated"), UNRELATED_CA_CN, &serials)
    }

    /// A broker certificate for `localhost` / `127.0.0.1`, signed by this
    /// CA, that expired on 2021-01-01, in `{dir}/expired/server.{pem,key}`.
    pub fn expired_server(&self) -> Result<CertFiles, PkiError> {
        let dir = self.dir.join("expired");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let files = CertFiles::in_dir(&dir, "server");
        issue(
            &self.issuer()?,
            &files,
            SERVER_CN,
            Role::Server,
            Validity::Expired,
        )?;
        Ok(files)
    }

    /// A client certificate for `serial`, signed by this CA, that expired on
    /// 2021-01-01, in `{dir}/expired/{serial}.{pem,key}`.
    pub fn expired_device(&self, serial: &str) -> Result<CertFiles, PkiError> {
        check_serial(serial)?;
        let dir = self.dir.join("expired");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let files = CertFiles::in_dir(&dir, serial);
        issue(
            &self.issuer()?,
            &files,
            serial,
            Role::Client,
            Validity::Expired,
        )?;
        Ok(files)
    }

    /// The directory the PKI lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (`ca.pem`): the only trust anchor of both sides.
    pub fn ca_cert(&self) -> &Path {
        &self.ca.cert
    }

    /// The CA certificate and key.
    pub fn ca(&self) -> &CertFiles {
        &self.ca
    }

    /// The broker certificate and key.
    pub fn server(&self) -> &CertFiles {
        &self.server
    }

    /// The simulated cloud's client certificate and key (CN `cloud`).
    pub fn cloud(&self) -> &CertFiles {
        &self.cloud
    }

    /// The client certificate and key of device `serial`, if issued.
    pub fn device(&self, serial: &str) -> Option<&CertFiles> {
        self.devices.get(serial)
    }

    /// Every device, by serial.
    pub fn devices(&self) -> impl Iterator<Item = (&str, &CertFiles)> {
        self.devices.iter().map(|(s, f)| (s.as_str(), f))
    }
}

/// A serial must be a valid device serial (topic-safe, so also a safe file
/// name and MQTT client id) and must not collide with the cloud's name.
/// `name` can stand as a topic level: a valid serial's syntax.
fn check_topic_name(name: &str) -> Result<(), PkiError> {
    hc_protocol::Serial::new(name).map_err(|e| PkiError::InvalidSerial {
        serial: name.to_owned(),
        message: e.to_string(),
    })?;
    Ok(())
}

fn check_serial(serial: &str) -> Result<(), PkiError> {
    check_topic_name(serial)?;
    if serial == CLOUD_CN {
        return Err(PkiError::InvalidSerial {
            serial: serial.to_owned(),
            message: format!("{CLOUD_CN:?} is the cloud's certificate name"),
        });
    }
    if serial.starts_with(hc_protocol::provisioning::CLAIM_PREFIX) {
        return Err(PkiError::InvalidSerial {
            serial: serial.to_owned(),
            message: "claim certificates' names start so (SPEC §6.7)".into(),
        });
    }
    Ok(())
}

fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // The fixed dates always convert.
    let _ = Validity::Current.apply(&mut params);
    params
}

/// Issues a leaf certificate with a fresh key and writes both files.
fn issue(
    issuer: &Issuer<'_, KeyPair>,
    files: &CertFiles,
    cn: &str,
    role: Role,
    validity: Validity,
) -> Result<(), PkiError> {
    let mut params = leaf_params(cn, role)?;
    validity.apply(&mut params)?;
    let key = new_key()?;
    let cert = params.signed_by(&key, issuer)?;
    write_key(&files.key, &key)?;
    write_public(&files.cert, &cert.pem())?;
    Ok(())
}

/// A leaf certificate's parameters: subject `cn`, no CA, the usages of
/// `role`.
fn leaf_params(cn: &str, role: Role) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    match role {
        Role::Server => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            for name in SERVER_NAMES {
                params.subject_alt_names.push(match name.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(name.try_into()?),
                });
            }
        }
        Role::Client => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    Ok(params)
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PkiError::Missing {
            path: path.to_owned(),
        }),
        Err(e) => Err(PkiError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn write_public(path: &Path, pem: &str) -> Result<(), PkiError> {
    write_file(path, pem.as_bytes(), 0o644)
}

fn write_key(path: &Path, key: &KeyPair) -> Result<(), PkiError> {
    write_file(path, key.serialize_pem().as_bytes(), 0o600)
}

/// Writes `bytes` to a temporary file created with `mode` next to `path`,
/// then renames it over `path`: the file never exists with other contents
/// or a wider mode.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; make it exact.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        PkiError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generate_writes_every_file_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), &["S1", "S2"]).unwrap();
        let mut all = vec![pki.ca(), pki.server(), pki.cloud()];
        all.extend(pki.devices().map(|(_, f)| f));
        assert_eq!(all.len(), 5);
        for files in all {
            assert!(fs::read_to_string(&files.cert)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(fs::read_to_string(&files.key)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(mode(&files.key), 0o600, "{}", files.key.display());
        }
        assert_eq!(
            pki.device("S1").unwrap().cert,
            dir.path().join("devices/S1.pem")
        );
    }

    #[test]
    fn load_finds_the_same_files_and_add_device_signs_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let generated = Pki::generate(dir.path(), &["S1"]).unwrap();
        let mut loaded = Pki::load(dir.path()).unwrap();
        assert_eq!(loaded.ca(), generated.ca());
        assert_eq!(loaded.device("S1"), generated.device("S1"));
        let ca_before = fs::read(loaded.ca_cert()).unwrap();
        let s3 = loaded.add_device("S3").unwrap();
        assert_eq!(fs::read(loaded.ca_cert()).unwrap(), ca_before);
        assert_eq!(mode(&s3.key), 0o600);
        let again = Pki::load_or_generate(dir.path(), &["S1", "S3", "S4"]).unwrap();
        let serials: Vec<&str> = again.devices().map(|(s, _)| s).collect();
        assert_eq!(serials, ["S1", "S3", "S4"]);
    }

    #[test]
    fn bad_serials_and_missing_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "a/b", "a+b", "#", "..", "cloud"] {
            assert!(
                matches!(
                    Pki::generate(dir.path(), &[bad]),
                    Err(PkiError::InvalidSerial { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Pki::load(dir.path().join("nothing")),
            Err(PkiError::Missing { .. })
        ));
    }
}

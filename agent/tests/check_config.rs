//! `hc-agent --check-config`, the real binary: a good configuration passes
//! and leaves nothing behind; each bad certificate, key or directory fails
//! with exit status 1 and a message that names the problem, without
//! connecting anywhere.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use hc_testkit::daemon::*;
use hc_testkit::pki::CertFiles;
use support::{agent_binary, site};

fn check(config: &Path) -> Output {
    Command::new(agent_binary())
        .arg("--config")
        .arg(config)
        .arg("--check-config")
        .output()
        .expect("run hc-agent")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Rewrites the default configuration with `from` replaced by `to`.
fn config_with(site: &Site, name: &str, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(site.default_config()).unwrap();
    assert!(text.contains(from), "{from} not in the configuration");
    let path = site.dir.path().join(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

fn fails_with(output: &Output, expected: &str) {
    let all = text(output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains(expected), "expected {expected:?} in:\n{all}");
}

#[test]
fn a_good_configuration_passes_and_leaves_nothing_behind() {
    let site = site();
    let output = check(&site.default_config());
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    for line in [
        "ok: CA",
        "chains to the CA, valid now, for client authentication",
        "ok: state_dir",
        "ok: 1 command key(s) pinned",
        "ok: configuration for serial E2E-NVR-1",
    ] {
        assert!(all.contains(line), "{line:?} missing in:\n{all}");
    }
    assert!(!site.state_dir().exists(), "the check created state_dir");
    assert!(!site.socket().exists(), "the check created the socket");
}

#[test]
fn a_key_readable_by_others_fails() {
    let site = site();
    let key = &site.pki.device(SERIAL).unwrap().key;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails_with(
        &check(&site.default_config()),
        "readable by group or others",
    );
}

/// The default configuration with the device's certificate and key
/// replaced by `identity`'s.
fn config_with_identity(site: &Site, name: &str, identity: &CertFiles) -> std::path::PathBuf {
    let ours = site.pki.device(SERIAL).unwrap();
    let path = config_with(
        site,
        name,
        &ours.cert.display().to_string(),
        &identity.cert.display().to_string(),
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &ours.key.display().to_string(),
        &identity.key.display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_expired_client_certificate_fails() {
    let site = site();
    let expired = site.pki.expired_device(SERIAL).unwrap();
    let config = config_with_identity(&site, "expired.toml", &expired);
    fails_with(&check(&config), "certificate expired");
}

#[test]
fn a_client_certificate_of_another_ca_fails() {
    let site = site();
    let other = site.pki.generate_unrelated().unwrap();
    let config = config_with_identity(&site, "other-ca.toml", other.device(SERIAL).unwrap());
    fails_with(&check(&config), "UnknownIssuer");
}

#[test]
fn a_missing_certificate_fails_naming_the_file() {
    let site = site();
    let cert = site.pki.device(SERIAL).unwrap().cert.display().to_string();
    let config = config_with(&site, "missing.toml", &cert, "/nonexistent/device.pem");
    fails_with(&check(&config), "/nonexistent/device.pem");
}

#[test]
fn a_state_dir_that_cannot_be_created_fails() {
    let site = site();
    let state = site.state_dir().display().to_string();
    // A regular file where a parent directory should be.
    let blocker = site.dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let config = config_with(
        &site,
        "state.toml",
        &format!("state_dir = \"{state}\""),
        &format!("state_dir = \"{}/state\"", blocker.display()),
    );
    fails_with(&check(&config), "state_dir");
}

#[test]
fn a_client_certificate_of_a_separate_device_ca_passes_against_that_ca() {
    let site = site();
    let other = site.pki.generate_unrelated().unwrap();
    let identity = other.device(SERIAL).unwrap();
    let config = site.write_agent_config("device-ca.toml", |c| {
        c.cloud.cert = identity.cert.clone();
        c.cloud.key = identity.key.clone();
        c.cloud.device_ca = Some(other.ca_cert().to_owned());
    });
    let output = check(&config);
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    let said = format!(
        "checked against the device CA {}",
        other.ca_cert().display()
    );
    assert!(all.contains(&said), "{said:?} missing in:\n{all}");
    // The cloud CA is said to be the one used when no device CA is set.
    let plain = text(&check(&site.default_config()));
    assert!(plain.contains("checked against the cloud CA"), "{plain}");
}

/// The first line `hc-agent` itself prints for `config` when started as the
/// daemon, which must fail at once with the same message as `--check-config`.
fn daemon_error(config: &Path) -> String {
    let output = Command::new(agent_binary())
        .arg("--config")
        .arg(config)
        .output()
        .expect("run hc-agent");
    assert!(
        !output.status.success(),
        "the daemon started:\n{}",
        text(&output)
    );
    let all = text(&output);
    let line = all
        .lines()
        .find(|l| l.contains("hc-agent:") || l.contains("ERROR"))
        .unwrap_or_default()
        .to_string();
    assert!(!all.contains("panicked"), "{all}");
    line
}

/// The one error line of `--check-config`, checked to be a single line.
fn check_error(config: &Path) -> String {
    let output = check(config);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line:\n{stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn a_client_certificate_for_another_serial_is_refused_by_check_and_daemon() {
    let mut site = site();
    let other = site.pki.add_device("OTHER-1").unwrap();
    let config = config_with_identity(&site, "other-serial.toml", &other);
    let line = check_error(&config);
    assert!(
        line.contains("is for OTHER-1, not for this device's serial E2E-NVR-1"),
        "{line}"
    );
    let daemon = daemon_error(&config);
    assert!(
        daemon.contains("not for this device's serial E2E-NVR-1"),
        "{daemon}"
    );
}

#[test]
fn bad_numbers_unknown_keys_and_bad_toml_fail_in_one_line_naming_the_key() {
    let site = site();
    let cases = [
        (
            "keep_alive_secs = 5",
            "keep_alive_secs = 65536",
            "cloud.keep_alive_secs",
        ),
        (
            "keep_alive_secs = 5",
            "keep_alive_secs = 9223372036854775807",
            "cloud.keep_alive_secs",
        ),
        (
            "keep_alive_secs = 5",
            "keep_alive_secs = -1",
            "cloud.keep_alive_secs",
        ),
        (
            "backoff_cap_ms = 1000",
            "backoff_cap_ms = 18446744073709551615",
            "cloud.backoff_cap_ms",
        ),
        (
            "check_interval_secs = 1",
            "check_interval_secs = 0",
            "domain.check_interval_secs",
        ),
        (
            "min_interval_secs = 1",
            "min_interval_secs = 9223372036854775807",
            "domain.min_interval_secs",
        ),
        ("channels = 8", "channels = 70000", "channels"),
        (
            "keep_alive_secs = 5",
            "keep_alive_secs = 5\nkeep_alive = 5",
            "cloud.keep_alive",
        ),
        (
            "keep_alive_secs = 5",
            "keep_alive_secs = \"5\"",
            "cloud.keep_alive_secs",
        ),
        (
            "keep_alive_secs = 5",
            "keep_alive_secs = 5 5",
            "cloud.keep_alive_secs",
        ),
    ];
    for (n, (from, to, key)) in cases.into_iter().enumerate() {
        let config = config_with(&site, &format!("bad-{n}.toml"), from, to);
        let line = check_error(&config);
        assert!(line.contains(key), "{to}: {line}");
        let daemon = daemon_error(&config);
        assert_eq!(daemon, line, "{to}: the daemon and --check-config agree");
        println!("{to:?} -> {line}");
    }
}

/// A device with only its batch's claim certificate (SPEC §6.7): its own
/// certificate does not exist yet, which passes as long as the claim
/// certificate loads; a claim without its key is a configuration error.
#[test]
fn a_device_without_its_certificate_passes_with_a_loadable_claim_certificate() {
    let site = site();
    let claim = site.pki.claim("B1").unwrap();
    let missing = site.dir.path().join("not-yet.pem");
    let config = site.write_agent_config("claiming.toml", |c| {
        c.cloud.cert = missing.clone();
        c.cloud.key = site.dir.path().join("not-yet.key");
        c.cloud.claim_cert = Some(claim.cert.clone());
        c.cloud.claim_key = Some(claim.key.clone());
    });
    let output = check(&config);
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(
        all.contains("provisions itself with the claim certificate"),
        "{all}"
    );

    let no_key = site.write_agent_config("claim-no-key.toml", |c| {
        c.cloud.cert = missing.clone();
        c.cloud.claim_cert = Some(claim.cert.clone());
    });
    fails_with(&check(&no_key), "claim_cert and claim_key go together");
}

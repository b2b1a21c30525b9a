//! The daemon as init systems and firmware engineers expect it, with the
//! real binary: SIGHUP reloads (a valid configuration applies without
//! dropping the cloud session; a broken one is refused and logged), one
//! instance per state directory, a certificate renewed on disk used at the
//! next reconnect, syslog, systemd notifications, and `hc-agent ctl`'s exit
//! codes.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hc_agent::client::ClientError;
use hc_protocol::access::LocalLevel;
use hc_protocol::messages::DeviceStatus;
use hc_protocol::topics::Leaf;
use hc_protocol::Reason;
use hc_testkit::daemon::*;
use hc_testkit::local::wait_local;
use support::{agent_binary, site};

/// A datagram socket named `name` in the site's directory, where the
/// agent finds syslog or systemd; a read gives up after `WAIT`.
fn datagram_socket(site: &Site, name: &str) -> (PathBuf, UnixDatagram) {
    let path = site.dir.path().join(name);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    (path, socket)
}

/// The next datagram on `socket`, as text; fails saying `missing` if
/// none comes in time.
fn next_datagram(socket: &UnixDatagram, missing: &str) -> String {
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).expect(missing);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn ctl(args: &[&str]) -> Output {
    Command::new(agent_binary())
        .arg("ctl")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sighup_applies_a_valid_configuration_without_dropping_the_cloud_session() {
    let site = site();
    let config = site.default_config();
    let (cloud, mut agent) = site.start_online(&config);
    let mut client = wait_local(&site.socket());
    client.set_platform_access(LocalLevel::Admin, true).unwrap();

    // This process is no longer an admin: the switch is refused after the
    // reload, on the same connection, while everything else goes on.
    site.write_agent_config("agent.toml", |c| c.local_socket.admin_uids.clear());
    agent.hangup();
    agent.wait_logged("configuration reloaded", 1, WAIT);
    let refused = client.set_platform_access(LocalLevel::Admin, true);
    assert!(
        matches!(refused, Err(ClientError::Refused(Reason::PeerNotAllowed))),
        "{refused:?}"
    );
    let statuses = cloud.collect(Leaf::Status, Duration::from_secs(2));
    assert!(
        statuses
            .iter()
            .all(|p| decode::<DeviceStatus>(&p.payload).is_some_and(|s| s.online)),
        "the cloud saw the device go offline on the reload"
    );
    assert_eq!(
        client.status().unwrap().link,
        hc_protocol::local::LinkState::Connected
    );
    assert!(agent.child.try_wait().unwrap().is_none(), "SIGHUP ended it");
    assert!(agent.terminate().success());
}

#[test]
fn sighup_with_a_broken_configuration_keeps_the_old_one_and_logs_why() {
    let site = site();
    let config = site.default_config();
    let (cloud, agent) = site.start_online(&config);
    site.write_agent_config("agent.toml", |c| c.local_socket.mode = 0o666);
    agent.hangup();
    agent.wait_logged("reload refused", 1, WAIT);
    assert!(agent.log().contains("local_socket.mode"), "{}", agent.log());
    std::fs::write(&config, "serial = [broken").unwrap();
    agent.hangup();
    agent.wait_logged("reload refused", 2, WAIT);
    let mut client = wait_local(&site.socket());
    client.set_platform_access(LocalLevel::Admin, true).unwrap();
    assert!(!cloud.wait_status(false, Duration::from_secs(1)));
}

#[test]
fn a_second_instance_exits_non_zero_naming_the_first_which_keeps_serving() {
    let site = site();
    let config = site.default_config();
    let (_cloud, first) = site.start_online(&config);
    wait_local(&site.socket());
    let socket_before = std::fs::metadata(site.socket()).unwrap();
    let lock = site.state_dir().join("agent.lock");
    let holder = read_text(&lock);

    let second = Command::new(agent_binary())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("another hc-agent (pid {})", first.child.id())),
        "{text}"
    );
    use std::os::unix::fs::MetadataExt;
    let socket_after = std::fs::metadata(site.socket()).unwrap();
    assert_eq!(
        socket_before.ino(),
        socket_after.ino(),
        "the socket was replaced"
    );
    assert_eq!(read_text(&lock), holder);
    wait_local(&site.socket()).status().unwrap();
}

/// Copies a certificate and key to `cert`/`key` (key mode 0600).
fn install_identity(from: &hc_testkit::pki::CertFiles, cert: &Path, key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(cert, std::fs::read(&from.cert).unwrap()).unwrap();
    std::fs::write(key, std::fs::read(&from.key).unwrap()).unwrap();
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_certificate_replaced_on_disk_is_used_at_the_next_reconnect() {
    let site = site();
    let cert = site.dir.path().join("device.pem");
    let key = site.dir.path().join("device.key");
    // First a certificate of another CA: the broker refuses it.
    let other = site.pki.generate_unrelated().unwrap();
    install_identity(other.device(SERIAL).unwrap(), &cert, &key);
    let config = site.write_agent_config("agent.toml", |c| {
        c.cloud.cert = cert.clone();
        c.cloud.key = key.clone();
    });
    let cloud = site.cloud();
    let agent = site.start_agent(&config);
    assert!(
        !cloud.wait_status(true, Duration::from_secs(2)),
        "connected with a certificate the broker must refuse"
    );
    // The renewed certificate: no restart, no signal.
    install_identity(site.pki.device(SERIAL).unwrap(), &cert, &key);
    assert!(
        cloud.wait_status(true, WAIT),
        "the new certificate was not used:\n{}",
        agent.log()
    );
    assert!(agent.log().contains("client certificate (re)loaded"));
}

#[test]
fn ctl_status_exit_codes_say_online_offline_or_no_agent() {
    let site = site();
    let socket = site.socket().display().to_string();
    let no_agent = ctl(&["--socket", &socket, "status"]);
    assert_eq!(no_agent.status.code(), Some(3), "{no_agent:?}");
    let json = ctl(&["--socket", &socket, "--json", "status"]);
    assert!(String::from_utf8_lossy(&json.stdout).starts_with(r#"{"running":false,"error":"#));

    let config = site.default_config();
    let (cloud, _agent) = site.start_online(&config);
    wait_local(&site.socket());
    let config_arg = config.display().to_string();
    let online = ctl(&["--config", &config_arg, "status"]);
    let text = String::from_utf8_lossy(&online.stdout);
    assert_eq!(online.status.code(), Some(0), "{text}");
    assert!(
        text.contains("link: connected") && text.contains(SERIAL),
        "{text}"
    );

    let off = ctl(&["--socket", &socket, "platform-access", "off"]);
    assert_eq!(off.status.code(), Some(0), "{off:?}");
    assert!(cloud.wait_status(false, WAIT));
    let offline = ctl(&["--socket", &socket, "--json", "status"]);
    let json = String::from_utf8_lossy(&offline.stdout);
    assert_eq!(offline.status.code(), Some(1), "{json}");
    assert!(
        json.contains(r#""running":true,"online":false"#) && json.contains(r#""link":"disabled""#),
        "{json}"
    );
    assert_eq!(
        ctl(&["--socket", &socket, "platform-access", "on"])
            .status
            .code(),
        Some(0)
    );
    assert!(cloud.wait_status(true, WAIT));

    // authorize: 0 allowed, 1 denied with the reason; 2 a bad command line.
    let allowed = ctl(&[
        "--socket",
        &socket,
        "authorize",
        "--local",
        "guest",
        "live-view",
        "1",
    ]);
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    let denied = ctl(&[
        "--socket",
        &socket,
        "--json",
        "authorize",
        "--cloud",
        "carol",
        "LiveView",
        "1",
    ]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stdout).contains(r#""reason":"NotBound""#));
    assert_eq!(ctl(&["--socket", &socket, "fly"]).status.code(), Some(2));
    let access = ctl(&["--socket", &socket, "access"]);
    assert!(String::from_utf8_lossy(&access.stdout).contains("kind: unbound"));
    let audit = ctl(&["--socket", &socket, "--json", "audit", "2"]);
    assert!(String::from_utf8_lossy(&audit.stdout).starts_with(r#"[{"at":"#));
}

#[test]
fn the_syslog_option_writes_to_the_syslog_socket() {
    let site = site();
    let (dev_log, syslog) = datagram_socket(&site, "dev-log");
    let config = site.write_agent_config("agent.toml", |c| {
        c.log.syslog = true;
        c.log.syslog_socket = dev_log.clone();
    });
    let agent = site.start_agent(&config);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let line = next_datagram(&syslog, "nothing on the syslog socket");
        if line.contains("agent starting") {
            break line;
        }
        assert!(Instant::now() < deadline);
    };
    // Facility daemon (3 << 3), severity info (6).
    let tag = format!("<30>hc-agent[{}]: INFO agent starting", agent.child.id());
    assert!(line.starts_with(&tag), "{line}");
    assert!(
        !agent.log().contains("agent starting"),
        "also logged to stdout"
    );
}

#[test]
fn systemd_is_told_ready_and_pinged_when_it_asks() {
    let site = site();
    let (notify, systemd) = datagram_socket(&site, "notify");
    let mut agent = Command::new(agent_binary())
        .arg("--config")
        .arg(site.default_config())
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    while seen.iter().filter(|m: &&String| *m == "WATCHDOG=1").count() < 3 {
        seen.push(next_datagram(&systemd, "no notification"));
    }
    assert!(seen.contains(&"READY=1".to_owned()), "{seen:?}");
    // Ready means the socket answers.
    wait_local(&site.socket());
    let _ = agent.kill();
    let _ = agent.wait();
}

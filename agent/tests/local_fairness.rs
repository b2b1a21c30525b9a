//! One process cannot starve the others on the local socket (issue 13,
//! defect 4): 64 connections of one uid that send nothing used to make
//! every other client's request answer `Busy` for the whole 120 s idle
//! timeout. Now a uid holds at most `MAX_LOCAL_CLIENTS_PER_UID`
//! connections, and one that sends no request is closed after 5 s.
//!
//! The other client runs as another uid (`nobody`, 65534): this test binary
//! re-runs itself as that uid (`std::os::unix::process::CommandExt::uid`),
//! which needs root; without root the test says so and passes, except under
//! `CI=true`, where it fails.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hc_protocol::limits::{MAX_LOCAL_CLIENTS, MAX_LOCAL_CLIENTS_PER_UID};
use hc_protocol::local::{decode_frame_body, encode_frame, LocalReply, LocalRequest};
use hc_protocol::Reason;
use hc_testkit::local::wait_local;
use support::site;

const NOBODY: u32 = 65534;
const CLIENT_ENV: &str = "HC_FAIRNESS_CLIENT_SOCKET";

/// One `Status` request on a fresh connection: its reply, or what failed.
fn one_status(socket: &Path) -> Result<LocalReply, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let frame = encode_frame(&LocalRequest::Status).map_err(|e| e.to_string())?;
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    read_reply(&mut stream)
}

fn read_reply(stream: &mut UnixStream) -> Result<LocalReply, String> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    decode_frame_body::<LocalReply>(&body).map_err(|e| e.to_string())
}

/// Run as `nobody` by the test below: prints `served` or `busy` (or the
/// error) and nothing else. An ordinary test run does nothing here.
#[test]
fn fairness_client_as_another_uid() {
    let Ok(socket) = std::env::var(CLIENT_ENV) else {
        return;
    };
    match one_status(Path::new(&socket)) {
        Ok(LocalReply::Status(_)) => println!("RESULT served"),
        Ok(LocalReply::Error(Reason::Busy)) => println!("RESULT busy"),
        other => println!("RESULT {other:?}"),
    }
}

fn as_nobody(socket: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fairness_client_as_another_uid", "--nocapture"])
        .env(CLIENT_ENV, socket)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run the client as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "no result: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

#[test]
fn silent_connections_of_one_uid_do_not_make_another_uid_busy() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // /proc/self belongs to the process's effective uid.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        hc_testkit::skip::unavailable(
            "silent_connections_of_one_uid_do_not_make_another_uid_busy",
            "needs root to run a client as another uid",
        );
        return;
    }
    let site = site();
    let config = site.write_agent_config("fair.toml", |c| {
        c.local_socket.allowed_uids = vec![0, NOBODY];
        c.local_socket.admin_uids = vec![0];
    });
    let _agent = site.start_agent(&config);
    let socket = site.socket();
    drop(wait_local(&socket));
    // nobody reaches the socket through its group and the directory.
    std::os::unix::fs::chown(&socket, Some(0), Some(NOBODY)).unwrap();
    let dir = socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(as_nobody(&socket), "served", "nobody is served before");

    // 64 silent connections from this uid.
    let started = Instant::now();
    let mut silent = Vec::new();
    let mut refused = 0;
    for _ in 0..MAX_LOCAL_CLIENTS {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        match read_reply(&mut stream) {
            Ok(LocalReply::Error(Reason::Busy)) => refused += 1,
            _ => silent.push(stream),
        }
    }
    let opened_within = started.elapsed();
    assert_eq!(silent.len(), MAX_LOCAL_CLIENTS_PER_UID, "held by one uid");
    assert_eq!(refused, MAX_LOCAL_CLIENTS - MAX_LOCAL_CLIENTS_PER_UID);
    // Another uid is served meanwhile, several times.
    for _ in 0..5 {
        assert_eq!(
            as_nobody(&socket),
            "served",
            "another uid while one uid holds its cap"
        );
    }
    let other_served_after = started.elapsed();
    assert!(
        other_served_after < Duration::from_secs(5),
        "{other_served_after:?}"
    );

    // The silent ones are closed after the first-request timeout.
    for stream in &mut silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).unwrap_or(0), 0, "closed");
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(4_900)
            && closed_after < opened_within + Duration::from_secs(7),
        "{closed_after:?} (opened within {opened_within:?})"
    );
    // And this uid is served again.
    assert!(matches!(one_status(&socket), Ok(LocalReply::Status(_))));
    println!(
        "{MAX_LOCAL_CLIENTS} silent connections of uid 0: {} held, {refused} refused Busy; uid {NOBODY} \
         served 5 times within {other_served_after:.1?}; the silent ones closed after {closed_after:.1?}",
        silent.len()
    );
}

//! The real binary on a real full file system and on a read-only one
//! (issue 13): a command whose state cannot reach flash is acknowledged
//! `Refused(StorageFailed)`, the device keeps its state, and once the file
//! system takes writes again the next command is applied. The file systems
//! are small tmpfs mounts (root only); without root the tests say so and
//! pass, except under `CI=true`, where they fail.

mod support;

use std::path::Path;
use std::process::Command;

use hc_protocol::{Outcome, Reason};
use hc_testkit::fixture::bob_live_view;
use hc_testkit::local::state_of;
use hc_testkit::model::unshare_body;
use support::site;

/// Mounts a tmpfs of `size` at `dir`; `false` (after saying why) when this
/// machine does not allow it outside CI.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status();
    if matches!(status, Ok(s) if s.success()) {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "cannot mount a tmpfs in CI: {status:?}"
    );
    println!("skipped: cannot mount a tmpfs here ({status:?}); run as root");
    false
}

/// Unmounts on drop, so a failed test leaves no mount behind.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

fn remount(dir: &Path, how: &str) {
    let status = Command::new("mount")
        .args(["-o", &format!("remount,{how}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "remount {how}");
}

#[test]
fn on_a_full_file_system_a_command_is_refused_storage_failed_and_nothing_changes() {
    let site = site();
    let mount = site.dir.path().join("flash");
    if !mount_tmpfs(&mount, "64k") {
        return;
    }
    let _mounted = Mounted(&mount);
    let config = site.write_agent_config("full.toml", |c| c.state_dir = mount.join("state"));
    let (mut cloud, agent) = site.start_owned(&config);
    let before = state_of(&site.socket());
    // Fill the file system to the last byte.
    let filler = mount.join("filler");
    let chunk = vec![0u8; 4096];
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut file, &[0]).is_ok() {}
    drop(file);

    let refused = cloud.send("alice", bob_live_view(None));
    assert_eq!(
        refused.outcome,
        Outcome::Refused(Reason::StorageFailed),
        "{}",
        agent.log()
    );
    let during = state_of(&site.socket());
    assert_eq!(during.shares, before.shares, "memory unchanged");
    assert!(
        agent.log().contains("No space left on device"),
        "{}",
        agent.log()
    );

    std::fs::remove_file(&filler).unwrap();
    let accepted = cloud.send("alice", bob_live_view(None));
    assert_eq!(accepted.outcome, Outcome::Accepted);
    assert_eq!(
        state_of(&site.socket()).shares.len(),
        before.shares.len() + 1
    );
    println!("full tmpfs: command refused StorageFailed (ENOSPC), state unchanged; accepted once space was freed");
}

#[test]
fn on_a_read_only_file_system_a_command_is_refused_storage_failed_and_nothing_changes() {
    let site = site();
    let mount = site.dir.path().join("flash");
    if !mount_tmpfs(&mount, "1m") {
        return;
    }
    let _mounted = Mounted(&mount);
    let config = site.write_agent_config("ro.toml", |c| c.state_dir = mount.join("state"));
    let (mut cloud, agent) = site.start_owned(&config);
    assert_eq!(
        cloud.send("alice", bob_live_view(None)).outcome,
        Outcome::Accepted
    );
    let before = state_of(&site.socket());
    remount(&mount, "ro");

    let refused = cloud.send("alice", unshare_body("bob"));
    assert_eq!(
        refused.outcome,
        Outcome::Refused(Reason::StorageFailed),
        "{}",
        agent.log()
    );
    assert_eq!(
        state_of(&site.socket()).shares,
        before.shares,
        "memory unchanged"
    );
    assert!(
        agent.log().contains("Read-only file system"),
        "{}",
        agent.log()
    );

    remount(&mount, "rw");
    assert_eq!(
        cloud.send("alice", unshare_body("bob")).outcome,
        Outcome::Accepted
    );
    assert!(state_of(&site.socket()).shares.is_empty());
    println!("read-only tmpfs: command refused StorageFailed (EROFS), state unchanged; accepted once writable");
}

//! The real binary on a real full file system and on a read-only one
//! (issue 13): a command whose state cannot reach flash is acknowledged
//! `Refused(StorageFailed)`, the device keeps its state, and once the file
//! system takes writes again the next command is applied. The file systems
//! are small tmpfs mounts (root only); without root the tests say so and
//! pass, except under `CI=true`, where they fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use hc_protocol::messages::StateReport;
use hc_protocol::{CommandBody, Outcome, Reason};
use hc_testkit::cloud::TestCloud;
use hc_testkit::daemon::{AgentProcess, Site};
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
    hc_testkit::skip::unavailable(
        "real_disk_faults",
        &format!("cannot mount a tmpfs here ({status:?}); run as root"),
    );
    false
}

/// Unmounts on drop, so a failed test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
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

/// The agent, owned by alice, with its state directory on a tmpfs of its
/// own. Fields drop in order: the agent stops before the unmount.
struct OnTmpfs {
    cloud: TestCloud,
    agent: AgentProcess,
    mount: Mounted,
}

impl OnTmpfs {
    /// Mounts a tmpfs of `size` and starts the agent on it; `None` where
    /// no tmpfs can be mounted (see `mount_tmpfs`).
    fn start(site: &Site, size: &str) -> Option<OnTmpfs> {
        let mount = site.dir.path().join("flash");
        if !mount_tmpfs(&mount, size) {
            return None;
        }
        let mount = Mounted(mount);
        let config = site.write_agent_config("tmpfs.toml", |c| c.state_dir = mount.0.join("state"));
        let (cloud, agent) = site.start_owned(&config);
        Some(OnTmpfs {
            cloud,
            agent,
            mount,
        })
    }

    /// `body` from alice is refused `StorageFailed` with the system's
    /// `error` logged, and the shares in memory are still `before`'s.
    fn assert_refused(
        &mut self,
        site: &Site,
        body: CommandBody,
        before: &StateReport,
        error: &str,
    ) {
        let refused = self.cloud.send("alice", body);
        assert_eq!(
            refused.outcome,
            Outcome::Refused(Reason::StorageFailed),
            "{}",
            self.agent.log()
        );
        assert_eq!(
            state_of(&site.socket()).shares,
            before.shares,
            "memory unchanged"
        );
        assert!(self.agent.log().contains(error), "{}", self.agent.log());
    }
}

#[test]
fn on_a_full_file_system_a_command_is_refused_storage_failed_and_nothing_changes() {
    let site = site();
    let Some(mut on) = OnTmpfs::start(&site, "64k") else {
        return;
    };
    let before = state_of(&site.socket());
    // Fill the file system to the last byte.
    let filler = on.mount.0.join("filler");
    let chunk = vec![0u8; 4096];
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut file, &[0]).is_ok() {}
    drop(file);

    on.assert_refused(
        &site,
        bob_live_view(None),
        &before,
        "No space left on device",
    );

    std::fs::remove_file(&filler).unwrap();
    let accepted = on.cloud.send("alice", bob_live_view(None));
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
    let Some(mut on) = OnTmpfs::start(&site, "1m") else {
        return;
    };
    assert_eq!(
        on.cloud.send("alice", bob_live_view(None)).outcome,
        Outcome::Accepted
    );
    let before = state_of(&site.socket());
    remount(&on.mount.0, "ro");

    on.assert_refused(&site, unshare_body("bob"), &before, "Read-only file system");

    remount(&on.mount.0, "rw");
    assert_eq!(
        on.cloud.send("alice", unshare_body("bob")).outcome,
        Outcome::Accepted
    );
    assert!(state_of(&site.socket()).shares.is_empty());
    println!("read-only tmpfs: command refused StorageFailed (EROFS), state unchanged; accepted once writable");
}

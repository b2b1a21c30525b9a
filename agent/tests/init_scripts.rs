//! The shipped init files (`packaging/`) with the real binary: the
//! sysvinit/BusyBox rcS script and the inittab restart loop run under
//! `busybox sh` with BusyBox's own applets (start, restart after a kill,
//! reload, stop), and the systemd unit passes `systemd-analyze verify`.
//! Missing tools skip with a message (CI=true: busybox missing fails).

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use hc_agent::client::{ClientError, LocalClient};
use hc_protocol::Reason;
use hc_testkit::agent_config::current_uid;
use hc_testkit::daemon::*;
use hc_testkit::local::wait_local;
use support::{agent_binary, site};

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(file)
}

/// A directory of BusyBox applets (sh and what the scripts call), so the
/// scripts run with BusyBox's tools rather than the host's; None (after
/// saying why) without busybox.
fn busybox_bin(dir: &Path) -> Option<PathBuf> {
    let found = Command::new("busybox")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        hc_testkit::skip::unavailable("init_scripts", "busybox is not installed");
        return None;
    }
    let busybox = String::from_utf8(Command::new("which").arg("busybox").output().ok()?.stdout)
        .ok()?
        .trim()
        .to_owned();
    let bin = dir.join("busybox-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for applet in [
        "sh",
        "start-stop-daemon",
        "cut",
        "sleep",
        "cat",
        "mkdir",
        "chmod",
        "chown",
        "rm",
    ] {
        symlink(&busybox, bin.join(applet)).unwrap();
    }
    Some(bin)
}

struct Scripts {
    bin: PathBuf,
    env: Vec<(&'static str, PathBuf)>,
    lock: PathBuf,
}

impl Scripts {
    fn command(&self, script: &str) -> Command {
        let mut command = Command::new(self.bin.join("sh"));
        command.arg(packaging(script));
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command.env("PATH", path).env("HC_AGENT_USER", "");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    fn init(&self, action: &str) -> Output {
        self.command("sysvinit/S90hc-agent")
            .arg(action)
            .output()
            .unwrap()
    }

    /// The agent's pid, as its single-instance lock file names it, once a
    /// live agent other than `not` holds it.
    fn agent_pid(&self, not: Option<u32>) -> u32 {
        let deadline = Instant::now() + WAIT;
        loop {
            let pid = read_text(&self.lock).trim().parse::<u32>().ok();
            if let Some(pid) = pid.filter(|p| Some(*p) != not && alive(*p)) {
                return pid;
            }
            assert!(Instant::now() < deadline, "no agent holds {:?}", self.lock);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !read_text(Path::new(&format!("/proc/{pid}/stat"))).contains(") Z ")
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scripts(site: &Site) -> Option<Scripts> {
    let bin = busybox_bin(site.dir.path())?;
    let dir = site.dir.path();
    Some(Scripts {
        bin: bin.clone(),
        env: vec![
            ("HC_AGENT_BIN", agent_binary()),
            ("HC_AGENT_CONF", site.default_config()),
            ("HC_AGENT_RUN_DIR", dir.join("run")),
            (
                "HC_AGENT_SUPERVISE",
                packaging("busybox/hc-agent-supervise"),
            ),
            ("HC_AGENT_SUPERVISE_PIDFILE", dir.join("supervise.pid")),
            ("HC_AGENT_SHELL", bin.join("sh")),
        ],
        lock: site.state_dir().join("agent.lock"),
    })
}

#[test]
fn the_rcs_script_starts_restarts_after_a_kill_reloads_and_stops_the_agent() {
    let site = site();
    let Some(scripts) = scripts(&site) else {
        return;
    };
    let started = scripts.init("start");
    assert!(started.status.success(), "{started:?}");
    let first = scripts.agent_pid(None);
    wait_local(&site.socket());
    assert_eq!(scripts.init("status").status.code(), Some(0));
    assert!(String::from_utf8_lossy(&scripts.init("start").stdout).contains("already running"));

    // Killed: the loop starts a new agent after its 1 s delay.
    signal(first, "KILL");
    let second = scripts.agent_pid(Some(first));
    wait_local(&site.socket());

    // Reload reaches the agent through the loop: a configuration that no
    // longer lets this uid in applies without a restart.
    site.write_agent_config("agent.toml", |config| {
        config.local_socket.allowed_uids = vec![current_uid() + 1];
        config.local_socket.admin_uids = vec![];
    });
    assert!(scripts.init("reload").status.success());
    let deadline = Instant::now() + WAIT;
    loop {
        let refused = LocalClient::connect(&site.socket(), Duration::from_secs(5))
            .and_then(|mut client| client.status().map(|_| ()));
        if matches!(refused, Err(ClientError::Refused(Reason::PeerNotAllowed))) {
            break;
        }
        assert!(Instant::now() < deadline, "the reload never applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(alive(second));

    let stopped = scripts.init("stop");
    assert!(stopped.status.success(), "{stopped:?}");
    wait_gone(second);
    assert!(
        !site.socket().exists(),
        "the agent did not remove its socket"
    );
    assert_eq!(scripts.init("status").status.code(), Some(3));
}

#[test]
fn the_inittab_loop_restarts_the_agent_and_stops_it_on_sigterm() {
    let site = site();
    let Some(scripts) = scripts(&site) else {
        return;
    };
    let mut supervise: Child = scripts
        .command("busybox/hc-agent-supervise")
        .spawn()
        .unwrap();
    let first = scripts.agent_pid(None);
    signal(first, "KILL");
    let second = scripts.agent_pid(Some(first));
    wait_local(&site.socket());

    signal(supervise.id(), "TERM");
    let status = supervise.wait().unwrap();
    assert!(status.success(), "the loop exited with {status}");
    wait_gone(second);
    assert!(!site.socket().exists());
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    }
    // verify wants ExecStart's program to exist: point it at the binary.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("hc-agent.service");
    let text = read_text(&packaging("systemd/hc-agent.service"));
    assert!(text.contains("Type=notify") && text.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let text = text.replace("/usr/bin/hc-agent", &agent_binary().display().to_string());
    std::fs::write(&unit, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

//! The C client (`clients/c`), compiled with the system's C compiler
//! (`$CC`, else `cc`) in C99 with `-Wall -Wextra -Werror` and, on x86, with
//! AddressSanitizer and UndefinedBehaviorSanitizer: its encoder and decoder
//! against the SPEC §14 vectors (read from `protocol/SPEC.md` here, so the
//! C side cannot drift from the SPEC), its reason and action names against
//! the protocol's enums, hostile bytes into its decoder, and the client
//! against the real agent. Without a C compiler the tests are skipped
//! with a message (CI=true: they fail).
//!
//! Under QEMU (cross/qemu-e2e.sh) `HC_C_CLIENT_TEST` names a cross-built
//! `hc_client_test` and `HC_C_CLIENT_RUNNER` the emulator command that
//! runs it; the agent is then the ARM one too (`HC_AGENT_BIN`).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hc_protocol::access::Action;
use hc_protocol::{AccountId, CommandBody, Outcome, Reason};
use hc_testkit::daemon::*;
use hc_testkit::model::live_view_share;
use support::site;

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/c")
}

/// The C compiler, or None (after saying why) when there is none.
fn c_compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(cc);
    }
    hc_testkit::skip::unavailable(
        "c_client",
        &format!("no C compiler ({cc}): the C client is not tested"),
    );
    None
}

/// Compiles `programs` with the client into `out`; sanitizers on x86-64.
fn compile(cc: &str, program: &str, out: &Path) {
    let dir = sources();
    let mut command = Command::new(cc);
    command.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O1",
        "-g",
    ]);
    if cfg!(target_arch = "x86_64") {
        command.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
        ]);
    }
    let output = command
        .arg(dir.join("hc_agent_client.c"))
        .arg(dir.join(program))
        .arg("-o")
        .arg(out)
        .output()
        .expect("run the C compiler");
    assert!(
        output.status.success(),
        "{program} does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `<!-- vector: NAME -->` of the SPEC with its hex, one
/// "NAME HEX" line each (comments after `#` dropped).
fn spec_vector_lines() -> String {
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/SPEC.md"))
            .expect("read SPEC.md");
    let mut out = String::new();
    let mut lines = spec.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- vector:") else {
            continue;
        };
        let name = rest.split_whitespace().next().expect("vector name");
        let hex: String = lines
            .by_ref()
            .skip_while(|l| !l.starts_with("```"))
            .skip(1)
            .take_while(|l| !l.starts_with("```"))
            .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
            .collect();
        out.push_str(&format!("{name} {hex}\n"));
    }
    out
}

#[test]
fn the_c_client_encodes_and_decodes_the_spec_vectors_and_survives_hostile_bytes() {
    let Some(cc) = c_compiler() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("hc_vectors_test");
    compile(&cc, "hc_vectors_test.c", &program);
    let vectors = dir.path().join("vectors.txt");
    let lines = spec_vector_lines();
    assert!(lines.contains("local_notice_revoked "), "{lines}");
    std::fs::write(&vectors, lines).unwrap();
    let output = Command::new(&program).arg(&vectors).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(" 0 failures"), "{text}");

    // The C names are the protocol's, code for code.
    let names = Command::new(&program).arg("--names").output().unwrap();
    let names = String::from_utf8(names.stdout).unwrap();
    let expected: String = Reason::ALL
        .iter()
        .enumerate()
        .map(|(code, r)| format!("reason {code} {r:?}\n"))
        .chain(
            Action::ALL
                .iter()
                .enumerate()
                .map(|(code, a)| format!("action {code} {a:?}\n")),
        )
        .collect();
    assert_eq!(
        names, expected,
        "clients/c names differ from the protocol's"
    );
}

/// The cross-built test program and its emulator (QEMU), or the host
/// build of it.
fn client_test_command(cc: Option<&str>, dir: &Path) -> Option<Command> {
    if let Some(program) = std::env::var_os("HC_C_CLIENT_TEST") {
        let runner = std::env::var("HC_C_CLIENT_RUNNER").unwrap_or_default();
        let mut words = runner.split_whitespace();
        return Some(match words.next() {
            Some(emulator) => {
                let mut command = Command::new(emulator);
                command.args(words).arg(program);
                command
            }
            None => Command::new(program),
        });
    }
    let program = dir.join("hc_client_test");
    compile(cc?, "hc_client_test.c", &program);
    Some(Command::new(program))
}

#[test]
fn the_c_client_authorizes_reads_status_and_gets_a_revocation_notice_from_the_agent() {
    let cc = if std::env::var_os("HC_C_CLIENT_TEST").is_some() {
        None
    } else {
        let Some(cc) = c_compiler() else { return };
        Some(cc)
    };
    let site = site();
    let Some(mut command) = client_test_command(cc.as_deref(), site.dir.path()) else {
        return;
    };
    let (mut cloud, _agent) = site.start_owned(&site.default_config());
    let share = live_view_share("bob", None);
    assert_eq!(cloud.send("alice", share).outcome, Outcome::Accepted);

    let mut child = command
        .arg(site.socket())
        .arg(SERIAL)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hc_client_test");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.trim() == "watching" {
        let unshare = CommandBody::Unshare {
            accounts: heapless::Vec::from_slice(&[AccountId::new("bob").unwrap()]).unwrap(),
        };
        assert_eq!(cloud.send("alice", unshare).outcome, Outcome::Accepted);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "hc_client_test did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    let mut errors = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors);
    assert!(
        status.success() && rest.contains("passed"),
        "hc_client_test: {status}\nstdout: {line}{rest}\nstderr: {errors}"
    );
}

//! Measures the release daemon on this machine, side by side with the tools
//! users would otherwise pick, and prints markdown table rows (stdout) for
//! `perf/run.sh`; details go to stderr. Everything runs on loopback.
//!
//! - Memory: the agent holding one TLS session to mosquitto (the Debian
//!   broker, TLS 1.3, client certificates, the device ACL) with a full
//!   access list, against `mosquitto_sub` holding one TLS subscription to
//!   the same broker with a certificate from the same PKI (VmRSS from
//!   /proc/PID/status, after both settled).
//! - Size: the stripped agent binary against mosquitto_sub + libmosquitto +
//!   libssl + libcrypto as `ldd` resolves them.
//! - Domain registration: the agent's RSS against `inadyn` idling with one
//!   custom provider whose check-ip and update servers are a small HTTP
//!   server on 127.0.0.1 (measured after inadyn's first update arrived).
//! - End to end: signed command -> acknowledgement through mosquitto, for
//!   read-only operations (p50/p99/p99.9) and for shares (written to flash
//!   with fsync before the ack); local-socket authorize throughput and
//!   latency with 1 and 16 concurrent clients. mosquitto runs with
//!   `set_tcp_nodelay true` (as cloud brokers do) and the cloud client sets
//!   TCP_NODELAY; a last short sample repeats the command after restarting
//!   mosquitto with its default (Nagle's algorithm on).
//! - Start-up: process spawn -> the retained online status reaches a
//!   subscribed cloud client (MQTT connected), and spawn -> the local socket
//!   answers Allow for the last share (state file loaded and in force),
//!   over repeated restarts with the full access list.
//!
//! Build the agent first (this program spawns the binary; `HC_AGENT_BIN`
//! selects it, default `target/release/hc-agent`):
//!
//! ```text
//! cargo build --release -p hc-agent --bin hc-agent
//! cargo build --release --manifest-path perf/Cargo.toml --target-dir target/perf --bin measure
//! HC_AGENT_BIN=$PWD/target/release/hc-agent target/perf/release/measure
//! ```
//!
//! `perf/run.sh` does this and adds the Cedar comparison. Requires the
//! Debian packages mosquitto, mosquitto-clients and inadyn.
//!
//! Environment: `PERF_BROKER_NODELAY=0` keeps mosquitto's default for the
//! whole run; `PERF_OPERATIONS=N` sets the command sample (default 2000).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hc_agent::client::LocalClient;
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::limits::{MAX_CHANNELS, MAX_SHARES};
use hc_protocol::topics::Leaf;
use hc_protocol::{AccountId, ChannelScope, CommandBody, Outcome, Permissions, Validity};
use hc_testkit::agent_config;
use hc_testkit::cloud::{CloudOptions, TestCloud};
use hc_testkit::daemon::{account, agent_binary, device_config, AgentProcess, SERIAL, WAIT};
use hc_testkit::fixture::{full_list, parity_channels, parity_shares, timed_grants, user};
use hc_testkit::mosquitto::Mosquitto;
use hc_testkit::pki::Pki;

/// The certificate mosquitto_sub connects with.
const SUB_SERIAL: &str = "PERF-SUB-1";
const CHANNELS: u16 = MAX_CHANNELS as u16;
/// Sample sizes: a few seconds each on a 2-core machine.
const OPERATIONS: usize = 2_000;
fn operation_count() -> usize {
    std::env::var("PERF_OPERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(OPERATIONS)
}
const SHARE_CHANGES: usize = 200;
const ONE_CLIENT_REQUESTS: usize = 20_000;
const SIXTEEN_CLIENT_REQUESTS: usize = 2_000;
const RESTARTS: usize = 10;
const NAGLE_OPERATIONS: usize = 50;
const NODELAY_LINE: &str = "set_tcp_nodelay true\n";
const SETTLE: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ helpers

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn kib(v: u64) -> String {
    format!("{v} KiB")
}

fn mib_bytes(v: u64) -> String {
    format!("{:.2} MiB", v as f64 / (1024.0 * 1024.0))
}

/// CPU time the process's main thread has used, from /proc/PID/schedstat
/// (nanoseconds on a CPU; the agent's runtime is that one thread).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let nanos = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// VmRSS with its split: anonymous memory (heap, stacks: the process's
/// own) and file pages (code and libraries, shareable with other
/// processes that map the same files).
fn memory(name: &str, pid: u32) -> u64 {
    let rss = status_kib(pid, "VmRSS:");
    eprintln!(
        "measure: {name}: VmRSS {rss} KiB = RssAnon {} + RssFile {} + RssShmem {} KiB",
        status_kib(pid, "RssAnon:"),
        status_kib(pid, "RssFile:"),
        status_kib(pid, "RssShmem:")
    );
    rss
}

fn row(cells: &[&str]) {
    println!("| {} |", cells.join(" | "));
}

/// A row with a figure of the agent's and nothing to compare it with.
fn figure_row(section: &str, what: &str, figure: &str) {
    row(&[section, what, figure, "", "", "", "", ""]);
}

fn met(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

/// The absolute path of a program on PATH (or /usr/sbin).
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// First line of a program's output (for its version).
fn first_line(program: &Path, args: &[&str]) -> String {
    Process::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The shared libraries `ldd` resolves for a binary: (name, real path).
fn ldd(binary: &Path) -> Vec<(String, PathBuf)> {
    let out = Process::new("ldd").arg(binary).output().expect("ldd runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(" => ")?;
            let path = rest.split_whitespace().next()?;
            Some((name.to_string(), std::fs::canonicalize(path).ok()?))
        })
        .collect()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------------------ the agent

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    broker: Mosquitto,
}

impl Setup {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// A production-like configuration: a 256-channel recorder, log level
    /// info, keep-alive 30 s, the example's domain intervals.
    fn write_config(&self) -> PathBuf {
        let mut config = device_config(&self.pki, self.dir.path(), self.broker.port());
        config.channels = CHANNELS;
        config.cloud.keep_alive_secs = 30;
        config.domain.check_interval_secs = 30;
        config.domain.min_interval_secs = 60;
        config.log.level = "info".into();
        let path = self.dir.path().join("agent.toml");
        agent_config::write(&config, &path).unwrap();
        path
    }

    fn start_agent(&self, config: &Path) -> AgentProcess {
        AgentProcess::start(
            &agent_binary(None),
            config,
            &self.dir.path().join("agent.log"),
        )
    }
}

/// Channels of the index's parity, plus the last channel (128 or 129).
fn channels_of(i: usize) -> ChannelScope {
    ChannelScope::Only(parity_channels(i))
}

/// Installer bind, handover with timed grants, `MAX_SHARES` shares with
/// channel lists and validity windows: the list the agent holds.
fn fill_access_list(cloud: &mut TestCloud) {
    let now = hc_agent::shell::clock::now_secs();
    let grants = timed_grants(Some(Validity {
        not_before: now - 1_000,
        not_after: now + 30 * 86_400,
    }));
    let shares = parity_shares(|i| {
        Some(Validity {
            not_before: now - 1_000,
            not_after: now + 86_400 + i as u64,
        })
    });
    for (actor, body) in full_list(SERIAL, grants, shares) {
        let ack = cloud.send(actor, body.clone());
        assert_eq!(ack.outcome, Outcome::Accepted, "{actor}: {body:?}");
    }
}

/// The last share's user, on a channel in its scope: allowed only once the
/// full list is in force.
fn last_share_ask() -> (Principal, Action, Option<u16>) {
    (
        Principal::Cloud(AccountId::new(&user(MAX_SHARES - 1)).unwrap()),
        Action::LiveView,
        // In every scope `channels_of` makes.
        Some(CHANNELS),
    )
}

// ------------------------------------------------------------ the cloud

/// The cloud side: signs commands, waits for acknowledgements and status,
/// with TCP_NODELAY on its socket as a cloud service would have it, so that
/// the figures are the agent's and the broker's, not Nagle's algorithm in
/// the test client.
fn perf_cloud(pki: &Pki, port: u16) -> TestCloud {
    let options = CloudOptions {
        name: "perf-cloud",
        leaves: vec![Leaf::Ack, Leaf::Status],
        keep_alive: Duration::from_secs(30),
        nodelay: true,
        ..CloudOptions::default()
    };
    TestCloud::connect_with(pki, port, options)
}

// --------------------------------------------------------- the measurements

struct Latency {
    sorted: Vec<Duration>,
}

impl Latency {
    fn new(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        Latency { sorted: samples }
    }
    fn p(&self, p: f64) -> Duration {
        percentile(&self.sorted, p)
    }

    /// The percentiles `ps` in milliseconds: "a / b / c".
    fn ms(&self, ps: &[f64]) -> String {
        let figures: Vec<String> = ps.iter().map(|p| ms(self.p(*p))).collect();
        figures.join(" / ")
    }
}

fn command_latency(cloud: &mut TestCloud) -> (Latency, Latency) {
    let (principal_user, action, channel) = {
        let (p, a, c) = last_share_ask();
        let Principal::Cloud(id) = p else {
            unreachable!()
        };
        (id, a, c)
    };
    // Warm up the path.
    for _ in 0..50 {
        cloud.send(
            principal_user.as_str(),
            CommandBody::Operation { action, channel },
        );
    }
    let mut operations = Vec::with_capacity(operation_count());
    for _ in 0..operation_count() {
        let started = Instant::now();
        let ack = cloud.send(
            principal_user.as_str(),
            CommandBody::Operation { action, channel },
        );
        operations.push(started.elapsed());
        assert_eq!(ack.outcome, Outcome::Accepted);
    }
    // Shares: each replaces an existing share (same size list), written to
    // flash with fsync before the acknowledgement.
    let now = hc_agent::shell::clock::now_secs();
    let mut changes = Vec::with_capacity(SHARE_CHANGES);
    for i in 0..SHARE_CHANGES {
        let body = CommandBody::Share {
            account: account(&user(i % MAX_SHARES)),
            permissions: Permissions::of(&[Action::LiveView, Action::Playback]),
            channels: channels_of(i + 1),
            validity: Some(Validity {
                not_before: now - 1_000,
                not_after: now + 86_400 + i as u64,
            }),
        };
        let started = Instant::now();
        let ack = cloud.send("alice", body);
        changes.push(started.elapsed());
        assert_eq!(ack.outcome, Outcome::Accepted, "share change {i}");
    }
    (Latency::new(operations), Latency::new(changes))
}

/// Command -> ack after the broker restarted with Nagle's algorithm on
/// (its default): a short sample once the agent is back.
fn nagle_latency(cloud: &mut TestCloud) -> Latency {
    let (principal, action, channel) = last_share_ask();
    let Principal::Cloud(user) = principal else {
        unreachable!()
    };
    // The agent and the cloud reconnect (backoff after a loss: about 1 s);
    // the first command waits in the agent's persistent session.
    for _ in 0..5 {
        cloud.send(user.as_str(), CommandBody::Operation { action, channel });
    }
    let mut samples = Vec::with_capacity(NAGLE_OPERATIONS);
    for _ in 0..NAGLE_OPERATIONS {
        let started = Instant::now();
        let ack = cloud.send(user.as_str(), CommandBody::Operation { action, channel });
        samples.push(started.elapsed());
        assert_eq!(ack.outcome, Outcome::Accepted);
    }
    Latency::new(samples)
}

/// Local-socket authorize: `clients` threads, `per_client` requests each.
/// Returns (decisions per second, per-request latency).
fn local_throughput(socket: &Path, clients: usize, per_client: usize) -> (f64, Latency) {
    let barrier = Arc::new(std::sync::Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let socket = socket.to_owned();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut client = LocalClient::connect(&socket, Duration::from_secs(5)).unwrap();
                let user = Principal::Cloud(AccountId::new(&user(c % MAX_SHARES)).unwrap());
                let mut samples = Vec::with_capacity(per_client);
                barrier.wait();
                for n in 0..per_client {
                    let principal = if n % 2 == 0 {
                        user.clone()
                    } else {
                        Principal::Local(LocalLevel::Guest)
                    };
                    let started = Instant::now();
                    let decision = client
                        .authorize(principal, Action::LiveView, Some(CHANNELS))
                        .unwrap();
                    samples.push(started.elapsed());
                    assert_eq!(decision, Decision::Allow);
                }
                samples
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut all = Vec::with_capacity(clients * per_client);
    for t in threads {
        all.extend(t.join().unwrap());
    }
    let rate = (clients * per_client) as f64 / started.elapsed().as_secs_f64();
    (rate, Latency::new(all))
}

/// mosquitto_sub holding one TLS subscription; returns its settled VmRSS.
fn mosquitto_sub_rss(setup: &Setup, program: &Path) -> u64 {
    let certs = setup.pki.device(SUB_SERIAL).unwrap();
    let log = setup.dir.path().join("mosquitto_sub.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Process::new(program)
        .args(["-h", "localhost", "-p", &setup.broker.port().to_string()])
        .arg("--cafile")
        .arg(setup.pki.ca_cert())
        .arg("--cert")
        .arg(&certs.cert)
        .arg("--key")
        .arg(&certs.key)
        .args(["-i", SUB_SERIAL, "-q", "1", "-d"])
        .args(["-t", &format!("dev/{SUB_SERIAL}/cmd")])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("mosquitto_sub starts");
    // mosquitto_sub's own output is block-buffered into a file, so the
    // broker's log tells when the subscription is in place (the broker
    // logs subscriptions: see `main`).
    let subscribed = format!("{SUB_SERIAL} 1 dev/{SUB_SERIAL}/cmd");
    let deadline = Instant::now() + WAIT;
    loop {
        if setup.broker.log().contains(&subscribed) {
            break;
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            kill_child(&mut child);
            panic!(
                "mosquitto_sub did not subscribe over TLS:\n{}\nbroker log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                setup.broker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(SETTLE);
    let rss = memory("mosquitto_sub", child.id());
    kill_child(&mut child);
    rss
}

/// A minimal HTTP server on 127.0.0.1 for inadyn: `/ip` answers an
/// address, everything else "good"; counts update requests.
struct DdnsServer {
    port: u16,
    updates: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DdnsServer {
    fn start() -> DdnsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let updates = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (updates, stop) = (updates.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let body = if text.starts_with("GET /ip") {
                        "203.0.113.7"
                    } else {
                        updates.fetch_add(1, Ordering::Relaxed);
                        "good 203.0.113.7"
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
        };
        DdnsServer {
            port,
            updates,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DdnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// inadyn in the foreground with one custom provider on loopback; returns
/// its VmRSS after the first update arrived and it settled.
fn inadyn_rss(dir: &Path, program: &Path) -> u64 {
    let server = DdnsServer::start();
    let conf = dir.join("inadyn.conf");
    // The alias is "localhost": inadyn resolves the alias before updating,
    // and that must not leave the machine.
    std::fs::write(
        &conf,
        format!(
            "period = 600\n\
             custom loopback {{\n\
             \x20   ssl = false\n\
             \x20   ddns-server = \"127.0.0.1:{port}\"\n\
             \x20   ddns-path = \"/update?hostname=%h&myip=%i\"\n\
             \x20   username = \"nvr\"\n\
             \x20   password = \"secret\"\n\
             \x20   hostname = \"localhost\"\n\
             \x20   checkip-server = \"127.0.0.1:{port}\"\n\
             \x20   checkip-path = \"/ip\"\n\
             \x20   checkip-ssl = false\n\
             }}\n",
            port = server.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = dir.join("inadyn.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Process::new(program)
        .arg("-f")
        .arg(&conf)
        .arg("--foreground")
        .arg(format!(
            "--cache-dir={}",
            dir.join("inadyn-cache").display()
        ))
        .arg(format!("--pidfile={}", dir.join("inadyn.pid").display()))
        .args(["-l", "notice"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("inadyn starts");
    let deadline = Instant::now() + WAIT;
    while server.updates.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            kill_child(&mut child);
            panic!(
                "inadyn sent no update:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(SETTLE);
    let rss = memory("inadyn", child.id());
    kill_child(&mut child);
    rss
}

/// Restarts with the full list: spawn -> online status at the cloud, and
/// spawn -> the local socket answers Allow for the last share.
fn restarts(
    setup: &Setup,
    config: &Path,
    cloud: &TestCloud,
    agent: &mut AgentProcess,
) -> (Latency, Latency) {
    let mut online = Vec::new();
    let mut enforced = Vec::new();
    for _ in 0..RESTARTS {
        agent.terminate();
        // The offline status from the shutdown, then nothing pending.
        cloud.wait_status(false, Duration::from_secs(3));
        cloud.drain();
        let socket = setup.socket();
        let started = Instant::now();
        *agent = setup.start_agent(config);
        let poller = std::thread::spawn(move || {
            let (principal, action, channel) = last_share_ask();
            let deadline = started + WAIT;
            while Instant::now() < deadline {
                if let Ok(mut client) = LocalClient::connect(&socket, Duration::from_secs(2)) {
                    if let Ok(Decision::Allow) =
                        client.authorize(principal.clone(), action, channel)
                    {
                        return Some(started.elapsed());
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            None
        });
        assert!(
            cloud.wait_status(true, WAIT),
            "agent did not come online:\n{}",
            agent.log()
        );
        online.push(started.elapsed());
        enforced.push(
            poller
                .join()
                .unwrap()
                .expect("the local socket allowed the last share"),
        );
    }
    (Latency::new(online), Latency::new(enforced))
}

fn main() {
    let total = Instant::now();
    let binary = agent_binary(None);
    assert!(
        binary.is_file(),
        "{}: no agent binary (cargo build --release -p hc-agent, or set HC_AGENT_BIN)",
        binary.display()
    );
    let mosquitto_sub =
        which("mosquitto_sub").expect("mosquitto_sub (apt-get install mosquitto-clients)");
    let inadyn = which("inadyn").expect("inadyn (apt-get install inadyn)");
    assert!(
        hc_testkit::mosquitto::mosquitto_available(),
        "mosquitto (apt-get install mosquitto)"
    );
    // "mosquitto_sub version 2.0.11 running on libmosquitto 2.0.11."
    let sub_version = Process::new(&mosquitto_sub)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("mosquitto_sub version "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let inadyn_version = first_line(&inadyn, &["--version"]);
    let broker_version = hc_testkit::mosquitto::mosquitto_binary()
        .map(|m| first_line(&m, &["-h"]))
        .unwrap_or_default();
    eprintln!("measure: agent {}", binary.display());
    eprintln!(
        "measure: broker {broker_version}; mosquitto_sub {sub_version}; inadyn {inadyn_version}"
    );

    // ---- size on disk
    let agent_size = file_size(&binary);
    let stripped = first_line(Path::new("file"), &["-b", &binary.to_string_lossy()]);
    let libs = ldd(&mosquitto_sub);
    let mut peer_parts = vec![("mosquitto_sub".to_string(), file_size(&mosquitto_sub))];
    for wanted in ["libmosquitto", "libssl", "libcrypto"] {
        let (name, path) = libs
            .iter()
            .find(|(n, _)| n.starts_with(wanted))
            .unwrap_or_else(|| panic!("ldd {}: no {wanted}", mosquitto_sub.display()));
        peer_parts.push((name.clone(), file_size(path)));
    }
    let others: Vec<String> = libs
        .iter()
        .filter(|(n, _)| {
            !["libmosquitto", "libssl", "libcrypto", "libc.so"]
                .iter()
                .any(|w| n.starts_with(w))
        })
        .map(|(n, p)| format!("{n} {} B", file_size(p)))
        .collect();
    let peer_size: u64 = peer_parts.iter().map(|(_, s)| s).sum();
    eprintln!(
        "measure: agent binary {agent_size} B ({}); peer: {}; not counted: libc, {}",
        if stripped.contains("not stripped") {
            "NOT stripped"
        } else if stripped.contains("stripped") {
            "stripped"
        } else {
            "strip state unknown"
        },
        peer_parts
            .iter()
            .map(|(n, s)| format!("{n} {s} B"))
            .collect::<Vec<_>>()
            .join(" + "),
        others.join(", ")
    );

    // ---- the site: PKI, mosquitto, the cloud client, the agent
    let dir = tempfile::Builder::new()
        .prefix("hc-perf-")
        .tempdir()
        .unwrap();
    let pki = Pki::generate(dir.path().join("pki"), &[SERIAL, SUB_SERIAL]).unwrap();
    let mut broker = Mosquitto::start(&pki).expect("mosquitto starts with TLS");
    // Log subscriptions too, to see when mosquitto_sub's is in place.
    let conf = broker.dir().join("mosquitto.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("log_type subscribe\n");
    // Cloud brokers turn Nagle's algorithm off on client sockets; mosquitto
    // leaves it on unless told (see the last row for its default).
    let nodelay = std::env::var("PERF_BROKER_NODELAY").as_deref() != Ok("0");
    if nodelay {
        text.push_str(NODELAY_LINE);
    }
    std::fs::write(&conf, text).unwrap();
    broker.restart().expect("mosquitto restarts");
    let mut setup = Setup { dir, pki, broker };
    let config = setup.write_config();
    let mut cloud = perf_cloud(&setup.pki, setup.broker.port());

    let started = Instant::now();
    let mut agent = setup.start_agent(&config);
    assert!(
        cloud.wait_status(true, WAIT),
        "agent did not connect to mosquitto:\n{}\n{}",
        agent.log(),
        setup.broker.log()
    );
    let first_start = started.elapsed();
    fill_access_list(&mut cloud);
    std::thread::sleep(SETTLE);
    let agent_rss = memory("agent, idle, full list", agent.child.id());
    eprintln!(
        "measure: first start (no state) to online {}; idle RSS with {MAX_SHARES} shares {agent_rss} KiB",
        ms(first_start)
    );

    // ---- peers' memory
    let sub_rss = mosquitto_sub_rss(&setup, &mosquitto_sub);
    let inadyn_rss = inadyn_rss(setup.dir.path(), &inadyn);

    // ---- end to end
    let (operations, changes) = command_latency(&mut cloud);
    let (one_rate, one) = local_throughput(&setup.socket(), 1, ONE_CLIENT_REQUESTS);
    let cpu_before = cpu_time(agent.child.id());
    let (sixteen_rate, sixteen) = local_throughput(&setup.socket(), 16, SIXTEEN_CLIENT_REQUESTS);
    // The 16 client threads share the 2 cores with the agent: what the
    // agent itself can serve is the decisions per second of its own CPU.
    let agent_cpu = cpu_time(agent.child.id()).saturating_sub(cpu_before);
    let per_agent_cpu_second =
        (16 * SIXTEEN_CLIENT_REQUESTS) as f64 / agent_cpu.as_secs_f64().max(0.001);
    std::thread::sleep(SETTLE);
    let rss_after = status_kib(agent.child.id(), "VmRSS:");
    let hwm = status_kib(agent.child.id(), "VmHWM:");

    // ---- start-up with the full list
    let (online, enforced) = restarts(&setup, &config, &cloud, &mut agent);
    let restart_rss = {
        std::thread::sleep(SETTLE);
        status_kib(agent.child.id(), "VmRSS:")
    };

    // ---- the same commands with mosquitto's default: Nagle on
    let nagle = if nodelay {
        let conf = setup.broker.dir().join("mosquitto.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        std::fs::write(&conf, text.replace(NODELAY_LINE, "")).unwrap();
        setup.broker.restart().expect("mosquitto restarts");
        Some(nagle_latency(&mut cloud))
    } else {
        None
    };
    agent.terminate();

    // ---- the rows
    let ratio = |peer: u64, ours: u64| format!("{:.1}x less", peer as f64 / ours.max(1) as f64);
    row(&[
        "2",
        &format!("Idle RSS, one TLS session to mosquitto, {MAX_SHARES} shares + installer grants"),
        &kib(agent_rss),
        &format!("mosquitto_sub {sub_version}, one TLS subscription, same broker"),
        &kib(sub_rss),
        &ratio(sub_rss, agent_rss),
        "< mosquitto_sub",
        met(agent_rss < sub_rss),
    ]);
    figure_row(
        "2",
        "RSS after the runs below (peak VmHWM) / after a restart with the full list",
        &format!(
            "{} (peak {}) / {}",
            kib(rss_after),
            kib(hwm),
            kib(restart_rss)
        ),
    );
    row(&[
        "2",
        "Size on disk (x86_64, stripped)",
        &mib_bytes(agent_size),
        "mosquitto_sub + libmosquitto + libssl + libcrypto",
        &mib_bytes(peer_size),
        &ratio(peer_size, agent_size),
        "",
        "",
    ]);
    row(&[
        "3",
        "Idle RSS: the whole agent (registrar, TLS session, full list)",
        &kib(agent_rss),
        &format!("inadyn {inadyn_version}, one custom provider on loopback"),
        &kib(inadyn_rss),
        &if agent_rss <= inadyn_rss {
            ratio(inadyn_rss, agent_rss)
        } else {
            format!("{:.1}x more", agent_rss as f64 / inadyn_rss.max(1) as f64)
        },
        "",
        "",
    ]);
    figure_row(
        "4",
        &format!(
            "Command -> ack over TLS via mosquitto, read-only operation (n={}) p50 / p99 / p99.9",
            operations.sorted.len()
        ),
        &operations.ms(&[0.5, 0.99, 0.999]),
    );
    figure_row(
        "4",
        &format!(
            "Command -> ack, share change persisted with fsync (n={SHARE_CHANGES}) p50 / p99 / max"
        ),
        &changes.ms(&[0.5, 0.99, 1.0]),
    );
    if let Some(nagle) = nagle {
        figure_row(
            "4",
            &format!(
                "The same read-only command with mosquitto's default `set_tcp_nodelay false` (n={NAGLE_OPERATIONS}) p50 / p99"
            ),
            &nagle.ms(&[0.5, 0.99]),
        );
    }
    for (clients, rate, lat) in [(1, one_rate, &one), (16, sixteen_rate, &sixteen)] {
        figure_row(
            "4",
            &format!(
                "Local socket authorize, {clients} client{} ({} requests): throughput, p50 / p99",
                if clients == 1 { "" } else { "s" },
                lat.sorted.len()
            ),
            &format!("{rate:.0}/s, {} / {}", us(lat.p(0.5)), us(lat.p(0.99))),
        );
    }
    row(&[
        "4",
        &format!(
            "Local socket authorize, 16 clients: decisions per second of the agent's own CPU time ({} ms on a CPU for {} requests)",
            agent_cpu.as_millis(),
            16 * SIXTEEN_CLIENT_REQUESTS
        ),
        &format!("{per_agent_cpu_second:.0}/s"),
        "",
        "",
        "",
        "> 100,000/s",
        if per_agent_cpu_second > 100_000.0 { "yes" } else { "no" },
    ]);
    row(&[
        "5",
        &format!("Start -> MQTT connected (online status at the cloud), full list, n={RESTARTS}: median / max"),
        &online.ms(&[0.5, 1.0]),
        "",
        "",
        "",
        "< 50 ms",
        // Every start, not just the median.
        met(online.p(1.0) < Duration::from_millis(50)),
    ]);
    figure_row(
        "5",
        &format!("Start -> full list in force (local socket allows the last share), n={RESTARTS}: median / max"),
        &enforced.ms(&[0.5, 1.0]),
    );
    // Stalls of about 40 ms are TCP delayed acknowledgements meeting
    // Nagle's algorithm on some socket along the path.
    let slow = |l: &Latency| {
        l.sorted
            .iter()
            .filter(|d| **d >= Duration::from_millis(35))
            .count()
    };
    eprintln!(
        "measure: commands taking >= 35 ms: {} of {} operations, {} of {} share changes",
        slow(&operations),
        operations.sorted.len(),
        slow(&changes),
        changes.sorted.len()
    );
    eprintln!(
        "measure: broker set_tcp_nodelay {}; first start with no state to online: {}",
        if nodelay {
            "true (rows 2-5), then false (last row)"
        } else {
            "false (PERF_BROKER_NODELAY=0)"
        },
        ms(first_start)
    );
    eprintln!("measure: done in {:.1} s", total.elapsed().as_secs_f64());
}

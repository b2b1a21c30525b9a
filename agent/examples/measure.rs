//! Measures the daemon on this machine and prints the figures: stripped
//! binary size, idle RSS holding a full access list over one TLS session,
//! command -> acknowledgement latency through the loopback TLS broker, and
//! local-socket authorize throughput with 1 and 16 clients.
//!
//! cargo build --release -p hc-agent && \
//!   cargo run --release -p hc-agent --example measure
//!
//! Figures go to docs/PERFORMANCE.md by hand; this prints a table.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use agent::client::LocalClient;
use protocol::access::{Action, LocalLevel, Principal};
use protocol::limits::MAX_SHARES;
use protocol::{AccountId, ChannelScope, CommandBody, Outcome, Permissions, Validity};
use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let binary = agent_binary();
    let size = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    println!("binary                         {binary}");
    println!("stripped size (x86_64)         {size} bytes");

    let site = Site::new();
    let mut cloud = site.cloud();
    let agent = site.start_agent(&site.default_config());
    assert!(
        cloud.wait_status(true, WAIT),
        "agent did not connect:\n{}",
        agent.log()
    );
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);

    // Fill the access list: MAX_SHARES shares with channel scopes and windows.
    for i in 0..MAX_SHARES {
        let body = CommandBody::Share {
            account: account(&format!("user{i:03}")),
            permissions: Permissions::of(&[Action::LiveView, Action::Playback]),
            channels: ChannelScope::Only(
                protocol::ChannelSet::from_channels(&[1, 2, 3, 4]).unwrap(),
            ),
            validity: Some(Validity {
                not_before: 0,
                not_after: u64::MAX,
            }),
        };
        assert_eq!(cloud.send("alice", body).outcome, Outcome::Accepted);
    }

    // Latency: one command at a time, timed from publish to ack.
    let mut latencies = Vec::new();
    for _ in 0..500 {
        let started = Instant::now();
        let ack = cloud.send(
            "alice",
            CommandBody::Operation {
                action: Action::LiveView,
                channel: Some(1),
            },
        );
        latencies.push(started.elapsed());
        assert_eq!(ack.outcome, Outcome::Accepted);
    }
    let mut changes = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        let body = CommandBody::Share {
            account: account(&format!("user{:03}", i % MAX_SHARES)),
            permissions: Permissions::of(&[Action::LiveView]),
            channels: ChannelScope::All,
            validity: None,
        };
        assert_eq!(cloud.send("alice", body).outcome, Outcome::Accepted);
        changes.push(started.elapsed());
    }
    latencies.sort();
    changes.sort();

    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(agent.child.id());

    let socket = site.socket();
    let throughput = |clients: usize, per_client: usize| {
        let started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let mut client = LocalClient::connect(&socket, Duration::from_secs(5)).unwrap();
                    let user = Principal::Cloud(
                        AccountId::new(&format!("user{:03}", c % MAX_SHARES)).unwrap(),
                    );
                    for n in 0..per_client {
                        let principal = if n % 2 == 0 {
                            user.clone()
                        } else {
                            Principal::Local(LocalLevel::Guest)
                        };
                        client
                            .authorize(principal, Action::LiveView, Some(1))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        (clients * per_client) as f64 / started.elapsed().as_secs_f64()
    };
    let one = throughput(1, 50_000);
    let sixteen = throughput(16, 10_000);

    println!("idle RSS, {MAX_SHARES} shares, TLS up   {rss} KiB");
    println!(
        "operation cmd -> ack (n=500)   p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!(
        "share cmd -> ack, fsync (n=200) p50 {:?}  p99 {:?}  max {:?}",
        percentile(&changes, 0.5),
        percentile(&changes, 0.99),
        changes[changes.len() - 1]
    );
    println!("local authorize, 1 client      {one:.0} decisions/s");
    println!("local authorize, 16 clients    {sixteen:.0} decisions/s");
}

//! What a fleet run measures: percentiles of durations, the reconnect
//! curve after a broker restart, failed attempts by kind, the process's
//! memory, and the [`FleetReport`] that holds them.

use std::time::Duration;

/// The nearest-rank method: the 1-based rank of quantile `q` (0 to 1) of
/// `len` ordered values (1 for an empty set).
fn nearest_rank(len: usize, q: f64) -> usize {
    ((len as f64 * q).ceil() as usize).clamp(1, len.max(1))
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[nearest_rank(samples.len(), q) - 1].as_secs_f64() * 1000.0;
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms (n = {})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.count
        )
    }
}

/// Reconnects per bucket after a broker restart.
#[derive(Debug, Clone, Default)]
pub struct ReconnectCurve {
    pub bucket: Duration,
    /// Reconnects in each bucket, from the first reconnect to the last.
    pub counts: Vec<usize>,
    /// From the broker listening again to the last device back.
    pub all_back_after: Duration,
    /// From the broker listening again to the first device back.
    pub first_back: Duration,
}

impl ReconnectCurve {
    pub fn from_times(mut times: Vec<Duration>, bucket: Duration) -> ReconnectCurve {
        times.sort_unstable();
        let (Some(first), Some(last)) = (times.first().copied(), times.last().copied()) else {
            return ReconnectCurve {
                bucket,
                ..ReconnectCurve::default()
            };
        };
        let buckets = ((last - first).as_nanos() / bucket.as_nanos()) as usize + 1;
        let mut counts = vec![0; buckets];
        for t in &times {
            counts[((*t - first).as_nanos() / bucket.as_nanos()) as usize] += 1;
        }
        ReconnectCurve {
            bucket,
            counts,
            all_back_after: last,
            first_back: first,
        }
    }

    /// Mean reconnects per bucket over the reconnect window.
    pub fn mean(&self) -> f64 {
        if self.counts.is_empty() {
            return 0.0;
        }
        self.counts.iter().sum::<usize>() as f64 / self.counts.len() as f64
    }

    pub fn peak(&self) -> usize {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    /// How long after the outage `fraction` (0 to 1) of the devices were
    /// back: beside `all_back_after`, it tells a herd that came back late
    /// from a few stragglers that did (their long tail lowers the mean).
    pub fn back_after(&self, fraction: f64) -> Duration {
        let wanted = nearest_rank(self.counts.iter().sum(), fraction);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                // The end of the bucket that holds it (the last device's time for the last).
                return (self.first_back + self.bucket * (index as u32 + 1))
                    .min(self.all_back_after);
            }
        }
        self.all_back_after
    }

    /// Peak over mean: 1.0 is a perfectly even spread.
    pub fn peak_to_mean(&self) -> f64 {
        let mean = self.mean();
        if mean == 0.0 {
            0.0
        } else {
            self.peak() as f64 / mean
        }
    }
}

/// One round of signed commands sent through the cloud.
#[derive(Debug, Clone, Default)]
pub struct CommandFigures {
    /// Commands in flight at most.
    pub window: usize,
    /// Command → acknowledgement of the applied ones.
    pub latency: Percentiles,
    pub refused: usize,
    pub unanswered: usize,
}

impl CommandFigures {
    /// Every command acknowledged as applied.
    pub fn all_applied(&self) -> bool {
        self.refused == 0 && self.unanswered == 0
    }

    /// "1000 commands over 2000 devices (up to 64 in flight): p50 ...".
    pub fn describe(&self, options: &super::FleetOptions, what: &str) -> String {
        format!(
            "{} {what} over {} devices (up to {} in flight): {}; refused {}, unanswered {}",
            options.commands,
            options.devices,
            self.window,
            self.latency,
            self.refused,
            self.unanswered
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    pub devices: usize,
    pub connected: usize,
    pub all_connected_after: Duration,
    pub connect: Percentiles,
    /// Before any device was built.
    pub rss_before_bytes: u64,
    pub rss_connected_bytes: u64,
    /// Signed commands while the whole fleet was connected.
    pub commands: Option<CommandFigures>,
    /// The same again after the broker restart (or the node's death).
    pub commands_after_restart: Option<CommandFigures>,
    pub reconnect: Option<ReconnectCurve>,
    /// Devices whose link the restart cut (all, or a killed node's).
    pub dropped: usize,
    /// Of those, how many came back.
    pub reconnected: usize,
    /// Devices that lost their link meanwhile although the restart did
    /// not cut it (a killed node's neighbours).
    pub unexpected_losses: usize,
    /// Failed attempts by kind while the fleet first connected.
    pub connect_failures: Vec<FailureCount>,
    /// Failed attempts by kind after the broker restart.
    pub reconnect_failures: Vec<FailureCount>,
}

/// Failed connection attempts of one kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureCount {
    pub kind: &'static str,
    pub count: usize,
    /// The longest time from an attempt's start to its failure: a broker
    /// that holds a connect before closing it (a NATS node waiting for a
    /// JetStream leader) shows here, a refused one does not.
    pub longest: Duration,
}

pub(super) fn report_failure(counts: &mut Vec<FailureCount>, kind: &'static str, took: Duration) {
    match counts.iter_mut().find(|c| c.kind == kind) {
        Some(c) => {
            c.count += 1;
            c.longest = c.longest.max(took);
        }
        None => counts.push(FailureCount {
            kind,
            count: 1,
            longest: took,
        }),
    }
}

/// "3 timed out (each after up to 10.0 s), 1 connection refused (...)",
/// or "none".
pub fn describe_failures(counts: &[FailureCount]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|c| {
            format!(
                "{} {} (each after up to {:.1} s)",
                c.count,
                c.kind,
                c.longest.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl FleetReport {
    pub fn bytes_per_device(&self) -> u64 {
        self.rss_connected_bytes
            .saturating_sub(self.rss_before_bytes)
            .checked_div(self.devices as u64)
            .unwrap_or(0)
    }
}

/// The resident set size of this process, from /proc.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
    }

    #[test]
    fn an_even_reconnect_spread_has_a_peak_to_mean_of_one() {
        let times: Vec<Duration> = (0..100).map(|i| Duration::from_millis(i * 10)).collect();
        let curve = ReconnectCurve::from_times(times, Duration::from_millis(250));
        assert_eq!(curve.counts, vec![25, 25, 25, 25]);
        assert_eq!(curve.peak_to_mean(), 1.0);
    }

    #[test]
    fn a_few_stragglers_show_in_when_most_were_back_not_in_the_herd() {
        // 95 devices over the first second from 2 s on, five more up to 20 s later.
        let mut times: Vec<Duration> = (0..95)
            .map(|i| Duration::from_millis(2_000 + i * 10))
            .collect();
        times.extend((1..=5).map(|i| Duration::from_secs(2 + 4 * i)));
        let curve = ReconnectCurve::from_times(times, Duration::from_millis(250));
        assert_eq!(curve.back_after(0.95), Duration::from_millis(3_000));
        assert_eq!(curve.back_after(0.5), Duration::from_millis(2_500));
        assert_eq!(curve.back_after(1.0), Duration::from_millis(22_000));
        assert_eq!(curve.all_back_after, Duration::from_secs(22));
        assert!(curve.peak_to_mean() > 2.0, "the tail lowers the mean");
    }

    #[test]
    fn failures_count_by_kind_and_keep_the_longest_hold() {
        let mut counts = Vec::new();
        report_failure(&mut counts, "connection refused", Duration::from_millis(2));
        report_failure(&mut counts, "connection lost", Duration::from_secs(5));
        report_failure(&mut counts, "connection refused", Duration::from_millis(1));
        assert_eq!(
            describe_failures(&counts),
            "2 connection refused (each after up to 0.0 s), 1 connection lost (each after up to 5.0 s)"
        );
        assert_eq!(describe_failures(&[]), "none");
    }

    #[test]
    fn a_thundering_herd_shows_in_the_peak_to_mean() {
        let mut times: Vec<Duration> = vec![Duration::ZERO; 90];
        times.extend((1..=10).map(|i| Duration::from_millis(i * 250)));
        let curve = ReconnectCurve::from_times(times, Duration::from_millis(250));
        assert!(curve.peak_to_mean() > 5.0, "{:?}", curve.counts);
    }
}

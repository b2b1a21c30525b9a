//! The judgment of a fleet run: its figures against the targets (all
//! connected within 60 s, under 64 KiB per device, every command applied,
//! every device back after the restart with an even spread).

use std::fmt::Write as _;
use std::time::Duration;

use super::FleetReport;

/// All devices connected within this.
const MAX_CONNECT: Duration = Duration::from_secs(60);
/// Process memory growth per connected device.
const MAX_BYTES_PER_DEVICE: u64 = 64 * 1024;
/// The reconnect curve's peak over its mean.
const MAX_PEAK_TO_MEAN: f64 = 2.0;

/// The figures against the targets, as printed, and whether all were met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `targets:`, one `  [ok] ...` or `  [MISSED] ...` line per target,
    /// and the reconnect curve's bars; each line ends with a newline.
    pub text: String,
    pub passed: bool,
}

impl Verdict {
    fn target(&mut self, ok: bool, what: String) {
        self.passed &= ok;
        let _ = writeln!(self.text, "  [{}] {what}", if ok { "ok" } else { "MISSED" });
    }
}

/// Judges a fleet run.
pub fn verdict(report: &FleetReport) -> Verdict {
    let mut v = Verdict {
        text: "targets:\n".into(),
        passed: true,
    };
    v.target(
        report.all_connected_after <= MAX_CONNECT,
        format!(
            "all {} connected within 60 s: {:.2} s",
            report.devices,
            report.all_connected_after.as_secs_f64()
        ),
    );
    v.target(
        report.bytes_per_device() <= MAX_BYTES_PER_DEVICE,
        format!(
            "memory per device under 64 KiB: {:.1} KiB",
            report.bytes_per_device() as f64 / 1024.0
        ),
    );
    let rounds = [
        ("every command", &report.commands),
        (
            "every command after the restart",
            &report.commands_after_restart,
        ),
    ];
    for (what, commands) in rounds {
        if let Some(c) = commands {
            v.target(
                c.all_applied(),
                format!(
                    "{what} acknowledged as applied: {} applied, {} refused, {} unanswered",
                    c.latency.count, c.refused, c.unanswered
                ),
            );
        }
    }
    if let Some(curve) = &report.reconnect {
        v.target(
            report.dropped > 0 && report.reconnected == report.dropped,
            format!(
                "all {} whose link the restart cut reconnected: {}",
                report.dropped, report.reconnected
            ),
        );
        v.target(
            curve.peak_to_mean() <= MAX_PEAK_TO_MEAN,
            format!(
                "reconnect rate within twice its mean: peak {} per {} ms, mean {:.1}, ratio {:.2}",
                curve.peak(),
                curve.bucket.as_millis(),
                curve.mean(),
                curve.peak_to_mean()
            ),
        );
        let bars: Vec<String> = curve.counts.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            v.text,
            "  reconnects per {} ms: {}",
            curve.bucket.as_millis(),
            bars.join(" ")
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{CommandFigures, ReconnectCurve};

    #[test]
    fn a_run_within_the_targets_passes() {
        let report = FleetReport {
            devices: 2,
            connected: 2,
            all_connected_after: Duration::from_secs(1),
            ..FleetReport::default()
        };
        let v = verdict(&report);
        assert!(v.passed, "{}", v.text);
        assert_eq!(
            v.text,
            "targets:\n  [ok] all 2 connected within 60 s: 1.00 s\n  [ok] memory per device under 64 KiB: 0.0 KiB\n"
        );
    }

    #[test]
    fn an_uneven_reconnect_or_a_lost_command_is_missed() {
        let report = FleetReport {
            devices: 4,
            connected: 4,
            commands: Some(CommandFigures {
                unanswered: 1,
                ..CommandFigures::default()
            }),
            dropped: 4,
            reconnected: 4,
            reconnect: Some(ReconnectCurve {
                bucket: Duration::from_millis(250),
                counts: vec![4, 0, 0, 0],
                all_back_after: Duration::from_secs(1),
                first_back: Duration::ZERO,
            }),
            ..FleetReport::default()
        };
        let v = verdict(&report);
        assert!(!v.passed);
        assert!(v.text.contains("  [MISSED] every command acknowledged as applied: 0 applied, 0 refused, 1 unanswered\n"), "{}", v.text);
        assert!(
            v.text
                .contains("  [MISSED] reconnect rate within twice its mean"),
            "{}",
            v.text
        );
        assert!(
            v.text.ends_with("  reconnects per 250 ms: 4 0 0 0\n"),
            "{}",
            v.text
        );
    }
}

//! The story's printer: sections, notes and numbered steps, each step
//! judged against what the product promises and recorded; and the texts
//! outcomes are written as.

use std::io::Write;

use hc_protocol::access::Decision;
use hc_protocol::{AccountId, Reason};

use super::{StepResult, SERIAL};
use crate::cloud::model::{CloudError, PerDevice};
use crate::cloud::Cloud;
use crate::recorder::RecorderError;

/// What resolving the recorder's domain gives, as `Resolution` prints it.
pub(super) const ADDRESS: &str = "127.0.0.1 http 80 https 443 rtsp 554 sdk 8000";

/// Records and prints the steps.
pub(super) struct Story<'a> {
    pub(super) out: &'a mut dyn Write,
    pub(super) steps: Vec<StepResult>,
}

impl Story<'_> {
    pub(super) fn section(&mut self, title: &str) {
        let _ = writeln!(self.out, "\n{title}");
    }

    pub(super) fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "  {text}");
    }

    /// A step whose outcome is the cloud's answer: `ok` when it was done,
    /// else the refusal as the product words it.
    pub(super) fn done(
        &mut self,
        what: impl Into<String>,
        result: &Result<(), CloudError>,
        ok: &str,
    ) {
        self.step(what, ok, result_text(result, ok));
    }

    pub(super) fn step(
        &mut self,
        what: impl Into<String>,
        expected: impl Into<String>,
        outcome: impl Into<String>,
    ) {
        let (what, expected, outcome) = (what.into(), expected.into(), outcome.into());
        let ok = outcome == expected;
        let number = self.steps.len() + 1;
        let verdict = if ok {
            "[ok]".to_owned()
        } else {
            format!("[FAILED: the product promises: {expected}]")
        };
        let _ = writeln!(self.out, "  step {number}: {what} -> {outcome} {verdict}");
        let _ = self.out.flush();
        self.steps.push(StepResult {
            number,
            what,
            outcome,
            expected,
            ok,
        });
    }
}

pub(super) fn decision_text(decision: &Result<Decision, RecorderError>) -> String {
    match decision {
        Ok(Decision::Allow) => "allowed".into(),
        Ok(Decision::Deny(reason)) => denied(*reason),
        Err(e) => format!("error: {e}"),
    }
}

pub(super) fn denied(reason: Reason) -> String {
    format!("denied: {reason}")
}

pub(super) fn result_text(result: &Result<(), CloudError>, ok: &str) -> String {
    match result {
        Ok(()) => ok.to_owned(),
        Err(e) => e.to_string(),
    }
}

pub(super) fn err_text(result: Result<impl std::fmt::Debug, CloudError>) -> String {
    match result {
        Ok(value) => format!("unexpectedly accepted: {value:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn list_text(cloud: &Cloud, owner: &AccountId) -> String {
    match cloud.with_model(|m| m.list_shares(owner, SERIAL)) {
        Ok(list) if list.is_empty() => "none".into(),
        Ok(list) => list
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => e.to_string(),
    }
}

pub(super) fn per_device_text(results: Result<PerDevice<()>, CloudError>, ok: &str) -> String {
    match results {
        Ok(list) => list
            .iter()
            .map(|(s, r)| format!("{s}: {}", result_text(r, ok)))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => e.to_string(),
    }
}

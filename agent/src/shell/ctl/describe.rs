//! The agent's replies as `ctl` prints them: one [`Value`] tree per reply,
//! field names as in SPEC §7 (snake case), enum variants by their names.

use hc_protocol::access::{Action, ChannelScope, Decision, Grant, Validity};
use hc_protocol::local::{LinkState, RegistrationState, StatusReply};
use hc_protocol::messages::{AuditActor, AuditEntry, AuditEvent, Binding, StateReport};
use hc_protocol::{AccountRef, Outcome, Reason};

use super::value::Value;
use Value::{Bool, List, Null, Number, Object};

pub(crate) fn status(s: &StatusReply) -> Value {
    let link = match s.link {
        LinkState::Connected => "connected",
        LinkState::Connecting => "connecting",
        LinkState::Disabled => "disabled",
    };
    let registration = match s.registration {
        RegistrationState::Registered { expires_at } => Object(vec![
            ("state", Value::text("registered")),
            ("expires_at", Number(expires_at)),
        ]),
        other => Object(vec![("state", Value::text(format!("{other:?}")))]),
    };
    Object(vec![
        ("running", Bool(true)),
        ("online", Bool(s.link == LinkState::Connected)),
        ("serial", Value::text(&s.serial)),
        ("link", Value::text(link)),
        ("bound", Bool(s.bound)),
        ("handed_over", Bool(s.handed_over)),
        ("cloud_service", Bool(s.cloud_service)),
        ("platform_access", Bool(s.platform_access)),
        ("domain", Value::text(&s.domain)),
        ("registration", registration),
        ("last_seq", Number(s.last_seq)),
        ("clock_trusted", Bool(s.clock_trusted)),
        (
            "clock_offset_ms",
            s.clock_offset_ms.map_or(Null, Value::Signed),
        ),
        ("reports_queued", Number(s.reports_queued.into())),
        ("reports_dropped", Number(s.reports_dropped.into())),
        ("command_key_ids", key_ids(&s.command_key_ids)),
        (
            "certificate_not_after",
            s.certificate_not_after.map_or(Null, Number),
        ),
    ])
}

pub(crate) fn reason(reason: Reason) -> Value {
    Object(vec![
        ("reason", Value::text(reason.name())),
        ("text", Value::text(reason.text())),
    ])
}

pub(crate) fn decision(decision: &Decision) -> Value {
    match decision {
        Decision::Allow => Object(vec![("decision", Value::text("allow"))]),
        Decision::Deny(why) => Object(vec![
            ("decision", Value::text("deny")),
            ("reason", Value::text(why.name())),
            ("text", Value::text(why.text())),
        ]),
    }
}

fn account(a: &AccountRef) -> Value {
    Value::text(format!("{} ({})", a.id, a.region))
}

fn validity(v: &Option<Validity>) -> Value {
    match v {
        None => Null,
        Some(w) => Object(vec![
            ("not_before", Number(w.not_before)),
            ("not_after", Number(w.not_after)),
        ]),
    }
}

fn grant(g: &Option<Grant>) -> Value {
    match g {
        None => Bool(false),
        Some(g) => Object(vec![("validity", validity(&g.validity))]),
    }
}

fn binding(b: &Binding) -> Value {
    match b {
        Binding::Unbound => Object(vec![("kind", Value::text("unbound"))]),
        Binding::InstallerManaged { installer } => Object(vec![
            ("kind", Value::text("installer_managed")),
            ("installer", account(installer)),
        ]),
        Binding::Owned {
            owner,
            installer,
            installer_grants: g,
        } => Object(vec![
            ("kind", Value::text("owned")),
            ("owner", account(owner)),
            ("installer", installer.as_ref().map_or(Null, account)),
            (
                "installer_grants",
                Object(vec![
                    ("site_info", grant(&g.site_info)),
                    ("configuration", grant(&g.configuration)),
                    ("live_view", grant(&g.live_view)),
                    ("playback", grant(&g.playback)),
                    ("may_disable_cloud", Bool(g.may_disable_cloud)),
                ]),
            ),
        ]),
    }
}

pub(crate) fn access(r: &StateReport) -> Value {
    let shares = r
        .shares
        .iter()
        .map(|s| {
            let actions = Action::ALL
                .iter()
                .filter(|a| s.permissions.contains(**a))
                .map(|a| Value::text(a.name()))
                .collect();
            let channels = match &s.channels {
                ChannelScope::All => Value::text("all"),
                ChannelScope::Only(set) => List(set.iter().map(|c| Number(c.into())).collect()),
            };
            Object(vec![
                ("account", account(&s.account)),
                ("actions", List(actions)),
                ("channels", channels),
                ("validity", validity(&s.validity)),
            ])
        })
        .collect();
    Object(vec![
        ("serial", Value::text(&r.serial)),
        ("agent_version", Value::text(&r.agent_version)),
        ("region", Value::text(&r.region)),
        ("channel_count", Number(r.channel_count.into())),
        ("binding", binding(&r.binding)),
        ("shares", List(shares)),
        ("cloud_service", Bool(r.cloud_service)),
        ("platform_access", Bool(r.platform_access)),
        ("domain", Value::text(&r.domain)),
        ("last_seq", Number(r.last_seq)),
        ("trusted_time_floor", Number(r.trusted_time_floor)),
        ("reports_dropped", Number(r.reports_dropped.into())),
        (
            "clock_offset_ms",
            r.clock_offset_ms.map_or(Null, Value::Signed),
        ),
        ("command_key_ids", key_ids(&r.command_key_ids)),
        (
            "certificate_not_after",
            r.certificate_not_after.map_or(Null, Number),
        ),
    ])
}

/// The ids of the command keys the device holds (SPEC §6.2).
fn key_ids(ids: &[u8]) -> Value {
    List(ids.iter().map(|&id| Number(id.into())).collect())
}

pub(crate) fn audit(entries: &[AuditEntry]) -> Value {
    List(entries.iter().map(audit_entry).collect())
}

fn audit_entry(e: &AuditEntry) -> Value {
    let actor = match &e.actor {
        AuditActor::Cloud(id) => Value::text(format!("cloud {id}")),
        AuditActor::Local(level) => Value::text(format!("local {level:?}")),
        AuditActor::Device => Value::text("device"),
    };
    let event = match e.event {
        AuditEvent::Decision { action, channel } => Object(vec![
            ("kind", Value::text("decision")),
            ("action", Value::text(action.name())),
            ("channel", channel.map_or(Null, |c| Number(c.into()))),
        ]),
        AuditEvent::Command { kind, seq } => Object(vec![
            ("kind", Value::text("command")),
            ("command", Value::text(format!("{kind:?}"))),
            ("seq", Number(seq)),
        ]),
        AuditEvent::PlatformAccess { enabled } => Object(vec![
            ("kind", Value::text("platform_access")),
            ("enabled", Bool(enabled)),
        ]),
        AuditEvent::EnvelopeRefused => Object(vec![("kind", Value::text("envelope_refused"))]),
        AuditEvent::LocalUnbind => Object(vec![("kind", Value::text("local_unbind"))]),
        AuditEvent::SessionContested => Object(vec![("kind", Value::text("session_contested"))]),
        AuditEvent::SessionLost => Object(vec![("kind", Value::text("session_lost"))]),
    };
    let outcome = match e.outcome {
        Outcome::Accepted => Value::text("accepted"),
        Outcome::Refused(why) => Value::text(format!("refused: {}", why.name())),
    };
    Object(vec![
        ("at", Number(e.at)),
        ("actor", actor),
        ("event", event),
        ("outcome", outcome),
    ])
}

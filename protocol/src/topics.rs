//! The per-device MQTT topic tree. Every topic is built here from the
//! serial; nothing else pastes topic strings. One subtree per device lets a
//! broker ACL confine each device certificate to its own topics:
//!
//! ```text
//! dev/{serial}/cmd            cloud -> device  QoS 1        signed command envelopes
//! dev/{serial}/ack            device -> cloud  QoS 1        Ack
//! dev/{serial}/state          device -> cloud  QoS 1 retained  StateReport
//! dev/{serial}/status         device -> cloud  QoS 1 retained  DeviceStatus (last-will: offline)
//! dev/{serial}/audit          device -> cloud  QoS 1        AuditReport
//! dev/{serial}/domain/register device -> cloud QoS 1        DomainRegistration
//! dev/{serial}/domain/result  cloud -> device  QoS 1        DomainResult
//! dev/{serial}/time/request   device -> cloud  QoS 0        TimeRequest
//! dev/{serial}/time/answer    cloud -> device  QoS 0        signed TimeAnswer
//! dev/{serial}/cert/request   device -> cloud  QoS 1        CertificateRequest
//! ```

use alloc::format;
use alloc::string::String;

use crate::ids::Serial;

/// The first level of every topic.
pub const ROOT: &str = "dev";

/// The leaves of a device's subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leaf {
    /// `cmd`: signed command envelopes, cloud to device.
    Command,
    /// `ack`: one `Ack` per envelope, device to cloud.
    Ack,
    /// `state`: the retained `StateReport`.
    State,
    /// `status`: the retained `DeviceStatus`, also the last-will.
    Status,
    /// `audit`: `AuditReport`s answering `RequestAudit`.
    Audit,
    /// `domain/register`: `DomainRegistration`s, device to cloud.
    DomainRegister,
    /// `domain/result`: `DomainResult`s, cloud to device.
    DomainResult,
    /// `time/request`: `TimeRequest`s, device to cloud.
    TimeRequest,
    /// `time/answer`: signed `TimeAnswer`s, cloud to device.
    TimeAnswer,
    /// `cert/request`: `CertificateRequest`s, device to cloud (the answer
    /// is the `InstallCertificate` command).
    CertificateRequest,
}

impl Leaf {
    /// Every leaf, in the order of SPEC.md's topic table.
    pub const ALL: [Leaf; 10] = [
        Leaf::Command,
        Leaf::Ack,
        Leaf::State,
        Leaf::Status,
        Leaf::Audit,
        Leaf::DomainRegister,
        Leaf::DomainResult,
        Leaf::TimeRequest,
        Leaf::TimeAnswer,
        Leaf::CertificateRequest,
    ];

    /// The leaf's path below `dev/{serial}/`.
    pub const fn path(self) -> &'static str {
        match self {
            Leaf::Command => "cmd",
            Leaf::Ack => "ack",
            Leaf::State => "state",
            Leaf::Status => "status",
            Leaf::Audit => "audit",
            Leaf::DomainRegister => "domain/register",
            Leaf::DomainResult => "domain/result",
            Leaf::TimeRequest => "time/request",
            Leaf::TimeAnswer => "time/answer",
            Leaf::CertificateRequest => "cert/request",
        }
    }

    /// True for the leaves the device subscribes to (cloud writes them).
    pub const fn is_inbound(self) -> bool {
        matches!(self, Leaf::Command | Leaf::DomainResult | Leaf::TimeAnswer)
    }

    /// The MQTT QoS messages on this leaf are published with: 0 for the
    /// time exchange (an answer is only good for the one request it
    /// answers, so neither is worth resending), 1 for everything else.
    pub const fn qos(self) -> u8 {
        match self {
            Leaf::TimeRequest | Leaf::TimeAnswer => 0,
            _ => 1,
        }
    }

    /// True for the leaves published with the retain flag.
    pub const fn is_retained(self) -> bool {
        matches!(self, Leaf::State | Leaf::Status)
    }
}

/// The topic of `leaf` for `serial`.
pub fn topic(serial: &Serial, leaf: Leaf) -> String {
    format!("{ROOT}/{serial}/{}", leaf.path())
}

/// A wildcard filter over every device's `leaf`, for the cloud side.
pub fn all_devices(leaf: Leaf) -> String {
    format!("{ROOT}/+/{}", leaf.path())
}

/// Splits a topic into its serial and leaf, if it is one of ours.
pub fn parse(topic: &str) -> Option<(Serial, Leaf)> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (serial, leaf_path) = rest.split_once('/')?;
    let leaf = Leaf::ALL.into_iter().find(|l| l.path() == leaf_path)?;
    Some((Serial::new(serial).ok()?, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_through_parse() {
        let serial = Serial::new("NVR-01").unwrap();
        for leaf in Leaf::ALL {
            let t = topic(&serial, leaf);
            assert_eq!(parse(&t), Some((serial.clone(), leaf)), "{t}");
        }
        assert_eq!(
            topic(&serial, Leaf::DomainResult),
            "dev/NVR-01/domain/result"
        );
        assert_eq!(parse("dev/NVR-01/other"), None);
        assert_eq!(parse("dev/a+b/cmd"), None);
    }
}

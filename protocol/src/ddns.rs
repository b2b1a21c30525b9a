//! Device domain registration: what the device tells the cloud about where
//! it can be reached, and the cloud's answer.

use serde::{Deserialize, Serialize};

use crate::ids::DomainName;
use crate::limits::MAX_PORT_MAPPINGS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpAddress {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// The device's service ports on the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePorts {
    pub http: u16,
    pub https: u16,
    pub rtsp: u16,
    pub sdk: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A port forwarded on the site's router (UPnP or manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub transport: Transport,
    pub internal: u16,
    pub external: u16,
}

/// Published on the domain registration topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRegistration {
    /// Increases with every registration the device sends; the result
    /// echoes it so stale answers can be told apart.
    pub attempt: u32,
    pub domain: DomainName,
    pub lan_address: IpAddress,
    pub ports: ServicePorts,
    pub mappings: heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainOutcome {
    /// Registered; the cloud forgets it after `expires_in` seconds without a
    /// refresh. `public_address` is what the cloud saw the device come from.
    Registered {
        public_address: IpAddress,
        expires_in: u32,
    },
    /// Another device holds the name. Not retried until the name changes.
    NameTaken,
    /// The cloud refused the name. Not retried until the name changes.
    Invalid,
}

/// The cloud's answer on the domain result topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainResult {
    pub attempt: u32,
    pub outcome: DomainOutcome,
}

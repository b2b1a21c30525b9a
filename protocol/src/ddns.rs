//! Device domain registration: what the device tells the cloud about where
//! it can be reached, and the cloud's answer.

use serde::{Deserialize, Serialize};

use crate::ids::DomainName;
use crate::limits::MAX_PORT_MAPPINGS;

/// An IP address, without the standard library's types (no_std).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpAddress {
    /// 4 bytes, network order.
    V4([u8; 4]),
    /// 16 bytes, network order.
    V6([u8; 16]),
}

/// The device's service ports on the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePorts {
    /// HTTP.
    pub http: u16,
    /// HTTPS.
    pub https: u16,
    /// RTSP streaming.
    pub rtsp: u16,
    /// The SDK (device protocol) server.
    pub sdk: u16,
}

/// The transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A port forwarded on the site's router (UPnP or manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// TCP or UDP.
    pub transport: Transport,
    /// The port on the device.
    pub internal: u16,
    /// The port on the router.
    pub external: u16,
}

/// Published on the domain registration topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRegistration {
    /// Increases with every registration the device sends; the result
    /// echoes it so stale answers can be told apart.
    pub attempt: u32,
    /// The name to register.
    pub domain: DomainName,
    /// The device's address on its LAN (not its public address, which only
    /// the cloud sees).
    pub lan_address: IpAddress,
    /// The device's service ports.
    pub ports: ServicePorts,
    /// Ports forwarded on the router (UPnP or manual).
    pub mappings: heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>,
}

/// What the cloud made of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainOutcome {
    /// Registered; the cloud forgets it after `expires_in` seconds without a
    /// refresh. `public_address` is what the cloud saw the device come from.
    Registered {
        /// The address the device's connection comes from.
        public_address: IpAddress,
        /// Seconds until the cloud forgets the registration.
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
    /// The `attempt` of the registration answered.
    pub attempt: u32,
    /// The answer.
    pub outcome: DomainOutcome,
}

//! Reading where the device can be reached: its LAN address (the local
//! address of the route towards the cloud) and its service ports and router
//! mappings (from the configuration and the optional ports file the
//! firmware rewrites).

use std::io;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hc_protocol::ddns::{IpAddress, PortMapping, ServicePorts, Transport};
use hc_protocol::limits::MAX_PORT_MAPPINGS;
use tracing::warn;

use super::config::Config;
use crate::core::domain::NetworkFacts;

/// Why the ports file was not used; the configured ports are used instead
/// until the firmware writes a good one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortsFileError {
    /// A line that does not parse.
    #[error("line {line}: {message}")]
    Line {
        /// The line's number, counting from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// More `map=` lines than a registration can carry.
    #[error("more than {MAX_PORT_MAPPINGS} port mappings")]
    TooManyMappings,
}

/// How long a lookup of the cloud host may take before this check is
/// given up (the next one retries).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The local address the kernel would use to reach `host:port`. The name
/// is resolved off the event loop's thread (a slow DNS server must not
/// stall the local socket or the MQTT keep-alive); connecting a UDP socket
/// sends nothing, it only picks the route.
pub async fn lan_address_towards(host: &str, port: u16) -> io::Result<IpAddress> {
    let mut targets = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "cloud host lookup timed out"))??;
    let target = targets
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "cloud host has no address"))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(target)?;
    Ok(match socket.local_addr()?.ip() {
        IpAddr::V4(v4) => IpAddress::V4(v4.octets()),
        IpAddr::V6(v6) => IpAddress::V6(v6.octets()),
    })
}

/// Parses the ports file: `key=value` lines, `#` comments. Keys: `http`,
/// `https`, `rtsp`, `sdk` (override `defaults`) and `map=tcp:INTERNAL:EXTERNAL`
/// (or `udp:`), repeatable.
pub fn parse_ports_file(
    text: &str,
    defaults: ServicePorts,
) -> Result<(ServicePorts, heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>), PortsFileError> {
    let mut ports = defaults;
    let mut mappings = heapless::Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let bad = |message: &str| PortsFileError::Line {
            line,
            message: message.into(),
        };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let (key, value) = content
            .split_once('=')
            .ok_or_else(|| bad("expected key=value"))?;
        let port = |v: &str| {
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("not a port number"))
        };
        match key.trim() {
            "http" => ports.http = port(value)?,
            "https" => ports.https = port(value)?,
            "rtsp" => ports.rtsp = port(value)?,
            "sdk" => ports.sdk = port(value)?,
            "map" => {
                let mut parts = value.trim().split(':');
                let transport = match parts.next() {
                    Some("tcp") => Transport::Tcp,
                    Some("udp") => Transport::Udp,
                    _ => return Err(bad("mapping must start with tcp: or udp:")),
                };
                let internal = port(parts.next().unwrap_or(""))?;
                let external = port(parts.next().unwrap_or(""))?;
                if parts.next().is_some() {
                    return Err(bad("mapping is tcp:INTERNAL:EXTERNAL"));
                }
                mappings
                    .push(PortMapping {
                        transport,
                        internal,
                        external,
                    })
                    .map_err(|_| PortsFileError::TooManyMappings)?;
            }
            _ => return Err(bad("unknown key")),
        }
    }
    Ok((ports, mappings))
}

/// Reads the ports file if there is one; a missing file means the defaults.
pub fn read_ports_file(
    path: &Path,
    defaults: ServicePorts,
) -> io::Result<Result<(ServicePorts, heapless::Vec<PortMapping, MAX_PORT_MAPPINGS>), PortsFileError>>
{
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_ports_file(&text, defaults)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok((defaults, heapless::Vec::new()))),
        Err(e) => Err(e),
    }
}

/// Reads where the device can be reached now: its LAN address (the
/// interface towards the cloud) and its ports (the ports file, or the
/// configured ones). `None` when the LAN address cannot be found.
pub(crate) async fn read(config: &Config) -> Option<NetworkFacts> {
    let lan_address = match lan_address_towards(&config.cloud.host, config.cloud.port).await {
        Ok(address) => address,
        Err(e) => {
            warn!(error = %e, "LAN address unknown; domain registration waits");
            return None;
        }
    };
    let defaults = config.domain.ports();
    let (ports, mappings) = match &config.domain.ports_file {
        None => (defaults, heapless::Vec::new()),
        Some(path) => match read_ports_file(path, defaults) {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(e)) => {
                warn!(file = %path.display(), error = %e, "ports file is invalid; using the configured ports");
                (defaults, heapless::Vec::new())
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "ports file unreadable; using the configured ports");
                (defaults, heapless::Vec::new())
            }
        },
    };
    Some(NetworkFacts {
        lan_address,
        ports,
        mappings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: ServicePorts = ServicePorts {
        http: 80,
        https: 443,
        rtsp: 554,
        sdk: 8000,
    };

    #[test]
    fn ports_file_overrides_defaults_and_lists_mappings() {
        let (ports, maps) = parse_ports_file(
            "# ports\nhttp=8080\nmap=tcp:8080:18080\nmap=udp:554:1554\n",
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(
            ports,
            ServicePorts {
                http: 8080,
                ..DEFAULTS
            }
        );
        assert_eq!(maps.len(), 2);
        assert_eq!(
            maps[1],
            PortMapping {
                transport: Transport::Udp,
                internal: 554,
                external: 1554
            }
        );
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert_eq!(
            parse_ports_file("http=80\nrtsp=0\n", DEFAULTS),
            Err(PortsFileError::Line {
                line: 2,
                message: "not a port number".into()
            })
        );
        assert!(parse_ports_file("ftp=21", DEFAULTS).is_err());
        assert!(parse_ports_file("map=tcp:1", DEFAULTS).is_err());
        let many = "map=tcp:1:2\n".repeat(MAX_PORT_MAPPINGS + 1);
        assert_eq!(
            parse_ports_file(&many, DEFAULTS),
            Err(PortsFileError::TooManyMappings)
        );
    }

    #[test]
    fn loopback_route_gives_a_loopback_address() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for host in ["127.0.0.1", "localhost"] {
            let address = runtime.block_on(lan_address_towards(host, 8883)).unwrap();
            assert!(
                matches!(address, IpAddress::V4([127, 0, 0, 1]) | IpAddress::V6(_)),
                "{host}: {address:?}"
            );
        }
    }
}

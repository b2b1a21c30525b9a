//! Listening ports for the simulator's brokers. A broker restarted "on the
//! same port" needs that port to stay free while it is down; a port from the
//! kernel's ephemeral range can be handed meanwhile to any outgoing
//! connection of any process (a parallel test's client, say), and the
//! restart then fails with "address in use". So a free port is chosen
//! outside that range.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::ops::Range;

/// Where a test broker listens: a port on 127.0.0.1, reached under the host
/// name of the PKI's broker certificate. The embedded broker and mosquitto
/// both dereference to it, so `broker.port()` and `broker.host()` read the
/// same whichever broker a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerAddr(SocketAddr);

impl BrokerAddr {
    /// A broker listening at `addr`.
    pub fn new(addr: SocketAddr) -> BrokerAddr {
        BrokerAddr(addr)
    }

    /// The listening address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.0
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// The host name that matches the PKI's broker certificate.
    pub fn host(&self) -> &'static str {
        "localhost"
    }
}

/// Lets a broker handle, which keeps its [`BrokerAddr`] in the field `addr`,
/// be read as one: `broker.port()`.
macro_rules! deref_to_broker_addr {
    ($handle:ty) => {
        impl std::ops::Deref for $handle {
            type Target = $crate::ports::BrokerAddr;

            fn deref(&self) -> &Self::Target {
                &self.addr
            }
        }
    };
}
pub(crate) use deref_to_broker_addr;

/// Where to look for a free port below the ephemeral range.
const LOWEST: u16 = 10_000;
/// Random ports tried before falling back to one the kernel picks.
const TRIES: u32 = 64;

/// `port` on 127.0.0.1 if it is free; for port 0, a free port outside the
/// ephemeral range (or, if none is found, one the kernel picks). The port
/// is probed by binding it and closed again, so a caller that binds it
/// later can still lose it to another listener, and should retry.
pub fn reserve(port: u16) -> io::Result<SocketAddr> {
    if port != 0 {
        return probe(port);
    }
    let range = outside_ephemeral();
    let span = u32::from(range.end - range.start);
    if span > 0 {
        for attempt in 0..TRIES {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u32(attempt);
            let candidate = range.start + (hasher.finish() % u64::from(span)) as u16;
            if let Ok(addr) = probe(candidate) {
                return Ok(addr);
            }
        }
    }
    probe(0)
}

fn probe(port: u16) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))?;
    listener.local_addr()
}

/// Ports below the kernel's ephemeral range (Linux default 32768-60999).
fn outside_ephemeral() -> Range<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    LOWEST..low.max(LOWEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_chosen_below_the_ephemeral_range() {
        let range = outside_ephemeral();
        let addr = reserve(0).unwrap();
        assert!(range.contains(&addr.port()), "{addr} not in {range:?}");
        // Free again: it can be bound by whoever asked for it.
        TcpListener::bind(addr).unwrap();
    }

    #[test]
    fn a_port_in_use_is_refused() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert_eq!(reserve(port).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}

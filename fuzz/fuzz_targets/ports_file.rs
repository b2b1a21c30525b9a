//! The firmware's ports file (`key=value` lines: service ports and port
//! mappings), through `net_facts::parse_ports_file`: any bytes give ports
//! and at most `MAX_PORT_MAPPINGS` mappings, or an error; never a panic.
#![no_main]

use hc_agent::shell::net_facts::parse_ports_file;
use hc_protocol::ddns::ServicePorts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let defaults = ServicePorts {
        http: 80,
        https: 443,
        rtsp: 554,
        sdk: 8000,
    };
    if let Ok((_, mappings)) = parse_ports_file(&text, defaults) {
        assert!(mappings.len() <= hc_protocol::limits::MAX_PORT_MAPPINGS);
    }
});

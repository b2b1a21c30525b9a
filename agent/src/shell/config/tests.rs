//! The configuration's parsing and validation rules.
use super::*;

const EXAMPLE: &str = include_str!("../../../agent.example.toml");

#[test]
fn the_example_config_is_valid() {
    let config: Config = toml::from_str(EXAMPLE).unwrap();
    config.validate().unwrap();
    assert_eq!(config.command_keys().unwrap().len(), 1);
}

#[test]
fn bad_values_are_refused_with_the_key_named() {
    let mut config: Config = toml::from_str(EXAMPLE).unwrap();
    config.serial = "a/b".into();
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid { key: "serial", .. })
    ));
    let mut config: Config = toml::from_str(EXAMPLE).unwrap();
    config.command_keys[0].public_key = "abcd".into();
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "command_keys.public_key",
            ..
        })
    ));
    let mut config: Config = toml::from_str(EXAMPLE).unwrap();
    config.local_socket.mode = 0o666;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "local_socket.mode",
            ..
        })
    ));
    let mut config: Config = toml::from_str(EXAMPLE).unwrap();
    config.local_socket.admin_uids = vec![4242];
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "local_socket.admin_uids",
            ..
        })
    ));
}

#[test]
fn unknown_keys_are_refused() {
    let text = format!("{EXAMPLE}\nunknown_key = 1\n");
    assert!(toml::from_str::<Config>(&text).is_err());
}

#[test]
fn hex_round_trips() {
    assert_eq!(
        decode_hex(&encode_hex(&[0, 1, 254, 255])),
        Some(vec![0, 1, 254, 255])
    );
    assert_eq!(decode_hex("zz"), None);
    assert_eq!(decode_hex("abc"), None);
}

#[test]
fn broker_endpoints_are_bounded_named_and_spread_over_a_fleet() {
    let with_endpoints = |hosts: &[&str]| {
        let mut config: Config = toml::from_str(EXAMPLE).unwrap();
        config.cloud.endpoints = hosts
            .iter()
            .map(|h| EndpointConfig {
                host: (*h).into(),
                port: 8883,
            })
            .collect();
        config
    };
    let config = with_endpoints(&["mqtt2.cloud.example"]);
    config.validate().unwrap();
    assert_eq!(
        config.broker_endpoints(),
        [
            ("mqtt.cloud.example".to_owned(), 8883),
            ("mqtt2.cloud.example".to_owned(), 8883)
        ]
    );
    let nine = with_endpoints(&["n"; MAX_BROKER_ENDPOINTS]);
    assert!(matches!(
        nine.validate(),
        Err(ConfigError::Invalid {
            key: "cloud.endpoints",
            ..
        })
    ));
    assert!(matches!(
        with_endpoints(&[""]).validate(),
        Err(ConfigError::Invalid {
            key: "cloud.endpoints.host",
            ..
        })
    ));
    // 3,000 serials over three nodes: each node gets its share (within
    // 10 % of a third).
    let mut config = with_endpoints(&["b", "c"]);
    let mut per_node = [0u32; 3];
    for n in 0..3_000 {
        config.serial = format!("NVR-{n:05}");
        per_node[usize::from(config.first_endpoint())] += 1;
    }
    assert!(
        per_node.iter().all(|&k| (900..=1_100).contains(&k)),
        "{per_node:?}"
    );
}

#[test]
fn the_status_refresh_defaults_to_five_minutes_and_is_bounded() {
    let config: Config = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(config.cloud.status_refresh_secs, 300);
    let without = EXAMPLE.replace("status_refresh_secs = 300\n", "");
    assert_ne!(without, EXAMPLE, "the example sets the key");
    let config: Config = toml::from_str(&without).unwrap();
    assert_eq!(config.cloud.status_refresh_secs, 300, "the default");
    for (value, ok) in [(4, false), (5, true), (86_400, true), (86_401, false)] {
        let mut config: Config = toml::from_str(EXAMPLE).unwrap();
        config.cloud.status_refresh_secs = value;
        match config.validate() {
            Ok(()) => assert!(ok, "{value} accepted"),
            Err(e) => {
                assert!(!ok, "{value} refused: {e}");
                assert_eq!(
                    e.to_string(),
                    format!("cloud.status_refresh_secs: {value} is out of range: from 5 to 86400")
                );
            }
        }
    }
}

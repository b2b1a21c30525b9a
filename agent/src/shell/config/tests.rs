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

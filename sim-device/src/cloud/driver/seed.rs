//! The cloud's command key: its seed in the PKI directory (created once,
//! mode 0600, shared by every cloud process that uses the directory), the
//! signer made from it and the public key devices pin.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hc_protocol::envelope::CommandSigner;

use super::DriverError;

/// The command key's id, as pinned in device configurations.
pub const COMMAND_KEY_ID: u8 = 1;
/// The command key's seed in the PKI directory (64 hex digits).
pub const SEED_FILE: &str = "cloud-command-key.seed";

/// The command key seed in `pki_dir`; created (random, mode 0600) if the
/// directory has none yet.
pub fn load_or_create_seed(pki_dir: &Path) -> Result<[u8; 32], DriverError> {
    let path = pki_dir.join(SEED_FILE);
    if path.exists() {
        return load_seed(pki_dir);
    }
    let seed_err = |message: String| DriverError::Seed {
        path: path.clone(),
        message,
    };
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| seed_err("no randomness".into()))?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let text = format!("{}\n", hc_agent::shell::config::encode_hex(&seed));
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| seed_err(e.to_string()))?;
            Ok(seed)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_seed(pki_dir),
        Err(e) => Err(seed_err(e.to_string())),
    }
}

/// The command key seed in `pki_dir`, which must exist.
pub fn load_seed(pki_dir: &Path) -> Result<[u8; 32], DriverError> {
    let path = pki_dir.join(SEED_FILE);
    let text = fs::read_to_string(&path).map_err(|e| DriverError::Seed {
        path: path.clone(),
        message: format!(
            "{e} (the cloud command key is created by `sim-device broker --pki DIR` or the demo)"
        ),
    })?;
    let bytes = hc_agent::shell::config::decode_hex(&text).filter(|b| b.len() == 32);
    let bytes = bytes.ok_or_else(|| DriverError::Seed {
        path,
        message: "must hold 64 hex digits".into(),
    })?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes);
    Ok(seed)
}

/// The signer for a seed.
pub fn signer(seed: &[u8; 32]) -> CommandSigner {
    // An Ed25519 seed of 32 bytes is always accepted.
    CommandSigner::from_seed(COMMAND_KEY_ID, seed).expect("a 32-byte Ed25519 seed")
}

/// The public key devices pin, for a seed.
pub fn command_public_key(seed: &[u8; 32]) -> [u8; 32] {
    signer(seed).public_key()
}

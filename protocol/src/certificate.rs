//! Certificate renewal over the link (SPEC §6.6): the device's request for
//! a certificate for a key pair it generated itself, and the proof that it
//! holds that key's private half. The cloud answers with the signed command
//! `InstallCertificate`.

use serde::{Deserialize, Serialize};

use crate::ids::Serial;

/// Bytes in a P-256 public key, uncompressed (`0x04 || x || y`).
pub const P256_PUBLIC_KEY_LEN: usize = 65;
/// Bytes in a P-256 ECDSA signature in the fixed form (`r || s`).
pub const P256_SIGNATURE_LEN: usize = 64;

/// Domain separator for the proof of possession, so the signature cannot
/// be reused for anything else.
pub const REQUEST_PROOF_CONTEXT: &[u8] = b"hc-agent/cert-request/v1";

/// The device asks for a certificate for a new key pair (topic
/// `dev/{serial}/cert/request`). Sent again, with the same key, until the
/// certificate arrives; the cloud issues one certificate per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRequest {
    /// The device; equals the topic's serial and the certificate subject to
    /// issue.
    pub serial: Serial,
    /// The new P-256 public key, uncompressed (`P256_PUBLIC_KEY_LEN`
    /// bytes; any other length is refused by the cloud).
    pub public_key: heapless::Vec<u8, P256_PUBLIC_KEY_LEN>,
    /// ECDSA P-256 SHA-256 signature, fixed form, by the new key over
    /// [`request_proof_message`]: the device holds the private key.
    pub proof: heapless::Vec<u8, P256_SIGNATURE_LEN>,
    /// When the certificate in use ends, Unix seconds (for the cloud's
    /// records; it does not change what is issued).
    pub current_not_after: u64,
}

/// What a proof for a device covers: `context || 0x00 || serial || 0x00
/// || bytes` (the renewal's proof of possession of a new key here, both
/// proofs of a provisioning request, and the bind proof over an account
/// id, each with its own context).
pub fn proof_message(context: &[u8], serial: &Serial, bytes: &[u8]) -> alloc::vec::Vec<u8> {
    let mut message =
        alloc::vec::Vec::with_capacity(context.len() + serial.len() + bytes.len() + 2);
    message.extend_from_slice(context);
    message.push(0);
    message.extend_from_slice(serial.as_bytes());
    message.push(0);
    message.extend_from_slice(bytes);
    message
}

/// The proof of knowing a device's verification code: HMAC-SHA256 keyed
/// with the code's ASCII bytes over [`proof_message`] (the bind proof, and
/// a provisioning request's code proof).
pub fn code_mac(
    verification_code: &[u8],
    context: &[u8],
    serial: &Serial,
    bytes: &[u8],
) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, verification_code);
    let tag = ring::hmac::sign(&key, &proof_message(context, serial, bytes));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `mac` is the [`code_mac`] of these, checked in constant time.
pub fn code_mac_holds(
    verification_code: &[u8],
    context: &[u8],
    serial: &Serial,
    bytes: &[u8],
    mac: &[u8],
) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, verification_code);
    ring::hmac::verify(&key, &proof_message(context, serial, bytes), mac).is_ok()
}

/// What the proof of possession signs: [`proof_message`] with
/// `REQUEST_PROOF_CONTEXT`.
pub fn request_proof_message(serial: &Serial, public_key: &[u8]) -> alloc::vec::Vec<u8> {
    proof_message(REQUEST_PROOF_CONTEXT, serial, public_key)
}

/// Whether `public_key` is a P-256 point and `proof` its ECDSA P-256
/// SHA-256 signature (fixed form) over [`proof_message`] with `context`.
pub fn key_proof_holds(context: &[u8], serial: &Serial, public_key: &[u8], proof: &[u8]) -> bool {
    if public_key.len() != P256_PUBLIC_KEY_LEN {
        return false;
    }
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        public_key,
    );
    key.verify(&proof_message(context, serial, public_key), proof)
        .is_ok()
}

impl CertificateRequest {
    /// Whether the key is a P-256 point and the proof is its signature over
    /// this request (what the cloud checks before it issues anything).
    pub fn proof_holds(&self) -> bool {
        key_proof_holds(
            REQUEST_PROOF_CONTEXT,
            &self.serial,
            &self.public_key,
            &self.proof,
        )
    }
}

/// A fresh P-256 key pair for the tests of the requests that prove one.
#[cfg(all(test, feature = "std"))]
pub(crate) fn test_key_pair() -> (ring::signature::EcdsaKeyPair, ring::rand::SystemRandom) {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    (pair, rng)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn request(serial: &str) -> CertificateRequest {
        let (pair, rng) = test_key_pair();
        let serial = Serial::new(serial).unwrap();
        let public_key = pair.public_key().as_ref();
        let proof = pair
            .sign(&rng, &request_proof_message(&serial, public_key))
            .unwrap();
        CertificateRequest {
            serial,
            public_key: public_key.iter().copied().collect(),
            proof: proof.as_ref().iter().copied().collect(),
            current_not_after: 0,
        }
    }

    #[test]
    fn the_proof_holds_for_its_key_and_serial_only() {
        let good = request("NVR1");
        assert!(good.proof_holds());
        let mut other_serial = good.clone();
        other_serial.serial = Serial::new("NVR2").unwrap();
        assert!(!other_serial.proof_holds());
        let mut other_key = good.clone();
        other_key.public_key = request("NVR1").public_key;
        assert!(!other_key.proof_holds());
        let mut short_key = good;
        short_key.public_key.truncate(33);
        assert!(!short_key.proof_holds());
    }
}

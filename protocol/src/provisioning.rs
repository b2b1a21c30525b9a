//! Provisioning by claim certificate (SPEC §6.7): a device that has only a
//! factory claim certificate, shared by its production batch, asks the
//! cloud for its own device certificate on the provisioning topics, which
//! a broker lets claim certificates use and nothing else. It proves that
//! it holds the new key (as a renewal does) and that it knows the
//! verification code printed on its label.
//!
//! ```text
//! prov/{claim}/{serial}/request   device -> cloud  QoS 1  ProvisionRequest
//! prov/{claim}/{serial}/answer    cloud -> device  QoS 1  ProvisionAnswer
//! ```
//!
//! `{claim}` is the claim certificate's subject CN, which starts with
//! [`CLAIM_PREFIX`], so that no claim name is a device serial the
//! device topic patterns (`dev/%u/...`) could open.

use alloc::format;
use alloc::string::String;

use serde::{Deserialize, Serialize};

pub use crate::certificate::proof_message;
use crate::certificate::{
    code_mac, code_mac_holds, key_proof_holds, P256_PUBLIC_KEY_LEN, P256_SIGNATURE_LEN,
};
use crate::ids::Serial;
use crate::limits::MAX_CERTIFICATE_BYTES;
use crate::reason::Reason;

/// The first level of the provisioning topics.
pub const ROOT: &str = "prov";

/// Every claim certificate's CN starts with this; the cloud refuses a
/// device serial that does.
pub const CLAIM_PREFIX: &str = "claim-";

/// Domain separator of the proof of possession of a provisioning request.
pub const PROOF_CONTEXT: &[u8] = b"hc-agent/provision/v1";

/// Domain separator of the verification code proof.
pub const CODE_PROOF_CONTEXT: &[u8] = b"hc-agent/provision-code/v1";

/// The topic a device of claim `claim` sends its request on.
pub fn request_topic(claim: &str, serial: &Serial) -> String {
    format!("{ROOT}/{claim}/{serial}/request")
}

/// The topic the cloud answers it on.
pub fn answer_topic(claim: &str, serial: &Serial) -> String {
    format!("{ROOT}/{claim}/{serial}/answer")
}

/// The claim name and serial of a request topic, if it is one.
pub fn parse_request_topic(topic: &str) -> Option<(&str, Serial)> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (claim, rest) = rest.split_once('/')?;
    let (serial, leaf) = rest.split_once('/')?;
    if leaf != "request" || !claim.starts_with(CLAIM_PREFIX) {
        return None;
    }
    Some((claim, Serial::new(serial).ok()?))
}

/// A device asks for its own certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// The device; equals the topic's serial and the subject to issue.
    pub serial: Serial,
    /// The new P-256 public key, uncompressed.
    pub public_key: heapless::Vec<u8, P256_PUBLIC_KEY_LEN>,
    /// ECDSA P-256 SHA-256 signature, fixed form, by the new key over
    /// [`proof_message`] with [`PROOF_CONTEXT`].
    pub proof: heapless::Vec<u8, P256_SIGNATURE_LEN>,
    /// HMAC-SHA256 keyed with the verification code over
    /// [`proof_message`] with [`CODE_PROOF_CONTEXT`]: the device knows the
    /// code on its label, which the cloud registered at manufacture.
    pub code_proof: [u8; 32],
}

/// The cloud's answer. One is handled at a time; the inline certificate
/// costs nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisionAnswer {
    /// The device's certificate (DER), for the requested key.
    Issued {
        /// The certificate.
        certificate: heapless::Vec<u8, MAX_CERTIFICATE_BYTES>,
    },
    /// Not issued: `BadVerificationProof` (the code proof is wrong, or the
    /// serial is not one the cloud knows: the two are not told apart) or
    /// `BadSignature` (the key's proof does not hold).
    Refused(Reason),
}

/// The verification code proof of `serial` for `public_key`.
pub fn code_proof(verification_code: &[u8], serial: &Serial, public_key: &[u8]) -> [u8; 32] {
    code_mac(verification_code, CODE_PROOF_CONTEXT, serial, public_key)
}

impl ProvisionRequest {
    /// What the cloud checks before it issues anything: the proof of the
    /// key (`BadSignature`), then the code's (`BadVerificationProof`).
    pub fn check(&self, verification_code: &[u8]) -> Result<(), Reason> {
        if !key_proof_holds(PROOF_CONTEXT, &self.serial, &self.public_key, &self.proof) {
            return Err(Reason::BadSignature);
        }
        if !code_mac_holds(
            verification_code,
            CODE_PROOF_CONTEXT,
            &self.serial,
            &self.public_key,
            &self.code_proof,
        ) {
            return Err(Reason::BadVerificationProof);
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::certificate::test_key_pair;
    use ring::signature::KeyPair;

    fn request(serial: &str, code: &[u8]) -> ProvisionRequest {
        let (pair, rng) = test_key_pair();
        let serial = Serial::new(serial).unwrap();
        let public_key = pair.public_key().as_ref();
        let proof = pair
            .sign(&rng, &proof_message(PROOF_CONTEXT, &serial, public_key))
            .unwrap();
        ProvisionRequest {
            code_proof: code_proof(code, &serial, public_key),
            serial,
            public_key: public_key.iter().copied().collect(),
            proof: proof.as_ref().iter().copied().collect(),
        }
    }

    #[test]
    fn a_request_holds_for_its_code_key_and_serial_only() {
        let good = request("NVR1", b"ABCDEF");
        assert_eq!(good.check(b"ABCDEF"), Ok(()));
        assert_eq!(good.check(b"ABCDEG"), Err(Reason::BadVerificationProof));
        let mut other_serial = good.clone();
        other_serial.serial = Serial::new("NVR2").unwrap();
        assert_eq!(other_serial.check(b"ABCDEF"), Err(Reason::BadSignature));
        let mut other_key = good.clone();
        other_key.public_key = request("NVR1", b"ABCDEF").public_key;
        assert_eq!(other_key.check(b"ABCDEF"), Err(Reason::BadSignature));
    }

    #[test]
    fn request_topics_parse_only_for_claim_names() {
        let serial = Serial::new("NVR1").unwrap();
        let topic = request_topic("claim-B7", &serial);
        assert_eq!(topic, "prov/claim-B7/NVR1/request");
        assert_eq!(
            parse_request_topic(&topic),
            Some(("claim-B7", serial.clone()))
        );
        assert_eq!(parse_request_topic("prov/NVR2/NVR1/request"), None);
        assert_eq!(
            parse_request_topic(&answer_topic("claim-B7", &serial)),
            None
        );
        assert_eq!(parse_request_topic("prov/claim-B7/a+b/request"), None);
    }
}

//! The simulated cloud as certificate authority (SPEC §6.6): a device's
//! certificate request is answered with a certificate from the PKI's CA
//! for the requested key, subject the serial, in a signed
//! `InstallCertificate` at the device's next sequence number. A repeated
//! request for the same key (the device asks again until the certificate
//! is stored) gets the same envelope again, not a second certificate.
//!
//! It also provisions devices that connect with a claim certificate (SPEC
//! §6.7): a `ProvisionRequest` of a device the cloud registered, with the
//! proof of its key and of its verification code, is answered with its
//! certificate on the provisioning answer topic.

use std::time::Duration;

use hc_protocol::certificate::CertificateRequest;
use hc_protocol::codec;
use hc_protocol::envelope::CommandSigner;
use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::provisioning::{self, ProvisionAnswer, ProvisionRequest};
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{AccountId, AccountRef, Command, CommandBody, Reason, Serial};
use rumqttc::{AsyncClient, QoS};

use super::link::Shared;
use super::now_secs;
use crate::pki::Pki;

/// The account the cloud acts as when it issues certificates (it must be
/// of the device's region, like every actor; no rights come into it).
pub const CERTIFICATE_ACTOR: &str = "cloud-ca";

/// How long the certificates the simulated cloud issues are valid.
pub const DEFAULT_CERTIFICATE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// The CA side of the simulated cloud.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The PKI whose CA signs.
    pub pki: Pki,
    /// Validity of each certificate issued, from now.
    pub lifetime: Duration,
}

impl Issuer {
    /// A certificate for `public_key`, subject `serial`, valid from a
    /// minute before `now` (clocks differ) to [`Issuer::not_after`]; `None`
    /// when the CA fails (logged).
    fn issue(&self, serial: &Serial, public_key: &[u8], now: u64) -> Option<Vec<u8>> {
        let not_before = now.saturating_sub(60);
        match self
            .pki
            .issue_for_key(serial.as_str(), public_key, not_before, self.not_after(now))
        {
            Ok(der) => Some(der),
            Err(e) => {
                tracing::warn!(%serial, error = %e, "certificate not issued");
                None
            }
        }
    }

    /// The end of a certificate issued at `now`.
    fn not_after(&self, now: u64) -> u64 {
        now + self.lifetime.as_secs()
    }
}

/// The last certificate issued to a device: for the key, what was sent
/// (the command envelope, or the provisioning answer).
#[derive(Debug, Clone)]
pub(super) struct Issued {
    public_key: Vec<u8>,
    envelope: Vec<u8>,
}

/// One certificate per key: a repeated request for the key `issued` was
/// for gets what was sent then, again on `topic`. Whether it did.
fn resent(client: &AsyncClient, topic: &str, issued: Option<&Issued>, public_key: &[u8]) -> bool {
    match issued {
        Some(issued) if issued.public_key == public_key => {
            let _ = client.try_publish(topic, QoS::AtLeastOnce, false, issued.envelope.clone());
            true
        }
        _ => false,
    }
}

/// Answers one certificate request from `serial`.
pub(super) fn answer(
    client: &AsyncClient,
    signer: &CommandSigner,
    issuer: &Issuer,
    shared: &mut Shared,
    serial: Serial,
    payload: &[u8],
) {
    let Ok(request) = codec::decode::<CertificateRequest>(payload, MAX_MESSAGE_BYTES) else {
        tracing::warn!(%serial, "certificate request does not decode");
        return;
    };
    if request.serial != serial || !request.proof_holds() {
        tracing::warn!(%serial, "certificate request refused: wrong serial or no proof of the key");
        return;
    }
    let topic = topics::topic(&serial, Leaf::Command);
    let Some(region) = shared
        .model
        .report(serial.as_str())
        .map(|r| r.region.clone())
    else {
        // Its state report (region, next sequence number) comes first.
        return;
    };
    let link = shared.links.entry(serial.clone()).or_default();
    if resent(
        client,
        &topic,
        link.certificate.as_ref(),
        &request.public_key,
    ) {
        return;
    }
    let Some(seq) = link.next_seq else {
        return;
    };
    let now = now_secs();
    let Some(der) = issuer.issue(&serial, &request.public_key, now) else {
        return;
    };
    let Ok(actor_id) = AccountId::new(CERTIFICATE_ACTOR) else {
        return;
    };
    let command = Command {
        serial: serial.clone(),
        actor: AccountRef {
            id: actor_id,
            region,
        },
        seq,
        issued_at: now,
        body: CommandBody::InstallCertificate {
            certificate: der.iter().copied().collect(),
        },
    };
    match signer.seal(&command) {
        Ok(envelope) => {
            link.next_seq = Some(seq + 1);
            link.certificate = Some(Issued {
                public_key: request.public_key.to_vec(),
                envelope: envelope.clone(),
            });
            let _ = client.try_publish(topic, QoS::AtLeastOnce, false, envelope);
            tracing::info!(%serial, seq, not_after = issuer.not_after(now), "certificate issued");
        }
        Err(e) => tracing::warn!(%serial, error = %e, "certificate command does not seal"),
    }
}

/// Answers one provisioning request of `serial` under claim `claim`: the
/// device must be registered (its verification code known), and both
/// proofs hold.
pub(super) fn provision(
    client: &AsyncClient,
    issuer: &Issuer,
    shared: &mut Shared,
    claim: &str,
    serial: Serial,
    payload: &[u8],
) {
    let Ok(request) = codec::decode::<ProvisionRequest>(payload, MAX_MESSAGE_BYTES) else {
        tracing::warn!(%serial, claim, "provisioning request does not decode");
        return;
    };
    let topic = provisioning::answer_topic(claim, &serial);
    let provisioned = shared
        .links
        .get(&serial)
        .and_then(|l| l.provisioned.as_ref());
    if resent(client, &topic, provisioned, &request.public_key) {
        return;
    }
    let Some(answer) = provision_answer(issuer, shared, &serial, &request) else {
        return;
    };
    let Ok(bytes) = codec::encode(&answer, MAX_MESSAGE_BYTES) else {
        return;
    };
    match &answer {
        ProvisionAnswer::Issued { .. } => {
            tracing::info!(%serial, claim, "provisioned: certificate issued");
            shared.links.entry(serial.clone()).or_default().provisioned = Some(Issued {
                public_key: request.public_key.to_vec(),
                envelope: bytes.clone(),
            });
        }
        ProvisionAnswer::Refused(reason) => {
            tracing::warn!(%serial, claim, %reason, "provisioning refused")
        }
    }
    let _ = client.try_publish(topic, QoS::AtLeastOnce, false, bytes);
}

/// The answer, or `None` when the cloud cannot issue (its CA failed):
/// then nothing is sent and the device asks again later.
fn provision_answer(
    issuer: &Issuer,
    shared: &Shared,
    serial: &Serial,
    request: &ProvisionRequest,
) -> Option<ProvisionAnswer> {
    // An unknown serial and a wrong code are not told apart.
    let code = shared
        .model
        .device(serial.as_str())
        .ok()
        .and_then(|record| record.verification_code.clone());
    let (Some(code), true) = (code, request.serial == *serial) else {
        return Some(ProvisionAnswer::Refused(Reason::BadVerificationProof));
    };
    if let Err(reason) = request.check(code.as_bytes()) {
        return Some(ProvisionAnswer::Refused(reason));
    }
    let der = issuer.issue(serial, &request.public_key, now_secs())?;
    Some(ProvisionAnswer::Issued {
        certificate: der.iter().copied().collect(),
    })
}

//! Provisioning by claim certificate (SPEC §6.7): a device whose
//! configuration names a claim certificate and that has no certificate of
//! its own yet connects with the claim certificate, on a clean session and
//! without a will, to its provisioning topics only, asks for its own
//! certificate for a key pair it makes (the credential store's pending
//! key) with the proof of its verification code, checks the certificate
//! as a renewed one (it chains to the device CA, names the serial, carries
//! the key) and stores it as the next pair. The daemon then starts the
//! cloud link as usual, which connects with it.
//!
//! The request is sent again every `RETRY` (at most `renew_retry_secs`)
//! while no answer comes, and the connection retried with the link's
//! backoff; a refusal by the cloud (an unknown serial or a wrong code) is
//! logged and asked again after `renew_retry_secs`, since the cloud may
//! learn the device later.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hc_protocol::limits::{MAX_MESSAGE_BYTES, MAX_MQTT_PACKET_BYTES};
use hc_protocol::provisioning::{self, ProvisionAnswer, CLAIM_PREFIX};
use hc_protocol::{Reason, Serial};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tracing::{error, info, warn};

use super::cert_der;
use super::cloud_driver::random_u32;
use super::config::Config;
use super::credentials::{Credentials, Identity};
use super::tls::{self, TlsError, TlsFiles};
use crate::core::backoff::Backoff;
use crate::store::RealFlash;

/// How long to wait for an answer before asking again.
const RETRY: Duration = Duration::from_secs(30);

/// Why provisioning cannot even start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProvisionError {
    /// The claim certificate, its key or the CA do not load.
    #[error("claim certificate: {0}")]
    Tls(#[from] TlsError),
    /// The claim certificate's CN is not a claim name.
    #[error("{path}: the claim certificate's subject is not a claim name (claim-...)")]
    NotAClaim {
        /// The claim certificate file.
        path: PathBuf,
    },
}

/// The claim certificate to provision with, when the device needs one:
/// the configuration names one, the device has no certificate of its own
/// (`cloud.cert` missing) and nothing was provisioned or renewed yet.
pub(crate) fn claim_needed(
    config: &Config,
    credentials: &Credentials<RealFlash>,
) -> Option<(PathBuf, PathBuf)> {
    let cloud = &config.cloud;
    let claim = cloud.claim_cert.clone().zip(cloud.claim_key.clone())?;
    let own = credentials.identity() != Identity::Configured || cloud.cert.is_file();
    (!own).then_some(claim)
}

/// Provisions the device with the claim certificate `claim`; returns once
/// its own certificate is stored (as the next pair). Runs until then;
/// the caller stops it at shutdown.
pub(crate) async fn provision(
    config: &Config,
    credentials: &mut Credentials<RealFlash>,
    claim: (PathBuf, PathBuf),
    now: impl Fn() -> u64,
) -> Result<(), ProvisionError> {
    let (claim_cert, claim_key) = claim;
    let tls = tls::client_config(&TlsFiles {
        ca: &config.cloud.ca,
        cert: &claim_cert,
        key: &claim_key,
        allow_tls12: config.cloud.allow_tls12,
    })?;
    let claim_name = claim_name(&claim_cert).ok_or(ProvisionError::NotAClaim {
        path: claim_cert.clone(),
    })?;
    let serial = config.identity().map_err(|_| ProvisionError::NotAClaim {
        path: claim_cert.clone(),
    })?;
    let serial = serial.serial;
    let request_topic = provisioning::request_topic(&claim_name, &serial);
    let answer_topic = provisioning::answer_topic(&claim_name, &serial);
    info!(claim = %claim_name, "no device certificate yet: provisioning with the claim certificate");

    let mut options = MqttOptions::new(
        config.serial.clone(),
        config.cloud.host.clone(),
        config.cloud.port,
    );
    options.set_keep_alive(Duration::from_secs(config.cloud.keep_alive_secs));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_MQTT_PACKET_BYTES, MAX_MESSAGE_BYTES + 512);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    eventloop
        .network_options
        .set_connection_timeout(config.cloud.connect_timeout_secs.max(1));
    let mut backoff = Backoff::new(crate::shell::link_policy(config).backoff);
    let rng = ring::rand::SystemRandom::new();
    let refused_retry = Duration::from_secs(config.cloud.renew_retry_secs);
    let retry = RETRY.min(refused_retry);
    let mut ask_at: Option<tokio::time::Instant> = None;
    let started = tokio::time::Instant::now();
    let millis = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Attempts that fail without a CONNACK wait out the backoff; one that
    // connected starts it afresh.
    loop {
        let wake = ask_at.unwrap_or_else(|| tokio::time::Instant::now() + retry);
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = tokio::time::sleep_until(wake) => {
                if ask_at.is_some() {
                    ask(&client, credentials, &serial, config, &request_topic).await;
                    ask_at = Some(tokio::time::Instant::now() + retry);
                }
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.on_connected(millis());
                if let Err(e) = client
                    .subscribe(answer_topic.clone(), QoS::AtLeastOnce)
                    .await
                {
                    warn!(error = %e, "provisioning: subscribe failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ask(&client, credentials, &serial, config, &request_topic).await;
                ask_at = Some(tokio::time::Instant::now() + retry);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == answer_topic => {
                let answer =
                    hc_protocol::decode::<ProvisionAnswer>(&publish.payload, MAX_MESSAGE_BYTES);
                match answer {
                    Ok(ProvisionAnswer::Issued { certificate }) => {
                        match credentials.install(&certificate, &serial, now()) {
                            Ok(validity) => {
                                info!(
                                    not_after = validity.not_after,
                                    "provisioned: the device certificate is stored"
                                );
                                let _ = client.disconnect().await;
                                return Ok(());
                            }
                            Err(reason) => {
                                warn!(%reason, "provisioning: the issued certificate is refused; asking again");
                                ask_at = Some(tokio::time::Instant::now() + retry);
                            }
                        }
                    }
                    Ok(ProvisionAnswer::Refused(reason)) => {
                        error!(%reason, "provisioning refused by the cloud (is the device registered, with this verification code?); asking again later");
                        ask_at = Some(tokio::time::Instant::now() + refused_retry);
                    }
                    Err(e) => warn!(error = %e, "provisioning: the answer does not decode"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                let delay = backoff.on_connect_failed(random_u32(&rng));
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "provisioning: connection failed");
                ask_at = None;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Sends the provisioning request (the same key every time).
async fn ask(
    client: &AsyncClient,
    credentials: &mut Credentials<RealFlash>,
    serial: &Serial,
    config: &Config,
    topic: &str,
) {
    let request = match credentials.provision_request(serial, config.verification_code.as_bytes()) {
        Ok(request) => request,
        Err(e) => {
            error!(error = %e, "provisioning: cannot make the request");
            return;
        }
    };
    match hc_protocol::encode(&request, MAX_MESSAGE_BYTES) {
        Ok(payload) => {
            info!("provisioning: asking the cloud for the device certificate");
            if let Err(e) = client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
            {
                warn!(error = %e, "provisioning: publish failed");
            }
        }
        Err(e) => {
            error!(error = %e, reason = %Reason::Malformed, "provisioning request does not encode")
        }
    }
}

/// The claim name: the claim certificate's CN, if it is one.
fn claim_name(cert: &std::path::Path) -> Option<String> {
    let der = tls::own_certificate(cert).ok()?;
    cert_der::subject_common_names(der.as_ref())?
        .into_iter()
        .find(|name| name.starts_with(CLAIM_PREFIX) && Serial::new(name).is_ok())
}

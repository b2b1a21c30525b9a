//! The driver's side of certificate renewal (SPEC §6.6): which pair each
//! connection attempt uses, what a connection's success or failure says
//! about a new pair, the renewal requests sent when `core::renewal` asks,
//! and the issued certificate checked and stored before its command is
//! acknowledged.
//!
//! A new pair is tried first. When an attempt with it fails, the next one
//! uses the pair in use; if that one connects while the new one did not,
//! the new pair is what the broker refuses, and it is set aside (a new
//! renewal is asked for after the retry interval). Telling a refused
//! certificate from a broker that is down this way needs no reading of TLS
//! alerts or CONNACK codes, which brokers report differently.

use std::sync::Arc;

use hc_protocol::limits::MAX_MESSAGE_BYTES;
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{Reason, Serial};
use rumqttc::QoS;
use tracing::{error, info, warn};

use super::Driver;
use crate::core::renewal::{Renewal, RenewalPolicy, RenewalStep};
use crate::core::{Applied, DeviceState};
use crate::shell::config::Config;
use crate::shell::credentials::{Credentials, Identity};
use crate::shell::daemon::StartError;
use crate::shell::tls::{self, TlsError};
use crate::shell::tls_source::TlsSource;
use crate::store::RealFlash;

/// Certificate renewal: the credential files and the timing.
pub(crate) struct CertificateRenewal {
    credentials: Credentials<RealFlash>,
    renewal: Renewal,
    /// The pair the attempt in flight uses.
    attempt_with: Identity,
    /// The last attempt with the new pair failed.
    next_failed: bool,
}

/// The renewal timing from the configuration (validated).
fn policy(config: &Config) -> RenewalPolicy {
    RenewalPolicy {
        lifetime_percent: config.cloud.renew_at_percent,
        before_end: std::time::Duration::from_secs(config.cloud.renew_before_end_secs),
        retry: std::time::Duration::from_secs(config.cloud.renew_retry_secs),
    }
}

impl CertificateRenewal {
    /// Opens the credential files in the state directory, ready to pick
    /// a pair from: a stored new pair that does not load (or names
    /// another device) is set aside first, so that neither the decision to
    /// provision by claim nor the link ever counts on it.
    pub(crate) fn credentials(config: &Config) -> Result<Credentials<RealFlash>, StartError> {
        let cloud = &config.cloud;
        let issuer = cloud.device_ca.clone().unwrap_or_else(|| cloud.ca.clone());
        let mut credentials = Credentials::open(
            config.state_dir.join("credentials"),
            cloud.cert.clone(),
            cloud.key.clone(),
            issuer,
            RealFlash,
        )
        .map_err(|e| StartError::Credentials(e.to_string()))?;
        if credentials.identity() == Identity::Next {
            if let Err(e) = load_pair(config, &credentials, Identity::Next) {
                warn!(error = %e, "the renewed certificate does not load: set aside, the certificate in use stays");
                credentials
                    .set_aside()
                    .map_err(|e| StartError::Credentials(e.to_string()))?;
            }
        }
        Ok(credentials)
    }

    /// Loads the TLS configuration of the pair to connect with, from
    /// `credentials` as [`CertificateRenewal::credentials`] opened them
    /// (and provisioning may have added a pair to).
    pub(crate) fn open(
        config: &Config,
        credentials: Credentials<RealFlash>,
    ) -> Result<(CertificateRenewal, TlsSource), StartError> {
        let identity = credentials.identity();
        let tls = load_pair(config, &credentials, identity)?;
        let in_use = credentials.validity(credentials.fallback());
        let renewal = Renewal::new(policy(config), in_use, identity == Identity::Next);
        info!(
            pair = ?identity,
            not_after = in_use.map(|v| v.not_after),
            renew_at = renewal.due_at(),
            "client certificate"
        );
        Ok((
            CertificateRenewal {
                credentials,
                renewal,
                attempt_with: identity,
                next_failed: false,
            },
            tls,
        ))
    }

    /// When the certificate in use ends.
    pub(crate) fn not_after(&self) -> Option<u64> {
        self.renewal.in_use().map(|v| v.not_after)
    }

    /// When `handle_timeout` has something to do, device time.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.renewal.poll_timeout()
    }

    /// The pair for the next attempt, its TLS configuration refreshed in
    /// `tls`: `Some` when it changed.
    pub(crate) fn before_attempt(
        &mut self,
        tls: &mut TlsSource,
        now: u64,
    ) -> Option<Arc<rustls::ClientConfig>> {
        // After a failed attempt with the new pair, the pair in use, if
        // there is one (a device provisioned by claim has none to fall
        // back to: it keeps trying its new pair).
        let fallback = self.credentials.fallback();
        let mut identity = if self.next_failed && self.credentials.exists(fallback) {
            fallback
        } else {
            self.credentials.identity()
        };
        loop {
            let (cert, key) = self.credentials.files(identity);
            match tls.refresh(&cert, &key) {
                Ok(changed) => {
                    self.attempt_with = identity;
                    return changed;
                }
                Err(e) if identity == Identity::Next => {
                    warn!(error = %e, "the renewed certificate does not load: set aside, the certificate in use stays");
                    self.set_aside(now);
                    identity = self.credentials.fallback();
                }
                Err(e) => {
                    self.attempt_with = identity;
                    warn_unusable(&e);
                    return None;
                }
            }
        }
    }

    /// The attempt connected: a new pair that did becomes the pair in use;
    /// the pair in use connecting after the new one failed sets the new
    /// one aside.
    pub(crate) fn on_connected(&mut self, now: u64) {
        let switched = match self.attempt_with {
            Identity::Next => match self.credentials.promote() {
                Ok(()) => {
                    let validity = self.credentials.validity(Identity::Current);
                    info!(
                        not_after = validity.map(|v| v.not_after),
                        "connected with the renewed certificate: it is now the one in use"
                    );
                    validity
                }
                Err(e) => {
                    error!(error = %e, "the renewed certificate connected but could not be made the one in use; it is tried again at the next connection");
                    None
                }
            },
            _ if self.next_failed => {
                warn!("the broker took the certificate in use but not the renewed one: the renewed one is set aside, a new one is asked for later");
                self.set_aside(now);
                None
            }
            _ => None,
        };
        self.next_failed = false;
        self.renewal.on_connected(switched);
    }

    /// The attempt failed, or the connection was lost.
    pub(crate) fn on_disconnected(&mut self, attempt_failed: bool) {
        if attempt_failed && self.attempt_with == Identity::Next {
            self.next_failed = true;
        } else if attempt_failed && self.next_failed {
            // The pair in use fails too: the broker may just be down; the
            // new pair is tried again.
            self.next_failed = false;
        }
        self.renewal.on_disconnected();
    }

    fn set_aside(&mut self, now: u64) {
        if let Err(e) = self.credentials.set_aside() {
            error!(error = %e, "the renewed certificate could not be set aside");
        }
        self.renewal.on_refused(now);
    }

    /// Checks and stores the certificate an accepted `InstallCertificate`
    /// carries, or turns the command into a refusal with the reason.
    pub(crate) fn install(
        &mut self,
        applied: &mut Applied,
        before: &DeviceState,
        serial: &Serial,
        now: u64,
    ) {
        let Some(der) = applied.certificate.take() else {
            return;
        };
        match self.credentials.install(&der, serial, now) {
            Ok(validity) => {
                info!(
                    not_after = validity.not_after,
                    "renewed certificate stored: used from the next connection on"
                );
                self.next_failed = false;
                self.renewal.on_stored();
            }
            Err(Reason::StorageFailed) => {
                error!("the renewed certificate could not be stored; the command is refused and may be sent again");
                applied.fail_storage(before);
            }
            Err(reason) => {
                warn!(%reason, "renewed certificate refused");
                applied.refuse(reason);
            }
        }
    }
}

/// The TLS configuration of `identity`'s pair, checked to name this
/// device.
fn load_pair(
    config: &Config,
    credentials: &Credentials<RealFlash>,
    identity: Identity,
) -> Result<TlsSource, TlsError> {
    let (cert, key) = credentials.files(identity);
    tls::check_subject(&cert, &config.serial)?;
    TlsSource::load(&config.cloud, &cert, &key)
}

fn warn_unusable(e: &TlsError) {
    warn!(error = %e, "certificate files changed but are not usable; the previous ones are kept");
}

impl Driver<'_> {
    /// Does what the renewal asks for when it is due: a request, or a
    /// reconnect to use a stored pair.
    pub(super) fn renew_if_due(&mut self) {
        let now = self.shared.now();
        let Some(renewal) = self.renewal.as_mut() else {
            return;
        };
        match renewal.renewal.handle_timeout(now) {
            Some(RenewalStep::Request) => {
                let current_not_after = renewal.not_after().unwrap_or(0);
                match renewal.credentials.request(&self.serial, current_not_after) {
                    Ok(request) => {
                        info!(
                            current_not_after,
                            "asking the cloud for a renewed certificate"
                        );
                        match hc_protocol::encode(&request, MAX_MESSAGE_BYTES) {
                            Ok(payload) => {
                                let _ = self.client.try_publish(
                                    topics::topic(&self.serial, Leaf::CertificateRequest),
                                    QoS::AtLeastOnce,
                                    false,
                                    payload,
                                );
                            }
                            Err(e) => error!(error = %e, "the certificate request does not encode"),
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "cannot ask for a renewed certificate; asked again later")
                    }
                }
            }
            Some(RenewalStep::Reconnect) => {
                info!("reconnecting to use the renewed certificate");
                self.link.reconnect(self.millis());
            }
            None => {}
        }
    }

    /// After a connection: the pair in use, and a renewed one switched to.
    pub(super) fn renewal_on_connected(&mut self) {
        let now = self.shared.now();
        if let Some(renewal) = self.renewal.as_mut() {
            renewal.on_connected(now);
            let not_after = renewal.not_after();
            self.shared
                .agent
                .borrow_mut()
                .set_certificate_not_after(not_after);
        }
    }

    /// An issued certificate, checked and stored before its command is
    /// carried out.
    pub(super) fn install_certificate(&mut self, applied: &mut Applied) {
        if applied.certificate.is_none() {
            return;
        }
        let now = self.shared.now();
        match self.renewal.as_mut() {
            Some(renewal) => {
                let before = self.shared.agent.borrow().state().clone();
                renewal.install(applied, &before, &self.serial, now)
            }
            // No TLS (tests only): nothing could use a certificate.
            None => applied.refuse(Reason::CertificateNotRequested),
        }
    }
}

//! The demo: the whole product story against a real broker, the simulated
//! cloud and one simulated recorder running the real agent, with readable,
//! numbered steps. Each step prints what was done, the outcome, and
//! whether it is what the product promises:
//!
//! ```text
//!   step 7: installer sends a sixth invitation today -> You can send at most five invitations in one day [ok]
//! ```
//!
//! [`run`] is what `sim-device demo` calls; the tests call it too. It
//! returns a [`DemoReport`]; setup failures (no broker, no agent) are
//! errors, outcomes that differ from the promise are failed steps.
//!
//! `story` prints and records the steps, `sections` tells the story one
//! section at a time.

mod flows;
mod sections;
mod story;

use std::io::Write;
use std::time::{Duration, Instant};

use hc_protocol::AccountId;

use crate::broker::{BrokerConfig, EmbeddedBroker};
use crate::cloud::driver::{load_or_create_seed, CloudOptions};
use crate::cloud::model::{CloudError, CloudModel};
use crate::cloud::{Cloud, DriverError};
use crate::mosquitto::{Mosquitto, MosquittoError};
use crate::nats::{NatsCluster, NatsError};
use crate::pki::{Pki, PkiError};
use crate::ports::BrokerAddr;
use crate::recorder::{Recorder, RecorderError, RecorderSpec};
use sections::tell;
use story::Story;

/// The demo recorder.
pub const SERIAL: &str = "SIM-NVR-0001";
/// Its verification code (on the label).
pub const CODE: &str = "KQ7XWA";
const REGION: &str = "EU";
/// How far the recorder's wall clock is behind (no NTP on site): its
/// timed grants are decided by signed time from the cloud.
pub const CLOCK_BEHIND_SECS: i64 = 600;

/// Which broker the story runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerKind {
    /// The embedded rumqttd broker with mutual TLS (no setup needed).
    #[default]
    Embedded,
    /// mosquitto (the Debian package) with TLS, client certificates and the
    /// per-device ACL.
    Mosquitto,
    /// A three-node NATS cluster (JetStream, MQTT over TLS 1.3, one user
    /// per certificate with the same per-device rules): the recorder gets
    /// all three nodes as endpoints, the cloud a persistent session.
    Nats,
}

impl BrokerKind {
    /// Its name in the closing line.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Embedded => "embedded broker",
            BrokerKind::Mosquitto => "mosquitto",
            BrokerKind::Nats => "NATS cluster",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    pub broker: BrokerKind,
    /// The recorder starts with only its batch's claim certificate and
    /// provisions itself before the story (SPEC §6.7).
    pub claim: bool,
}

/// The production batch of the demo's claim certificate.
pub const CLAIM_BATCH: &str = "B2026";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("embedded broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    #[error("mosquitto: {0}")]
    Mosquitto(#[from] MosquittoError),
    #[error("NATS: {0}")]
    Nats(#[from] NatsError),
    #[error("cloud: {0}")]
    Cloud(#[from] DriverError),
    #[error("recorder: {0}")]
    Recorder(#[from] RecorderError),
    #[error("cloud setup: {0}")]
    Setup(#[from] CloudError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One step of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub number: usize,
    pub what: String,
    pub outcome: String,
    /// What the product promises.
    pub expected: String,
    pub ok: bool,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub broker: BrokerKind,
    pub steps: Vec<StepResult>,
    pub elapsed: Duration,
}

impl DemoReport {
    /// True when every outcome is what the product promises.
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    pub fn failures(&self) -> impl Iterator<Item = &StepResult> {
        self.steps.iter().filter(|s| !s.ok)
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        let failed = self.failures().count();
        let broker = self.broker.name();
        if failed == 0 {
            format!(
                "demo passed: {} steps, every outcome as the product promises ({broker}, {:.1} s)",
                self.steps.len(),
                self.elapsed.as_secs_f64()
            )
        } else {
            format!(
                "demo FAILED: {failed} of {} steps differ from what the product promises ({broker}, {:.1} s)",
                self.steps.len(),
                self.elapsed.as_secs_f64()
            )
        }
    }
}

/// Runs the story, printing each step to `out`.
pub fn run(options: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("sim-demo-").tempdir()?;
    // Provisioned by claim, the recorder has no certificate to start with.
    let serials: &[&str] = if options.claim { &[] } else { &[SERIAL] };
    let pki = Pki::generate(dir.path().join("pki"), serials)?;
    let claim = options.claim.then(|| pki.claim(CLAIM_BATCH)).transpose()?;
    let seed = load_or_create_seed(pki.dir())?;

    // Keep the broker alive for the whole story.
    let broker = DemoBroker::start(options.broker, &pki)?;
    let port = broker.port;
    let broker_text = &broker.text;
    let host = "127.0.0.1";
    let _ = writeln!(
        out,
        "sim-device demo: {broker_text}; simulated cloud; recorder {SERIAL} ({REGION}, 8 channels, wall clock {} min behind) running the real agent",
        CLOCK_BEHIND_SECS / 60
    );
    if let Some(claim) = &claim {
        let _ = writeln!(
            out,
            "the recorder has no certificate of its own: it provisions itself with the claim certificate {} of batch {CLAIM_BATCH}",
            claim.cert.display()
        );
    }

    let options_broker = options.broker;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut story = Story {
        out,
        steps: Vec::new(),
    };
    let result = runtime.block_on(async {
        let mut model = CloudModel::new();
        model.register_device(SERIAL, CODE, REGION)?;
        let people = People::register(&mut model)?;
        let mut options = CloudOptions::with_seed(&pki, host, port, seed);
        options.persistent = options_broker == BrokerKind::Nats;
        let cloud = Cloud::connect(options, model).await?;
        let mut spec = RecorderSpec::new(SERIAL);
        spec.region = REGION.into();
        spec.verification_code = CODE.into();
        spec.wall_clock_offset_secs = -CLOCK_BEHIND_SECS;
        spec.more_endpoints = broker.more_endpoints.clone();
        spec.claim = claim;
        let recorder = Recorder::start(&pki, host, port, cloud.public_key(), spec)?;
        let told = tell(&mut story, &cloud, &recorder, &people).await;
        cloud.shutdown().await;
        recorder.stop()?;
        told
    });
    result?;
    let report = DemoReport {
        broker: options.broker,
        steps: story.steps,
        elapsed: started.elapsed(),
    };
    let _ = writeln!(story.out, "\n{}", report.summary());
    Ok(report)
}

/// The broker the story runs against, kept running until it ends.
struct DemoBroker {
    _embedded: Option<EmbeddedBroker>,
    _mosquitto: Option<Mosquitto>,
    _nats: Option<NatsCluster>,
    /// The port the cloud and the recorder connect to first.
    port: u16,
    /// The recorder's further endpoints (a cluster's other nodes).
    more_endpoints: Vec<BrokerAddr>,
    /// What the first line says about it.
    text: String,
}

impl DemoBroker {
    fn start(kind: BrokerKind, pki: &Pki) -> Result<DemoBroker, DemoError> {
        let mut broker = DemoBroker {
            _embedded: None,
            _mosquitto: None,
            _nats: None,
            port: 0,
            more_endpoints: Vec::new(),
            text: String::new(),
        };
        match kind {
            BrokerKind::Embedded => {
                let embedded = EmbeddedBroker::start(BrokerConfig::from_pki(pki))?;
                broker.port = embedded.port();
                broker.text = format!(
                    "embedded MQTT broker (mutual TLS) on 127.0.0.1:{}",
                    broker.port
                );
                broker._embedded = Some(embedded);
            }
            BrokerKind::Mosquitto => {
                let mosquitto = Mosquitto::start(pki)?;
                broker.port = mosquitto.port();
                broker.text = format!(
                    "mosquitto (TLS 1.3, client certificates, per-device ACL) on 127.0.0.1:{}",
                    broker.port
                );
                broker._mosquitto = Some(mosquitto);
            }
            BrokerKind::Nats => {
                let cluster = NatsCluster::start(pki)?;
                let mut endpoints = cluster.endpoints();
                let first = endpoints.remove(0);
                broker.port = first.port();
                let ports: Vec<String> = cluster
                    .endpoints()
                    .iter()
                    .map(|e| e.port().to_string())
                    .collect();
                broker.text = format!(
                    "NATS cluster of {} nodes (JetStream, MQTT over TLS 1.3, per-device permissions), MQTT on 127.0.0.1:{}",
                    ports.len(),
                    ports.join(", ")
                );
                broker.more_endpoints = endpoints;
                broker._nats = Some(cluster);
            }
        }
        Ok(broker)
    }
}

/// The accounts of the story.
struct People {
    installer: AccountId,
    frank: AccountId,
    fiona: AccountId,
    steve: AccountId,
}

impl People {
    fn register(model: &mut CloudModel) -> Result<People, CloudError> {
        let installer = model.register_account(
            "acme-security",
            Some("ops@acme-security.example"),
            None,
            "EU",
        )?;
        let frank = model.register_account("frank", Some("frank@example.com"), None, "EU")?;
        let fiona = model.register_account("fiona", None, Some("+49 151 0000 0002"), "EU")?;
        model.register_account("ursula", Some("ursula@example.com"), None, "US")?;
        let steve = model.register_account("steve", Some("steve@example.com"), None, "EU")?;
        Ok(People {
            installer,
            frank,
            fiona,
            steve,
        })
    }
}

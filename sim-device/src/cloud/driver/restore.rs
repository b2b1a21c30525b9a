//! Bringing a device that reports itself `behind` (it fell back to an older
//! copy of its state) up to date in one signed step: a `RestoreState` built
//! from the cloud's record, signed for the account that holds the device.

use hc_protocol::envelope::CommandSigner;
use hc_protocol::messages::StateReport;
use hc_protocol::topics::{self, Leaf};
use hc_protocol::{Command, CommandBody, Serial, Text};
use rumqttc::{AsyncClient, QoS};

use super::now_secs;

/// The `RestoreState` command for `record`, the cloud's own view of the
/// device, at sequence number `seq`. `None` when the record is itself
/// behind (a cloud that never saw the device up to date has nothing better
/// to restore) or names no account to act for and grants nothing.
pub(super) fn restore_command(record: &StateReport, seq: u64) -> Option<Command> {
    if record.behind {
        return None;
    }
    let actor = record
        .binding
        .owner()
        .or(record.binding.installer())?
        .clone();
    Some(Command {
        serial: record.serial.clone(),
        actor,
        seq,
        issued_at: now_secs(),
        body: CommandBody::RestoreState {
            binding: record.binding.clone(),
            shares: record.shares.clone(),
            cloud_service: record.cloud_service,
            domain: Text::new(record.domain.as_str()).ok()?,
        },
    })
}

/// Signs and publishes `command`; its ack is not waited for: the device's
/// next state report (no longer `behind`) shows it was applied.
pub(super) fn publish(
    client: &AsyncClient,
    signer: &CommandSigner,
    serial: &Serial,
    command: &Command,
) {
    match signer.seal(command) {
        Ok(envelope) => {
            let topic = topics::topic(serial, Leaf::Command);
            let _ = client.try_publish(topic, QoS::AtLeastOnce, false, envelope);
            tracing::info!(%serial, seq = command.seq, "device reports itself behind: its state is restored from the cloud's record");
        }
        Err(e) => tracing::warn!(%serial, error = %e, "restore command does not seal"),
    }
}

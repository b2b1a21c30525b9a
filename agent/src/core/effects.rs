//! Effects: what the core asks the I/O shell to do, in order. The shell
//! carries them out front to back; `Persist` comes before any `Ack`, and if
//! persisting fails the shell drops the new state and acknowledges
//! `StorageFailed` instead.

use hc_protocol::{Ack, Outcome, Reason};

/// One thing for the shell to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Write the new state to flash; nothing after this may happen first.
    Persist,
    /// Publish this acknowledgement.
    Ack(Ack),
    /// Publish the retained state report.
    PublishState,
    /// Publish up to this many recent audit entries.
    PublishAudit {
        /// How many of the newest entries the cloud asked for.
        max: u16,
    },
    /// The domain name changed: register it again.
    RegisterDomain,
    /// Platform access changed: open (true) or close (false) the cloud link.
    CloudLink {
        /// The switch's new position.
        enabled: bool,
    },
}

/// The effects of one step. Four is the most any step produces.
pub type Effects = heapless::Vec<Effect, 6>;

/// The effects to carry out instead of `effects` when their `Persist`
/// could not be done: the new state is not kept, nothing else happens, and
/// every acknowledgement says `StorageFailed`. This is where "nothing is
/// acknowledged that did not reach flash" is decided.
pub fn storage_failed(effects: &Effects) -> Effects {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Ack(ack) => Some(Effect::Ack(Ack {
                seq: ack.seq,
                outcome: Outcome::Refused(Reason::StorageFailed),
                redelivered: false,
            })),
            _ => None,
        })
        .collect()
}

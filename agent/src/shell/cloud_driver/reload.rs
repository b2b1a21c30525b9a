//! The driver's side of SIGHUP (see `shell::reload`): the new allow and
//! admin lists and command keys take effect at once, the new TLS
//! configuration at the next connection; the connection up now stays up.

use tracing::{error, info};

use super::Driver;
use crate::shell::local_server::Peers;

impl Driver<'_> {
    pub(super) fn reload_config(&mut self) {
        info!("SIGHUP: reloading the configuration");
        let reloaded = match self.reload.load() {
            Ok(reloaded) => reloaded,
            Err(e) => {
                error!(error = %e, "reload refused; still running on the previous configuration");
                return;
            }
        };
        self.shared.set_peers(Peers {
            allowed: reloaded.allowed_uids,
            admins: reloaded.admin_uids,
        });
        self.shared
            .agent
            .borrow_mut()
            .set_command_keys(reloaded.keys);
        if let Some(tls) = reloaded.tls {
            self.mqtt.set_tls(tls.current());
            self.tls = Some(tls);
        }
        info!("configuration reloaded: local socket peers, command keys and certificates applied");
    }
}

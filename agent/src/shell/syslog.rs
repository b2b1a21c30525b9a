//! The daemon's log: standard output, or syslog without a C library call: each log event is one
//! datagram to the local syslog socket (`/dev/log` by default), in the
//! BSD format of RFC 3164 without a timestamp (`<PRI>hc-agent[PID]: MSG`;
//! the syslog daemon stamps it), facility daemon. When the socket cannot
//! be reached at start the log goes to standard error instead, and an
//! event the daemon does not take (restarted syslogd) is tried once more
//! after reconnecting, then written to standard error.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use super::config::{log_level, LogConfig};

/// Sets up the log: standard output, or syslog when configured (standard
/// error when its socket cannot be reached).
pub fn init_logging(log: &LogConfig) {
    let level = log_level(&log.level).unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false);
    if !log.syslog {
        return builder.init();
    }
    match Syslog::connect(&log.syslog_socket) {
        Ok(syslog) => builder.without_time().with_writer(syslog).init(),
        Err(e) => {
            builder.with_writer(std::io::stderr).init();
            tracing::warn!(socket = %log.syslog_socket.display(), error = %e, "syslog socket not reachable; logging to standard error");
        }
    }
}

/// Facility `daemon` (3), shifted as in the PRI field.
const FACILITY_DAEMON: u8 = 3 << 3;

/// The connection to the syslog socket, shared by every event.
pub struct Syslog {
    path: PathBuf,
    socket: Mutex<Option<UnixDatagram>>,
    tag: String,
}

impl Syslog {
    /// Connects to `path`; Err when it cannot (the caller logs to stderr).
    pub fn connect(path: &Path) -> io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Syslog {
            path: path.into(),
            socket: Mutex::new(Some(socket)),
            tag: format!("hc-agent[{}]", std::process::id()),
        })
    }

    fn send(&self, priority: u8, message: &[u8]) {
        let message = message.strip_suffix(b"\n").unwrap_or(message);
        let mut line = format!("<{priority}>{}: ", self.tag).into_bytes();
        line.extend_from_slice(message);
        let Ok(mut socket) = self.socket.lock() else {
            return;
        };
        for _ in 0..2 {
            if let Some(s) = socket.as_ref() {
                if s.send(&line).is_ok() {
                    return;
                }
            }
            *socket = UnixDatagram::unbound()
                .and_then(|s| s.connect(&self.path).map(|()| s))
                .ok();
        }
        let mut stderr = io::stderr().lock();
        let _ = write!(stderr, "{}: ", self.tag);
        let _ = stderr.write_all(message);
        let _ = stderr.write_all(b"\n");
    }
}

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One event's text, sent as one datagram when the formatter is done.
pub struct SyslogEvent<'a> {
    syslog: &'a Syslog,
    priority: u8,
    buffer: Vec<u8>,
}

impl Write for SyslogEvent<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogEvent<'_> {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.syslog.send(self.priority, &self.buffer);
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogEvent<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        self.event(&Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.event(meta.level())
    }
}

impl Syslog {
    fn event(&self, level: &Level) -> SyslogEvent<'_> {
        SyslogEvent {
            syslog: self,
            priority: FACILITY_DAEMON | severity(level),
            buffer: Vec::new(),
        }
    }
}

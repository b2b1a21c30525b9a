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
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::MakeWriter;

use super::config::{log_level, LogConfig};

/// Sets up the log: standard output, or syslog when configured (standard
/// error when its socket cannot be reached). One subscriber type whatever
/// the destination: each instance of tracing's formatter costs flash.
pub fn init_logging(log: &LogConfig) {
    let level = log_level(&log.level).unwrap_or(tracing::Level::INFO);
    let (sink, unreachable) = match log.syslog {
        false => (LogSink::Stdout, None),
        true => match Syslog::connect(&log.syslog_socket) {
            Ok(syslog) => (LogSink::Syslog(syslog), None),
            Err(e) => (LogSink::Stderr, Some(e)),
        },
    };
    let stamped = !matches!(sink, LogSink::Syslog(_));
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false)
        .with_timer(LogTime { stamped })
        .with_writer(sink)
        .init();
    if let Some(e) = unreachable {
        tracing::warn!(socket = %log.syslog_socket.display(), error = %e, "syslog socket not reachable; logging to standard error");
    }
}

/// Where the log goes.
pub enum LogSink {
    /// Standard output (the default: the supervisor keeps it).
    Stdout,
    /// Standard error (syslog was asked for but is not reachable).
    Stderr,
    /// The syslog socket.
    Syslog(Syslog),
}

/// The time in front of each line, except for syslog, which stamps them.
struct LogTime {
    stamped: bool,
}

impl FormatTime for LogTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        // The formatter adds a space after it either way; the syslog
        // writer drops it.
        if self.stamped {
            SystemTime.format_time(w)?;
        }
        Ok(())
    }
}

/// One event's destination.
pub enum LogEvent<'a> {
    /// Written as it comes.
    Stdout(io::Stdout),
    /// Written as it comes.
    Stderr(io::Stderr),
    /// Sent whole when the event is done.
    Syslog(SyslogEvent<'a>),
}

impl Write for LogEvent<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            LogEvent::Stdout(out) => out.write(bytes),
            LogEvent::Stderr(out) => out.write(bytes),
            LogEvent::Syslog(event) => event.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LogEvent::Stdout(out) => out.flush(),
            LogEvent::Stderr(out) => out.flush(),
            LogEvent::Syslog(_) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LogEvent<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        self.event(&Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.event(meta.level())
    }
}

impl LogSink {
    fn event(&self, level: &Level) -> LogEvent<'_> {
        match self {
            LogSink::Stdout => LogEvent::Stdout(io::stdout()),
            LogSink::Stderr => LogEvent::Stderr(io::stderr()),
            LogSink::Syslog(syslog) => LogEvent::Syslog(syslog.event(level)),
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
        let message = message.trim_ascii_start();
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

impl Syslog {
    fn event(&self, level: &Level) -> SyslogEvent<'_> {
        SyslogEvent {
            syslog: self,
            priority: FACILITY_DAEMON | severity(level),
            buffer: Vec::new(),
        }
    }
}

//! The local-socket client library for the firmware's processes (web,
//! streaming and SDK servers) and the simulator. Blocking, so it fits any
//! process whether or not it runs an async runtime; one request at a time
//! per connection.
//!
//! A streaming server watches the sessions it serves
//! ([`LocalClient::watch`]) and reads [`Notice`]s ([`LocalClient::next_notice`])
//! when the connection's descriptor ([`AsRawFd`]) is readable in its own
//! `poll` loop: each notice names a session that must stop now, and why.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::limits::MAX_WATCHES_PER_CONNECTION;
use hc_protocol::local::{
    decode_frame_body, encode_frame, frame_body_len, LocalReply, LocalRequest, StatusReply,
    FRAME_HEADER_LEN,
};
use hc_protocol::messages::{AuditEntry, StateReport};
use hc_protocol::Reason;

/// Why a request to the agent got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed, or the reply did not come
    /// within the timeout; the connection is best dropped.
    #[error("local socket: {0}")]
    Io(#[from] io::Error),
    /// The reply frame arrived but does not decode (an agent of another
    /// protocol version, or a damaged frame).
    #[error("the agent's reply is malformed: {0}")]
    Malformed(hc_protocol::DecodeError),
    /// The agent understood the request and said no, with its reason (for
    /// example a process not on the admin list asking for an admin action).
    #[error("the agent refused the request: {0}")]
    Refused(Reason),
    /// The agent answered with a reply of another kind than the request
    /// calls for.
    #[error("the agent answered with an unexpected reply")]
    Unexpected,
}

/// One connection to the agent's local socket. Requests on it are answered
/// in order, one at a time; open one per thread that needs the agent.
pub struct LocalClient {
    /// Replies are read through a small buffer: one system call usually
    /// brings a whole reply (header and body).
    stream: BufReader<UnixStream>,
    /// Notices that arrived while a reply was awaited, oldest first (at
    /// most one per watched session).
    notices: VecDeque<Notice>,
    /// The reply timeout given at connect.
    timeout: Duration,
}

/// A watched session was revoked: it must stop now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The id the process gave in [`LocalClient::watch`].
    pub session: u32,
    /// Why the decision turned to deny.
    pub reason: Reason,
}

impl LocalClient {
    /// Connects to the agent's socket; every reply must come within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<LocalClient, ClientError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(LocalClient {
            stream: BufReader::with_capacity(1024, stream),
            notices: VecDeque::new(),
            timeout,
        })
    }

    /// Sends one request and reads its reply.
    pub fn request(&mut self, request: &LocalRequest) -> Result<LocalReply, ClientError> {
        let frame = encode_frame(request).map_err(|e| {
            ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        })?;
        self.stream.get_mut().write_all(&frame)?;
        loop {
            match self.read_reply()? {
                LocalReply::Revoked { session, reason } => self.queue(Notice { session, reason }),
                reply => return Ok(reply),
            }
        }
    }

    fn queue(&mut self, notice: Notice) {
        if self.notices.len() >= MAX_WATCHES_PER_CONNECTION {
            // Cannot happen with a well-behaved agent (one notice per
            // watched session); the oldest is the least useful.
            self.notices.pop_front();
        }
        self.notices.push_back(notice);
    }

    /// Reads one reply frame (also used by tests that write raw bytes).
    pub fn read_reply(&mut self) -> Result<LocalReply, ClientError> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        self.stream.read_exact(&mut header)?;
        let len = frame_body_len(header).map_err(ClientError::Malformed)?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        decode_frame_body(&body).map_err(ClientError::Malformed)
    }

    /// Writes raw bytes to the socket, for tests of the server's framing.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.get_mut().write_all(bytes)?;
        Ok(())
    }

    /// May `principal` do `action` on `channel` now?
    pub fn authorize(
        &mut self,
        principal: Principal,
        action: Action,
        channel: Option<u16>,
    ) -> Result<Decision, ClientError> {
        self.decision(None, principal, action, channel)
    }

    /// The two questions answered by a decision: a plain one (`Authorize`)
    /// and one whose `session` is then watched (`Watch`).
    fn decision(
        &mut self,
        session: Option<u32>,
        principal: Principal,
        action: Action,
        channel: Option<u16>,
    ) -> Result<Decision, ClientError> {
        let request = match session {
            None => LocalRequest::Authorize {
                principal,
                action,
                channel,
            },
            Some(session) => LocalRequest::Watch {
                session,
                principal,
                action,
                channel,
            },
        };
        match self.request(&request)? {
            LocalReply::Decision(decision) => Ok(decision),
            other => Err(unexpected(other)),
        }
    }

    /// A request answered by `Done`.
    fn done(&mut self, request: &LocalRequest) -> Result<(), ClientError> {
        match self.request(request)? {
            LocalReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The agent's status: link state, binding, switches, domain
    /// registration, whether its clock is trusted and the outbox counters.
    pub fn status(&mut self) -> Result<StatusReply, ClientError> {
        match self.request(&LocalRequest::Status)? {
            LocalReply::Status(status) => Ok(*status),
            other => Err(unexpected(other)),
        }
    }

    /// The access list as the cloud sees it (the state report): binding,
    /// shares, switches and domain.
    pub fn list_access(&mut self) -> Result<StateReport, ClientError> {
        match self.request(&LocalRequest::ListAccess)? {
            LocalReply::Access(report) => Ok(*report),
            other => Err(unexpected(other)),
        }
    }

    /// Turns platform access on or off for a local user at level `by`. Only
    /// a device admin, asking through a process on the agent's admin list,
    /// may; anyone else gets [`ClientError::Refused`]. Off closes the cloud
    /// link until it is turned on again; local decisions go on.
    pub fn set_platform_access(
        &mut self,
        by: LocalLevel,
        enabled: bool,
    ) -> Result<(), ClientError> {
        self.done(&LocalRequest::SetPlatformAccess { by, enabled })
    }

    /// Local recovery: unbinds the device from its cloud account(s) for a
    /// local user at level `by`, as a recorder's local menu does. Only a
    /// device admin, asking through a process on the agent's admin list,
    /// may; anyone else (or an unbound device: `NotBound`) gets
    /// [`ClientError::Refused`]. The next state report tells the cloud.
    pub fn unbind(&mut self, by: LocalLevel) -> Result<(), ClientError> {
        self.done(&LocalRequest::Unbind { by })
    }

    /// Up to `max` newest audit entries, oldest first (the agent caps the
    /// count at `MAX_AUDIT_REPLY`).
    pub fn recent_audit(&mut self, max: u16) -> Result<Vec<AuditEntry>, ClientError> {
        match self.request(&LocalRequest::RecentAudit { max })? {
            LocalReply::Audit(entries) => Ok(entries.into_iter().collect()),
            other => Err(unexpected(other)),
        }
    }
}

impl LocalClient {
    /// Watches a session this process holds: if `principal` may do
    /// `action` on `channel` now, the session is registered under
    /// `session` (an id unique on this connection) and `Allow` is
    /// returned; the agent then sends a [`Notice`] the moment the decision
    /// turns to deny. A denied session is not registered (`Deny(reason)`).
    /// Over the limits, or a session id already in use: `Refused`.
    pub fn watch(
        &mut self,
        session: u32,
        principal: Principal,
        action: Action,
        channel: Option<u16>,
    ) -> Result<Decision, ClientError> {
        self.decision(Some(session), principal, action, channel)
    }

    /// The session ended: the agent stops watching it.
    pub fn unwatch(&mut self, session: u32) -> Result<(), ClientError> {
        self.done(&LocalRequest::Unwatch { session })
    }

    /// The next notice: one already received, or one that arrives within
    /// `wait` (`None` if none does). Call it when the descriptor is
    /// readable, and until it returns `None`, since a read can bring
    /// several notices at once. A closed connection is an error: every
    /// session watched on it must then be treated as revoked.
    pub fn next_notice(&mut self, wait: Duration) -> Result<Option<Notice>, ClientError> {
        if let Some(notice) = self.notices.pop_front() {
            return Ok(Some(notice));
        }
        if self.stream.buffer().is_empty() {
            self.stream
                .get_ref()
                .set_read_timeout(Some(wait.max(Duration::from_micros(1))))?;
            let ready = self.stream.fill_buf().map(|b| !b.is_empty());
            self.stream.get_ref().set_read_timeout(Some(self.timeout))?;
            match ready {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ClientError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.read_reply()? {
            LocalReply::Revoked { session, reason } => Ok(Some(Notice { session, reason })),
            _ => Err(ClientError::Unexpected),
        }
    }
}

impl AsRawFd for LocalClient {
    /// The connection's descriptor, for the process's own `poll` loop.
    fn as_raw_fd(&self) -> RawFd {
        self.stream.get_ref().as_raw_fd()
    }
}

fn unexpected(reply: LocalReply) -> ClientError {
    match reply {
        LocalReply::Error(reason) => ClientError::Refused(reason),
        _ => ClientError::Unexpected,
    }
}

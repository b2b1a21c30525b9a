//! The local-socket client library for the firmware's processes (web,
//! streaming and SDK servers) and the simulator. Blocking, so it fits any
//! process whether or not it runs an async runtime; one request at a time
//! per connection.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use protocol::access::{Action, Decision, LocalLevel, Principal};
use protocol::local::{
    decode_frame_body, encode_frame, frame_body_len, LocalReply, LocalRequest, StatusReply,
    FRAME_HEADER_LEN,
};
use protocol::messages::{AuditEntry, StateReport};
use protocol::Reason;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("local socket: {0}")]
    Io(#[from] io::Error),
    #[error("the agent's reply is malformed: {0}")]
    Malformed(protocol::DecodeError),
    #[error("the agent refused the request: {0}")]
    Refused(Reason),
    #[error("the agent answered with an unexpected reply")]
    Unexpected,
}

pub struct LocalClient {
    /// Replies are read through a small buffer: one system call usually
    /// brings a whole reply (header and body).
    stream: BufReader<UnixStream>,
}

impl LocalClient {
    /// Connects to the agent's socket; every reply must come within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<LocalClient, ClientError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(LocalClient {
            stream: BufReader::with_capacity(1024, stream),
        })
    }

    /// Sends one request and reads its reply.
    pub fn request(&mut self, request: &LocalRequest) -> Result<LocalReply, ClientError> {
        let frame = encode_frame(request).map_err(|e| {
            ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        })?;
        self.stream.get_mut().write_all(&frame)?;
        self.read_reply()
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
        match self.request(&LocalRequest::Authorize {
            principal,
            action,
            channel,
        })? {
            LocalReply::Decision(decision) => Ok(decision),
            other => Err(unexpected(other)),
        }
    }

    pub fn status(&mut self) -> Result<StatusReply, ClientError> {
        match self.request(&LocalRequest::Status)? {
            LocalReply::Status(status) => Ok(*status),
            other => Err(unexpected(other)),
        }
    }

    pub fn list_access(&mut self) -> Result<StateReport, ClientError> {
        match self.request(&LocalRequest::ListAccess)? {
            LocalReply::Access(report) => Ok(*report),
            other => Err(unexpected(other)),
        }
    }

    pub fn set_platform_access(
        &mut self,
        by: LocalLevel,
        enabled: bool,
    ) -> Result<(), ClientError> {
        match self.request(&LocalRequest::SetPlatformAccess { by, enabled })? {
            LocalReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn recent_audit(&mut self, max: u16) -> Result<Vec<AuditEntry>, ClientError> {
        match self.request(&LocalRequest::RecentAudit { max })? {
            LocalReply::Audit(entries) => Ok(entries.into_iter().collect()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: LocalReply) -> ClientError {
    match reply {
        LocalReply::Error(reason) => ClientError::Refused(reason),
        _ => ClientError::Unexpected,
    }
}

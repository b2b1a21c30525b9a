//! The local socket server: a Unix socket for the firmware's own processes.
//! Peers are checked against the uid allow-list, frames are size-checked
//! before their body is read, a bad frame gets an error reply (or, when the
//! framing itself is lost, a closed connection), and one client's trouble
//! never touches another client or the cloud link.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use hc_protocol::limits::{
    MAX_LOCAL_CLIENTS, MAX_LOCAL_CLIENTS_PER_UID, MAX_WATCHES_PER_CONNECTION,
};
use hc_protocol::local::{
    decode_frame_body, encode_frame, frame_body_len, LocalReply, LocalRequest, FRAME_HEADER_LEN,
};
use hc_protocol::Reason;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use super::clock::Clocks;
use super::device::Agent;
use crate::core::DeviceState;
use crate::store::RealFlash;

/// A connection that sends nothing for this long is closed, so idle or
/// stuck clients cannot hold the client slots forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A connection that watches sessions is closed only after this much
/// silence: a stream can last for days, and its process has no reason to
/// speak meanwhile.
const WATCHING_IDLE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// A new connection must send its first request within this time: a
/// process that opens connections and stays silent holds slots only
/// briefly.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Once a request began, the rest of it must follow within this time.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read ahead per client (a typical request is under 100 bytes).
const READ_BUFFER: usize = 1024;

/// What answers the requests: the agent. `peer_uid` is the client's uid
/// from the kernel (SO_PEERCRED), already on the allow-list; `connection`
/// numbers the connection (its watched sessions belong to it).
pub(crate) trait LocalService {
    /// Whether a process of `uid` may use the socket (the allow-list).
    fn allows(&self, uid: u32) -> bool;
    /// A connection opened: where its notices (revoked sessions) arrive.
    fn open(&self, connection: u32) -> mpsc::Receiver<LocalReply>;
    /// The reply to `request` from a process of uid `peer_uid`.
    fn serve(&self, request: LocalRequest, peer_uid: u32, connection: u32) -> LocalReply;
    /// Whether the connection watches sessions (it may then be idle for as
    /// long as its streams last).
    fn watching(&self, connection: u32) -> bool;
    /// The connection closed: its watched sessions end.
    fn close(&self, connection: u32);
}

/// Where the socket is and its mode.
pub(crate) struct LocalServerConfig {
    /// The socket file.
    pub(crate) path: PathBuf,
    /// The socket file's mode.
    pub(crate) mode: u32,
}

/// Binds the socket, replacing a stale socket file left by a previous run.
pub(crate) fn bind(config: &LocalServerConfig) -> io::Result<UnixListener> {
    remove_stale_socket(&config.path)?;
    if let Some(parent) = config.path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(&config.path)?;
    std::fs::set_permissions(&config.path, std::fs::Permissions::from_mode(config.mode))?;
    Ok(listener)
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Accepts clients forever; each is served by its own local task.
pub(crate) async fn serve<S: LocalService + 'static>(listener: UnixListener, service: Rc<S>) {
    let active = Rc::new(Cell::new(0usize));
    let per_uid: Rc<RefCell<HashMap<u32, usize>>> = Rc::default();
    let mut next_connection: u32 = 0;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off a moment
                // instead of spinning.
                warn!(error = %e, "local socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                warn!(error = %e, "local socket peer credentials unavailable");
                continue;
            }
        };
        if !service.allows(uid) {
            warn!(
                uid,
                "local socket client refused: uid not on the allow-list"
            );
            tokio::task::spawn_local(refuse(stream, Reason::PeerNotAllowed));
            continue;
        }
        let held = per_uid.borrow().get(&uid).copied().unwrap_or(0);
        if active.get() >= MAX_LOCAL_CLIENTS || held >= MAX_LOCAL_CLIENTS_PER_UID {
            warn!(
                uid,
                held,
                active = active.get(),
                "local socket client refused: too many clients (in all or for this uid)"
            );
            tokio::task::spawn_local(refuse(stream, Reason::Busy));
            continue;
        }
        active.set(active.get() + 1);
        *per_uid.borrow_mut().entry(uid).or_default() += 1;
        let active = active.clone();
        let per_uid = per_uid.clone();
        let service = service.clone();
        next_connection = next_connection.wrapping_add(1);
        let connection = next_connection;
        tokio::task::spawn_local(async move {
            let notices = service.open(connection);
            if let Err(e) = serve_client(stream, uid, connection, notices, &*service).await {
                debug!(uid, error = %e, "local socket client closed");
            }
            service.close(connection);
            active.set(active.get() - 1);
            let mut per_uid = per_uid.borrow_mut();
            if let Some(held) = per_uid.get_mut(&uid) {
                *held -= 1;
                if *held == 0 {
                    per_uid.remove(&uid);
                }
            }
        });
    }
}

async fn refuse(mut stream: UnixStream, reason: Reason) {
    if let Ok(frame) = encode_frame(&LocalReply::Error(reason)) {
        let _ = tokio::time::timeout(BODY_TIMEOUT, stream.write_all(&frame)).await;
    }
}

async fn serve_client<S: LocalService>(
    mut stream: UnixStream,
    uid: u32,
    connection: u32,
    mut notices: mpsc::Receiver<LocalReply>,
    service: &S,
) -> io::Result<()> {
    let (read_half, mut write_half) = stream.split();
    // One read usually brings a whole request (header and body), where
    // reading them straight from the socket takes two system calls.
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
    let mut body = Vec::new();
    let mut served = false;
    loop {
        // Idle between requests for up to IDLE_TIMEOUT (for as long as it
        // likes while it watches sessions); once a request has begun, all
        // of it (header included) must come within BODY_TIMEOUT, so a
        // client stalled mid-header is closed as soon as one stalled
        // mid-body. Notices are written between requests, never inside a
        // reply.
        let idle = if !served {
            FIRST_REQUEST_TIMEOUT
        } else if service.watching(connection) {
            WATCHING_IDLE_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        let request_begun = tokio::select! {
            biased;
            Some(notice) = notices.recv() => {
                write_reply(&mut write_half, &notice).await?;
                continue;
            }
            waiting = tokio::time::timeout(idle, async { reader.fill_buf().await.map(|b| !b.is_empty()) }) => {
                waiting.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle"))??
            }
        };
        if !request_begun {
            return Ok(());
        }
        let request = read_request(&mut reader, &mut body).await?;
        served = true;
        let reply = match request {
            Ok(request) => service.serve(request, uid, connection),
            Err(Framing::Malformed(reason)) => LocalReply::Error(reason),
            Err(Framing::Lost(reason)) => {
                // The framing cannot be trusted any more: answer and close.
                write_reply(&mut write_half, &LocalReply::Error(reason)).await?;
                return Ok(());
            }
        };
        write_reply(&mut write_half, &reply).await?;
    }
}

/// Why a request could not be taken.
enum Framing {
    /// The body does not decode; the next frame can still be read.
    Malformed(Reason),
    /// The header is bad: where the next frame starts is unknown.
    Lost(Reason),
}

/// Reads one request whose first byte has arrived, within BODY_TIMEOUT.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    body: &mut Vec<u8>,
) -> io::Result<Result<LocalRequest, Framing>> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    tokio::time::timeout(BODY_TIMEOUT, reader.read_exact(&mut header))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "frame header"))??;
    let len = match frame_body_len(header) {
        Ok(len) => len,
        Err(e) => {
            info!(error = %e, "local socket frame refused");
            return Ok(Err(Framing::Lost(e.reason())));
        }
    };
    body.resize(len, 0);
    tokio::time::timeout(BODY_TIMEOUT, reader.read_exact(body))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "frame body"))??;
    Ok(decode_frame_body::<LocalRequest>(body).map_err(|e| {
        info!(error = %e, "local socket request malformed");
        Framing::Malformed(e.reason())
    }))
}

async fn write_reply<W: AsyncWrite + Unpin>(stream: &mut W, reply: &LocalReply) -> io::Result<()> {
    let frame = encode_frame(reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    tokio::time::timeout(BODY_TIMEOUT, stream.write_all(&frame))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "reply"))?
}

/// Who may use the socket, and who of them may switch platform access
/// (uids, from the kernel).
pub(crate) struct Peers {
    pub(crate) allowed: Vec<u32>,
    pub(crate) admins: Vec<u32>,
}

/// The agent as the local socket server sees it, the signal that wakes
/// the event loop when a local request changed something it acts on, and
/// where each connection's notices go.
pub(crate) struct SharedService {
    pub(crate) agent: RefCell<Agent<RealFlash>>,
    pub(crate) changed: Notify,
    /// The clocks every event is timed by.
    pub(crate) clocks: Clocks,
    peers: RefCell<Peers>,
    /// Each open connection's notice queue. A connection gets at most one
    /// notice per session it watches (bounded per connection), so a full
    /// queue means a process that stopped reading: it is closed.
    notices: RefCell<HashMap<u32, mpsc::Sender<LocalReply>>>,
}

impl SharedService {
    /// The agent, served to the processes `peers` lets in, timed by
    /// `clocks`.
    pub(crate) fn new(agent: Agent<RealFlash>, peers: Peers, clocks: Clocks) -> Self {
        SharedService {
            agent: RefCell::new(agent),
            changed: Notify::new(),
            clocks,
            peers: RefCell::new(peers),
            notices: RefCell::new(HashMap::new()),
        }
    }

    /// The time decisions take now (see `Agent::now`): the one place the
    /// clocks are read for them.
    pub(crate) fn now(&self) -> u64 {
        self.agent.borrow_mut().now(self.clocks.read())
    }

    /// New allow and admin lists (SIGHUP), for connections from now on.
    pub(crate) fn set_peers(&self, peers: Peers) {
        *self.peers.borrow_mut() = peers;
    }

    /// Revokes every watched session whose decision is now deny and tells
    /// its connection. Called after anything that can change a decision.
    pub(crate) fn revoke_denied(&self, now: u64) {
        self.revoke_denied_in(None, now);
    }

    /// The same against `planned`, a state about to replace the agent's
    /// (`None`: the agent's own).
    pub(crate) fn revoke_denied_in(&self, planned: Option<&DeviceState>, now: u64) {
        let revoked = self.agent.borrow_mut().revoke_denied(planned, now);
        let mut notices = self.notices.borrow_mut();
        for r in revoked {
            let notice = LocalReply::Revoked {
                session: r.session,
                reason: r.reason,
            };
            let delivered = notices
                .get(&r.connection)
                .is_some_and(|queue| queue.try_send(notice).is_ok());
            if !delivered {
                // Dropping the sender ends the connection's notices; its
                // task then closes it, which the process sees as every
                // session revoked.
                warn!(
                    connection = r.connection,
                    "local client not reading its notices; closing it"
                );
                notices.remove(&r.connection);
            }
        }
    }
}

impl LocalService for SharedService {
    fn allows(&self, uid: u32) -> bool {
        self.peers.borrow().allowed.contains(&uid)
    }

    fn open(&self, connection: u32) -> mpsc::Receiver<LocalReply> {
        let (sender, receiver) = mpsc::channel(MAX_WATCHES_PER_CONNECTION);
        self.notices.borrow_mut().insert(connection, sender);
        receiver
    }

    fn serve(&self, request: LocalRequest, peer_uid: u32, connection: u32) -> LocalReply {
        let changes_link = matches!(
            request,
            LocalRequest::SetPlatformAccess { .. } | LocalRequest::Unbind { .. }
        );
        let may_switch = self.peers.borrow().admins.contains(&peer_uid);
        let now = self.now();
        let reply = self
            .agent
            .borrow_mut()
            .local_request(request, connection, may_switch, now);
        if changes_link {
            self.revoke_denied(now);
            self.changed.notify_one();
        }
        reply
    }

    fn watching(&self, connection: u32) -> bool {
        self.agent.borrow().watches_on(connection)
    }

    fn close(&self, connection: u32) {
        self.notices.borrow_mut().remove(&connection);
        self.agent.borrow_mut().connection_closed(connection);
    }
}

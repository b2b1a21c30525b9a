//! A TCP proxy on 127.0.0.1 between the agent and the broker that can cut
//! the network the way a dead link does: no FIN, no RST, sockets stay open,
//! nothing is forwarded ([`Mode::Blackhole`]). New connections made during
//! a blackhole are accepted and held; when forwarding resumes, whatever
//! both sides wrote in the meantime is delivered (as TCP retransmission
//! would once the link is back). [`Mode::Refuse`] closes new connections
//! at once (a link that answers with resets) and holds the old ones.
//!
//! Plain threads and blocking sockets with short timeouts; every thread
//! ends when the proxy is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward both ways.
    Forward = 0,
    /// Forward nothing, close nothing, accept and hold new connections.
    Blackhole = 1,
    /// Like `Blackhole` for open connections; new ones are closed at once.
    Refuse = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            0 => Mode::Forward,
            1 => Mode::Blackhole,
            _ => Mode::Refuse,
        }
    }
}

struct Shared {
    mode: AtomicU8,
    stop: AtomicBool,
    /// Cut (switch to this mode, if not Forward) right after the next
    /// chunk forwarded from the broker to the client.
    cut_after_next_reply: AtomicU8,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    /// When each refused connection came.
    refused_at: Mutex<Vec<Instant>>,
    /// When the last chunk went from the broker to the client.
    last_reply: Mutex<Option<Instant>>,
    /// When the proxy cut (blackholed) the last time.
    cut_at: Mutex<Option<Instant>>,
    /// The broker's first bytes on each connection are held this long
    /// (milliseconds) after the connection was opened: a slow broker.
    reply_delay_ms: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Forward as u8),
            stop: AtomicBool::new(false),
            cut_after_next_reply: AtomicU8::new(Mode::Forward as u8),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            refused_at: Mutex::new(Vec::new()),
            last_reply: Mutex::new(None),
            cut_at: Mutex::new(None),
            reply_delay_ms: AtomicU64::new(0),
        });
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let shared = shared.clone();
            let threads = threads.clone();
            std::thread::spawn(move || accept_loop(listener, upstream, shared, threads))
        };
        threads.lock().unwrap().push(accept);
        Proxy {
            addr,
            shared,
            threads,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    pub fn set_mode(&self, mode: Mode) {
        if mode != Mode::Forward && self.shared.mode() == Mode::Forward {
            *self.shared.cut_at.lock().unwrap() = Some(Instant::now());
        }
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Switches to `mode` (Blackhole or Refuse) right after the next chunk
    /// the broker sends to the client has been forwarded: with an idle link
    /// that chunk is the answer to a keep-alive ping, so the cut comes as
    /// long as possible before the client's next ping goes unanswered.
    pub fn cut_after_next_reply(&self, mode: Mode) {
        self.shared
            .cut_after_next_reply
            .store(mode as u8, Ordering::SeqCst);
    }

    /// From now on, on every new connection nothing from the broker (TLS
    /// handshake and CONNACK alike) reaches the client before `delay` has
    /// passed since the connection was opened: a broker slow to answer.
    pub fn delay_replies(&self, delay: Duration) {
        self.shared
            .reply_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// When the last cut happened.
    pub fn cut_at(&self) -> Option<Instant> {
        *self.shared.cut_at.lock().unwrap()
    }

    /// When the broker last sent the client anything.
    pub fn last_reply(&self) -> Option<Instant> {
        *self.shared.last_reply.lock().unwrap()
    }

    /// Connections the client opened and the proxy accepted (forwarded,
    /// held, or closed because the broker was down), and refused, so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// When each refused connection attempt came, oldest first.
    pub fn refused_at(&self) -> Vec<Instant> {
        self.shared.refused_at.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        if shared.mode() == Mode::Refuse {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            shared.refused_at.lock().unwrap().push(Instant::now());
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let pumps = [
            (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                false,
            ),
            (server, client, true),
        ];
        let mut handles = threads.lock().unwrap();
        let opened = Instant::now();
        for (from, to, is_reply) in pumps {
            let shared = shared.clone();
            handles.push(std::thread::spawn(move || {
                pump(from, to, is_reply, opened, shared)
            }));
        }
    }
}

/// Copies `from` to `to` while the mode is Forward. While it is not, reads
/// nothing (the peer's data waits in the kernel) and holds anything read
/// just before the cut.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    is_reply: bool,
    opened: Instant,
    shared: Arc<Shared>,
) {
    if is_reply {
        let delay = Duration::from_millis(shared.reply_delay_ms.load(Ordering::SeqCst));
        while opened.elapsed() < delay && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut held: Vec<u8> = Vec::new();
    let mut eof = false;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if shared.mode() != Mode::Forward {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if !held.is_empty() {
            if to.write_all(&held).is_err() {
                break;
            }
            held.clear();
        }
        if eof {
            let _ = to.shutdown(Shutdown::Write);
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => {
                if shared.mode() != Mode::Forward {
                    held.extend_from_slice(&buf[..n]);
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if is_reply {
                    *shared.last_reply.lock().unwrap() = Some(Instant::now());
                    let cut = shared
                        .cut_after_next_reply
                        .swap(Mode::Forward as u8, Ordering::SeqCst);
                    if cut != Mode::Forward as u8 {
                        *shared.cut_at.lock().unwrap() = Some(Instant::now());
                        shared.mode.store(cut, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    if !eof {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}

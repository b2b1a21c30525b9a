//! The local socket: a byte stream from a firmware process, cut into
//! frames (4-byte big-endian length, then the body) and served the way the
//! agent's local server does: a header over the limit is answered with an
//! error and closes the connection before any body byte is read; a body
//! that does not decode is answered with an error; a request is served by
//! a real `Agent` (in-memory flash) standing in one of the fixture states.
//! Every reply must fit a frame and decode back to itself.
//!
//! With the first input byte odd, the stream is read by the client side
//! instead: frames decoded as replies.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use hc_agent::core::domain::{Registrar, RegistrarPolicy};
use hc_agent::shell::device::Agent;
use hc_agent::store::StateStore;
use hc_fuzz::{keys, start_states, MemFlash, T0};
use hc_protocol::codec::DecodeError;
use hc_protocol::limits::MAX_LOCAL_FRAME_BYTES;
use hc_protocol::local::{
    decode_frame_body, encode_frame, frame_body_len, LocalReply, LocalRequest, FRAME_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

/// The state store writes through the flash, but creates its directory on
/// the real file system first.
fn state_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| std::env::temp_dir().join("hc-fuzz-state"))
}

/// Splits a stream into frames: `Ok(body)` for each complete frame, then
/// `Err` for a refused header (and nothing after it).
fn frames(mut stream: &[u8]) -> Vec<Result<&[u8], DecodeError>> {
    let mut out = Vec::new();
    while stream.len() >= FRAME_HEADER_LEN {
        let (header, rest) = stream.split_at(FRAME_HEADER_LEN);
        match frame_body_len(header.try_into().unwrap()) {
            Err(e) => {
                assert!(matches!(e, DecodeError::TooLarge { len, max }
                    if len > max && max == MAX_LOCAL_FRAME_BYTES));
                out.push(Err(e));
                break;
            }
            Ok(len) if len > rest.len() => break,
            Ok(len) => {
                out.push(Ok(&rest[..len]));
                stream = &rest[len..];
            }
        }
    }
    out
}

fn round_trip_reply(reply: &LocalReply) {
    let frame = encode_frame(reply).expect("every reply fits a frame");
    let len = frame_body_len(frame[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
    assert_eq!(len, frame.len() - FRAME_HEADER_LEN);
    assert_eq!(
        decode_frame_body::<LocalReply>(&frame[FRAME_HEADER_LEN..]).as_ref(),
        Ok(reply)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        for body in frames(stream).into_iter().flatten() {
            if let Ok(reply) = decode_frame_body::<LocalReply>(body) {
                round_trip_reply(&reply);
            }
        }
        return;
    }
    let state = start_states()[usize::from(mode >> 1) % 4].clone();
    let store = StateStore::new(MemFlash::default(), state_dir().clone(), "state");
    let registrar = Registrar::new(state.access.domain.clone(), RegistrarPolicy::default());
    let mut agent = Agent::new(state, store, keys().clone(), registrar);
    let frames = frames(stream);
    for (i, frame) in frames.into_iter().enumerate() {
        let now = T0 + 60 * i as u64;
        let reply = match frame {
            Err(e) => LocalReply::Error(e.reason()),
            Ok(body) => match decode_frame_body::<LocalRequest>(body) {
                Ok(request) => {
                    let was = agent.state().clone();
                    // The device admin's changes: the platform switch and
                    // the local unbind.
                    let is_switch = matches!(
                        request,
                        LocalRequest::SetPlatformAccess { .. } | LocalRequest::Unbind { .. }
                    );
                    // Every other frame comes from a process that is not
                    // on admin_uids: its change must be refused.
                    let may_switch = i % 2 == 0;
                    // Frames come over three connections, so watches of
                    // one are not the other's.
                    let connection = (i % 3) as u32;
                    let reply = agent.local_request(request, connection, may_switch, now);
                    if is_switch && !may_switch {
                        assert_eq!(
                            reply,
                            LocalReply::Error(hc_protocol::Reason::PeerNotAllowed)
                        );
                    }
                    // Only an admin change alters the access state, and
                    // only when it is answered Done.
                    if !(is_switch && reply == LocalReply::Done) {
                        assert_eq!(agent.state().access, was.access);
                    }
                    reply
                }
                Err(e) => LocalReply::Error(e.reason()),
            },
        };
        round_trip_reply(&reply);
        // Bounded whatever the frames, and a revoked session is gone.
        assert!(agent.watched_sessions() <= hc_protocol::limits::MAX_WATCHED_SESSIONS);
        for revoked in agent.revoke_denied(None, T0 + 60 * i as u64) {
            round_trip_reply(&LocalReply::Revoked {
                session: revoked.session,
                reason: revoked.reason,
            });
        }
    }
});

//! Every message body decoder, with the limit its receiver uses. The first
//! input byte picks the message type, the rest is the payload. Whatever
//! decodes must be a valid value: it encodes again within the limit, no
//! longer than the input, and decodes back to itself. Errors must be the
//! ones possible for input of that size.
#![no_main]

use core::fmt::Debug;

use hc_protocol::certificate::CertificateRequest;
use hc_protocol::codec::{self, DecodeError};
use hc_protocol::ddns::{DomainRegistration, DomainResult};
use hc_protocol::limits::{MAX_COMMAND_BYTES, MAX_LOCAL_FRAME_BYTES, MAX_MESSAGE_BYTES};
use hc_protocol::local::{LocalReply, LocalRequest, StatusReply};
use hc_protocol::messages::{Ack, AuditEntry, AuditReport, DeviceStatus, StateReport};
use hc_protocol::provisioning::{ProvisionAnswer, ProvisionRequest};
use hc_protocol::{Command, CommandBody};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn check<T>(bytes: &[u8], max: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match codec::decode::<T>(bytes, max) {
        Ok(value) => {
            let again = codec::encode(&value, max).expect("a decoded value encodes");
            assert!(again.len() <= bytes.len());
            assert_eq!(codec::decode::<T>(&again, max), Ok(value));
        }
        Err(DecodeError::TooLarge { len, max: m }) => {
            assert!(len > max && len == bytes.len() && m == max)
        }
        Err(DecodeError::TrailingBytes(n)) => {
            assert!(bytes.len() <= max && n > 0 && n < bytes.len())
        }
        Err(DecodeError::Malformed) => assert!(bytes.len() <= max),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    match kind % 15 {
        0 => check::<Command>(payload, MAX_COMMAND_BYTES),
        1 => check::<CommandBody>(payload, MAX_COMMAND_BYTES),
        2 => check::<Ack>(payload, MAX_MESSAGE_BYTES),
        3 => check::<StateReport>(payload, MAX_MESSAGE_BYTES),
        4 => check::<DeviceStatus>(payload, MAX_MESSAGE_BYTES),
        5 => check::<AuditReport>(payload, MAX_MESSAGE_BYTES),
        6 => check::<AuditEntry>(payload, MAX_MESSAGE_BYTES),
        7 => check::<DomainRegistration>(payload, MAX_MESSAGE_BYTES),
        8 => check::<DomainResult>(payload, MAX_MESSAGE_BYTES),
        9 => check::<LocalRequest>(payload, MAX_LOCAL_FRAME_BYTES),
        10 => check::<LocalReply>(payload, MAX_LOCAL_FRAME_BYTES),
        11 => check::<StatusReply>(payload, MAX_LOCAL_FRAME_BYTES),
        12 => check::<CertificateRequest>(payload, MAX_MESSAGE_BYTES),
        13 => check::<ProvisionRequest>(payload, MAX_MESSAGE_BYTES),
        _ => check::<ProvisionAnswer>(payload, MAX_MESSAGE_BYTES),
    }
});

//! The agent's reading of X.509 certificates it is sent (an issued
//! certificate in `InstallCertificate` or a provisioning answer,
//! `shell::cert_der`): any bytes give an answer or `None`, never a panic,
//! and what is read lies inside the input (the public key is a part of
//! it; a validity is two times from 1970 on).
#![no_main]

use hc_agent::shell::cert_der::{public_key, subject_common_names, validity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(key) = public_key(data) {
        let start = key.as_ptr() as usize;
        let input = data.as_ptr() as usize;
        assert!(start >= input && start + key.len() <= input + data.len());
    }
    if let Some((not_before, not_after)) = validity(data) {
        // Four-digit years at most: below 10000-01-01.
        assert!(not_before <= 253_402_300_800 && not_after <= 253_402_300_800);
    }
    if let Some(names) = subject_common_names(data) {
        assert!(names.iter().map(String::len).sum::<usize>() <= data.len() * 3);
    }
});

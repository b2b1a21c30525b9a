//! Every capacity in the system, in one place. Anything the network or a
//! local client can grow is bounded by one of these; input over a limit is
//! refused with a typed error and changes nothing already stored.

/// Largest command envelope accepted on the command topic, in bytes.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// Largest message of any other kind (acks, reports, registrations).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Largest local-socket frame body (after the 4-byte length prefix).
pub const MAX_LOCAL_FRAME_BYTES: usize = 16 * 1024;
/// Largest MQTT packet the device reads. Above the message limits, so that
/// an oversized command is read and refused with a reason (`TooLarge`)
/// instead of breaking the connection and being redelivered forever.
pub const MAX_MQTT_PACKET_BYTES: usize = 256 * 1024;
/// Largest state file payload on flash (the encoded device state).
pub const MAX_STATE_FILE_BYTES: usize = 64 * 1024;

/// Accounts a device can be shared with.
pub const MAX_SHARES: usize = 64;
/// Channels a recorder can have; channel numbers are `1..=MAX_CHANNELS`.
pub const MAX_CHANNELS: usize = 256;
/// Command public keys the device holds at once: the current one, the
/// next one during a rotation, and room for a standby key (a second
/// signing site, an emergency key) beside both.
pub const MAX_COMMAND_KEYS: usize = 4;
/// Bytes in a device certificate (DER) the cloud installs by command: a
/// P-256 certificate with a serial for subject is about 500.
pub const MAX_CERTIFICATE_BYTES: usize = 2048;
/// Outcomes of recent commands kept to answer redeliveries identically.
pub const RECENT_OUTCOMES: usize = 16;

/// Reports produced while offline and kept for sending after reconnect.
pub const MAX_QUEUED_REPORTS: usize = 64;
/// Audit entries the device keeps (oldest dropped first).
pub const MAX_AUDIT_ENTRIES: usize = 128;
/// Audit entries returned in one reply or report.
pub const MAX_AUDIT_REPLY: usize = 32;
/// External port mappings sent with a domain registration.
pub const MAX_PORT_MAPPINGS: usize = 8;
/// Local-socket peers (uids) allowed to connect.
pub const MAX_LOCAL_PEERS: usize = 16;
/// Local-socket clients served at once.
pub const MAX_LOCAL_CLIENTS: usize = 64;
/// Local-socket connections one uid may hold at once, so that one process
/// (or one uid's processes) cannot take every slot.
pub const MAX_LOCAL_CLIENTS_PER_UID: usize = 32;

/// Bytes in a device serial number.
pub const MAX_SERIAL_LEN: usize = 48;
/// Bytes in a cloud account id.
pub const MAX_ACCOUNT_ID_LEN: usize = 64;
/// Bytes in a region code.
pub const MAX_REGION_LEN: usize = 8;
/// Bytes in a device domain name (one DNS label).
pub const MAX_DOMAIN_LEN: usize = 63;
/// Bytes in the device's verification code (printed on its label).
pub const MAX_VERIFICATION_CODE_LEN: usize = 32;
/// Bytes in the agent version string.
pub const MAX_VERSION_LEN: usize = 24;

/// The broker's QoS 1 messages the device holds handled but not yet
/// acknowledged (its PUBACKs queued behind its own publishes). A broker that
/// sends more without waiting loses the connection and redelivers.
pub const MAX_UNACKED_INBOUND: usize = 64;

/// Sessions the local socket watches at once, over all connections (a
/// streaming server's live views and playbacks, configuration sessions).
pub const MAX_WATCHED_SESSIONS: usize = 1024;
/// Sessions one local-socket connection may watch.
pub const MAX_WATCHES_PER_CONNECTION: usize = 256;

/// Longest round trip, in milliseconds, from a time request to its answer
/// that the device accepts: a later answer is refused (it bounds the time
/// too loosely, and may have been held back on purpose).
pub const MAX_TIME_ROUND_TRIP_MS: u64 = 10_000;

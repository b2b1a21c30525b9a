/*
 * hc_agent_client.h - C99 client of the hc-agent local socket (SPEC §11).
 *
 * For the firmware's C and C++ processes (web, streaming and SDK servers)
 * that ask the agent before serving a stream or a setting. Compile
 * hc_agent_client.c into the process; there is nothing else to link.
 *
 * - No heap: every buffer is the caller's (hc_client holds its notice
 *   queue; the receive buffer is passed to hc_client_init).
 * - Every failure is a return code (enum hc_result, negative); nothing
 *   aborts, nothing is printed. Bytes from the socket are never trusted:
 *   a frame that does not decode exactly as SPEC §4/§5/§7 say is refused
 *   with HC_E_MALFORMED.
 * - Thread safety: no global or static mutable state. Functions on
 *   different hc_client objects may run in different threads at once; one
 *   hc_client must be used by one thread at a time (requests on one
 *   connection are answered in order). Open one connection per thread.
 * - Signals: writes use MSG_NOSIGNAL, so a closed agent never raises
 *   SIGPIPE. A call interrupted by a signal is resumed (EINTR).
 *
 * Wire format: each frame is a 4-byte big-endian length, then a postcard
 * body (SPEC §4: LEB128 varints, length-prefixed strings, enum indexes).
 * The encoders and decoders below are checked against the SPEC §14.6
 * vectors by agent/tests/c_client.rs.
 */
#ifndef HC_AGENT_CLIENT_H
#define HC_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits (SPEC §13). */
#define HC_FRAME_HEADER_LEN 4u
#define HC_MAX_FRAME_BYTES 16384u /* MAX_LOCAL_FRAME_BYTES */
#define HC_MAX_REQUEST_FRAME 96u  /* the largest request frame (Watch) is 81 bytes */
#define HC_MAX_SERIAL_LEN 48u
#define HC_MAX_ACCOUNT_ID_LEN 64u
#define HC_MAX_REGION_LEN 8u
#define HC_MAX_DOMAIN_LEN 63u
#define HC_MAX_VERSION_LEN 24u
#define HC_MAX_SHARES 64u
#define HC_MAX_COMMAND_KEYS 4u
#define HC_MAX_AUDIT_REPLY 32u
#define HC_MAX_WATCHES_PER_CONNECTION 256u
#define HC_CHANNEL_SET_BYTES 32u

/* Receive buffers: HC_RECV_SMALL holds every reply but Access and Audit;
 * HC_RECV_FULL holds any frame (a list_access needs it). */
#define HC_RECV_SMALL 256u
#define HC_RECV_FULL (HC_FRAME_HEADER_LEN + HC_MAX_FRAME_BYTES)

/* No channel (Option<u16>::None) where a channel is asked for. */
#define HC_NO_CHANNEL (-1L)

typedef enum hc_result {
    HC_OK = 0,
    HC_E_INVALID = -1,    /* an argument is invalid (NULL, bad id, unknown code) */
    HC_E_SPACE = -2,      /* a buffer is too small (the connection stays usable) */
    HC_E_MALFORMED = -3,  /* bytes that do not decode (SPEC reason Malformed) */
    HC_E_TOO_LARGE = -4,  /* a frame header over HC_MAX_FRAME_BYTES: connection closed */
    HC_E_CONNECT = -5,    /* connecting to the socket failed (see errno) */
    HC_E_IO = -6,         /* reading or writing failed: connection closed */
    HC_E_CLOSED = -7,     /* the agent closed the connection */
    HC_E_TIMEOUT = -8,    /* no (whole) reply in time: connection closed */
    HC_E_REFUSED = -9,    /* the agent answered Error(reason): hc_client.refused */
    HC_E_UNEXPECTED = -10 /* a reply of another kind than the request calls for */
} hc_result;

/* SPEC §12, by code. */
typedef enum hc_reason {
    HC_REASON_NOT_BOUND = 0,
    HC_REASON_NOT_A_PRINCIPAL = 1,
    HC_REASON_ACTION_NOT_GRANTED = 2,
    HC_REASON_CHANNEL_OUT_OF_SCOPE = 3,
    HC_REASON_NO_SUCH_CHANNEL = 4,
    HC_REASON_NOT_YET_VALID = 5,
    HC_REASON_EXPIRED = 6,
    HC_REASON_CLOCK_NOT_TRUSTED = 7,
    HC_REASON_CLOUD_SERVICE_DISABLED = 8,
    HC_REASON_PLATFORM_ACCESS_OFF = 9,
    HC_REASON_CROSS_REGION = 10,
    HC_REASON_NOT_OWNER = 11,
    HC_REASON_ALREADY_BOUND = 12,
    HC_REASON_BAD_VERIFICATION_PROOF = 13,
    HC_REASON_NOT_INSTALLER_MANAGED = 14,
    HC_REASON_NOT_ALLOWED_TO_DISABLE_CLOUD = 15,
    HC_REASON_EXCEEDS_OWNER_RIGHTS = 16,
    HC_REASON_CAPACITY_EXCEEDED = 17,
    HC_REASON_UNKNOWN_SHARE = 18,
    HC_REASON_INVALID_DOMAIN_NAME = 19,
    HC_REASON_REPLAYED_SEQUENCE = 20,
    HC_REASON_BAD_SIGNATURE = 21,
    HC_REASON_UNKNOWN_KEY_ID = 22,
    HC_REASON_WRONG_DEVICE = 23,
    HC_REASON_MALFORMED = 24,
    HC_REASON_TOO_LARGE = 25,
    HC_REASON_INVALID_VALIDITY = 26,
    HC_REASON_STORAGE_FAILED = 27,
    HC_REASON_PEER_NOT_ALLOWED = 28,
    HC_REASON_NO_INSTALLER = 29,
    HC_REASON_UNSUPPORTED_VERSION = 30,
    HC_REASON_BUSY = 31,
    HC_REASON_ALREADY_A_PRINCIPAL = 32,
    HC_REASON_SESSION_EXISTS = 33,
    HC_REASON_EMPTY_SHARE = 34,
    HC_REASON_OTHER_INSTALLER = 35,
    HC_REASON_UNEXPECTED_TIME_ANSWER = 36,
    HC_REASON_LATE_TIME_ANSWER = 37,
    HC_REASON_STATE_BEHIND = 38,
    HC_REASON_COMMAND_KEY_ID_IN_USE = 39,
    HC_REASON_KEY_REMOVES_ITSELF = 40,
    HC_REASON_KEY_NOT_HELD = 41,
    HC_REASON_CERTIFICATE_NOT_TRUSTED = 42,
    HC_REASON_CERTIFICATE_NOT_FOR_DEVICE = 43,
    HC_REASON_CERTIFICATE_NOT_REQUESTED = 44,
    HC_REASON_COUNT = 45
} hc_reason;

/* SPEC §7.2.1, by code. */
typedef enum hc_action {
    HC_ACTION_LIVE_VIEW = 0,
    HC_ACTION_PLAYBACK = 1,
    HC_ACTION_PTZ = 2,
    HC_ACTION_TWO_WAY_AUDIO = 3,
    HC_ACTION_ALARM_NOTIFICATIONS = 4,
    HC_ACTION_CONFIG_READ = 5,
    HC_ACTION_CONFIG_WRITE = 6,
    HC_ACTION_SITE_INFO_MANAGEMENT = 7,
    HC_ACTION_SHARE_MANAGEMENT = 8,
    HC_ACTION_INSTALLER_MANAGEMENT = 9,
    HC_ACTION_CLOUD_SERVICE_SWITCH = 10,
    HC_ACTION_PLATFORM_ACCESS_SWITCH = 11,
    HC_ACTION_UNBIND = 12,
    HC_ACTION_DOMAIN_MANAGEMENT = 13,
    HC_ACTION_COUNT = 14
} hc_action;

/* CommandKind values in audit entries (SPEC §7.1.2): Bind 0 .. RestoreState 16,
 * AddCommandKey 17, RemoveCommandKey 18. */
#define HC_COMMAND_KIND_COUNT 19

typedef enum hc_level { HC_LEVEL_ADMIN = 0, HC_LEVEL_OPERATOR = 1, HC_LEVEL_GUEST = 2 } hc_level;

typedef enum hc_principal_kind { HC_PRINCIPAL_CLOUD = 0, HC_PRINCIPAL_LOCAL = 1 } hc_principal_kind;

/* Who asks: a cloud account (account: NUL-terminated AccountId, SPEC §5)
 * or a local user at a level. */
typedef struct hc_principal {
    hc_principal_kind kind;
    const char *account; /* HC_PRINCIPAL_CLOUD */
    hc_level level;      /* HC_PRINCIPAL_LOCAL */
} hc_principal;

typedef struct hc_decision {
    int allowed;       /* 1: Allow; 0: Deny(reason) */
    hc_reason reason;  /* when denied */
} hc_decision;

/* A watched session was revoked: it must stop now. */
typedef struct hc_notice {
    uint32_t session;
    hc_reason reason;
} hc_notice;

typedef enum hc_link { HC_LINK_CONNECTED = 0, HC_LINK_CONNECTING = 1, HC_LINK_DISABLED = 2 } hc_link;

typedef enum hc_registration_state {
    HC_REG_NOT_REGISTERED = 0,
    HC_REG_PENDING = 1,
    HC_REG_REGISTERED = 2,
    HC_REG_NAME_TAKEN = 3,
    HC_REG_INVALID = 4
} hc_registration_state;

typedef struct hc_registration {
    uint32_t state;      /* hc_registration_state */
    uint64_t expires_at; /* HC_REG_REGISTERED only */
} hc_registration;

/* Option<i64>: the wall clock's offset from signed time, in milliseconds
 * (positive: the wall clock is ahead); absent before the first signed time
 * answer since the agent started (SPEC §8.4). */
typedef struct hc_clock_offset {
    int present;
    int64_t ms;
} hc_clock_offset;

/* When the device certificate in use ends, Unix seconds; absent without
 * TLS (SPEC §6.6). */
typedef struct hc_cert_expiry {
    int present;
    uint64_t not_after;
} hc_cert_expiry;

/* The ids of the command keys the device holds, ascending (SPEC §6.2). */
typedef struct hc_key_ids {
    size_t count;
    uint8_t ids[HC_MAX_COMMAND_KEYS];
} hc_key_ids;

/* StatusReply (SPEC §7.5), booleans as 0/1. */
typedef struct hc_status_reply {
    char serial[HC_MAX_SERIAL_LEN + 1];
    uint32_t link; /* hc_link */
    uint8_t bound;
    uint8_t handed_over;
    uint8_t cloud_service;
    uint8_t platform_access;
    char domain[HC_MAX_DOMAIN_LEN + 1];
    hc_registration registration;
    uint64_t last_seq;
    uint8_t clock_trusted;
    uint32_t reports_queued;
    uint32_t reports_dropped;
    hc_clock_offset clock_offset; /* the wall clock's offset from trusted time */
    hc_key_ids command_keys;      /* the cloud signs with one of these */
    hc_cert_expiry certificate;   /* renewed before it ends */
} hc_status_reply;

typedef struct hc_account_ref {
    char id[HC_MAX_ACCOUNT_ID_LEN + 1];
    char region[HC_MAX_REGION_LEN + 1];
} hc_account_ref;

typedef struct hc_validity {
    int present; /* 0: no time limit */
    uint64_t not_before;
    uint64_t not_after;
} hc_validity;

typedef struct hc_grant {
    int granted;          /* Option<Grant>: 0 not granted */
    hc_validity validity; /* the grant's window */
} hc_grant;

typedef struct hc_installer_grants {
    hc_grant site_info, configuration, live_view, playback;
    int may_disable_cloud;
} hc_installer_grants;

typedef struct hc_share {
    hc_account_ref account;
    uint16_t permissions; /* bit n: action code n */
    int all_channels;     /* 1: ChannelScope::All; 0: channels below */
    uint8_t channels[HC_CHANNEL_SET_BYTES];
    hc_validity validity;
} hc_share;

typedef enum hc_binding { HC_UNBOUND = 0, HC_INSTALLER_MANAGED = 1, HC_OWNED = 2 } hc_binding;

/* StateReport (SPEC §7.3), the reply to list_access (about 9 KB). */
typedef struct hc_access {
    char serial[HC_MAX_SERIAL_LEN + 1];
    char agent_version[HC_MAX_VERSION_LEN + 1];
    char region[HC_MAX_REGION_LEN + 1];
    uint16_t channel_count;
    uint32_t binding;         /* hc_binding */
    hc_account_ref owner;     /* HC_OWNED */
    int has_installer;        /* HC_INSTALLER_MANAGED, or HC_OWNED with one */
    hc_account_ref installer;
    hc_installer_grants installer_grants; /* HC_OWNED */
    size_t share_count;
    hc_share shares[HC_MAX_SHARES];
    int cloud_service;
    int platform_access;
    char domain[HC_MAX_DOMAIN_LEN + 1];
    uint64_t last_seq;
    uint64_t trusted_time_floor;
    uint32_t reports_dropped;
    hc_clock_offset clock_offset; /* as of the last accepted time answer */
    uint32_t sessions_contested;  /* since the agent started */
    uint32_t sessions_lost;
    uint8_t behind; /* fell back to an older state: cloud principals denied until restored */
    hc_key_ids command_keys; /* the cloud signs with one of these */
    hc_cert_expiry certificate; /* renewed before it ends */
} hc_access;

typedef enum hc_audit_actor { HC_ACTOR_CLOUD = 0, HC_ACTOR_LOCAL = 1, HC_ACTOR_DEVICE = 2 } hc_audit_actor;
typedef enum hc_audit_event {
    HC_EVENT_DECISION = 0,
    HC_EVENT_COMMAND = 1,
    HC_EVENT_PLATFORM_ACCESS = 2,
    HC_EVENT_ENVELOPE_REFUSED = 3,
    HC_EVENT_LOCAL_UNBIND = 4,
    HC_EVENT_SESSION_CONTESTED = 5,
    HC_EVENT_SESSION_LOST = 6
} hc_audit_event;

/* AuditEntry (SPEC §7.3). */
typedef struct hc_audit_entry {
    uint64_t at;
    uint32_t actor;                          /* hc_audit_actor */
    char account[HC_MAX_ACCOUNT_ID_LEN + 1]; /* HC_ACTOR_CLOUD */
    uint32_t level;                          /* HC_ACTOR_LOCAL */
    uint32_t event;                          /* hc_audit_event */
    uint32_t action;                         /* HC_EVENT_DECISION */
    long channel;                            /* HC_EVENT_DECISION, or HC_NO_CHANNEL */
    uint32_t command_kind;                   /* HC_EVENT_COMMAND (CommandKind index) */
    uint64_t seq;                            /* HC_EVENT_COMMAND */
    int enabled;                             /* HC_EVENT_PLATFORM_ACCESS */
    int refused;                             /* outcome: 0 Accepted, 1 Refused(reason) */
    hc_reason reason;
} hc_audit_entry;

typedef struct hc_audit {
    size_t count;
    hc_audit_entry entries[HC_MAX_AUDIT_REPLY];
} hc_audit;

typedef enum hc_reply_kind {
    HC_REPLY_DECISION = 0,
    HC_REPLY_STATUS = 1,
    HC_REPLY_ACCESS = 2,
    HC_REPLY_AUDIT = 3,
    HC_REPLY_DONE = 4,
    HC_REPLY_ERROR = 5,
    HC_REPLY_REVOKED = 6 /* a notice, never a reply to a request */
} hc_reply_kind;

/* A decoded LocalReply. Set access/audit to storage before decoding an
 * Access/Audit reply; with access NULL an Access reply is HC_E_SPACE,
 * with audit NULL an Audit reply is validated and not kept. */
typedef struct hc_reply {
    hc_reply_kind kind;
    hc_decision decision;  /* HC_REPLY_DECISION */
    hc_reason error;       /* HC_REPLY_ERROR */
    hc_notice revoked;     /* HC_REPLY_REVOKED */
    hc_status_reply status; /* HC_REPLY_STATUS */
    hc_access *access;     /* HC_REPLY_ACCESS */
    hc_audit *audit;       /* HC_REPLY_AUDIT */
} hc_reply;

/* Names, for logs: "ChannelOutOfScope", "LiveView", "ok" ... Never NULL. */
const char *hc_reason_name(int reason);
const char *hc_action_name(int action);
const char *hc_result_text(int result);

/* ---- Encoding: each writes one whole request frame (header included)
 * into buf (cap bytes; HC_MAX_REQUEST_FRAME always suffices) and sets
 * *len. channel: 0..65535, or HC_NO_CHANNEL. */
int hc_encode_authorize(uint8_t *buf, size_t cap, size_t *len, const hc_principal *who,
                        hc_action action, long channel);
int hc_encode_status(uint8_t *buf, size_t cap, size_t *len);
int hc_encode_list_access(uint8_t *buf, size_t cap, size_t *len);
int hc_encode_set_platform_access(uint8_t *buf, size_t cap, size_t *len, hc_level by, int enabled);
int hc_encode_recent_audit(uint8_t *buf, size_t cap, size_t *len, uint16_t max);
int hc_encode_watch(uint8_t *buf, size_t cap, size_t *len, uint32_t session, const hc_principal *who,
                    hc_action action, long channel);
int hc_encode_unwatch(uint8_t *buf, size_t cap, size_t *len, uint32_t session);
int hc_encode_unbind(uint8_t *buf, size_t cap, size_t *len, hc_level by);

/* ---- Decoding. The header's body length, refused (HC_E_TOO_LARGE) over
 * HC_MAX_FRAME_BYTES. */
int hc_decode_frame_header(const uint8_t header[HC_FRAME_HEADER_LEN], size_t *body_len);
/* One LocalReply body, exactly (no byte left over). */
int hc_decode_reply(const uint8_t *body, size_t len, hc_reply *out);

/* ---- The connection. */
typedef struct hc_client {
    int fd;             /* -1 when closed */
    int timeout_ms;     /* for each whole reply */
    uint8_t *buf;       /* receive buffer (caller's) */
    size_t buf_len;
    hc_reason refused;  /* the reason of the last HC_E_REFUSED */
    /* Notices that arrived while a reply was awaited, oldest first. */
    hc_notice notices[HC_MAX_WATCHES_PER_CONNECTION];
    size_t notice_head;
    size_t notice_count;
} hc_client;

/* Prepares c (not connected) with a receive buffer of at least
 * HC_RECV_SMALL bytes (HC_RECV_FULL for list_access and audit). */
int hc_client_init(hc_client *c, uint8_t *recv_buf, size_t recv_len);
/* Connects to the agent's socket; every reply must come within timeout_ms. */
int hc_connect(hc_client *c, const char *socket_path, int timeout_ms);
/* The descriptor, for the process's own poll loop (readable: call
 * hc_next_notice). -1 when not connected. */
int hc_fd(const hc_client *c);
void hc_close(hc_client *c);

/* Sends a whole request frame and reads its reply (notices on the way are
 * queued). HC_OK with the reply decoded, whatever its kind. */
int hc_call(hc_client *c, const uint8_t *frame, size_t frame_len, hc_reply *reply);

/* May who do action on channel now? HC_OK with *out set. */
int hc_authorize(hc_client *c, const hc_principal *who, hc_action action, long channel,
                 hc_decision *out);
int hc_status(hc_client *c, hc_status_reply *out);
/* Needs a receive buffer of HC_RECV_FULL bytes (else HC_E_SPACE). */
int hc_list_access(hc_client *c, hc_access *out);
int hc_recent_audit(hc_client *c, uint16_t max, hc_audit *out);
/* Device admin only, from a process on the agent's admin list; else
 * HC_E_REFUSED with c->refused (PeerNotAllowed, ActionNotGranted). */
int hc_set_platform_access(hc_client *c, hc_level by, int enabled);
/* Watches a session: HC_OK with out->allowed 1 when watched, 0 (and the
 * reason) when denied and not watched; HC_E_REFUSED (SessionExists,
 * CapacityExceeded) otherwise. */
int hc_watch(hc_client *c, uint32_t session, const hc_principal *who, hc_action action,
             long channel, hc_decision *out);
int hc_unwatch(hc_client *c, uint32_t session);
/* Unbinds the device from its cloud account (the local menu's recovery):
 * device admin only, from a process on the agent's admin list; else
 * HC_E_REFUSED with c->refused. */
int hc_unbind(hc_client *c, hc_level by);
/* The next notice: a queued one, or one arriving within wait_ms (0: do
 * not wait). HC_OK with *out; HC_E_TIMEOUT when none; HC_E_CLOSED and
 * other errors: the connection is gone, so every session watched on it
 * must be treated as revoked. */
int hc_next_notice(hc_client *c, int wait_ms, hc_notice *out);

#ifdef __cplusplus
}
#endif

#endif /* HC_AGENT_CLIENT_H */

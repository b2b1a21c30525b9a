/*
 * hc_agent_client.c - the hc-agent local-socket client (see the header).
 * Three parts: the postcard encoder of requests, the decoder of replies
 * (every rule of SPEC §4/§5 checked, nothing trusted), and the blocking
 * connection with a deadline per reply.
 */
#define _POSIX_C_SOURCE 200809L

#include "hc_agent_client.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ names */

static const char *const reason_names[HC_REASON_COUNT] = {
    "NotBound", "NotAPrincipal", "ActionNotGranted", "ChannelOutOfScope", "NoSuchChannel",
    "NotYetValid", "Expired", "ClockNotTrusted", "CloudServiceDisabled", "PlatformAccessOff",
    "CrossRegion", "NotOwner", "AlreadyBound", "BadVerificationProof", "NotInstallerManaged",
    "NotAllowedToDisableCloud", "ExceedsOwnerRights", "CapacityExceeded", "UnknownShare",
    "InvalidDomainName", "ReplayedSequence", "BadSignature", "UnknownKeyId", "WrongDevice",
    "Malformed", "TooLarge", "InvalidValidity", "StorageFailed", "PeerNotAllowed", "NoInstaller",
    "UnsupportedVersion", "Busy", "AlreadyAPrincipal", "SessionExists", "EmptyShare",
    "OtherInstaller", "UnexpectedTimeAnswer", "LateTimeAnswer", "StateBehind",
    "CommandKeyIdInUse", "KeyRemovesItself", "KeyNotHeld", "CertificateNotTrusted",
    "CertificateNotForDevice", "CertificateNotRequested"};

static const char *const action_names[HC_ACTION_COUNT] = {
    "LiveView", "Playback", "Ptz", "TwoWayAudio", "AlarmNotifications", "ConfigRead",
    "ConfigWrite", "SiteInfoManagement", "ShareManagement", "InstallerManagement",
    "CloudServiceSwitch", "PlatformAccessSwitch", "Unbind", "DomainManagement"};

const char *hc_reason_name(int reason)
{
    return reason >= 0 && reason < HC_REASON_COUNT ? reason_names[reason] : "unknown";
}

const char *hc_action_name(int action)
{
    return action >= 0 && action < HC_ACTION_COUNT ? action_names[action] : "unknown";
}

const char *hc_result_text(int result)
{
    switch (result) {
    case HC_OK: return "ok";
    case HC_E_INVALID: return "invalid argument";
    case HC_E_SPACE: return "buffer too small";
    case HC_E_MALFORMED: return "malformed frame";
    case HC_E_TOO_LARGE: return "frame too large";
    case HC_E_CONNECT: return "cannot connect to the agent";
    case HC_E_IO: return "local socket error";
    case HC_E_CLOSED: return "the agent closed the connection";
    case HC_E_TIMEOUT: return "timed out";
    case HC_E_REFUSED: return "the agent refused the request";
    case HC_E_UNEXPECTED: return "unexpected reply";
    default: return "unknown result";
    }
}

/* --------------------------------------------------------- identifier rules */

enum text_rule { RULE_SERIAL, RULE_REGION, RULE_ACCOUNT, RULE_DOMAIN, RULE_TEXT };

static int serial_char(uint8_t b)
{
    return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || b == '-' ||
           b == '_';
}

/* UTF-8 without control characters (Unicode Cc: U+0000-001F, U+007F-009F). */
static int valid_text(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp;
        size_t extra, k;
        if (b < 0x80) {
            cp = b;
            extra = 0;
        } else if (b >= 0xC2 && b <= 0xDF) {
            cp = b & 0x1Fu;
            extra = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            cp = b & 0x0Fu;
            extra = 2;
        } else if (b >= 0xF0 && b <= 0xF4) {
            cp = b & 0x07u;
            extra = 3;
        } else {
            return 0;
        }
        if (extra > n - i - 1)
            return 0;
        for (k = 1; k <= extra; k++) {
            uint8_t c = s[i + k];
            if ((c & 0xC0u) != 0x80u)
                return 0;
            cp = (cp << 6) | (c & 0x3Fu);
        }
        if ((extra == 2 && cp < 0x800u) || (extra == 3 && (cp < 0x10000u || cp > 0x10FFFFu)) ||
            (cp >= 0xD800u && cp <= 0xDFFFu))
            return 0;
        if (cp < 0x20u || (cp >= 0x7Fu && cp <= 0x9Fu))
            return 0;
        i += extra + 1;
    }
    return 1;
}

static int valid_string(const uint8_t *s, size_t n, enum text_rule rule)
{
    size_t i;
    if (rule == RULE_TEXT)
        return valid_text(s, n);
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        uint8_t b = s[i];
        int ok;
        switch (rule) {
        case RULE_SERIAL:
        case RULE_REGION: ok = serial_char(b); break;
        case RULE_ACCOUNT: ok = b >= 0x21 && b <= 0x7E; break;
        default: ok = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || b == '-'; break;
        }
        if (!ok)
            return 0;
    }
    if (rule == RULE_DOMAIN && (s[0] == '-' || s[n - 1] == '-'))
        return 0;
    return 1;
}

/* ------------------------------------------------------------------ encoder */

typedef struct writer {
    uint8_t *p;
    size_t cap;
    size_t n;
    int overflow;
} writer;

static void put_byte(writer *w, uint8_t b)
{
    if (w->n < w->cap)
        w->p[w->n++] = b;
    else
        w->overflow = 1;
}

static void put_varint(writer *w, uint64_t v)
{
    while (v >= 0x80u) {
        put_byte(w, (uint8_t)(v | 0x80u));
        v >>= 7;
    }
    put_byte(w, (uint8_t)v);
}

static int put_principal(writer *w, const hc_principal *who)
{
    if (who == NULL)
        return HC_E_INVALID;
    if (who->kind == HC_PRINCIPAL_CLOUD) {
        size_t len, i;
        if (who->account == NULL)
            return HC_E_INVALID;
        len = strlen(who->account);
        if (len > HC_MAX_ACCOUNT_ID_LEN ||
            !valid_string((const uint8_t *)who->account, len, RULE_ACCOUNT))
            return HC_E_INVALID;
        put_varint(w, 0);
        put_varint(w, len);
        for (i = 0; i < len; i++)
            put_byte(w, (uint8_t)who->account[i]);
        return HC_OK;
    }
    if (who->kind == HC_PRINCIPAL_LOCAL && (unsigned)who->level <= HC_LEVEL_GUEST) {
        put_varint(w, 1);
        put_varint(w, (uint64_t)who->level);
        return HC_OK;
    }
    return HC_E_INVALID;
}

static int put_action_channel(writer *w, hc_action action, long channel)
{
    if ((unsigned)action >= HC_ACTION_COUNT)
        return HC_E_INVALID;
    put_varint(w, (uint64_t)action);
    if (channel == HC_NO_CHANNEL) {
        put_byte(w, 0);
    } else if (channel >= 0 && channel <= 0xFFFF) {
        put_byte(w, 1);
        put_varint(w, (uint64_t)channel);
    } else {
        return HC_E_INVALID;
    }
    return HC_OK;
}

static void frame_begin(writer *w, uint8_t *buf, size_t cap)
{
    w->p = buf;
    w->cap = cap;
    w->n = 0;
    w->overflow = 0;
    put_byte(w, 0);
    put_byte(w, 0);
    put_byte(w, 0);
    put_byte(w, 0);
}

static int frame_end(writer *w, int status, size_t *len)
{
    size_t body;
    if (status != HC_OK)
        return status;
    if (w->overflow)
        return HC_E_SPACE;
    body = w->n - HC_FRAME_HEADER_LEN;
    w->p[0] = (uint8_t)(body >> 24);
    w->p[1] = (uint8_t)(body >> 16);
    w->p[2] = (uint8_t)(body >> 8);
    w->p[3] = (uint8_t)body;
    *len = w->n;
    return HC_OK;
}

#define CHECK_OUT(buf, len)                                                                        \
    do {                                                                                           \
        if ((buf) == NULL || (len) == NULL)                                                        \
            return HC_E_INVALID;                                                                   \
    } while (0)

/* Authorize (variant 0) and Watch (variant 5, with its session first) ask
 * about the same principal, action and channel. */
static int encode_query(uint8_t *buf, size_t cap, size_t *len, uint32_t variant,
                        const uint32_t *session, const hc_principal *who, hc_action action,
                        long channel)
{
    writer w;
    int r;
    CHECK_OUT(buf, len);
    frame_begin(&w, buf, cap);
    put_varint(&w, variant);
    if (session != NULL)
        put_varint(&w, *session);
    r = put_principal(&w, who);
    if (r == HC_OK)
        r = put_action_channel(&w, action, channel);
    return frame_end(&w, r, len);
}

int hc_encode_authorize(uint8_t *buf, size_t cap, size_t *len, const hc_principal *who,
                        hc_action action, long channel)
{
    return encode_query(buf, cap, len, 0, NULL, who, action, channel);
}

static int encode_unit(uint8_t *buf, size_t cap, size_t *len, uint32_t variant)
{
    writer w;
    CHECK_OUT(buf, len);
    frame_begin(&w, buf, cap);
    put_varint(&w, variant);
    return frame_end(&w, HC_OK, len);
}

int hc_encode_status(uint8_t *buf, size_t cap, size_t *len)
{
    return encode_unit(buf, cap, len, 1);
}

int hc_encode_list_access(uint8_t *buf, size_t cap, size_t *len)
{
    return encode_unit(buf, cap, len, 2);
}

int hc_encode_set_platform_access(uint8_t *buf, size_t cap, size_t *len, hc_level by, int enabled)
{
    writer w;
    CHECK_OUT(buf, len);
    if ((unsigned)by > HC_LEVEL_GUEST)
        return HC_E_INVALID;
    frame_begin(&w, buf, cap);
    put_varint(&w, 3);
    put_varint(&w, (uint64_t)by);
    put_byte(&w, enabled ? 1 : 0);
    return frame_end(&w, HC_OK, len);
}

/* A variant carrying one varint (a count, a session, a level). */
static int encode_with_varint(uint8_t *buf, size_t cap, size_t *len, uint32_t variant,
                              uint64_t value)
{
    writer w;
    CHECK_OUT(buf, len);
    frame_begin(&w, buf, cap);
    put_varint(&w, variant);
    put_varint(&w, value);
    return frame_end(&w, HC_OK, len);
}

int hc_encode_recent_audit(uint8_t *buf, size_t cap, size_t *len, uint16_t max)
{
    return encode_with_varint(buf, cap, len, 4, max);
}

int hc_encode_watch(uint8_t *buf, size_t cap, size_t *len, uint32_t session, const hc_principal *who,
                    hc_action action, long channel)
{
    return encode_query(buf, cap, len, 5, &session, who, action, channel);
}

int hc_encode_unwatch(uint8_t *buf, size_t cap, size_t *len, uint32_t session)
{
    return encode_with_varint(buf, cap, len, 6, session);
}

int hc_encode_unbind(uint8_t *buf, size_t cap, size_t *len, hc_level by)
{
    if ((unsigned)by > HC_LEVEL_GUEST)
        return HC_E_INVALID;
    return encode_with_varint(buf, cap, len, 7, (uint64_t)by);
}

/* ------------------------------------------------------------------ decoder */

typedef struct reader {
    const uint8_t *p;
    size_t n;
    size_t i;
} reader;

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int try_r_ = (expr);                                                                       \
        if (try_r_ != HC_OK)                                                                       \
            return try_r_;                                                                         \
    } while (0)

static int get_byte(reader *r, uint8_t *out)
{
    if (r->i >= r->n)
        return HC_E_MALFORMED;
    *out = r->p[r->i++];
    return HC_OK;
}

/* An unsigned LEB128 varint of a `bits`-bit type: at most ceil(bits/7)
 * bytes, and in the last possible byte only the bits that fit (SPEC §4). */
static int get_varint(reader *r, unsigned bits, uint64_t *out)
{
    unsigned max_bytes = (bits + 6) / 7, k;
    uint64_t v = 0;
    for (k = 0; k < max_bytes; k++) {
        uint8_t b;
        TRY(get_byte(r, &b));
        if (k == max_bytes - 1 && (b >> (bits - 7 * k)) != 0)
            return HC_E_MALFORMED;
        v |= (uint64_t)(b & 0x7Fu) << (7 * k);
        if ((b & 0x80u) == 0) {
            *out = v;
            return HC_OK;
        }
    }
    return HC_E_MALFORMED;
}

static int get_u16(reader *r, uint16_t *out)
{
    uint64_t v;
    TRY(get_varint(r, 16, &v));
    *out = (uint16_t)v;
    return HC_OK;
}

static int get_u32(reader *r, uint32_t *out)
{
    uint64_t v;
    TRY(get_varint(r, 32, &v));
    *out = (uint32_t)v;
    return HC_OK;
}

static int get_u64(reader *r, uint64_t *out)
{
    return get_varint(r, 64, out);
}

/* An enum index below `count`. */
static int get_enum(reader *r, uint32_t count, uint32_t *out)
{
    TRY(get_u32(r, out));
    return *out < count ? HC_OK : HC_E_MALFORMED;
}

/* Option<i64>: the tag, then a ZigZag varint (SPEC §5). */
static int get_clock_offset(reader *r, hc_clock_offset *out);
static int get_cert_expiry(reader *r, hc_cert_expiry *out);

/* A bool, or an Option's tag: 0 or 1, nothing else. */
static int get_flag(reader *r, int *out)
{
    uint8_t b;
    TRY(get_byte(r, &b));
    if (b > 1)
        return HC_E_MALFORMED;
    *out = b;
    return HC_OK;
}

static int get_flag8(reader *r, uint8_t *out)
{
    int v;
    TRY(get_flag(r, &v));
    *out = (uint8_t)v;
    return HC_OK;
}

/* A string of at most `max` bytes under `rule`, copied NUL-terminated into
 * out (max + 1 bytes). */
static int get_string(reader *r, size_t max, enum text_rule rule, char *out)
{
    uint32_t len;
    TRY(get_u32(r, &len));
    if (len > max || len > r->n - r->i)
        return HC_E_MALFORMED;
    if (!valid_string(r->p + r->i, len, rule))
        return HC_E_MALFORMED;
    memcpy(out, r->p + r->i, len);
    out[len] = '\0';
    r->i += len;
    return HC_OK;
}

static int get_reason(reader *r, hc_reason *out)
{
    uint32_t v;
    TRY(get_enum(r, HC_REASON_COUNT, &v));
    *out = (hc_reason)v;
    return HC_OK;
}

static int get_account_ref(reader *r, hc_account_ref *out)
{
    TRY(get_string(r, HC_MAX_ACCOUNT_ID_LEN, RULE_ACCOUNT, out->id));
    return get_string(r, HC_MAX_REGION_LEN, RULE_REGION, out->region);
}

static int get_validity(reader *r, hc_validity *out)
{
    TRY(get_flag(r, &out->present));
    out->not_before = out->not_after = 0;
    if (!out->present)
        return HC_OK;
    TRY(get_u64(r, &out->not_before));
    return get_u64(r, &out->not_after);
}

static int get_grant(reader *r, hc_grant *out)
{
    TRY(get_flag(r, &out->granted));
    out->validity.present = 0;
    return out->granted ? get_validity(r, &out->validity) : HC_OK;
}

static int get_permissions(reader *r, uint16_t *out)
{
    TRY(get_u16(r, out));
    return (*out >> HC_ACTION_COUNT) == 0 ? HC_OK : HC_E_MALFORMED;
}

static int get_share(reader *r, hc_share *out)
{
    uint32_t scope;
    TRY(get_account_ref(r, &out->account));
    TRY(get_permissions(r, &out->permissions));
    TRY(get_enum(r, 2, &scope));
    out->all_channels = scope == 0;
    memset(out->channels, 0, sizeof out->channels);
    if (scope == 1) {
        if (r->n - r->i < HC_CHANNEL_SET_BYTES)
            return HC_E_MALFORMED;
        memcpy(out->channels, r->p + r->i, HC_CHANNEL_SET_BYTES);
        r->i += HC_CHANNEL_SET_BYTES;
    }
    return get_validity(r, &out->validity);
}

static int get_binding(reader *r, hc_access *out)
{
    TRY(get_enum(r, 3, &out->binding));
    out->has_installer = 0;
    memset(&out->installer_grants, 0, sizeof out->installer_grants);
    if (out->binding == HC_INSTALLER_MANAGED) {
        out->has_installer = 1;
        return get_account_ref(r, &out->installer);
    }
    if (out->binding == HC_OWNED) {
        hc_installer_grants *g = &out->installer_grants;
        /* InstallerGrants' fields in wire order (SPEC §7.2.4). */
        hc_grant *const grants[] = {&g->site_info, &g->configuration, &g->live_view, &g->playback};
        size_t k;
        TRY(get_account_ref(r, &out->owner));
        TRY(get_flag(r, &out->has_installer));
        if (out->has_installer)
            TRY(get_account_ref(r, &out->installer));
        for (k = 0; k < sizeof grants / sizeof grants[0]; k++)
            TRY(get_grant(r, grants[k]));
        return get_flag(r, &g->may_disable_cloud);
    }
    return HC_OK;
}

static int get_clock_offset(reader *r, hc_clock_offset *out)
{
    uint64_t z;
    out->ms = 0;
    TRY(get_flag(r, &out->present));
    if (!out->present)
        return HC_OK;
    TRY(get_u64(r, &z));
    out->ms = (z & 1u) ? -(int64_t)(z >> 1) - 1 : (int64_t)(z >> 1);
    return HC_OK;
}

/* Option<u64>: the certificate's notAfter. */
static int get_cert_expiry(reader *r, hc_cert_expiry *out)
{
    out->not_after = 0;
    TRY(get_flag(r, &out->present));
    return out->present ? get_u64(r, &out->not_after) : HC_OK;
}

/* Vec<u8> of at most HC_MAX_COMMAND_KEYS key ids. */
static int get_key_ids(reader *r, hc_key_ids *out)
{
    uint32_t count, k;
    TRY(get_u32(r, &count));
    if (count > HC_MAX_COMMAND_KEYS)
        return HC_E_MALFORMED;
    out->count = count;
    for (k = 0; k < count; k++)
        TRY(get_byte(r, &out->ids[k]));
    return HC_OK;
}

static int get_access(reader *r, hc_access *out)
{
    uint32_t count, k;
    TRY(get_string(r, HC_MAX_SERIAL_LEN, RULE_SERIAL, out->serial));
    TRY(get_string(r, HC_MAX_VERSION_LEN, RULE_TEXT, out->agent_version));
    TRY(get_string(r, HC_MAX_REGION_LEN, RULE_REGION, out->region));
    TRY(get_u16(r, &out->channel_count));
    TRY(get_binding(r, out));
    TRY(get_u32(r, &count));
    if (count > HC_MAX_SHARES)
        return HC_E_MALFORMED;
    out->share_count = count;
    for (k = 0; k < count; k++)
        TRY(get_share(r, &out->shares[k]));
    TRY(get_flag(r, &out->cloud_service));
    TRY(get_flag(r, &out->platform_access));
    TRY(get_string(r, HC_MAX_DOMAIN_LEN, RULE_DOMAIN, out->domain));
    TRY(get_u64(r, &out->last_seq));
    TRY(get_u64(r, &out->trusted_time_floor));
    TRY(get_u32(r, &out->reports_dropped));
    TRY(get_clock_offset(r, &out->clock_offset));
    TRY(get_u32(r, &out->sessions_contested));
    TRY(get_u32(r, &out->sessions_lost));
    TRY(get_flag8(r, &out->behind));
    TRY(get_key_ids(r, &out->command_keys));
    return get_cert_expiry(r, &out->certificate);
}

static int get_audit_entry(reader *r, hc_audit_entry *out)
{
    int refused;
    memset(out, 0, sizeof *out);
    out->channel = HC_NO_CHANNEL;
    TRY(get_u64(r, &out->at));
    TRY(get_enum(r, 3, &out->actor));
    if (out->actor == HC_ACTOR_CLOUD)
        TRY(get_string(r, HC_MAX_ACCOUNT_ID_LEN, RULE_ACCOUNT, out->account));
    else if (out->actor == HC_ACTOR_LOCAL)
        TRY(get_enum(r, 3, &out->level));
    TRY(get_enum(r, 7, &out->event));
    if (out->event == HC_EVENT_DECISION) {
        int has_channel;
        TRY(get_enum(r, HC_ACTION_COUNT, &out->action));
        TRY(get_flag(r, &has_channel));
        if (has_channel) {
            uint16_t channel;
            TRY(get_u16(r, &channel));
            out->channel = channel;
        }
    } else if (out->event == HC_EVENT_COMMAND) {
        TRY(get_enum(r, HC_COMMAND_KIND_COUNT, &out->command_kind)); /* CommandKind, SPEC §7.1.2 */
        TRY(get_u64(r, &out->seq));
    } else if (out->event == HC_EVENT_PLATFORM_ACCESS) {
        TRY(get_flag(r, &out->enabled));
    }
    TRY(get_flag(r, &refused)); /* Outcome: 0 Accepted, 1 Refused(reason) */
    out->refused = refused;
    return refused ? get_reason(r, &out->reason) : HC_OK;
}

static int get_audit(reader *r, hc_audit *out)
{
    uint32_t count, k;
    hc_audit_entry scratch;
    TRY(get_u32(r, &count));
    if (count > HC_MAX_AUDIT_REPLY)
        return HC_E_MALFORMED;
    if (out != NULL)
        out->count = count;
    for (k = 0; k < count; k++)
        TRY(get_audit_entry(r, out != NULL ? &out->entries[k] : &scratch));
    return HC_OK;
}

/* StatusReply, field by field in wire order (SPEC §7.5 table), left to
 * right: append an entry here when the SPEC appends a field. */
enum field_type {
    F_SERIAL,
    F_DOMAIN,
    F_BOOL,
    F_U32,
    F_U64,
    F_LINK,
    F_REGISTRATION,
    F_OFFSET,
    F_KEY_IDS,
    F_CERT_EXPIRY
};

#define AT(field) offsetof(hc_status_reply, field)
static const struct status_field {
    uint8_t type;
    size_t offset;
} status_fields[] = {
    {F_SERIAL, AT(serial)},           {F_LINK, AT(link)},
    {F_BOOL, AT(bound)},              {F_BOOL, AT(handed_over)},
    {F_BOOL, AT(cloud_service)},      {F_BOOL, AT(platform_access)},
    {F_DOMAIN, AT(domain)},           {F_REGISTRATION, AT(registration)},
    {F_U64, AT(last_seq)},            {F_BOOL, AT(clock_trusted)},
    {F_U32, AT(reports_queued)},      {F_U32, AT(reports_dropped)},
    {F_OFFSET, AT(clock_offset)},     {F_KEY_IDS, AT(command_keys)},
    {F_CERT_EXPIRY, AT(certificate)},
};
#undef AT

static int get_status_field(reader *r, const struct status_field *f, unsigned char *base)
{
    void *at = base + f->offset;
    switch (f->type) {
    case F_SERIAL: return get_string(r, HC_MAX_SERIAL_LEN, RULE_SERIAL, (char *)at);
    case F_DOMAIN: return get_string(r, HC_MAX_DOMAIN_LEN, RULE_DOMAIN, (char *)at);
    case F_BOOL: return get_flag8(r, (uint8_t *)at);
    case F_U32: return get_u32(r, (uint32_t *)at);
    case F_U64: return get_u64(r, (uint64_t *)at);
    case F_LINK: return get_enum(r, 3, (uint32_t *)at);
    case F_OFFSET: return get_clock_offset(r, (hc_clock_offset *)at);
    case F_KEY_IDS: return get_key_ids(r, (hc_key_ids *)at);
    case F_CERT_EXPIRY: return get_cert_expiry(r, (hc_cert_expiry *)at);
    default: {
        hc_registration *reg = (hc_registration *)at;
        reg->expires_at = 0;
        TRY(get_enum(r, 5, &reg->state));
        return reg->state == HC_REG_REGISTERED ? get_u64(r, &reg->expires_at) : HC_OK;
    }
    }
}

static int get_status(reader *r, hc_status_reply *out)
{
    size_t k;
    memset(out, 0, sizeof *out);
    for (k = 0; k < sizeof status_fields / sizeof status_fields[0]; k++)
        TRY(get_status_field(r, &status_fields[k], (unsigned char *)out));
    return HC_OK;
}

static int get_reply(reader *r, hc_reply *out)
{
    uint32_t kind;
    TRY(get_enum(r, 7, &kind));
    out->kind = (hc_reply_kind)kind;
    switch (out->kind) {
    case HC_REPLY_DECISION: {
        int denied;
        TRY(get_flag(r, &denied)); /* Decision: 0 Allow, 1 Deny(reason) */
        out->decision.allowed = !denied;
        out->decision.reason = HC_REASON_NOT_BOUND;
        return denied ? get_reason(r, &out->decision.reason) : HC_OK;
    }
    case HC_REPLY_STATUS: return get_status(r, &out->status);
    case HC_REPLY_ACCESS:
        /* Decoding needs somewhere to put it (9 KB): the caller's. */
        return out->access != NULL ? get_access(r, out->access) : HC_E_SPACE;
    case HC_REPLY_AUDIT: return get_audit(r, out->audit);
    case HC_REPLY_DONE: return HC_OK;
    case HC_REPLY_ERROR: return get_reason(r, &out->error);
    default:
        TRY(get_u32(r, &out->revoked.session));
        return get_reason(r, &out->revoked.reason);
    }
}

int hc_decode_frame_header(const uint8_t header[HC_FRAME_HEADER_LEN], size_t *body_len)
{
    uint32_t n;
    if (header == NULL || body_len == NULL)
        return HC_E_INVALID;
    n = ((uint32_t)header[0] << 24) | ((uint32_t)header[1] << 16) | ((uint32_t)header[2] << 8) |
        (uint32_t)header[3];
    if (n > HC_MAX_FRAME_BYTES)
        return HC_E_TOO_LARGE;
    *body_len = n;
    return HC_OK;
}

int hc_decode_reply(const uint8_t *body, size_t len, hc_reply *out)
{
    reader r;
    if ((body == NULL && len != 0) || out == NULL)
        return HC_E_INVALID;
    if (len > HC_MAX_FRAME_BYTES)
        return HC_E_TOO_LARGE;
    r.p = body;
    r.n = len;
    r.i = 0;
    TRY(get_reply(&r, out));
    return r.i == r.n ? HC_OK : HC_E_MALFORMED;
}

/* --------------------------------------------------------------- connection */

static long long now_ms(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) != 0)
        return 0;
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void drop(hc_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Waits until fd is ready for `events` or the deadline passes. */
static int wait_ready(hc_client *c, short events, long long deadline)
{
    for (;;) {
        struct pollfd p;
        long long left = deadline - now_ms();
        int n;
        if (left < 0)
            left = 0; /* still look once: a wait of 0 polls */
        p.fd = c->fd;
        p.events = events;
        p.revents = 0;
        n = poll(&p, 1, left > 0x7FFFFFFF ? 0x7FFFFFFF : (int)left);
        if (n > 0)
            return HC_OK;
        if (n == 0)
            return HC_E_TIMEOUT;
        if (errno != EINTR)
            return HC_E_IO;
    }
}

static int send_all(hc_client *c, const uint8_t *p, size_t n, long long deadline)
{
    while (n > 0) {
        ssize_t k;
        TRY(wait_ready(c, POLLOUT, deadline));
        k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == EPIPE ? HC_E_CLOSED : HC_E_IO;
        }
        p += k;
        n -= (size_t)k;
    }
    return HC_OK;
}

/* Reads exactly n bytes into p (NULL: read and discard them). */
static int recv_all(hc_client *c, uint8_t *p, size_t n, long long deadline)
{
    uint8_t sink[64];
    while (n > 0) {
        size_t want = p != NULL ? n : (n < sizeof sink ? n : sizeof sink);
        ssize_t k;
        TRY(wait_ready(c, POLLIN, deadline));
        k = recv(c->fd, p != NULL ? p : sink, want, MSG_DONTWAIT);
        if (k == 0)
            return HC_E_CLOSED;
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return HC_E_IO;
        }
        if (p != NULL)
            p += k;
        n -= (size_t)k;
    }
    return HC_OK;
}

/* Reads and decodes one frame. A broken connection is closed; a frame too
 * big for the buffer is skipped whole (HC_E_SPACE), a body that does not
 * decode is HC_E_MALFORMED: the framing is intact either way. */
static int read_frame(hc_client *c, hc_reply *reply, long long deadline)
{
    uint8_t header[HC_FRAME_HEADER_LEN];
    size_t len;
    int r = recv_all(c, header, sizeof header, deadline);
    if (r == HC_OK)
        r = hc_decode_frame_header(header, &len);
    if (r == HC_OK && len > c->buf_len) {
        r = recv_all(c, NULL, len, deadline);
        if (r == HC_OK)
            return HC_E_SPACE;
    } else if (r == HC_OK) {
        r = recv_all(c, c->buf, len, deadline);
        if (r == HC_OK)
            return hc_decode_reply(c->buf, len, reply);
    }
    drop(c);
    return r;
}

static void queue_notice(hc_client *c, hc_notice n)
{
    if (c->notice_count == HC_MAX_WATCHES_PER_CONNECTION) {
        /* Not with a well-behaved agent (one notice per watched session). */
        c->notice_head = (c->notice_head + 1) % HC_MAX_WATCHES_PER_CONNECTION;
        c->notice_count--;
    }
    c->notices[(c->notice_head + c->notice_count) % HC_MAX_WATCHES_PER_CONNECTION] = n;
    c->notice_count++;
}

int hc_client_init(hc_client *c, uint8_t *recv_buf, size_t recv_len)
{
    if (c == NULL || recv_buf == NULL || recv_len < HC_RECV_SMALL)
        return HC_E_INVALID;
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->timeout_ms = 5000;
    c->buf = recv_buf;
    c->buf_len = recv_len;
    return HC_OK;
}

int hc_connect(hc_client *c, const char *socket_path, int timeout_ms)
{
    struct sockaddr_un addr;
    size_t len;
    if (c == NULL || socket_path == NULL || timeout_ms <= 0)
        return HC_E_INVALID;
    len = strlen(socket_path);
    if (len == 0 || len >= sizeof addr.sun_path)
        return HC_E_INVALID;
    hc_close(c);
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, socket_path, len + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c->fd < 0)
        return HC_E_CONNECT;
    if (connect(c->fd, (const struct sockaddr *)&addr, sizeof addr) != 0) {
        int saved = errno;
        drop(c);
        errno = saved;
        return HC_E_CONNECT;
    }
    c->timeout_ms = timeout_ms;
    c->notice_head = c->notice_count = 0;
    return HC_OK;
}

int hc_fd(const hc_client *c)
{
    return c != NULL ? c->fd : -1;
}

void hc_close(hc_client *c)
{
    if (c != NULL)
        drop(c);
}

int hc_call(hc_client *c, const uint8_t *frame, size_t frame_len, hc_reply *reply)
{
    long long deadline;
    if (c == NULL || frame == NULL || reply == NULL)
        return HC_E_INVALID;
    if (c->fd < 0)
        return HC_E_CLOSED;
    deadline = now_ms() + c->timeout_ms;
    {
        int r = send_all(c, frame, frame_len, deadline);
        if (r != HC_OK) {
            drop(c);
            return r;
        }
    }
    for (;;) {
        TRY(read_frame(c, reply, deadline));
        if (reply->kind != HC_REPLY_REVOKED)
            return HC_OK;
        queue_notice(c, reply->revoked);
    }
}

/* hc_call, then the reply must be of kind `want`; Error(reason) is
 * HC_E_REFUSED with c->refused. */
static int call_expect(hc_client *c, const uint8_t *frame, size_t len, hc_reply *reply,
                       hc_reply_kind want)
{
    TRY(hc_call(c, frame, len, reply));
    if (reply->kind == want)
        return HC_OK;
    if (reply->kind == HC_REPLY_ERROR) {
        c->refused = reply->error;
        return HC_E_REFUSED;
    }
    return HC_E_UNEXPECTED;
}

static void blank_reply(hc_reply *reply)
{
    memset(reply, 0, sizeof *reply);
}

/* One request: the frame an hc_encode_* function writes, and the reply it
 * is answered with. */
typedef struct request {
    uint8_t frame[HC_MAX_REQUEST_FRAME];
    size_t len;
    hc_reply reply;
} request;

/* A blank reply; access/audit are where an Access/Audit reply is kept. */
static void start(request *rq, hc_access *access, hc_audit *audit)
{
    blank_reply(&rq->reply);
    rq->reply.access = access;
    rq->reply.audit = audit;
}

/* `encoded` is what the encoder returned after writing rq's frame: on
 * success the frame is sent and the reply must be of kind `want`. */
static int exchange(hc_client *c, request *rq, int encoded, hc_reply_kind want)
{
    TRY(encoded);
    return call_expect(c, rq->frame, rq->len, &rq->reply, want);
}

/* A request answered with a Decision, kept in *out. */
static int decision(hc_client *c, request *rq, int encoded, hc_decision *out)
{
    TRY(exchange(c, rq, encoded, HC_REPLY_DECISION));
    *out = rq->reply.decision;
    return HC_OK;
}

int hc_authorize(hc_client *c, const hc_principal *who, hc_action action, long channel,
                 hc_decision *out)
{
    request rq = {0}; /* a blank reply, with no Access/Audit storage */
    return out == NULL ? HC_E_INVALID
                       : decision(c, &rq,
                                  hc_encode_authorize(rq.frame, sizeof rq.frame, &rq.len, who,
                                                      action, channel),
                                  out);
}

int hc_status(hc_client *c, hc_status_reply *out)
{
    request rq = {0}; /* a blank reply, with no Access/Audit storage */
    if (out == NULL)
        return HC_E_INVALID;
    TRY(exchange(c, &rq, hc_encode_status(rq.frame, sizeof rq.frame, &rq.len), HC_REPLY_STATUS));
    *out = rq.reply.status;
    return HC_OK;
}

int hc_list_access(hc_client *c, hc_access *out)
{
    request rq;
    start(&rq, out, NULL);
    return out == NULL ? HC_E_INVALID
                       : exchange(c, &rq, hc_encode_list_access(rq.frame, sizeof rq.frame, &rq.len),
                                  HC_REPLY_ACCESS);
}

int hc_recent_audit(hc_client *c, uint16_t max, hc_audit *out)
{
    request rq;
    start(&rq, NULL, out);
    return out == NULL ? HC_E_INVALID
                       : exchange(c, &rq,
                                  hc_encode_recent_audit(rq.frame, sizeof rq.frame, &rq.len, max),
                                  HC_REPLY_AUDIT);
}

int hc_set_platform_access(hc_client *c, hc_level by, int enabled)
{
    request rq = {0}; /* a blank reply, with no Access/Audit storage */
    return exchange(c, &rq,
                    hc_encode_set_platform_access(rq.frame, sizeof rq.frame, &rq.len, by, enabled),
                    HC_REPLY_DONE);
}

int hc_unbind(hc_client *c, hc_level by)
{
    request rq = {0}; /* a blank reply, with no Access/Audit storage */
    return exchange(c, &rq, hc_encode_unbind(rq.frame, sizeof rq.frame, &rq.len, by),
                    HC_REPLY_DONE);
}

int hc_watch(hc_client *c, uint32_t session, const hc_principal *who, hc_action action,
             long channel, hc_decision *out)
{
    request rq = {0}; /* a blank reply, with no Access/Audit storage */
    return out == NULL ? HC_E_INVALID
                       : decision(c, &rq,
                                  hc_encode_watch(rq.frame, sizeof rq.frame, &rq.len, session, who,
                                                  action, channel),
                                  out);
}

int hc_unwatch(hc_client *c, uint32_t session)
{
    request rq = {0}; /* a blank reply, with no Access/Audit storage */
    return exchange(c, &rq, hc_encode_unwatch(rq.frame, sizeof rq.frame, &rq.len, session),
                    HC_REPLY_DONE);
}

int hc_next_notice(hc_client *c, int wait_ms, hc_notice *out)
{
    hc_reply reply;
    int r;
    if (c == NULL || out == NULL || wait_ms < 0)
        return HC_E_INVALID;
    if (c->notice_count > 0) {
        *out = c->notices[c->notice_head];
        c->notice_head = (c->notice_head + 1) % HC_MAX_WATCHES_PER_CONNECTION;
        c->notice_count--;
        return HC_OK;
    }
    if (c->fd < 0)
        return HC_E_CLOSED;
    r = wait_ready(c, POLLIN, now_ms() + wait_ms);
    if (r == HC_E_TIMEOUT)
        return r;
    if (r != HC_OK) {
        drop(c);
        return r;
    }
    blank_reply(&reply);
    TRY(read_frame(c, &reply, now_ms() + c->timeout_ms));
    if (reply.kind != HC_REPLY_REVOKED)
        return HC_E_UNEXPECTED;
    *out = reply.revoked;
    return HC_OK;
}

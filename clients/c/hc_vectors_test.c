/*
 * hc_vectors_test.c - checks the C client's encoder and decoder against
 * the SPEC §14 vectors, and runs the decoder over hostile bytes.
 *
 *   hc_vectors_test VECTORS_FILE   lines "name hex" (agent/tests/c_client.rs
 *                                  writes them from protocol/SPEC.md)
 *   hc_vectors_test --names        prints "reason CODE NAME" and
 *                                  "action CODE NAME" lines, compared with
 *                                  the Rust enums by the same test
 *
 * Exit status 0 when every check passed, 1 otherwise (each failure printed).
 */
#include "hc_agent_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s (vector %s)\n", __FILE__, __LINE__, #cond, current);  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const char *current = "-";

#define MAX_VECTOR 4096
#define MAX_VECTORS 64

struct vector {
    char name[64];
    uint8_t bytes[MAX_VECTOR];
    size_t len;
};

static struct vector vectors[MAX_VECTORS];
static size_t vector_count;
static hc_access access_storage;
static hc_audit audit_storage;

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int load(const char *path)
{
    static char line[2 * MAX_VECTOR + 128];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL && vector_count < MAX_VECTORS) {
        struct vector *v = &vectors[vector_count];
        char *hex = strchr(line, ' ');
        size_t i;
        if (hex == NULL)
            continue;
        *hex++ = '\0';
        if (strlen(line) >= sizeof v->name)
            continue;
        memcpy(v->name, line, strlen(line) + 1);
        for (i = 0; hex_digit(hex[i]) >= 0 && hex_digit(hex[i + 1]) >= 0 && v->len < MAX_VECTOR;
             i += 2)
            v->bytes[v->len++] = (uint8_t)(hex_digit(hex[i]) * 16 + hex_digit(hex[i + 1]));
        vector_count++;
    }
    fclose(f);
    return 1;
}

static const hc_principal alice = {HC_PRINCIPAL_CLOUD, "alice-0100", HC_LEVEL_ADMIN};
static const hc_principal operator_ = {HC_PRINCIPAL_LOCAL, NULL, HC_LEVEL_OPERATOR};

/* A request vector: the C encoder must give exactly its bytes. */
static int check_request(const struct vector *v)
{
    uint8_t buf[HC_MAX_REQUEST_FRAME];
    size_t len = 0;
    int r;
    const char *n = v->name;
    if (strcmp(n, "local_authorize_cloud") == 0)
        r = hc_encode_authorize(buf, sizeof buf, &len, &alice, HC_ACTION_LIVE_VIEW, 2);
    else if (strcmp(n, "local_authorize_local") == 0)
        r = hc_encode_authorize(buf, sizeof buf, &len, &operator_, HC_ACTION_CONFIG_WRITE,
                                HC_NO_CHANNEL);
    else if (strcmp(n, "local_status") == 0)
        r = hc_encode_status(buf, sizeof buf, &len);
    else if (strcmp(n, "local_list_access") == 0)
        r = hc_encode_list_access(buf, sizeof buf, &len);
    else if (strcmp(n, "local_set_platform_access") == 0)
        r = hc_encode_set_platform_access(buf, sizeof buf, &len, HC_LEVEL_ADMIN, 0);
    else if (strcmp(n, "local_recent_audit") == 0)
        r = hc_encode_recent_audit(buf, sizeof buf, &len, 1);
    else if (strcmp(n, "local_watch") == 0)
        r = hc_encode_watch(buf, sizeof buf, &len, 7, &alice, HC_ACTION_LIVE_VIEW, 2);
    else if (strcmp(n, "local_unwatch") == 0)
        r = hc_encode_unwatch(buf, sizeof buf, &len, 7);
    else if (strcmp(n, "local_unbind") == 0)
        r = hc_encode_unbind(buf, sizeof buf, &len, HC_LEVEL_ADMIN);
    else
        return 0;
    CHECK(r == HC_OK);
    CHECK(len == v->len && memcmp(buf, v->bytes, len) == 0);
    /* Too small a buffer is a return code, never an overrun. */
    CHECK(len < 5 || hc_encode_unwatch(buf, 4, &len, 7) == HC_E_SPACE);
    return 1;
}

/* Decodes body; every shorter prefix and one trailing byte more must be
 * refused. */
static int decode_strictly(const uint8_t *body, size_t len, hc_reply *out)
{
    static uint8_t longer[MAX_VECTOR + 1];
    hc_reply scratch;
    size_t k;
    int r = hc_decode_reply(body, len, out);
    for (k = 0; k < len; k++) {
        memset(&scratch, 0, sizeof scratch);
        scratch.access = &access_storage;
        scratch.audit = &audit_storage;
        CHECK(hc_decode_reply(body, k, &scratch) == HC_E_MALFORMED);
    }
    memcpy(longer, body, len);
    longer[len] = 0;
    memset(&scratch, 0, sizeof scratch);
    scratch.access = &access_storage;
    scratch.audit = &audit_storage;
    CHECK(hc_decode_reply(longer, len + 1, &scratch) == HC_E_MALFORMED);
    return r;
}

/* A reply frame vector: header and body, decoded to the SPEC's values. */
static int check_reply_frame(const struct vector *v)
{
    size_t body_len = 0;
    hc_reply reply;
    const uint8_t *body = v->bytes + HC_FRAME_HEADER_LEN;
    const char *n = v->name;
    if (strncmp(n, "local_reply_", 12) != 0 && strcmp(n, "local_notice_revoked") != 0)
        return 0;
    CHECK(hc_decode_frame_header(v->bytes, &body_len) == HC_OK);
    CHECK(body_len == v->len - HC_FRAME_HEADER_LEN);
    memset(&reply, 0, sizeof reply);
    reply.audit = &audit_storage;
    CHECK(decode_strictly(body, v->len - HC_FRAME_HEADER_LEN, &reply) == HC_OK);
    if (strcmp(n, "local_reply_allow") == 0) {
        CHECK(reply.kind == HC_REPLY_DECISION && reply.decision.allowed);
    } else if (strcmp(n, "local_reply_deny") == 0) {
        CHECK(reply.kind == HC_REPLY_DECISION && !reply.decision.allowed);
        CHECK(reply.decision.reason == HC_REASON_CHANNEL_OUT_OF_SCOPE);
    } else if (strcmp(n, "local_reply_status") == 0) {
        const hc_status_reply *s = &reply.status;
        CHECK(reply.kind == HC_REPLY_STATUS);
        CHECK(strcmp(s->serial, "DS-7608-0001") == 0 && s->link == HC_LINK_CONNECTED);
        CHECK(s->bound && s->handed_over && s->cloud_service && s->platform_access);
        CHECK(strcmp(s->domain, "front-gate") == 0);
        CHECK(s->registration.state == HC_REG_REGISTERED);
        CHECK(s->registration.expires_at == 1767225600ull + 86400ull);
        CHECK(s->last_seq == 4 && s->clock_trusted);
        CHECK(s->reports_queued == 0 && s->reports_dropped == 0);
        CHECK(s->command_keys.count == 1 && s->command_keys.ids[0] == 1);
    } else if (strcmp(n, "local_reply_done") == 0) {
        CHECK(reply.kind == HC_REPLY_DONE);
    } else if (strcmp(n, "local_reply_audit") == 0) {
        const hc_audit_entry *e = &audit_storage.entries[0];
        CHECK(reply.kind == HC_REPLY_AUDIT && audit_storage.count == 1);
        CHECK(e->at == 1767225600ull + 3600 && e->actor == HC_ACTOR_CLOUD);
        CHECK(strcmp(e->account, "alice-0100") == 0 && e->event == HC_EVENT_DECISION);
        CHECK(e->action == HC_ACTION_LIVE_VIEW && e->channel == 2 && !e->refused);
    } else if (strcmp(n, "local_reply_error") == 0) {
        CHECK(reply.kind == HC_REPLY_ERROR && reply.error == HC_REASON_PEER_NOT_ALLOWED);
    } else if (strcmp(n, "local_notice_revoked") == 0) {
        CHECK(reply.kind == HC_REPLY_REVOKED && reply.revoked.session == 7);
        CHECK(reply.revoked.reason == HC_REASON_EXPIRED);
    } else {
        return 0;
    }
    return 1;
}

/* `prefix` (a LocalReply index) then the message vector (minus `skip`
 * leading bytes) as one reply body. */
static size_t as_reply(const struct vector *v, uint8_t prefix, size_t skip, uint8_t *out)
{
    out[0] = prefix;
    memcpy(out + 1, v->bytes + skip, v->len - skip);
    return v->len - skip + 1;
}

/* §14.4 messages inside local replies: Access(state report), Audit(the
 * audit report's entries). */
static int check_message(const struct vector *v)
{
    static uint8_t body[MAX_VECTOR + 1];
    hc_reply reply;
    size_t len;
    memset(&reply, 0, sizeof reply);
    reply.access = &access_storage;
    reply.audit = &audit_storage;
    if (strcmp(v->name, "state_report") == 0) {
        const hc_access *a = &access_storage;
        len = as_reply(v, HC_REPLY_ACCESS, 0, body);
        CHECK(decode_strictly(body, len, &reply) == HC_OK && reply.kind == HC_REPLY_ACCESS);
        CHECK(strcmp(a->serial, "DS-7608-0001") == 0 && strcmp(a->agent_version, "0.1.0") == 0);
        CHECK(strcmp(a->region, "EU") == 0 && a->channel_count == 8 && a->binding == HC_OWNED);
        CHECK(strcmp(a->owner.id, "owner-0007") == 0 && a->has_installer);
        CHECK(strcmp(a->installer.id, "inst-4711") == 0);
        CHECK(a->installer_grants.site_info.granted && !a->installer_grants.site_info.validity.present);
        CHECK(a->installer_grants.live_view.validity.present && !a->installer_grants.playback.granted);
        CHECK(a->installer_grants.may_disable_cloud && a->share_count == 2);
        CHECK(strcmp(a->shares[0].account.id, "alice-0100") == 0 && a->shares[0].permissions == 7);
        CHECK(!a->shares[0].all_channels && a->shares[0].channels[0] == 7);
        CHECK(a->shares[0].validity.present && a->shares[0].validity.not_before == 1767225600ull);
        CHECK(strcmp(a->shares[1].account.id, "bob-0200") == 0 && a->shares[1].all_channels);
        CHECK(a->shares[1].permissions == 0x11 && !a->shares[1].validity.present);
        CHECK(strcmp(a->domain, "front-gate") == 0 && a->last_seq == 4);
        CHECK(a->trusted_time_floor == 1767225840ull && a->reports_dropped == 0);
        CHECK(a->command_keys.count == 1 && a->command_keys.ids[0] == 1);
        reply.access = NULL;
        CHECK(hc_decode_reply(body, len, &reply) == HC_E_SPACE);
    } else if (strcmp(v->name, "state_report_unbound") == 0) {
        len = as_reply(v, HC_REPLY_ACCESS, 0, body);
        CHECK(decode_strictly(body, len, &reply) == HC_OK);
        CHECK(access_storage.binding == HC_UNBOUND && access_storage.share_count == 0);
        CHECK(strcmp(access_storage.domain, "ds-7608-0001") == 0);
    } else if (strcmp(v->name, "audit_report") == 0) {
        const hc_audit_entry *e = audit_storage.entries;
        len = as_reply(v, HC_REPLY_AUDIT, 1 + (size_t)v->bytes[0], body); /* skip the serial */
        CHECK(decode_strictly(body, len, &reply) == HC_OK && audit_storage.count == 5);
        CHECK(e[1].refused && e[1].reason == HC_REASON_ACTION_NOT_GRANTED);
        CHECK(strcmp(e[1].account, "bob-0200") == 0 && e[1].action == HC_ACTION_PLAYBACK);
        CHECK(e[2].event == HC_EVENT_COMMAND && e[2].command_kind == 2 && e[2].seq == 4);
        CHECK(e[3].actor == HC_ACTOR_LOCAL && e[3].level == HC_LEVEL_ADMIN);
        CHECK(e[3].event == HC_EVENT_PLATFORM_ACCESS && !e[3].enabled);
        CHECK(e[4].actor == HC_ACTOR_DEVICE && e[4].enabled);
    } else {
        return 0;
    }
    return 1;
}

/* Hostile bytes: every vector with each byte replaced, then random
 * bodies. Only the absence of a crash (and of sanitizer reports) counts. */
static void hostile(void)
{
    static uint8_t body[MAX_VECTOR + 1];
    static const uint8_t values[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x20, 0xc0};
    hc_reply reply;
    size_t i, k, m;
    uint32_t seed = 12345;
    for (i = 0; i < vector_count; i++) {
        const struct vector *v = &vectors[i];
        size_t len = v->len > HC_FRAME_HEADER_LEN && strncmp(v->name, "local_", 6) == 0
                         ? v->len - HC_FRAME_HEADER_LEN
                         : v->len;
        const uint8_t *src = v->bytes + (v->len - len);
        for (k = 0; k < len; k++) {
            for (m = 0; m < sizeof values + 8; m++) {
                memcpy(body, src, len);
                body[k] = m < sizeof values ? values[m] : (uint8_t)(body[k] ^ (1u << (m - sizeof values)));
                memset(&reply, 0, sizeof reply);
                reply.access = &access_storage;
                reply.audit = (m & 1) ? &audit_storage : NULL;
                (void)hc_decode_reply(body, len, &reply);
            }
        }
    }
    for (i = 0; i < 200000; i++) {
        size_t len;
        seed = seed * 1103515245u + 12345u;
        len = (seed >> 16) % 64;
        for (k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            body[k] = (uint8_t)(seed >> 16);
            if (k == 0)
                body[k] %= 8;
        }
        memset(&reply, 0, sizeof reply);
        reply.access = &access_storage;
        (void)hc_decode_reply(body, len, &reply);
    }
}

/* Arguments the encoders refuse. */
static void bad_arguments(void)
{
    uint8_t buf[HC_MAX_REQUEST_FRAME];
    size_t len;
    hc_principal spaced = {HC_PRINCIPAL_CLOUD, "carol smith", HC_LEVEL_ADMIN};
    hc_principal empty = {HC_PRINCIPAL_CLOUD, "", HC_LEVEL_ADMIN};
    hc_principal none = {HC_PRINCIPAL_CLOUD, NULL, HC_LEVEL_ADMIN};
    uint8_t big[4] = {0, 0, 0x40, 0x01};
    current = "arguments";
    CHECK(hc_encode_authorize(buf, sizeof buf, &len, &spaced, HC_ACTION_LIVE_VIEW, 1) == HC_E_INVALID);
    CHECK(hc_encode_authorize(buf, sizeof buf, &len, &empty, HC_ACTION_LIVE_VIEW, 1) == HC_E_INVALID);
    CHECK(hc_encode_authorize(buf, sizeof buf, &len, &none, HC_ACTION_LIVE_VIEW, 1) == HC_E_INVALID);
    CHECK(hc_encode_authorize(buf, sizeof buf, &len, &alice, HC_ACTION_COUNT, 1) == HC_E_INVALID);
    CHECK(hc_encode_authorize(buf, sizeof buf, &len, &alice, HC_ACTION_LIVE_VIEW, 65536) == HC_E_INVALID);
    CHECK(hc_encode_authorize(NULL, 0, &len, &alice, HC_ACTION_LIVE_VIEW, 1) == HC_E_INVALID);
    CHECK(hc_decode_frame_header(big, &len) == HC_E_TOO_LARGE);
}

int main(int argc, char **argv)
{
    size_t i, checked = 0;
    if (argc == 2 && strcmp(argv[1], "--names") == 0) {
        int k;
        for (k = 0; k < HC_REASON_COUNT; k++)
            printf("reason %d %s\n", k, hc_reason_name(k));
        for (k = 0; k < HC_ACTION_COUNT; k++)
            printf("action %d %s\n", k, hc_action_name(k));
        return 0;
    }
    if (argc != 2 || !load(argv[1])) {
        fprintf(stderr, "usage: %s VECTORS_FILE | --names\n", argv[0]);
        return 2;
    }
    for (i = 0; i < vector_count; i++) {
        const struct vector *v = &vectors[i];
        current = v->name;
        if (check_request(v) || check_reply_frame(v) || check_message(v)) {
            checked++;
        } else if (strncmp(v->name, "local_", 6) == 0) {
            fprintf(stderr, "FAIL: vector %s is not checked by the C client test: add it to %s\n",
                    v->name, __FILE__);
            failures++;
        }
    }
    bad_arguments();
    hostile();
    printf("%zu vectors checked, %d failures\n", checked, failures);
    return failures == 0 && checked > 0 ? 0 : 1;
}

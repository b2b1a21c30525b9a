/*
 * hc_client_test.c - the C client against a running agent, driven by
 * agent/tests/c_client.rs (also under QEMU against the ARM agent, see
 * cross/qemu-e2e.sh):
 *
 *   hc_client_test SOCKET SERIAL
 *
 * The site: the device SERIAL is owned by "alice", shared with "bob" for
 * LiveView on all channels; "carol" has no access; this process's uid is
 * on the agent's allow and admin lists. The program checks status,
 * authorize (allowed, denied with the right reason), list access, audit,
 * a refused platform switch and frames the agent rejects; then watches
 * bob's live view as session 7, prints "watching" and waits (up to 30 s)
 * for the notice the driver causes by removing bob's share: session 7,
 * reason NotAPrincipal. Exit status 0 when all passed.
 */
#include "hc_agent_client.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        int call_r_ = (expr);                                                                      \
        if (call_r_ != HC_OK) {                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #expr,                     \
                    hc_result_text(call_r_));                                                      \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Any frame (the storage is static: the test is one thread). */
static uint8_t recv_buf[HC_RECV_FULL];
static hc_client client;
static hc_access access_list;
static hc_audit audit;

static const hc_principal alice = {HC_PRINCIPAL_CLOUD, "alice", HC_LEVEL_ADMIN};
static const hc_principal bob = {HC_PRINCIPAL_CLOUD, "bob", HC_LEVEL_ADMIN};
static const hc_principal carol = {HC_PRINCIPAL_CLOUD, "carol", HC_LEVEL_ADMIN};
static const hc_principal guest = {HC_PRINCIPAL_LOCAL, NULL, HC_LEVEL_GUEST};

static void decisions(void)
{
    hc_decision d;
    CALL(hc_authorize(&client, &alice, HC_ACTION_CONFIG_WRITE, HC_NO_CHANNEL, &d));
    CHECK(d.allowed);
    CALL(hc_authorize(&client, &bob, HC_ACTION_LIVE_VIEW, 1, &d));
    CHECK(d.allowed);
    CALL(hc_authorize(&client, &bob, HC_ACTION_PLAYBACK, 1, &d));
    CHECK(!d.allowed && d.reason == HC_REASON_ACTION_NOT_GRANTED);
    CALL(hc_authorize(&client, &bob, HC_ACTION_LIVE_VIEW, 9, &d));
    CHECK(!d.allowed && d.reason == HC_REASON_NO_SUCH_CHANNEL);
    CALL(hc_authorize(&client, &carol, HC_ACTION_LIVE_VIEW, 1, &d));
    CHECK(!d.allowed && d.reason == HC_REASON_NOT_A_PRINCIPAL);
    CALL(hc_authorize(&client, &guest, HC_ACTION_LIVE_VIEW, 2, &d));
    CHECK(d.allowed);
    CALL(hc_authorize(&client, &guest, HC_ACTION_PTZ, 2, &d));
    CHECK(!d.allowed && d.reason == HC_REASON_ACTION_NOT_GRANTED);
}

static void reads(const char *serial)
{
    hc_status_reply s;
    CALL(hc_status(&client, &s));
    CHECK(strcmp(s.serial, serial) == 0);
    /* Bound by its owner directly: no installer, so not handed over. */
    CHECK(s.link == HC_LINK_CONNECTED && s.bound && !s.handed_over && s.platform_access);
    if (failures)
        fprintf(stderr, "status: link %u bound %u handed_over %u platform_access %u\n",
                (unsigned)s.link, s.bound, s.handed_over, s.platform_access);
    CALL(hc_list_access(&client, &access_list));
    CHECK(access_list.binding == HC_OWNED && strcmp(access_list.owner.id, "alice") == 0);
    CHECK(access_list.share_count == 1 && strcmp(access_list.shares[0].account.id, "bob") == 0);
    CALL(hc_recent_audit(&client, 3, &audit));
    CHECK(audit.count == 3 && audit.entries[2].event == HC_EVENT_DECISION);
    /* A guest may not switch platform access: refused, nothing changes. */
    CHECK(hc_set_platform_access(&client, HC_LEVEL_GUEST, 0) == HC_E_REFUSED);
    CHECK(client.refused == HC_REASON_ACTION_NOT_GRANTED);
}

/* A body that does not decode: Error(Malformed), the connection stays. */
static void rejected_frames(const char *socket)
{
    static const uint8_t garbage[] = {0, 0, 0, 2, 0x63, 0x00};
    static const uint8_t huge[] = {0, 1, 0, 0, 0};
    hc_reply reply;
    hc_status_reply s;
    memset(&reply, 0, sizeof reply);
    CALL(hc_call(&client, garbage, sizeof garbage, &reply));
    CHECK(reply.kind == HC_REPLY_ERROR && reply.error == HC_REASON_MALFORMED);
    CALL(hc_status(&client, &s));
    /* A header over the limit: Error(TooLarge), then the agent closes. */
    CALL(hc_call(&client, huge, sizeof huge, &reply));
    CHECK(reply.kind == HC_REPLY_ERROR && reply.error == HC_REASON_TOO_LARGE);
    CHECK(hc_status(&client, &s) < 0);
    CALL(hc_connect(&client, socket, 5000));
}

static void watched_session(void)
{
    hc_decision d;
    hc_notice n;
    int r;
    CALL(hc_watch(&client, 7, &bob, HC_ACTION_LIVE_VIEW, 1, &d));
    CHECK(d.allowed);
    CHECK(hc_watch(&client, 7, &bob, HC_ACTION_LIVE_VIEW, 1, &d) == HC_E_REFUSED);
    CHECK(client.refused == HC_REASON_SESSION_EXISTS);
    CALL(hc_watch(&client, 8, &carol, HC_ACTION_LIVE_VIEW, 1, &d));
    CHECK(!d.allowed && d.reason == HC_REASON_NOT_A_PRINCIPAL);
    CHECK(hc_next_notice(&client, 0, &n) == HC_E_TIMEOUT);
    printf("watching\n");
    fflush(stdout);
    r = hc_next_notice(&client, 30000, &n);
    CHECK(r == HC_OK);
    if (r == HC_OK)
        CHECK(n.session == 7 && n.reason == HC_REASON_NOT_A_PRINCIPAL);
    CALL(hc_unwatch(&client, 7));
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET SERIAL\n", argv[0]);
        return 2;
    }
    CALL(hc_client_init(&client, recv_buf, sizeof recv_buf));
    if (hc_connect(&client, argv[1], 5000) != HC_OK) {
        perror(argv[1]);
        return 1;
    }
    decisions();
    reads(argv[2]);
    rejected_frames(argv[1]);
    watched_session();
    hc_close(&client);
    printf("%s\n", failures == 0 ? "passed" : "failed");
    return failures == 0 ? 0 : 1;
}

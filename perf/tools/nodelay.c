/*
 * Diagnostic only: an LD_PRELOAD shim that sets TCP_NODELAY on every TCP
 * socket a process connects, to see what Nagle's algorithm costs a program
 * that does not set it itself (docs/PERFORMANCE.md, "Tail latency").
 *
 *   cc -shared -fPIC -O2 -o /tmp/nodelay.so perf/tools/nodelay.c -ldl
 *   LD_PRELOAD=/tmp/nodelay.so HC_AGENT_BIN=$PWD/target/release/hc-agent \
 *       target/release/examples/measure
 *
 * The preload applies to the measuring program and everything it starts
 * (the agent, mosquitto_sub, inadyn, mosquitto): use it for the latency
 * rows only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    int rc = real(fd, addr, len);
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return rc;
}

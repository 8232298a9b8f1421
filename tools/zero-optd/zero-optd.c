/*
 * zero-optd: the optimizer server of the remote store (docs/optd.md).
 *
 *   zero-optd --listen ADDR:PORT [--threads N] [--memory LIMIT] [--token-file F] [--port-file F]
 *
 * Serves until SIGINT or SIGTERM. Exit status: 0 after a signal, 2 on a bad
 * command line, 1 when it cannot listen.
 */
#include "offload/optd_server.h"
#include "util/log.h"
#include "util/ucx_log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: zero-optd --listen ADDR:PORT [--threads N] [--memory LIMIT] [--token-file F] [--port-file F]\n"
    "       zero-optd --help\n";

static const char help_text[] =
    "zero-optd: holds the fp32 master weights and optimizer states of the slices\n"
    "ranks assign to it (zero_optimization.offload_optimizer.device \"remote\")\n"
    "and runs their optimizer steps. See docs/optd.md.\n"
    "\n"
    "--listen ADDR:PORT  address of the doorway (a TCP socket where each client asks\n"
    "                    for its UCX connection, showing the job token first); port 0\n"
    "                    picks a free one (see --port-file). An IPv6 ADDR may go in\n"
    "                    brackets ([::1]:7000). UCX's own tcp sockets listen on\n"
    "                    ADDR's interface only (on every one for 0.0.0.0 or :: or on\n"
    "                    a host with RDMA devices; UCX_NET_DEVICES, if set, decides)\n"
    "--threads N         optimizer threads (default 1)\n"
    "--memory LIMIT      bytes of state and buffers at most, with an optional K, M,\n"
    "                    G or T suffix (powers of 1024); a client whose slices do not\n"
    "                    fit is refused with a message saying so. Default: no limit\n"
    "--token-file F      the job token (32 lowercase hex digits, as ZERO_JOB_TOKEN);\n"
    "                    default: $ZERO_JOB_TOKEN. Without either, the server refuses\n"
    "                    to start unless ZERO_ALLOW_NO_TOKEN=1\n"
    "--port-file F       write the port listened on to F once listening\n"
    "\n"
    "Environment:\n"
    "ZERO_JOB_TOKEN      the job token, when --token-file is not given\n"
    "ZERO_ALLOW_NO_TOKEN=1  serve without a token (any job)\n"
    "ZERO_OPTD_SAME_HOST=0  offer no data connections: clients on this host then send\n"
    "                    every request on their first connection (TCP) instead of\n"
    "                    a shared-memory data connection. For a host whose other\n"
    "                    processes must not reach this one's shared memory\n"
    "                    (docs/optd.md, Safety)\n"
    "ZERO_OPTD_ONESIDED=0  give same-host data connections no shared-memory region:\n"
    "                    their STEP arrays then travel as tagged messages (for\n"
    "                    measuring; the clients' setting of the same name does the\n"
    "                    same from their side)\n"
    "ZERO_OPTD_GUARD=0   no allow list in front of UCX's own listening sockets: by\n"
    "                    default only addresses of clients that showed the job\n"
    "                    token at the doorway reach them (docs/optd.md, Safety,\n"
    "                    \"Only approved peers reach UCX's ports\"); a warning says so\n"
    "ZERO_LOG_LEVEL      off, error, warn (default), info, debug or trace\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int bad_usage(const char *what, const char *arg)
{
    fprintf(stderr, "zero-optd: %s%s%s%s\n%s", what, arg ? " \"" : "", arg ? arg : "", arg ? "\"" : "", usage_text);
    return EXIT_USAGE;
}

static int parse_bytes(const char *text, uint64_t *out)
{
    char *end;
    unsigned long long v;
    int shift = 0;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-')
        return -1;
    switch (*end) {
    case '\0': break;
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: return -1;
    }
    if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int read_token_file(const char *path, unsigned char *token)
{
    char buf[80];
    size_t n;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "zero-optd: cannot read the token file %s: %s\n", path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (zero_optd_token_parse(buf, n, token) != 0) {
        fprintf(stderr, "zero-optd: the token file %s must hold 32 lowercase hex digits\n", path);
        return -1;
    }
    return 0;
}

/* Each same-host data connection holds about ten descriptors in the server
 * (its UCX worker's shared memory, sockets and wake-up: docs/optd.md), so
 * 64 of them beside the control connections pass the soft limit that many
 * systems start a process with (1024). The soft limit is raised to the hard
 * one; where that fails, the server runs as before and a worker it cannot
 * create refuses that data connection (its client keeps to TCP). */
static void raise_descriptor_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        fprintf(stderr, "zero-optd: could not raise the descriptor limit to %llu: %s\n",
                (unsigned long long)rl.rlim_max, strerror(errno));
}

int main(int argc, char **argv)
{
    zero_optd_server_opts_t opts;
    zero_optd_server_t *server = NULL;
    const char *listen = NULL, *token_file = NULL, *port_file = NULL;
    static char host[256];
    struct sigaction sa;
    const char *colon;
    char *end;
    long port;

    memset(&opts, 0, sizeof(opts));
    opts.threads = 1;
    opts.guard = 1;   /* this process is the server alone (optd_guard.h) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(help_text, stdout);
            fputs(usage_text, stdout);
            return 0;
        }
        if (v == NULL)
            return bad_usage("missing value after", a);
        if (strcmp(a, "--listen") == 0) {
            listen = v;
        } else if (strcmp(a, "--threads") == 0) {
            long t = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || t < 1 || t > 1024)
                return bad_usage("--threads wants 1..1024, not", v);
            opts.threads = (int)t;
        } else if (strcmp(a, "--memory") == 0) {
            if (parse_bytes(v, &opts.memory_limit) != 0 || opts.memory_limit == 0)
                return bad_usage("--memory wants a byte count like 64G, not", v);
        } else if (strcmp(a, "--token-file") == 0) {
            token_file = v;
        } else if (strcmp(a, "--port-file") == 0) {
            port_file = v;
        } else {
            return bad_usage("unknown option", a);
        }
        i++;
    }
    if (listen == NULL)
        return bad_usage("--listen ADDR:PORT is required", NULL);
    colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof(host))
        return bad_usage("--listen wants ADDR:PORT, not", listen);
    port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return bad_usage("--listen wants a port in 0..65535, not", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    /* an IPv6 address in brackets, as the clients' server addresses are
     * written ([::1]:7000): getaddrinfo wants it bare */
    if (host[0] == '[' && colon - listen >= 2 && host[colon - listen - 1] == ']') {
        host[colon - listen - 1] = '\0';
        memmove(host, host + 1, (size_t)(colon - listen - 1));
    }
    opts.host = host;
    opts.port = (int)port;

    if (token_file != NULL) {
        if (read_token_file(token_file, opts.token) != 0)
            return EXIT_USAGE;
        opts.have_token = 1;
    } else if (getenv("ZERO_JOB_TOKEN") != NULL) {
        const char *t = getenv("ZERO_JOB_TOKEN");
        if (zero_optd_token_parse(t, strlen(t), opts.token) != 0) {
            fprintf(stderr, "zero-optd: ZERO_JOB_TOKEN must be 32 lowercase hex digits\n");
            return EXIT_USAGE;
        }
        opts.have_token = 1;
    } else if (getenv("ZERO_ALLOW_NO_TOKEN") == NULL || strcmp(getenv("ZERO_ALLOW_NO_TOKEN"), "1") != 0) {
        fprintf(stderr, "zero-optd: no job token (--token-file or ZERO_JOB_TOKEN): a server without one serves "
                        "any job; set ZERO_ALLOW_NO_TOKEN=1 to allow that\n");
        return EXIT_USAGE;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* A server restarted on its port (the next job of zero-launch --optd)
     * does not fail while the last one's connections linger in the kernel:
     * the doorway's socket has SO_REUSEADDR (optd_server.c). UCX opens no
     * listener (connection manager) here, so UCX_TCP_CM_REUSEADDR, set here
     * until wire version 8, is no longer needed; the tcp ifaces' own
     * listening sockets take ephemeral ports. */
    raise_descriptor_limit();
    /* UCX logs a line for each of several things any peer can do at will
     * (util/ucx_log.h): at most 5 per UCX source line per 5 s, the rest
     * counted */
    zero_ucx_log_limit_install();
    if (zero_optd_server_create(&opts, &server) != ZERO_OK)
        return 1;
    if (port_file != NULL) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", zero_optd_server_port(server)) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) != 0) {
            fprintf(stderr, "zero-optd: cannot write the port file %s: %s\n", port_file, strerror(errno));
            zero_optd_server_destroy(server);
            return 1;
        }
    }
    fprintf(stderr, "zero-optd: listening on %s:%d (%d threads, memory limit %llu bytes%s)\n", host,
            zero_optd_server_port(server), opts.threads, (unsigned long long)opts.memory_limit,
            opts.memory_limit ? "" : ": none");
    (void)zero_optd_server_run(server, &stop_flag);
    zero_optd_server_destroy(server);
    zero_ucx_log_limit_flush();
    fprintf(stderr, "zero-optd: stopped\n");
    return 0;
}

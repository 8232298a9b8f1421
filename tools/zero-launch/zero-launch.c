/*
 * zero-launch: starts the ranks of a libzero job on one machine or many, with
 * the command line of DeepSpeed's `deepspeed` launcher. See docs/launcher.md.
 *
 * Local ranks are forked and exec'd directly (no shell), each in its own
 * process group. Remote ranks run through ssh (or pdsh) as
 * `zero-launch --remote_exec ...` on the remote host, a small wrapper that
 * runs the program in its own process group and kills that group when the
 * ssh session goes away, so tearing down the ssh session always ends the
 * remote rank.
 *
 * Exit status: 0 when every rank exits 0; the first failing rank's status
 * (128+N for a rank killed by signal N); 128+N when zero-launch itself is
 * stopped by signal N (SIGINT, SIGTERM, SIGHUP); 2 for a command-line or
 * configuration error; 1 when the launch itself fails.
 */
#define ZERO_LOG_MODULE "launch"

#include "backend_mpi.h"
#include "envfile.h"
#include "hostfile.h"
#include "hostsel.h"
#include "launch_util.h"
#include "plan.h"
#include "remote.h"

#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define EXIT_USAGE 2
#define EXIT_LAUNCH 1
#define RELAY_LINE_MAX 65536

static const char *const default_hostfile = "/job/hostfile";

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the reader went away: drop the output */
        data += n;
        len -= (size_t)n;
    }
}

static void log_to_stderr(zero_log_level_t level, int rank, const char *module, const char *message,
                          void *user_data)
{
    (void)rank;
    (void)module;
    fprintf(stderr, "zero-launch: %s%s\n", level == ZERO_LOG_LEVEL_ERROR ? "error: " : "", message);
    (void)user_data;
}

/* Self-pipe: signal handlers write the signal number, the main loop reads it. */
static int signal_pipe[2] = {-1, -1};

static void on_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    if (write(signal_pipe[1], &b, 1) < 0) {
        /* the pipe is full: the loop has enough wake-ups queued */
    }
    errno = saved;
}

static int install_signals(void)
{
    struct sigaction sa;
    static const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* In a forked child before exec: default dispositions for what we changed. */
static void child_reset_signals(void)
{
    static const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
}

static int status_code(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return 1;
}

/* --term_grace: 0 to 3600 seconds (util/clock.h's parser; the caller words the error). */
static int parse_seconds(const char *text, double *value_p)
{
    return zero_seconds_from_text(text, 0.0, 0, 3600.0, value_p);
}

/* ------------------------------------------------------------------ */
/* --remote_exec: the wrapper a remote rank runs under                  */

/* --env_stdin: the variables arrive first on stdin (see remote.h). */
static int read_env_block(const char *host)
{
    zero_launch_env_t env = {0};
    size_t cap = 4096, len = 0;
    char *buf = zero_malloc(cap);
    long used = 0;
    int rc = -1;
    while (buf != NULL && used == 0) {
        ssize_t n;
        if (len == cap) {
            char *grown = cap < ZERO_LAUNCH_MAX_FILE_BYTES ? zero_realloc(buf, cap * 2) : NULL;
            if (grown == NULL) {
                fprintf(stderr, "zero-launch on %s: environment block too large\n", host);
                goto out;
            }
            buf = grown;
            cap *= 2;
        }
        n = read(0, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "zero-launch on %s: stdin closed before the environment arrived\n", host);
            goto out;
        }
        len += (size_t)n;
        used = zero_launch_env_deserialize(buf, len, &env);
        zero_launch_env_clear(&env); /* parsed again once complete, below */
    }
    if (buf == NULL || used < 0 || zero_launch_env_deserialize(buf, len, &env) <= 0) {
        fprintf(stderr, "zero-launch on %s: malformed environment block on stdin\n", host);
        goto out;
    }
    for (size_t k = 0; k < env.count; k++)
        setenv(env.keys[k], env.values[k], 1);
    rc = 0;
out:
    zero_launch_env_clear(&env);
    zero_free(buf);
    return rc;
}

static int remote_exec_main(int argc, char **argv)
{
    const char *cwd = NULL, *grace_text = "3";
    int watch_stdin = 0, i = 2, wstatus = 0, code = -1, terminating = 0, out_open = 1, err_open = 1;
    double grace = 3.0, kill_at = 0.0;
    char host[256] = "?";
    pid_t child;

    gethostname(host, sizeof(host) - 1);
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--cwd") == 0 && i + 1 < argc) {
            cwd = argv[++i];
        } else if (strcmp(argv[i], "--term_grace") == 0 && i + 1 < argc) {
            grace_text = argv[++i];
        } else if (strcmp(argv[i], "--env_stdin") == 0) {
            watch_stdin = 1;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            const char *eq = strchr(argv[i], '=');
            if (eq == NULL || !zero_launch_env_key_valid(argv[i], (size_t)(eq - argv[i]))) {
                fprintf(stderr, "zero-launch --remote_exec on %s: bad argument '%s'\n", host, argv[i]);
                return 127;
            }
        }
    }
    if (i >= argc || parse_seconds(grace_text, &grace) != 0) {
        fprintf(stderr, "zero-launch --remote_exec on %s: usage: --cwd DIR --term_grace S [--env_stdin] "
                        "[KEY=VALUE...] -- PROGRAM [ARGS...]\n", host);
        return 127;
    }
    if (cwd != NULL && chdir(cwd) != 0) {
        fprintf(stderr, "zero-launch on %s: cannot change to directory '%s': %s\n", host, cwd, strerror(errno));
        return 127;
    }
    if (watch_stdin && read_env_block(host) != 0)
        return 127;
    for (int k = 2; k < i - 1; k++) {
        char *eq;
        if (argv[k][0] == '-') {
            if (strcmp(argv[k], "--cwd") == 0 || strcmp(argv[k], "--term_grace") == 0)
                k++;
            continue;
        }
        eq = strchr(argv[k], '=');
        *eq = '\0';
        setenv(argv[k], eq + 1, 1);
        *eq = '=';
    }
    if (install_signals() != 0) {
        fprintf(stderr, "zero-launch on %s: cannot install signal handlers: %s\n", host, strerror(errno));
        return 127;
    }
    child = fork();
    if (child < 0) {
        fprintf(stderr, "zero-launch on %s: fork: %s\n", host, strerror(errno));
        return 127;
    }
    if (child == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        child_reset_signals();
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        execvp(argv[i], &argv[i]);
        fprintf(stderr, "zero-launch on %s: cannot run '%s': %s\n", host, argv[i], strerror(errno));
        _exit(127);
    }
    setpgid(child, child);

    while (code < 0) {
        struct pollfd fds[4];
        int nfds = 0, timeout = -1, hangup = 0;
        fds[nfds++] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
        if (watch_stdin)
            fds[nfds++] = (struct pollfd){.fd = 0, .events = POLLIN};
        if (out_open)
            fds[nfds++] = (struct pollfd){.fd = 1, .events = 0};
        if (err_open)
            fds[nfds++] = (struct pollfd){.fd = 2, .events = 0};
        if (terminating && kill_at > 0.0) {
            double left = kill_at - zero_clock_now();
            timeout = left <= 0 ? 0 : (int)ceil(left * 1000.0);
        }
        if (poll(fds, (nfds_t)nfds, timeout) < 0 && errno != EINTR)
            break;
        for (int k = 1; k < nfds; k++) {
            if (fds[k].fd == 0 && (fds[k].revents & (POLLIN | POLLHUP | POLLERR))) {
                char buf[256];
                ssize_t n = read(0, buf, sizeof(buf));
                if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                    watch_stdin = 0;
                    hangup = 1;
                }
            } else if (fds[k].fd != 0 && (fds[k].revents & (POLLERR | POLLHUP))) {
                if (fds[k].fd == 1)
                    out_open = 0;
                else
                    err_open = 0;
                hangup = 1;
            }
        }
        if (fds[0].revents & POLLIN) {
            unsigned char sig;
            while (read(signal_pipe[0], &sig, 1) == 1) {
                if (sig != SIGCHLD)
                    hangup = 1;
            }
        }
        if (waitpid(child, &wstatus, WNOHANG) == child) {
            code = status_code(wstatus);
            break;
        }
        if (hangup && !terminating) {
            /* The launcher went away or asked us to stop: end the rank's whole
             * process group, politely first. */
            terminating = 1;
            kill(-child, SIGTERM);
            kill_at = zero_clock_now() + grace;
        }
        if (terminating && kill_at > 0.0 && zero_clock_now() >= kill_at) {
            kill(-child, SIGKILL);
            kill_at = 0.0;
        }
    }
    if (code < 0)
        code = 127;
    return code;
}

/* ------------------------------------------------------------------ */
/* Options                                                              */

typedef struct options {
    const char *hostfile;
    int hostfile_given;
    const char *include;
    const char *exclude;
    int num_nodes;
    int num_gpus;
    const char *master_addr;
    int master_port;
    const char *launcher;
    int ssh_port;
    int dry_run;
    int tag_output;
    const char *term_grace_text;
    double term_grace;
    const char *optd;  /* --optd HOST:PORT[,HOST:PORT...]: zero-optd servers the job starts */
    char **program;    /* argv of the program, NULL-terminated (points into argv) */
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: zero-launch [options] [--] PROGRAM [ARGS...]\n"
        "\n"
        "Starts PROGRAM once per slot of the selected hosts (DeepSpeed launcher syntax).\n"
        "\n"
        "  -H, --hostfile FILE    hosts as 'HOST slots=N' lines (default $ZERO_LAUNCH_HOSTFILE\n"
        "                         or /job/hostfile, if it exists; else one local node)\n"
        "  -i, --include SPEC     use only NODE[:SLOT[,SLOT...]][@NODE...]\n"
        "  -e, --exclude SPEC     use all but NODE[:SLOT[,SLOT...]][@NODE...]\n"
        "      --num_nodes N      use the first N hosts\n"
        "      --num_gpus N       use the first N slots of each host (a slot is a GPU, or one\n"
        "                         process on a CPU-only host)\n"
        "      --master_addr ADDR rendezvous address (default 127.0.0.1 without a hostfile,\n"
        "                         else the first selected host)\n"
        "      --master_port PORT rendezvous port (default 29500; 0 picks a free port)\n"
        "      --launcher NAME    ssh (default), pdsh, local (run every rank on this machine),\n"
        "                         or openmpi, mpich, slurm (one mpirun/mpiexec/srun starts all)\n"
        "      --ssh_port PORT    ssh port of the remote hosts\n"
        "      --tag_output       prefix every output line with '[rank R] '\n"
        "      --term_grace S     seconds the other ranks get to exit on their own after one\n"
        "                         fails, and again between SIGTERM and SIGKILL (default 3)\n"
        "      --optd LIST        start a zero-optd on each HOST:PORT of the comma-separated\n"
        "                         LIST (ssh, pdsh, local launchers) before the ranks, give\n"
        "                         the ranks ZERO_OPTD_SERVERS=LIST, stop them with the job\n"
        "      --dry-run          print the plan, one line per rank, and start nothing\n"
        "  -h, --help             this text\n"
        "\n"
        "Each rank gets RANK LOCAL_RANK WORLD_SIZE LOCAL_SIZE CROSS_RANK CROSS_SIZE MASTER_ADDR\n"
        "MASTER_PORT CUDA_VISIBLE_DEVICES ZERO_JOB_TOKEN, plus the variables of .deepspeed_env\n"
        "(or $DS_ENV_FILE) from the home and the current directory. Extra ssh options come from\n"
        "$ZERO_LAUNCH_SSH_OPTS. openmpi/mpich/slurm run $ZERO_LAUNCH_MPIRUN or $ZERO_LAUNCH_SRUN\n"
        "(default mpirun, mpiexec, srun) with the words of $ZERO_LAUNCH_LAUNCHER_ARGS added.\n"
        "See docs/launcher.md.\n");
}

/* Matches "--name" / "--name=value" / "-x" / "-xvalue" (option names may use - or _). */
static int opt_match(const char *arg, const char *long_name, char short_name, int takes_value, int *i,
                     int argc, char **argv, const char **value_p)
{
    const char *rest = NULL;
    if (arg[0] == '-' && arg[1] == '-') {
        const char *a = arg + 2, *n = long_name;
        while (*a && *n && (*a == *n || ((*a == '-' || *a == '_') && (*n == '-' || *n == '_')))) {
            a++;
            n++;
        }
        if (*n != '\0' || (*a != '\0' && *a != '='))
            return 0;
        if (*a == '=') {
            if (!takes_value)
                return -1;
            *value_p = a + 1;
            return 1;
        }
    } else if (short_name && arg[0] == '-' && arg[1] == short_name) {
        rest = arg + 2;
        if (*rest != '\0') {
            if (!takes_value)
                return 0;
            *value_p = rest;
            return 1;
        }
    } else {
        return 0;
    }
    if (!takes_value)
        return 1;
    if (*i + 1 >= argc)
        return -1;
    *value_p = argv[++*i];
    return 1;
}

static int parse_int_option(const char *name, const char *value, long min, long max, int *out)
{
    long v;
    if (zero_launch_parse_long(value, min, max, &v) != 0) {
        ZERO_LOG_ERROR("%s: '%s' is not a whole number from %ld to %ld", name, value, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* --optd: 1 to ZERO_LAUNCH_MAX_OPTD comma-separated HOST:PORT, port 1..65535. */
#define ZERO_LAUNCH_MAX_OPTD 256
static int check_optd_list(const char *list)
{
    const char *at = list;
    int count = 0;
    for (;;) {
        const char *end = strchr(at, ','), *colon;
        size_t len = end ? (size_t)(end - at) : strlen(at);
        char port[8];
        long v;
        colon = memrchr(at, ':', len);
        if (colon == NULL || colon == at || (size_t)(at + len - colon - 1) >= sizeof(port)) {
            ZERO_LOG_ERROR("--optd: '%.*s' is not HOST:PORT (in '%s')", (int)len, at, list);
            return -1;
        }
        memcpy(port, colon + 1, (size_t)(at + len - colon - 1));
        port[at + len - colon - 1] = '\0';
        if (zero_launch_parse_long(port, 1, 65535, &v) != 0) {
            ZERO_LOG_ERROR("--optd: '%.*s': the port must be a number from 1 to 65535 (in '%s')", (int)len, at, list);
            return -1;
        }
        if (++count > ZERO_LAUNCH_MAX_OPTD) {
            ZERO_LOG_ERROR("--optd: more than %d servers", ZERO_LAUNCH_MAX_OPTD);
            return -1;
        }
        if (end == NULL)
            return 0;
        at = end + 1;
    }
}

/* Returns 0 to go on, or the exit status to leave with (-1 for help). */
static int parse_options(int argc, char **argv, options_t *o)
{
    int i;
    memset(o, 0, sizeof(*o));
    /* DeepSpeed's default path; ZERO_LAUNCH_HOSTFILE names another (a site's
     * scheduler, or a test that must not depend on the machine's /job). */
    o->hostfile = getenv("ZERO_LAUNCH_HOSTFILE");
    if (o->hostfile == NULL || *o->hostfile == '\0')
        o->hostfile = default_hostfile;
    o->master_port = ZERO_LAUNCH_DEFAULT_PORT;
    o->launcher = "ssh";
    o->term_grace_text = "3";
    o->term_grace = 3.0;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        int m;
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0')
            break;
#define OPT(long_, short_, takes_) ((m = opt_match(arg, long_, short_, takes_, &i, argc, argv, &v)) != 0)
        if (OPT("help", 'h', 0)) {
            if (m < 0)
                goto bad_value;
            usage(stdout);
            return -1;
        } else if (OPT("hostfile", 'H', 1)) {
            if (m < 0)
                goto bad_value;
            o->hostfile = v;
            o->hostfile_given = 1;
        } else if (OPT("include", 'i', 1)) {
            if (m < 0)
                goto bad_value;
            o->include = v;
        } else if (OPT("exclude", 'e', 1)) {
            if (m < 0)
                goto bad_value;
            o->exclude = v;
        } else if (OPT("num_nodes", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (parse_int_option("--num_nodes", v, 1, 1 << 20, &o->num_nodes) != 0)
                goto bad;
        } else if (OPT("num_gpus", 0, 1) || OPT("num_accelerators", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (parse_int_option("--num_gpus", v, 1, ZERO_LAUNCH_MAX_SLOTS, &o->num_gpus) != 0)
                goto bad;
        } else if (OPT("master_addr", 0, 1)) {
            if (m < 0)
                goto bad_value;
            o->master_addr = v;
        } else if (OPT("master_port", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (parse_int_option("--master_port", v, 0, 65535, &o->master_port) != 0)
                goto bad;
        } else if (OPT("launcher", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (strcmp(v, "ssh") != 0 && strcmp(v, "pdsh") != 0 && strcmp(v, "local") != 0 &&
                zero_launch_backend_from_name(v) == ZERO_LAUNCH_BACKEND_NONE) {
                ZERO_LOG_ERROR("--launcher: '%s' is not one of ssh, pdsh, local, openmpi, mpich, slurm", v);
                goto bad;
            }
            o->launcher = v;
        } else if (OPT("ssh_port", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (parse_int_option("--ssh_port", v, 1, 65535, &o->ssh_port) != 0)
                goto bad;
        } else if (OPT("optd", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (check_optd_list(v) != 0)
                goto bad;
            o->optd = v;
        } else if (OPT("dry_run", 0, 0)) {
            if (m < 0)
                goto bad_value;
            o->dry_run = 1;
        } else if (OPT("tag_output", 0, 0)) {
            if (m < 0)
                goto bad_value;
            o->tag_output = 1;
        } else if (OPT("term_grace", 0, 1)) {
            if (m < 0)
                goto bad_value;
            if (parse_seconds(v, &o->term_grace) != 0) {
                ZERO_LOG_ERROR("--term_grace: '%s' is not a number of seconds from 0 to 3600", v);
                goto bad;
            }
            o->term_grace_text = v;
        } else if (OPT("no_python", 0, 0) || OPT("no_local_rank", 0, 0) || OPT("no_ssh_check", 0, 0)) {
            /* DeepSpeed flags that describe what zero-launch always does: accepted, no effect. */
            if (m < 0)
                goto bad_value;
        } else {
            ZERO_LOG_ERROR("unknown option '%s' (see zero-launch --help)", arg);
            goto bad;
        }
#undef OPT
    }
    if (i >= argc) {
        ZERO_LOG_ERROR("no program given (see zero-launch --help)");
        goto bad;
    }
    o->program = &argv[i];
    return 0;
bad_value:
    ZERO_LOG_ERROR("option '%s' %s", argv[i], strchr(argv[i], '=') ? "takes no value" : "needs a value");
bad:
    return EXIT_USAGE;
}

/* ------------------------------------------------------------------ */
/* Plan                                                                 */

/* Binds @p port (0: any) on @p addr; returns the bound port, or -1 with errno set. */
static int try_bind(const char *addr, int port, int *err_p)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[16];
    int rc, bound = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    rc = getaddrinfo(addr, service, &hints, &res);
    if (rc != 0) {
        ZERO_LOG_ERROR("--master_port 0: cannot resolve master address '%s': %s", addr, gai_strerror(rc));
        *err_p = -1;
        return -1;
    }
    for (ai = res; ai != NULL && bound < 0; ai = ai->ai_next) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            *err_p = errno;
            continue;
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else
            *err_p = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return bound;
}

/*
 * --master_port 0: a free port, tried at random in 20000-32767 first: below
 * Linux's ephemeral range (32768-60999), where the kernel hands out ports for
 * outgoing connections, so that between this check and rank 0's bind no
 * connection of another process is likely to take it. Falls back to a port
 * the kernel picks.
 */
static int pick_free_port(const char *addr, int *port_p)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL) * 2654435761u;
    int err = 0, port;
    for (int attempt = 0; attempt < 32; attempt++) {
        seed = seed * 1103515245u + 12345u;
        port = 20000 + (int)((seed >> 8) % 12768u);
        if ((port = try_bind(addr, port, &err)) > 0) {
            *port_p = port;
            return 0;
        }
        if (err == -1)
            return -1;
    }
    if ((port = try_bind(addr, 0, &err)) > 0) {
        *port_p = port;
        return 0;
    }
    if (err != -1)
        ZERO_LOG_ERROR("--master_port 0: cannot bind a port on master address '%s': %s (the master address "
                       "must belong to this machine to pick its port here)", addr, strerror(err));
    return -1;
}

static int build_plan(const options_t *o, zero_launch_plan_t **plan_p)
{
    zero_launch_hostfile_t *hf = NULL;
    zero_launch_pool_t *pool = NULL, *selected = NULL;
    zero_launch_select_t sel = {o->include, o->exclude, o->num_nodes, o->num_gpus};
    int local_only = 0, rc = EXIT_USAGE;
    struct stat st;

    if (o->hostfile_given || stat(o->hostfile, &st) == 0) {
        if (zero_launch_hostfile_load(o->hostfile, &hf) != ZERO_OK)
            goto out;
        if (zero_launch_pool_from_hostfile(hf, &pool) != ZERO_OK)
            goto out;
    } else {
        /* No hostfile: one local node; its slots come from CUDA_VISIBLE_DEVICES,
         * the CUDA devices present, or --num_gpus processes on a CPU-only host. */
        local_only = 1;
        if (o->num_nodes > 1) {
            ZERO_LOG_ERROR("--num_nodes %d but there is no hostfile (%s does not exist): only the local "
                           "node is available", o->num_nodes, o->hostfile);
            goto out;
        }
        if (zero_launch_pool_create_local("localhost", getenv("CUDA_VISIBLE_DEVICES"),
                                          zero_launch_count_cuda_devices(), o->num_gpus, &pool) != ZERO_OK)
            goto out;
    }
    if (zero_launch_pool_select(pool, &sel, &selected) != ZERO_OK)
        goto out;
    if (zero_launch_plan_create(selected, local_only, o->master_addr, o->master_port, plan_p) != ZERO_OK)
        goto out;
    selected = NULL;
    if ((*plan_p)->master_port == 0 && pick_free_port((*plan_p)->master_addr, &(*plan_p)->master_port) != 0) {
        zero_launch_plan_destroy(*plan_p);
        *plan_p = NULL;
        goto out;
    }
    rc = 0;
out:
    zero_launch_pool_destroy(selected);
    zero_launch_pool_destroy(pool);
    zero_launch_hostfile_destroy(hf);
    return rc;
}

/* The environment file(s): $HOME/NAME then ./NAME, NAME = $DS_ENV_FILE or
 * .deepspeed_env; an absolute NAME is read once. */
static int load_env_files(zero_launch_env_t *env)
{
    const char *name = getenv("DS_ENV_FILE");
    const char *home = getenv("HOME");
    char *path = NULL;
    int found;
    if (name == NULL || name[0] == '\0')
        name = ".deepspeed_env";
    if (name[0] == '/')
        return zero_launch_envfile_load(name, env, &found) == ZERO_OK ? 0 : -1;
    if (home != NULL && home[0] != '\0') {
        path = zero_asprintf("%s/%s", home, name);
        if (path == NULL || zero_launch_envfile_load(path, env, &found) != ZERO_OK) {
            zero_free(path);
            return -1;
        }
        zero_free(path);
    }
    return zero_launch_envfile_load(name, env, &found) == ZERO_OK ? 0 : -1;
}

/*
 * The --dry-run lines of the env file(s): "env KEY=VALUE" for each entry every
 * rank gets, in file order. Entries for a per-rank variable (RANK, ...) are left
 * out, since the launcher's value wins over them -- except ZERO_JOB_TOKEN,
 * which is passed through as the job token.
 */
static int print_dry_run_env(const zero_launch_plan_t *plan, const zero_launch_env_t *file_env)
{
    zero_launch_env_t launcher_vars = {0};
    if (zero_launch_plan_rank_env(plan, 0, "", &launcher_vars) != ZERO_OK) {
        zero_launch_env_clear(&launcher_vars);
        return -1;
    }
    for (size_t i = 0; i < file_env->count; i++) {
        const char *key = file_env->keys[i];
        if (zero_launch_env_get(&launcher_vars, key) != NULL && strcmp(key, "ZERO_JOB_TOKEN") != 0)
            continue;
        printf("env %s=%s\n", key, file_env->values[i]);
    }
    zero_launch_env_clear(&launcher_vars);
    return 0;
}

/* Variables a remote rank inherits from zero-launch's own environment:
 * DeepSpeed's list plus libzero's own (ZERO_*, not ZERO_LAUNCH_*). */
static int exported_to_remote(const char *kv)
{
    static const char *const prefixes[] = {"NCCL", "UCX", "PYTHON", "MV2", "MLFLOW", "ZERO_"};
    if (strncmp(kv, "ZERO_LAUNCH_", 12) == 0)
        return 0;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(kv, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Running                                                              */

typedef struct relay {
    int fd;          /* read end, -1 when closed */
    int dest;        /* 1 or 2 */
    char *buf;
    size_t len;
    char prefix[96]; /* "[rank R] " or "[optd HOST:PORT] " */
    int *listening;  /* a server's: set when it says it listens */
} relay_t;

typedef struct rank_proc {
    pid_t pid;        /* leader of its own process group */
    int running;
    int remote;       /* 1: ssh or pdsh runs it */
    int stdin_fd;     /* ssh: our end of its stdin; closing it ends the remote rank */
    relay_t out, err;
} rank_proc_t;

/* A zero-optd the job started (--optd). */
typedef struct server_proc {
    rank_proc_t proc;
    char addr[272];   /* HOST:PORT as given */
    char host[256];
    int listening;    /* it said so on its stderr */
    int status;       /* status_code once it exited */
} server_proc_t;

typedef struct job {
    const options_t *opts;
    const zero_launch_plan_t *plan;
    rank_proc_t *procs;
    size_t running;
    server_proc_t *servers;
    size_t num_servers, servers_running;
    int stopping_servers;   /* the job is over: their exits are expected */
    int first_failure;      /* rank, or -1 */
    int exit_code;
    int interrupted;        /* signal number, or 0 */
} job_t;

/* What zero-optd prints once its doorway listens (tools/zero-optd). */
static const char optd_listening[] = "zero-optd: listening on";

/* Whether @p line is zero-optd's own "listening" line: it starts the line, or
 * follows pdsh's "HOST: " (an error that quotes the words does not count). */
static int says_listening(const char *line, size_t len)
{
    size_t m = sizeof(optd_listening) - 1;
    const char *colon;
    if (len >= m && memcmp(line, optd_listening, m) == 0)
        return 1;
    colon = memchr(line, ':', len);
    return colon != NULL && memchr(line, ' ', (size_t)(colon - line)) == NULL &&
           (size_t)(line + len - colon) >= m + 2 && colon[1] == ' ' && memcmp(colon + 2, optd_listening, m) == 0;
}

static void relay_emit(relay_t *r, const char *line, size_t len)
{
    size_t plen = strlen(r->prefix);
    char *msg = zero_malloc(plen + len + 1);
    if (r->listening != NULL && says_listening(line, len))
        *r->listening = 1;
    if (msg == NULL) {
        write_all(r->dest, line, len);
        write_all(r->dest, "\n", 1);
        return;
    }
    memcpy(msg, r->prefix, plen);
    memcpy(msg + plen, line, len);
    msg[plen + len] = '\n';
    write_all(r->dest, msg, plen + len + 1); /* one write: lines never interleave */
    zero_free(msg);
}

/* Reads what is available (a bounded amount, so one chatty rank cannot
 * starve the others); 0 while open, 1 at EOF (fd closed). @p drain reads on
 * until the pipe is empty (within reason). */
static int relay_read(relay_t *r, int drain)
{
    for (int rounds = 0; rounds < (drain ? 4096 : 16); rounds++) {
        ssize_t n;
        char *nl;
        if (r->len == RELAY_LINE_MAX) { /* an overlong line: emit it in pieces */
            relay_emit(r, r->buf, r->len);
            r->len = 0;
        }
        n = read(r->fd, r->buf + r->len, RELAY_LINE_MAX - r->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            if (r->len > 0)
                relay_emit(r, r->buf, r->len);
            r->len = 0;
            close(r->fd);
            r->fd = -1;
            return 1;
        }
        r->len += (size_t)n;
        while ((nl = memchr(r->buf, '\n', r->len)) != NULL) {
            size_t line = (size_t)(nl - r->buf);
            relay_emit(r, r->buf, line);
            memmove(r->buf, nl + 1, r->len - line - 1);
            r->len -= line + 1;
        }
    }
    return 0;
}

static void signal_rank(job_t *job, size_t r, int sig)
{
    rank_proc_t *p = &job->procs[r];
    if (!p->running)
        return;
    if (sig == SIGTERM && p->remote && p->stdin_fd >= 0) {
        /* ssh: closing its stdin ends the session's input; the remote wrapper
         * sees end-of-file and sends SIGTERM to the rank's process group. */
        close(p->stdin_fd);
        p->stdin_fd = -1;
        return;
    }
    if (kill(-p->pid, sig) != 0)
        kill(p->pid, sig);
}

static void signal_all(job_t *job, int sig)
{
    for (size_t r = 0; r < job->plan->world_size; r++)
        signal_rank(job, r, sig);
}

static const char *rank_host(const job_t *job, size_t r)
{
    return job->plan->pool->nodes[job->plan->ranks[r].node].host;
}

static void report_failure(const job_t *job, size_t r, int wstatus)
{
    char what[96];
    if (WIFSIGNALED(wstatus))
        snprintf(what, sizeof(what), "was killed by signal %d (%s)", WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
    else
        snprintf(what, sizeof(what), "exited with status %d%s", WEXITSTATUS(wstatus),
                 job->procs[r].remote && WEXITSTATUS(wstatus) == 255 ? " (ssh itself may have failed)" : "");
    fprintf(stderr, "zero-launch: rank %zu on %s %s; stopping the other ranks (grace %s s)\n", r,
            rank_host(job, r), what, job->opts->term_grace_text);
}

/* A server's exit: expected once the job is over; before, it is reported
 * (the ranks that use it fail on their own, naming it, within their bound). */
static void server_reaped(job_t *job, pid_t pid, int wstatus)
{
    for (size_t i = 0; i < job->num_servers; i++) {
        server_proc_t *sv = &job->servers[i];
        if (!sv->proc.running || sv->proc.pid != pid)
            continue;
        sv->proc.running = 0;
        sv->status = status_code(wstatus);
        job->servers_running--;
        if (sv->proc.stdin_fd >= 0) {
            close(sv->proc.stdin_fd);
            sv->proc.stdin_fd = -1;
        }
        if (!job->stopping_servers)
            fprintf(stderr, "zero-launch: zero-optd %s %s with status %d\n", sv->addr,
                    sv->listening ? "exited during the job" : "exited before it listened", sv->status);
        return;
    }
}

/*
 * Reaps every rank and server that has exited. The first failure is the one
 * reported; among the ranks that this pass finds failed, one killed by a
 * signal is taken before ones that exited with an error: waitpid's order is
 * not the order of death, and once a rank dies the others fail at once
 * (their communicator is told), so a survivor's error exit and the killed
 * rank are often reaped in the same pass.
 */
static void reap(job_t *job, int *phase, double *deadline)
{
    int found = -1, found_status = 0;
    for (;;) {
        int wstatus;
        pid_t pid = waitpid(-1, &wstatus, WNOHANG);
        size_t r;
        if (pid <= 0)
            break;
        for (r = 0; r < job->plan->world_size; r++)
            if (job->procs[r].running && job->procs[r].pid == pid)
                break;
        if (r == job->plan->world_size) {
            server_reaped(job, pid, wstatus);
            continue;
        }
        job->procs[r].running = 0;
        job->running--;
        if (job->procs[r].stdin_fd >= 0) {
            close(job->procs[r].stdin_fd);
            job->procs[r].stdin_fd = -1;
        }
        if (status_code(wstatus) != 0 && (found < 0 || (!WIFSIGNALED(found_status) && WIFSIGNALED(wstatus)))) {
            found = (int)r;
            found_status = wstatus;
        }
    }
    if (found >= 0 && job->first_failure < 0 && !job->interrupted) {
        job->first_failure = found;
        job->exit_code = status_code(found_status);
        report_failure(job, (size_t)found, found_status);
        if (*phase == 0) {
            *phase = 1; /* grace: let the others notice and exit on their own */
            *deadline = zero_clock_now() + job->opts->term_grace;
        }
    }
}

/* Builds the envp of a local rank: our environment, the env file, the rank's variables. */
static char **local_envp(const zero_launch_env_t *file_env, const zero_launch_env_t *rank_env)
{
    zero_launch_env_t all = {0};
    char **envp = NULL;
    size_t n = 0;
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        char *key;
        if (eq == NULL)
            continue;
        key = zero_strndup(*e, (size_t)(eq - *e));
        if (key == NULL || zero_launch_env_set(&all, key, eq + 1) != ZERO_OK) {
            zero_free(key);
            goto out;
        }
        zero_free(key);
    }
    for (size_t i = 0; i < file_env->count; i++)
        if (zero_launch_env_set(&all, file_env->keys[i], file_env->values[i]) != ZERO_OK)
            goto out;
    for (size_t i = 0; i < rank_env->count; i++)
        if (zero_launch_env_set(&all, rank_env->keys[i], rank_env->values[i]) != ZERO_OK)
            goto out;
    envp = zero_calloc(all.count + 1, sizeof(char *));
    if (envp == NULL)
        goto out;
    for (n = 0; n < all.count; n++) {
        envp[n] = zero_asprintf("%s=%s", all.keys[n], all.values[n]);
        if (envp[n] == NULL) {
            zero_launch_argv_free(envp);
            envp = NULL;
            goto out;
        }
    }
out:
    zero_launch_env_clear(&all);
    return envp;
}

static int make_relay(relay_t *r, int dest, int *child_end)
{
    int fds[2];
    r->fd = -1;
    r->dest = dest;
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    r->buf = zero_malloc(RELAY_LINE_MAX);
    if (r->buf == NULL) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    r->fd = fds[0];
    *child_end = fds[1];
    return 0;
}

typedef struct spawn_args {
    const char *what;      /* for messages */
    char **argv;
    char **envp;           /* NULL: inherit */
    int stdin_fd;          /* -1: /dev/null */
    int out_fd, err_fd;    /* -1: inherit */
} spawn_args_t;

static pid_t spawn(const spawn_args_t *a, pid_t launcher)
{
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0)
            setpgid(pid, pid);
        return pid;
    }
    /* child: own process group (Ctrl-C reaches only zero-launch, which then
     * stops every rank), die with the launcher, stdin from /dev/null or ssh's pipe */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != launcher)
        _exit(126);
    child_reset_signals();
    if (a->stdin_fd >= 0) {
        dup2(a->stdin_fd, 0);
    } else {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0 && devnull != 0) {
            dup2(devnull, 0);
            close(devnull);
        }
    }
    if (a->out_fd >= 0)
        dup2(a->out_fd, 1);
    if (a->err_fd >= 0)
        dup2(a->err_fd, 2);
    if (a->envp != NULL)
        execvpe(a->argv[0], a->argv, a->envp);
    else
        execvp(a->argv[0], a->argv);
    fprintf(stderr, "zero-launch: %s: cannot run '%s': %s\n", a->what, a->argv[0], strerror(errno));
    _exit(127);
}

/* Starts @p argv on @p host as process @p p (locally, or through ssh/pdsh as
 * `zero-launch --remote_exec`), with the env file and @p own_env on top of
 * what it inherits; @p relay: its output goes through pipes, each line
 * prefixed with @p prefix (always for servers, with --tag_output for ranks). */
static int start_process(job_t *job, rank_proc_t *p, const char *host, const char *what, char **prog,
                         const zero_launch_env_t *file_env, const zero_launch_env_t *own_env, int relay,
                         const char *prefix, int *listening, const char *hostname, const char *self_exe,
                         const char *cwd)
{
    const options_t *o = job->opts;
    int is_local = strcmp(o->launcher, "local") == 0 || zero_launch_host_is_local(host, hostname);
    zero_launch_env_t remote_env = {0};
    char **envp = NULL, **argv = NULL, *command = NULL, *pdsh_args = NULL;
    int out_child = -1, err_child = -1, in_pipe[2] = {-1, -1}, rc = -1;
    spawn_args_t sa = {.what = what, .stdin_fd = -1, .out_fd = -1, .err_fd = -1};

    p->stdin_fd = -1;
    p->out.fd = p->err.fd = -1;
    if (relay && (make_relay(&p->out, 1, &out_child) != 0 || make_relay(&p->err, 2, &err_child) != 0)) {
        ZERO_LOG_ERROR("%s: cannot create output pipes: %s", what, strerror(errno));
        goto out;
    }
    snprintf(p->out.prefix, sizeof(p->out.prefix), "%s", prefix);
    snprintf(p->err.prefix, sizeof(p->err.prefix), "%s", prefix);
    p->out.listening = p->err.listening = listening;
    sa.out_fd = out_child;
    sa.err_fd = err_child;
    if (is_local) {
        envp = local_envp(file_env, own_env);
        if (envp == NULL) {
            ZERO_LOG_ERROR("%s: out of memory building its environment", what);
            goto out;
        }
        sa.argv = prog;
        sa.envp = envp;
    } else {
        zero_launch_remote_params_t rp;
        const char *ssh_opts = getenv("ZERO_LAUNCH_SSH_OPTS");
        for (char **e = environ; *e != NULL; e++) {
            const char *eq = strchr(*e, '=');
            char *key;
            if (eq == NULL || !exported_to_remote(*e))
                continue;
            key = zero_strndup(*e, (size_t)(eq - *e));
            if (key == NULL || zero_launch_env_set(&remote_env, key, eq + 1) != ZERO_OK) {
                zero_free(key);
                goto out;
            }
            zero_free(key);
        }
        for (size_t i = 0; i < file_env->count; i++)
            if (zero_launch_env_set(&remote_env, file_env->keys[i], file_env->values[i]) != ZERO_OK)
                goto out;
        for (size_t i = 0; i < own_env->count; i++)
            if (zero_launch_env_set(&remote_env, own_env->keys[i], own_env->values[i]) != ZERO_OK)
                goto out;
        rp = (zero_launch_remote_params_t){
            .launcher_path = self_exe, .cwd = cwd, .term_grace = o->term_grace_text,
            .env_stdin = strcmp(o->launcher, "ssh") == 0, .env = &remote_env, .argv = prog};
        if (zero_launch_remote_command(&rp, &command) != ZERO_OK ||
            zero_launch_remote_argv(o->launcher, host, o->ssh_port, ssh_opts, command, &argv, &pdsh_args) !=
                ZERO_OK)
            goto out;
        if (pdsh_args != NULL) {
            /* pdsh takes ssh options from its environment */
            zero_launch_env_t pdsh_env = {0};
            int ok = zero_launch_env_set(&pdsh_env, "PDSH_RCMD_TYPE", "ssh") == ZERO_OK &&
                     zero_launch_env_set(&pdsh_env, "PDSH_SSH_ARGS_APPEND", pdsh_args) == ZERO_OK;
            zero_launch_env_t none = {0};
            envp = ok ? local_envp(&none, &pdsh_env) : NULL;
            zero_launch_env_clear(&pdsh_env);
            if (envp == NULL)
                goto out;
            sa.envp = envp;
        } else {
            if (pipe2(in_pipe, O_CLOEXEC) != 0) {
                ZERO_LOG_ERROR("%s: pipe: %s", what, strerror(errno));
                goto out;
            }
            sa.stdin_fd = in_pipe[0];
        }
        sa.argv = argv;
        p->remote = 1;
    }
    p->pid = spawn(&sa, getpid());
    if (p->pid < 0) {
        ZERO_LOG_ERROR("%s: fork: %s", what, strerror(errno));
        goto out;
    }
    p->running = 1;
    if (in_pipe[1] >= 0) {
        /* the variables go down the ssh session (small: fits the pipe), and
         * the pipe stays open for as long as the process should live */
        char *block = NULL;
        size_t block_len = 0;
        if (zero_launch_env_serialize(&remote_env, &block, &block_len) != ZERO_OK)
            goto out_started;
        write_all(in_pipe[1], block, block_len);
        zero_free(block);
        p->stdin_fd = in_pipe[1];
        in_pipe[1] = -1;
    }
out_started:
    rc = 0;
out:
    if (in_pipe[0] >= 0)
        close(in_pipe[0]);
    if (in_pipe[1] >= 0)
        close(in_pipe[1]);
    if (out_child >= 0)
        close(out_child);
    if (err_child >= 0)
        close(err_child);
    zero_launch_argv_free(envp);
    zero_launch_argv_free(argv);
    zero_free(command);
    zero_free(pdsh_args);
    zero_launch_env_clear(&remote_env);
    return rc;
}

static int start_rank(job_t *job, size_t r, const zero_launch_env_t *file_env, const char *token,
                      const char *hostname, const char *self_exe, const char *cwd)
{
    zero_launch_env_t rank_env = {0};
    char what[64], prefix[32];
    int rc = -1;
    snprintf(what, sizeof(what), "rank %zu", r);
    snprintf(prefix, sizeof(prefix), "[rank %zu] ", r);
    if (zero_launch_plan_rank_env(job->plan, r, token, &rank_env) != ZERO_OK)
        goto out;
    if (job->opts->optd != NULL && zero_launch_env_set(&rank_env, "ZERO_OPTD_SERVERS", job->opts->optd) != ZERO_OK)
        goto out;
    rc = start_process(job, &job->procs[r], rank_host(job, r), what, job->opts->program, file_env, &rank_env,
                       job->opts->tag_output, prefix, NULL, hostname, self_exe, cwd);
    if (rc == 0)
        job->running++;
out:
    zero_launch_env_clear(&rank_env);
    return rc;
}

/* ---------- --optd: the job's zero-optd servers ---------- */

/* The zero-optd program: $ZERO_LAUNCH_OPTD_EXE, else beside zero-launch
 * (installed: both in bindir), else the build tree's tools/zero-optd/, else
 * zero-optd on PATH. Remote hosts are assumed to have the same layout. */
static void optd_program(const char *self_exe, char *out, size_t n)
{
    const char *env = getenv("ZERO_LAUNCH_OPTD_EXE");
    const char *slash = strrchr(self_exe, '/');
    int dir = slash != NULL ? (int)(slash - self_exe) : 0;
    if (env != NULL && env[0] != '\0') {
        snprintf(out, n, "%s", env);
        return;
    }
    if (slash != NULL) {
        snprintf(out, n, "%.*s/zero-optd", dir, self_exe);
        if (access(out, X_OK) == 0)
            return;
        snprintf(out, n, "%.*s/../zero-optd/zero-optd", dir, self_exe);
        if (access(out, X_OK) == 0)
            return;
    }
    snprintf(out, n, "zero-optd");
}

/* Starts one zero-optd per --optd entry with the job token, and waits until
 * every one says it listens (ZERO_LAUNCH_OPTD_TIMEOUT seconds, default 30).
 * Returns 0, or the exit status to leave with (the servers started are left
 * for stop_servers). */
static int start_servers(job_t *job, const zero_launch_env_t *file_env, const char *token, const char *hostname,
                         const char *self_exe, const char *cwd)
{
    char program[PATH_MAX], addr_arg[272];
    char *argv[4] = {program, "--listen", addr_arg, NULL};
    zero_launch_env_t env = {0};
    const char *at = job->opts->optd, *timeout_text = getenv("ZERO_LAUNCH_OPTD_TIMEOUT");
    double timeout = 30.0, deadline;
    size_t n = 1;
    int rc = EXIT_LAUNCH;

    if (timeout_text != NULL && timeout_text[0] != '\0' && parse_seconds(timeout_text, &timeout) != 0) {
        ZERO_LOG_ERROR("ZERO_LAUNCH_OPTD_TIMEOUT: '%s' is not a number of seconds from 0 to 3600", timeout_text);
        return EXIT_USAGE;
    }
    for (const char *c = at; *c; c++)
        n += *c == ',';
    job->servers = zero_calloc(n, sizeof(*job->servers));
    if (job->servers == NULL || zero_launch_env_set(&env, "ZERO_JOB_TOKEN", token) != ZERO_OK) {
        ZERO_LOG_ERROR("out of memory");
        goto out;
    }
    optd_program(self_exe, program, sizeof(program));
    for (size_t i = 0; i < n; i++) {
        server_proc_t *sv = &job->servers[i];
        const char *end = strchr(at, ',');
        size_t len = end ? (size_t)(end - at) : strlen(at);
        const char *colon = memrchr(at, ':', len);   /* checked by check_optd_list */
        char what[300], prefix[300];
        snprintf(sv->addr, sizeof(sv->addr), "%.*s", (int)len, at);
        snprintf(sv->host, sizeof(sv->host), "%.*s", (int)(colon - at), at);
        snprintf(addr_arg, sizeof(addr_arg), "%s", sv->addr);
        snprintf(what, sizeof(what), "zero-optd %s", sv->addr);
        snprintf(prefix, sizeof(prefix), "[optd %s] ", sv->addr);
        job->num_servers++;
        if (start_process(job, &sv->proc, sv->host, what, argv, file_env, &env, 1, prefix, &sv->listening, hostname,
                          self_exe, cwd) != 0)
            goto out;
        job->servers_running++;
        at = end ? end + 1 : at + len;
    }
    /* wait until each listens: its stderr says so */
    deadline = zero_clock_now() + timeout;
    for (;;) {
        struct pollfd fds[2 * ZERO_LAUNCH_MAX_OPTD + 1];
        nfds_t nfds = 0;
        size_t ready = 0;
        double left;
        fds[nfds++] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
        for (size_t i = 0; i < job->num_servers; i++) {
            server_proc_t *sv = &job->servers[i];
            ready += sv->listening != 0;
            if (!sv->listening && !sv->proc.running) {
                ZERO_LOG_ERROR("zero-optd %s (%s) did not start: it exited with status %d before listening "
                               "(its output above, prefixed [optd %s])", sv->addr, program, sv->status, sv->addr);
                goto out;
            }
            if (sv->proc.out.fd >= 0)
                fds[nfds++] = (struct pollfd){.fd = sv->proc.out.fd, .events = POLLIN};
            if (sv->proc.err.fd >= 0)
                fds[nfds++] = (struct pollfd){.fd = sv->proc.err.fd, .events = POLLIN};
        }
        if (ready == job->num_servers) {
            rc = 0;
            goto out;
        }
        left = deadline - zero_clock_now();
        if (left <= 0) {
            for (size_t i = 0; i < job->num_servers; i++)
                if (!job->servers[i].listening)
                    ZERO_LOG_ERROR("zero-optd %s did not say it listens within %g s (ZERO_LAUNCH_OPTD_TIMEOUT)",
                                   job->servers[i].addr, timeout);
            goto out;
        }
        if (poll(fds, nfds, (int)ceil(left * 1000.0)) < 0 && errno != EINTR) {
            ZERO_LOG_ERROR("poll: %s", strerror(errno));
            goto out;
        }
        for (size_t i = 0; i < job->num_servers; i++) {
            server_proc_t *sv = &job->servers[i];
            if (sv->proc.out.fd >= 0)
                relay_read(&sv->proc.out, 0);
            if (sv->proc.err.fd >= 0)
                relay_read(&sv->proc.err, 0);
        }
        if (fds[0].revents & POLLIN) {
            unsigned char sig;
            while (read(signal_pipe[0], &sig, 1) == 1) {
                if (sig == SIGCHLD)
                    continue;
                fprintf(stderr, "zero-launch: received %s while starting the zero-optd servers; stopping them\n",
                        sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP");
                rc = 128 + sig;
                goto out;
            }
        }
        for (int status; ; ) {   /* reap the servers that exited */
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            server_reaped(job, pid, status);
        }
    }
out:
    zero_launch_env_clear(&env);
    return rc;
}

static void signal_proc(rank_proc_t *p, int sig)
{
    if (!p->running)
        return;
    if (sig == SIGTERM && p->remote && p->stdin_fd >= 0) {
        close(p->stdin_fd);   /* the remote wrapper sends SIGTERM (see signal_rank) */
        p->stdin_fd = -1;
        return;
    }
    if (kill(-p->pid, sig) != 0)
        kill(p->pid, sig);
}

/* The job is over (done, failed, interrupted): SIGTERM to every server,
 * SIGKILL after --term_grace; their last output is passed on. */
static void stop_servers(job_t *job)
{
    double kill_at = zero_clock_now() + job->opts->term_grace;
    int killed = 0;
    job->stopping_servers = 1;
    for (size_t i = 0; i < job->num_servers; i++)
        signal_proc(&job->servers[i].proc, SIGTERM);
    while (job->servers_running > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            server_reaped(job, pid, status);
            continue;
        }
        for (size_t i = 0; i < job->num_servers; i++) {
            server_proc_t *sv = &job->servers[i];
            if (sv->proc.out.fd >= 0)
                relay_read(&sv->proc.out, 0);
            if (sv->proc.err.fd >= 0)
                relay_read(&sv->proc.err, 0);
        }
        if (!killed && zero_clock_now() >= kill_at) {
            for (size_t i = 0; i < job->num_servers; i++)
                if (job->servers[i].proc.running) {
                    fprintf(stderr, "zero-launch: zero-optd %s did not stop within %s s; killing it\n",
                            job->servers[i].addr, job->opts->term_grace_text);
                    signal_proc(&job->servers[i].proc, SIGKILL);
                }
            killed = 1;
        }
        zero_clock_sleep(0.01);
    }
    for (size_t i = 0; i < job->num_servers; i++) {
        rank_proc_t *p = &job->servers[i].proc;
        if (p->out.fd >= 0)
            relay_read(&p->out, 1);
        if (p->err.fd >= 0)
            relay_read(&p->err, 1);
        if (p->out.fd >= 0)
            close(p->out.fd);
        if (p->err.fd >= 0)
            close(p->err.fd);
        if (p->stdin_fd >= 0)
            close(p->stdin_fd);
        zero_free(p->out.buf);
        zero_free(p->err.buf);
    }
    zero_free(job->servers);
    job->servers = NULL;
    job->num_servers = 0;
}

static int run_job(const options_t *o, const zero_launch_plan_t *plan, const zero_launch_env_t *file_env,
                   const char *token)
{
    job_t job = {.opts = o, .plan = plan, .first_failure = -1};
    char hostname[256] = "", self_exe[PATH_MAX], cwd[PATH_MAX];
    const char *remote_exe = getenv("ZERO_LAUNCH_REMOTE_EXE");
    int phase = 0; /* 0 running, 1 grace after a failure, 2 SIGTERM sent, 3 SIGKILL sent */
    double deadline = 0.0;
    ssize_t n;
    struct pollfd *fds = NULL;
    size_t *fd_rank = NULL;
    int rc = EXIT_LAUNCH;

    gethostname(hostname, sizeof(hostname) - 1);
    n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    self_exe[n > 0 ? n : 0] = '\0';
    if (remote_exe != NULL && remote_exe[0] != '\0')
        snprintf(self_exe, sizeof(self_exe), "%s", remote_exe);
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        ZERO_LOG_ERROR("cannot read the current directory: %s", strerror(errno));
        return EXIT_LAUNCH;
    }
    job.procs = zero_calloc(plan->world_size, sizeof(*job.procs));
    fds = zero_calloc(2 * plan->world_size + 2 * ZERO_LAUNCH_MAX_OPTD + 1, sizeof(*fds));
    fd_rank = zero_calloc(2 * plan->world_size + 2 * ZERO_LAUNCH_MAX_OPTD + 1, sizeof(*fd_rank));
    if (job.procs == NULL || fds == NULL || fd_rank == NULL) {
        ZERO_LOG_ERROR("out of memory");
        goto out;
    }
    if (install_signals() != 0) {
        ZERO_LOG_ERROR("cannot install signal handlers: %s", strerror(errno));
        goto out;
    }
    if (o->optd != NULL && (rc = start_servers(&job, file_env, token, hostname, self_exe, cwd)) != 0)
        goto out;
    rc = EXIT_LAUNCH;
    for (size_t r = 0; r < plan->world_size; r++) {
        if (start_rank(&job, r, file_env, token, hostname, self_exe, cwd) != 0) {
            /* could not start everything: stop what runs, as after a failure */
            job.first_failure = (int)r;
            job.exit_code = EXIT_LAUNCH;
            signal_all(&job, SIGTERM);
            phase = 2;
            deadline = zero_clock_now() + o->term_grace;
            break;
        }
    }

    while (job.running > 0) {
        nfds_t nfds = 0;
        int timeout = -1;
        fds[nfds++] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
        for (size_t r = 0; r < plan->world_size; r++) {
            if (job.procs[r].out.fd >= 0) {
                fd_rank[nfds] = 2 * r;
                fds[nfds++] = (struct pollfd){.fd = job.procs[r].out.fd, .events = POLLIN};
            }
            if (job.procs[r].err.fd >= 0) {
                fd_rank[nfds] = 2 * r + 1;
                fds[nfds++] = (struct pollfd){.fd = job.procs[r].err.fd, .events = POLLIN};
            }
        }
        for (size_t i = 0; i < job.num_servers; i++) {   /* their output, tagged [optd HOST:PORT] */
            const rank_proc_t *sp = &job.servers[i].proc;
            if (sp->out.fd >= 0) {
                fd_rank[nfds] = SIZE_MAX - 2 * i;
                fds[nfds++] = (struct pollfd){.fd = sp->out.fd, .events = POLLIN};
            }
            if (sp->err.fd >= 0) {
                fd_rank[nfds] = SIZE_MAX - 2 * i - 1;
                fds[nfds++] = (struct pollfd){.fd = sp->err.fd, .events = POLLIN};
            }
        }
        if (phase == 1 || phase == 2) {
            double left = deadline - zero_clock_now();
            timeout = left <= 0 ? 0 : (int)ceil(left * 1000.0);
        }
        if (poll(fds, nfds, timeout) < 0 && errno != EINTR) {
            ZERO_LOG_ERROR("poll: %s", strerror(errno));
            signal_all(&job, SIGKILL);
            phase = 3;
        }
        for (nfds_t k = 1; k < nfds; k++) {
            if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (fd_rank[k] >= SIZE_MAX - 2 * ZERO_LAUNCH_MAX_OPTD) {
                    size_t i = (SIZE_MAX - fd_rank[k]) / 2;
                    rank_proc_t *sp = &job.servers[i].proc;
                    relay_read((SIZE_MAX - fd_rank[k]) % 2 ? &sp->err : &sp->out, 0);
                } else {
                    size_t r = fd_rank[k] / 2;
                    rank_proc_t *p = &job.procs[r];
                    relay_read(fd_rank[k] % 2 ? &p->err : &p->out, 0);
                }
            }
        }
        if (fds[0].revents & POLLIN) {
            unsigned char sig;
            while (read(signal_pipe[0], &sig, 1) == 1) {
                if (sig == SIGCHLD)
                    continue;
                if (job.interrupted || phase >= 2) {
                    signal_all(&job, SIGKILL); /* asked twice: no more grace */
                    phase = 3;
                } else {
                    fprintf(stderr, "zero-launch: received %s; stopping all ranks\n",
                            sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP");
                    if (job.first_failure < 0) {
                        job.interrupted = sig;
                        job.exit_code = 128 + sig;
                    }
                    signal_all(&job, SIGTERM);
                    phase = 2;
                    deadline = zero_clock_now() + o->term_grace;
                }
            }
        }
        reap(&job, &phase, &deadline);
        if (job.running == 0)
            break;
        if (phase == 1 && zero_clock_now() >= deadline) {
            signal_all(&job, SIGTERM);
            phase = 2;
            deadline = zero_clock_now() + o->term_grace;
        } else if (phase == 2 && zero_clock_now() >= deadline) {
            signal_all(&job, SIGKILL);
            phase = 3;
        }
    }
    /* every rank has exited: pass on what is left in the pipes */
    for (size_t r = 0; r < plan->world_size; r++) {
        rank_proc_t *p = &job.procs[r];
        if (p->out.fd >= 0)
            relay_read(&p->out, 1);
        if (p->err.fd >= 0)
            relay_read(&p->err, 1);
    }
    rc = job.exit_code;
out:
    stop_servers(&job);
    if (job.procs != NULL) {
        for (size_t r = 0; r < plan->world_size; r++) {
            rank_proc_t *p = &job.procs[r];
            if (p->out.fd >= 0)
                close(p->out.fd);
            if (p->err.fd >= 0)
                close(p->err.fd);
            if (p->stdin_fd > 0)
                close(p->stdin_fd);
            zero_free(p->out.buf);
            zero_free(p->err.buf);
        }
    }
    zero_free(job.procs);
    zero_free(fds);
    zero_free(fd_rank);
    return rc;
}

/* --launcher openmpi|mpich|slurm (backend_mpi.h): the env files and the job token as for
 * the other launchers, then print (--dry-run) or become the foreign launcher's command. */
static int run_backend(const options_t *o, const zero_launch_plan_t *plan)
{
    zero_launch_env_t file_env = {0}, launcher_env = {0};
    char token[ZERO_LAUNCH_TOKEN_CHARS + 1] = "";
    const char *user_token = getenv("ZERO_JOB_TOKEN");
    char **argv = NULL;
    int rc = EXIT_USAGE;

    if (load_env_files(&file_env) != 0)
        goto out;
    if (user_token == NULL || user_token[0] == '\0')
        user_token = zero_launch_env_get(&file_env, "ZERO_JOB_TOKEN");
    if ((user_token == NULL || user_token[0] == '\0') && !o->dry_run) {
        if (zero_launch_token_generate(token) != ZERO_OK) {
            rc = EXIT_LAUNCH;
            goto out;
        }
        user_token = token;
    }
    zero_launch_backend_job_t job = {
        .backend = zero_launch_backend_from_name(o->launcher),
        .plan = plan,
        .exe = getenv(strcmp(o->launcher, "slurm") == 0 ? "ZERO_LAUNCH_SRUN" : "ZERO_LAUNCH_MPIRUN"),
        .extra_args = getenv("ZERO_LAUNCH_LAUNCHER_ARGS"),
        .tag_output = o->tag_output,
        .file_env = &file_env,
        .token = user_token != NULL ? user_token : "",
        .program = o->program,
    };
    if (zero_launch_backend_command(&job, &argv, &launcher_env) != ZERO_OK)
        goto out;
    if (o->dry_run) {
        char *line = zero_launch_backend_format(argv, &launcher_env);
        rc = line != NULL ? 0 : EXIT_LAUNCH;
        if (line != NULL)
            printf("%s\n", line);
        fflush(stdout);
        zero_free(line);
        goto out;
    }
    rc = zero_launch_backend_exec(argv, &launcher_env);
out:
    zero_launch_argv_free(argv);
    zero_launch_env_clear(&launcher_env);
    zero_launch_env_clear(&file_env);
    return rc;
}

int main(int argc, char **argv)
{
    options_t o;
    zero_launch_plan_t *plan = NULL;
    zero_launch_env_t file_env = {0};
    char token[ZERO_LAUNCH_TOKEN_CHARS + 1] = "";
    const char *user_token = getenv("ZERO_JOB_TOKEN");
    int rc;

    if (argc > 1 && strcmp(argv[1], "--remote_exec") == 0)
        return remote_exec_main(argc, argv);

    zero_log_set_callback(log_to_stderr, NULL);
    rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    rc = build_plan(&o, &plan);
    if (rc != 0)
        goto out;
    if (zero_launch_backend_from_name(o.launcher) != ZERO_LAUNCH_BACKEND_NONE && o.optd != NULL) {
        ZERO_LOG_ERROR("--optd starts the servers over ssh, pdsh or local, not --launcher %s: start the "
                       "zero-optd servers yourself and list them in the config's offload_optimizer.servers",
                       o.launcher);
        rc = EXIT_USAGE;
        goto out;
    }
    if (zero_launch_backend_from_name(o.launcher) != ZERO_LAUNCH_BACKEND_NONE) {
        rc = run_backend(&o, plan);   /* mpirun / mpiexec / srun: returns only on failure or --dry-run */
        goto out;
    }
    /* Read before the dry run too, so that it shows (and checks) the
     * environment the real run would apply. */
    if (load_env_files(&file_env) != 0) {
        rc = EXIT_USAGE;
        goto out;
    }
    if (o.dry_run) {
        for (size_t r = 0; r < plan->world_size; r++) {
            char hostname[256] = "";
            const char *host = plan->pool->nodes[plan->ranks[r].node].host;
            char *line;
            gethostname(hostname, sizeof(hostname) - 1);
            line = zero_launch_plan_format_rank(
                plan, r,
                strcmp(o.launcher, "local") == 0 || zero_launch_host_is_local(host, hostname) ? "local"
                                                                                            : o.launcher);
            if (line == NULL) {
                rc = EXIT_LAUNCH;
                goto out;
            }
            printf("%s\n", line);
            zero_free(line);
        }
        if (print_dry_run_env(plan, &file_env) != 0)
            rc = EXIT_LAUNCH;
        fflush(stdout);
        goto out;
    }
    /* The job token: the user's (environment, then env file), else a fresh one. */
    if (user_token == NULL || user_token[0] == '\0')
        user_token = zero_launch_env_get(&file_env, "ZERO_JOB_TOKEN");
    if (user_token == NULL || user_token[0] == '\0') {
        if (zero_launch_token_generate(token) != ZERO_OK) {
            rc = EXIT_LAUNCH;
            goto out;
        }
        user_token = token;
    }
    fflush(stdout);
    fflush(stderr);
    rc = run_job(&o, plan, &file_env, user_token);
out:
    zero_launch_env_clear(&file_env);
    zero_launch_plan_destroy(plan);
    zero_log_set_callback(NULL, NULL);
    return rc;
}

/*
 * comm_spawn: a minimal local launcher for the communicator tests, with the
 * zero-launch contract (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_SIZE, CROSS_RANK,
 * CROSS_SIZE, MASTER_ADDR, MASTER_PORT, CUDA_VISIBLE_DEVICES, ZERO_JOB_TOKEN).
 *
 *   comm_spawn -n N [--master_port P] PROGRAM [ARGS...]
 *
 * --master_port 0 (the default) picks a free port. An existing ZERO_JOB_TOKEN
 * is kept, else a random one is made. When a rank fails, the others get
 * SIGTERM, then SIGKILL after 3 s; the exit status is the first failing rank's
 * (128 + signal when killed), 0 when all succeed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void set_int(const char *name, int v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", v);
    setenv(name, buf, 1);
}

int main(int argc, char **argv)
{
    int n = 1, port = 0, argi = 1, first_rc = 0, failed = 0, killed = 0, alive;
    time_t kill_at = 0;
    pid_t *pids;
    char token[33];

    while (argi < argc && argv[argi][0] == '-') {
        if (strcmp(argv[argi], "-n") == 0 && argi + 1 < argc) {
            n = atoi(argv[argi + 1]);
            argi += 2;
        } else if (strcmp(argv[argi], "--master_port") == 0 && argi + 1 < argc) {
            port = atoi(argv[argi + 1]);
            argi += 2;
        } else {
            break;
        }
    }
    if (argi >= argc || n < 1 || n > 64) {
        fprintf(stderr, "usage: comm_spawn -n N [--master_port P] PROGRAM [ARGS...]\n");
        return 2;
    }
    if (port == 0 && (port = free_port()) < 0) {
        perror("comm_spawn: free port");
        return 2;
    }
    if (getenv("ZERO_JOB_TOKEN") == NULL) {
        unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid() << 8;
        for (int i = 0; i < 32; i++)
            token[i] = "0123456789abcdef"[rand_r(&seed) % 16];
        token[32] = '\0';
        setenv("ZERO_JOB_TOKEN", token, 1);
    }
    pids = calloc((size_t)n, sizeof(*pids));
    if (pids == NULL)
        return 2;
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    set_int("MASTER_PORT", port);
    set_int("WORLD_SIZE", n);
    set_int("LOCAL_SIZE", n);
    set_int("CROSS_RANK", 0);
    set_int("CROSS_SIZE", 1);
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
    for (int r = 0; r < n; r++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("comm_spawn: fork");
            return 2;
        }
        if (pid == 0) {
            set_int("RANK", r);
            set_int("LOCAL_RANK", r);
            execv(argv[argi], argv + argi);
            fprintf(stderr, "comm_spawn: exec %s: %s\n", argv[argi], strerror(errno));
            _exit(127);
        }
        pids[r] = pid;
    }
    alive = n;
    while (alive > 0) {
        int st, rc;
        pid_t pid = waitpid(-1, &st, failed ? WNOHANG : 0);
        if (pid == 0) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            if (!killed && time(NULL) >= kill_at) {
                for (int r = 0; r < n; r++)
                    if (pids[r] > 0)
                        kill(pids[r], SIGKILL);
                killed = 1;
            }
            nanosleep(&ts, NULL);
            continue;
        }
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        alive--;
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        for (int r = 0; r < n; r++) {
            if (pids[r] == pid) {
                pids[r] = 0;
                if (rc != 0)
                    fprintf(stderr, "comm_spawn: rank %d exited with %d\n", r, rc);
            }
        }
        if (rc != 0 && !failed) {
            failed = 1;
            first_rc = rc;
            kill_at = time(NULL) + 3;   /* grace period before SIGKILL */
            for (int r = 0; r < n; r++)
                if (pids[r] > 0)
                    kill(pids[r], SIGTERM);
        }
    }
    free(pids);
    return first_rc;
}

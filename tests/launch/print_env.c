/*
 * The rank program of the launcher tests. Each rank writes OUTDIR/rank<R>.env
 * (what it saw: the launcher's variables, any --var NAME, its pid, host, cwd
 * and arguments), then acts as told:
 *
 *   print_env OUTDIR [--var NAME]... [--print N] [--fail R:CODE] [--kill R]
 *                    [--sleep S] [--ignore_term] [ARG...]
 *
 *   --print N      write N lines to stdout and N to stderr
 *   --fail R:CODE  rank R exits with CODE once every rank has written its file
 *   --kill R       rank R kills itself with SIGKILL, likewise
 *   --sleep S      then sleep S seconds (the others, while one fails)
 *   --ignore_term  ignore SIGTERM (tests the SIGKILL escalation)
 * On SIGTERM (not ignored) a rank writes OUTDIR/rank<R>.term and exits 143.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char term_path[4096];

static void on_term(int sig)
{
    int fd = open(term_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    (void)sig;
    if (fd >= 0)
        close(fd);
    _exit(143);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Waits (up to 20 s) until all @p world ranks have written their files. */
static void wait_for_all(const char *dir, int world)
{
    char path[4200];
    for (int tries = 0; tries < 2000; tries++) {
        int have = 0;
        for (int r = 0; r < world; r++) {
            snprintf(path, sizeof(path), "%s/rank%d.env", dir, r);
            have += access(path, F_OK) == 0;
        }
        if (have == world)
            return;
        sleep_s(0.01);
    }
}

int main(int argc, char **argv)
{
    static const char *const names[] = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_SIZE", "CROSS_RANK",
                                        "CROSS_SIZE", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES",
                                        "ZERO_JOB_TOKEN"};
    const char *dir, *rank_s = getenv("RANK"), *world_s = getenv("WORLD_SIZE");
    const char *vars[32];
    int nvars = 0, print = 0, fail_rank = -1, fail_code = 0, kill_rank = -1, rank, world, i;
    double sleep_for = 0.0;
    char path[4200], tmp[4300], host[256] = "", cwd[4096] = "";
    FILE *f;

    if (argc < 2 || rank_s == NULL || world_s == NULL) {
        fprintf(stderr, "print_env: usage: print_env OUTDIR ... (under zero-launch)\n");
        return 99;
    }
    dir = argv[1];
    rank = atoi(rank_s);
    world = atoi(world_s);
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--var") == 0 && i + 1 < argc && nvars < 32)
            vars[nvars++] = argv[++i];
        else if (strcmp(argv[i], "--print") == 0 && i + 1 < argc)
            print = atoi(argv[++i]);
        else if (strcmp(argv[i], "--fail") == 0 && i + 1 < argc)
            sscanf(argv[++i], "%d:%d", &fail_rank, &fail_code);
        else if (strcmp(argv[i], "--kill") == 0 && i + 1 < argc)
            kill_rank = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sleep") == 0 && i + 1 < argc)
            sleep_for = atof(argv[++i]);
        else if (strcmp(argv[i], "--ignore_term") == 0)
            signal(SIGTERM, SIG_IGN);
        else
            break; /* the rest are plain arguments, recorded below */
    }
    snprintf(term_path, sizeof(term_path), "%s/rank%d.term", dir, rank);
    if (signal(SIGTERM, SIG_IGN) != SIG_IGN)
        signal(SIGTERM, on_term);

    gethostname(host, sizeof(host) - 1);
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        cwd[0] = '\0';
    snprintf(path, sizeof(path), "%s/rank%d.env", dir, rank);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "print_env: %s: %s\n", tmp, strerror(errno));
        return 98;
    }
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        const char *v = getenv(names[k]);
        fprintf(f, "%s=%s\n", names[k], v ? v : "<unset>");
    }
    for (int k = 0; k < nvars; k++) {
        const char *v = getenv(vars[k]);
        fprintf(f, "%s=%s\n", vars[k], v ? v : "<unset>");
    }
    {
        /* which network namespace ran us: the two-host test's "host" */
        char netns[256];
        ssize_t n = readlink("/proc/self/ns/net", netns, sizeof(netns) - 1);
        netns[n > 0 ? n : 0] = '\0';
        fprintf(f, "NETNS=%s\n", netns);
    }
    fprintf(f, "PID=%d\nHOST=%s\nCWD=%s\nARGS=", (int)getpid(), host, cwd);
    for (int k = i; k < argc; k++)
        fprintf(f, "%s[%s]", k > i ? " " : "", argv[k]);
    fprintf(f, "\n");
    fclose(f);
    rename(tmp, path); /* appears complete or not at all */

    for (int k = 0; k < print; k++) {
        printf("out %d of rank %d\n", k, rank);
        fprintf(stderr, "err %d of rank %d\n", k, rank);
        fflush(stdout);
    }
    if (rank == fail_rank || rank == kill_rank) {
        wait_for_all(dir, world);
        if (rank == kill_rank)
            raise(SIGKILL);
        return fail_code;
    }
    if (sleep_for > 0)
        sleep_s(sleep_for);
    return 0;
}

/* zero-optd for tests (optd_test.h). */
#include "optd_test.h"
#include "test_main.h"
#include "util/clock.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *serve(void *arg)
{
    zero_test_optd_t *t = arg;
    (void)zero_optd_server_run(t->server, &t->stop);
    return NULL;
}

int zero_test_optd_start(zero_test_optd_t *t, zero_optd_server_opts_t *opts)
{
    memset(t, 0, sizeof(*t));
    opts->host = "127.0.0.1";
    opts->port = 0;
    if (zero_optd_server_create(opts, &t->server) != ZERO_OK)
        return -1;
    snprintf(t->addr, sizeof(t->addr), "127.0.0.1:%d", zero_optd_server_port(t->server));
    if (pthread_create(&t->thread, NULL, serve, t) != 0) {
        zero_optd_server_destroy(t->server);
        t->server = NULL;
        return -1;
    }
    return 0;
}

void zero_test_optd_stop(zero_test_optd_t *t)
{
    t->stop = 1;
    pthread_join(t->thread, NULL);
    zero_optd_server_destroy(t->server);
    t->server = NULL;
}

pid_t zero_test_optd_spawn(const unsigned char token[16], char *addr, size_t addr_len)
{
    const char *build = getenv("ZERO_BUILD_DIR");
    char exe[4096], port_file[4096], hex[33];
    pid_t pid;
    int port = 0;
    if (build == NULL)
        return -1;
    snprintf(exe, sizeof(exe), "%s/tools/zero-optd/zero-optd", build);
    snprintf(port_file, sizeof(port_file), "%s/tests/optd-port-%d", build, (int)getpid());
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", token[i]);
    unlink(port_file);
    const pid_t parent = getpid();
    pid = fork();
    if (pid == 0) {
        zero_test_die_with_parent(parent);
        setenv("ZERO_JOB_TOKEN", hex, 1);
        execl(exe, exe, "--listen", "127.0.0.1:0", "--port-file", port_file, (char *)NULL);
        _exit(127);
    }
    for (double t0 = zero_clock_now(); pid > 0 && port <= 0 && zero_clock_now() - t0 < 20; zero_clock_sleep(0.05)) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
    }
    unlink(port_file);
    if (pid > 0 && port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    if (pid > 0)
        snprintf(addr, addr_len, "127.0.0.1:%d", port);
    return pid > 0 ? pid : -1;
}

int zero_test_error_has(uint64_t mark, const char *needle)
{
    const char *msg = zero_log_error_since(mark);
    if (msg == NULL || strstr(msg, needle) == NULL) {
        fprintf(stderr, "expected an error with \"%s\", got: %s\n", needle, msg ? msg : "(none)");
        return 0;
    }
    return 1;
}

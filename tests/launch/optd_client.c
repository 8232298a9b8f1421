/*
 * A rank for the zero-launch --optd tests (optd.sh, two_host.sh): uses the
 * zero-optd servers the launcher started, as a trainer's remote store would,
 * with what the launcher gave it (ZERO_OPTD_SERVERS, ZERO_JOB_TOKEN, RANK).
 *
 *   optd_client OUTDIR [--fail CODE] [--sleep S]
 *
 * Writes its master weights to every server through the remote store, reads
 * them back and compares them bit for bit; then writes OUTDIR/rankR.ok with
 * SERVERS= and PID= lines. --fail: exits with CODE after that; --sleep: then
 * sleeps S seconds (a SIGTERM writes OUTDIR/rankR.term and exits 143).
 * Exit status 10 when the servers could not be used.
 */
#include "offload/optd_wire.h"
#include "offload/store_remote.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ELEMS 5000

static char term_path[600];

static void on_term(int sig)
{
    FILE *f = fopen(term_path, "w");
    (void)sig;
    if (f != NULL)
        fclose(f);
    _exit(143);
}

/* Splits the comma-separated @p list in place; returns the number of entries. */
static int split_list(char *list, const char **out, int max)
{
    int n = 0;
    for (char *at = list; at != NULL && n < max;) {
        char *comma = strchr(at, ',');
        if (comma != NULL)
            *comma = '\0';
        out[n++] = at;
        at = comma != NULL ? comma + 1 : NULL;
    }
    return n;
}

static int round_trip(const char *const *servers, int num_servers, const char *token_text, int rank)
{
    zero_store_desc_t desc;
    zero_store_remote_opts_t ro;
    zero_store_t *store = NULL;
    zero_store_range_t r;
    int same = 1;

    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_HOST;
    desc.num_groups = 1;
    desc.length[0] = ELEMS + (size_t)rank;
    desc.num_states = 2;
    memset(&ro, 0, sizeof(ro));
    ro.servers = servers;
    ro.num_servers = num_servers;
    ro.rank = rank;
    ro.timeout_s = 20;
    if (zero_optd_token_parse(token_text, strlen(token_text), ro.token) != 0) {
        fprintf(stderr, "optd_client: ZERO_JOB_TOKEN '%s' is not 32 hex digits\n", token_text);
        return -1;
    }
    if (zero_store_remote_create(&desc, &ro, &store) != ZERO_OK)
        return -1;
    memset(&r, 0, sizeof(r));
    r.count = desc.length[0];
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    if (zero_store_acquire(store, &r) != ZERO_OK)
        goto fail;
    for (size_t i = 0; i < r.count; i++)
        r.data[ZERO_STORE_MASTER][i] = (float)rank * 1000.0f + (float)i * 0.25f;
    if (zero_store_release(store, &r, 1) != ZERO_OK)
        goto fail;
    memset(&r, 0, sizeof(r));
    r.count = desc.length[0];
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    if (zero_store_acquire(store, &r) != ZERO_OK)
        goto fail;
    for (size_t i = 0; i < r.count && same; i++)
        same = r.data[ZERO_STORE_MASTER][i] == (float)rank * 1000.0f + (float)i * 0.25f;
    zero_store_release(store, &r, 0);
    zero_store_destroy(store);
    if (!same)
        fprintf(stderr, "optd_client: rank %d read back other values than it wrote\n", rank);
    return same ? 0 : -1;
fail:
    zero_store_destroy(store);
    return -1;
}

int main(int argc, char **argv)
{
    const char *servers_env = getenv("ZERO_OPTD_SERVERS"), *token = getenv("ZERO_JOB_TOKEN");
    const char *rank_env = getenv("RANK");
    const char *servers[64];
    char *list, path[600];
    int rank = rank_env ? atoi(rank_env) : 0, fail_code = -1, num_servers;
    double sleep_s = 0;
    FILE *f;

    if (argc < 2) {
        fprintf(stderr, "usage: optd_client OUTDIR [--fail CODE] [--sleep S]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--fail") == 0)
            fail_code = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--sleep") == 0)
            sleep_s = atof(argv[i + 1]);
    }
    snprintf(term_path, sizeof(term_path), "%s/rank%d.term", argv[1], rank);
    signal(SIGTERM, on_term);
    if (servers_env == NULL || token == NULL) {
        fprintf(stderr, "optd_client: rank %d: ZERO_OPTD_SERVERS or ZERO_JOB_TOKEN is not set\n", rank);
        return 10;
    }
    list = strdup(servers_env);
    if (list == NULL)
        return 10;
    num_servers = split_list(list, servers, 64);
    if (round_trip(servers, num_servers, token, rank) != 0) {
        free(list);
        return 10;
    }
    free(list);
    snprintf(path, sizeof(path), "%s/rank%d.ok", argv[1], rank);
    f = fopen(path, "w");
    if (f == NULL)
        return 10;
    fprintf(f, "SERVERS=%s\nPID=%d\n", servers_env, (int)getpid());
    fclose(f);
    if (fail_code >= 0)
        return fail_code;
    for (double t = 0; t < sleep_s; t += 0.05)
        usleep(50000);
    return 0;
}

/*
 * UCX set-up shared by zero-optd and the remote store (optd_ucx.h).
 */
#define ZERO_LOG_MODULE "optd"
#include "offload/optd_ucx.h"
#include "util/checks_ucx.h"
#include "util/log.h"
#include "util/ucx_pins.h"

#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

zero_status_t zero_optd_ucx_open(zero_optd_ucx_t *u, const char *const *settings, const char *who)
{
    zero_status_t status = ZERO_OK;
    ucp_config_t *config = NULL;
    ucp_params_t params;
    const char *tls = NULL;   /* the environment's */

    memset(u, 0, sizeof(*u));
    u->efd = -1;
    ZERO_UCS_CHECK_GOTO(ucp_config_read(NULL, NULL, &config), status, fail, "%s: UCX: %s", who,
                        "reading its configuration");
    for (int i = 0; settings != NULL && settings[i] != NULL && settings[i + 1] != NULL; i += 2)
        if (strcmp(settings[i], "TLS") == 0)
            tls = settings[i + 1];
    ZERO_CHECK_GOTO(zero_ucx_pin_sizes(config, tls, ZERO_OPTD_UCX_PINS, who),
                    status, fail);
    /* the caller's after the pins: a test may set them otherwise */
    for (int i = 0; settings != NULL && settings[i] != NULL && settings[i + 1] != NULL; i += 2)
        ZERO_UCS_CHECK_GOTO(ucp_config_modify(config, settings[i], settings[i + 1]), status, fail,
                            "%s: UCX: setting %s=%s", who, settings[i], settings[i + 1]);
    memset(&params, 0, sizeof(params));
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;   /* waits sleep on the event descriptor */
    ZERO_UCS_CHECK_GOTO(ucp_init(&params, config, &u->context), status, fail, "%s: UCX: %s", who, "ucp_init");
    ZERO_CHECK_GOTO(zero_optd_worker_open(u->context, &u->worker, &u->efd, who), status, fail);
    if (config != NULL)
        ucp_config_release(config);
    return ZERO_OK;
fail:
    if (config != NULL)
        ucp_config_release(config);
    zero_optd_ucx_close(u);
    return status;
}

zero_status_t zero_optd_worker_open(ucp_context_h context, ucp_worker_h *worker, int *efd, const char *who)
{
    zero_status_t status = ZERO_OK;
    ucp_worker_params_t wparams;
    *worker = NULL;
    *efd = -1;
    memset(&wparams, 0, sizeof(wparams));
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    /* serialized, not single: CPU offload's offload thread steps a device
     * rank's slots on the remote store (its control worker and each
     * server's data worker) while the trainer's thread acquires ranges for
     * checkpoints, one at a time (offload/cpu_inner.h); UCX's
     * single mode allows one thread only. zero-optd's per-connection
     * workers are only ever driven by its one loop thread, but share this
     * one place of creation */
    wparams.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    ZERO_UCS_CHECK_GOTO(ucp_worker_create(context, &wparams, worker), status, fail, "%s: UCX: %s", who,
                        "creating the worker");
    if (ucp_worker_get_efd(*worker, efd) != UCS_OK)
        *efd = -1;
    return ZERO_OK;
fail:
    *worker = NULL;
    return status;
}

void zero_optd_ucx_close(zero_optd_ucx_t *u)
{
    if (u->worker != NULL)
        ucp_worker_destroy(u->worker);
    if (u->context != NULL)
        ucp_cleanup(u->context);
    u->worker = NULL;
    u->context = NULL;
    u->efd = -1;
}

int zero_optd_same_host_enabled(void)
{
    const char *env = getenv("ZERO_OPTD_SAME_HOST");
    return env == NULL || strcmp(env, "0") != 0;
}

int zero_optd_onesided_enabled(void)
{
    const char *env = getenv("ZERO_OPTD_ONESIDED");
    return env == NULL || strcmp(env, "0") != 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   /* Linux 5.14 */
#endif

int zero_optd_region_populate(void *ptr, size_t bytes)
{
    /* not zero_mem_populate: it touches the pages when madvise fails, and
     * on a full tmpfs the touch is a SIGBUS */
    return madvise(ptr, bytes, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
}

ucs_status_t zero_optd_region_map(ucp_ep_h ep, const void *rkey_buf, uint64_t address, size_t bytes,
                                  ucp_rkey_h *rkey_p, void **ptr_p, const char **step_p)
{
    void *first = NULL, *last = NULL;
    ucs_status_t st = ucp_ep_rkey_unpack(ep, rkey_buf, rkey_p);
    *ptr_p = NULL;
    if (st != UCS_OK) {
        *rkey_p = NULL;
        *step_p = "unpacked";
        return st;
    }
    st = ucp_rkey_ptr(*rkey_p, address, &first);
    if (st == UCS_OK)
        st = ucp_rkey_ptr(*rkey_p, address + bytes - 1, &last);
    if (st == UCS_OK && (unsigned char *)last != (unsigned char *)first + bytes - 1)
        st = UCS_ERR_UNREACHABLE;   /* not contiguous here */
    if (st != UCS_OK) {
        ucp_rkey_destroy(*rkey_p);
        *rkey_p = NULL;
        *step_p = "mapped";
        return st;
    }
    *ptr_p = first;
    return UCS_OK;
}

void zero_optd_data_settings(const char *settings[ZERO_OPTD_DATA_SETTINGS])
{
    const char *tls = getenv("ZERO_OPTD_DATA_TLS");
    /* cma, by name or through UCX 1.13's aliases that hold it ("sm",
     * "shm"), "all", or any exclusion list ("^..."): one that does not
     * name cma keeps it, and one that does is refused by name too (the
     * transports it keeps were not looked at). By substring, so a name
     * that merely holds "sm" is refused as well: the default then runs. */
    if (tls != NULL && (strstr(tls, "cma") != NULL || strstr(tls, "sm") != NULL || strstr(tls, "shm") != NULL ||
                        strstr(tls, "all") != NULL || tls[0] == '^')) {
        ZERO_LOG_WARN("ZERO_OPTD_DATA_TLS=%s names cma or may hold it, which can abort the process when its peer dies "
                      "on the data connection (docs/optd.md): using %s", tls, ZERO_OPTD_DATA_TLS_DEFAULT);
        tls = NULL;
    }
    settings[0] = "TLS";
    settings[1] = tls != NULL && tls[0] != '\0' ? tls : ZERO_OPTD_DATA_TLS_DEFAULT;
    /* Every message eager, that is through the shared-memory FIFO: with tcp
     * in the set (the default until version 8, and a ZERO_OPTD_DATA_TLS may
     * name it) a rendezvous moved large ones with tcp's one-sided lane over
     * the loopback; with RNDV_SCHEME=am UCX 1.13 still did. Kept for posix
     * alone too: the eager path is the one measured. */
    settings[2] = "RNDV_THRESH";
    settings[3] = "inf";
    settings[4] = NULL;
}

/* Whether /sys/class/infiniband lists a device (RDMA, RoCE included):
 * UCX's verbs transports name theirs in NET_DEVICES as well. */
static int host_has_rdma(void)
{
    DIR *d = opendir("/sys/class/infiniband");
    struct dirent *e;
    int found = 0;
    while (d != NULL && !found && (e = readdir(d)) != NULL)
        found = e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return found;
}

/* Whether @p a and @p b (one of them from getifaddrs) are the same IPv4 or
 * IPv6 address, ports aside. */
static int same_address(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return 0;
}

int zero_optd_listen_device(const struct sockaddr *addr, char *dev, size_t n)
{
    struct ifaddrs *list = NULL;
    int found = 0;
    if (getenv("UCX_NET_DEVICES") != NULL || n == 0)
        return 0;
    if (addr->sa_family == AF_INET && ((const struct sockaddr_in *)addr)->sin_addr.s_addr == htonl(INADDR_ANY))
        return 0;
    if (addr->sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr))
        return 0;
    if (host_has_rdma() || getifaddrs(&list) != 0)
        return 0;
    for (struct ifaddrs *i = list; i != NULL && !found; i = i->ifa_next)
        if (i->ifa_addr != NULL && i->ifa_name != NULL && same_address(addr, i->ifa_addr) &&
            strlen(i->ifa_name) < n) {
            snprintf(dev, n, "%s", i->ifa_name);
            found = 1;
        }
    freeifaddrs(list);
    return found;
}

int zero_optd_host_addresses(struct sockaddr_storage *out, int max)
{
    struct ifaddrs *list = NULL;
    int n = 0;
    if (getifaddrs(&list) != 0)
        return 0;
    for (int family = AF_INET; family != 0; family = family == AF_INET ? AF_INET6 : 0)
        for (struct ifaddrs *i = list; i != NULL && n < max; i = i->ifa_next)
            if (i->ifa_addr != NULL && i->ifa_addr->sa_family == family) {
                memset(&out[n], 0, sizeof(out[n]));
                memcpy(&out[n], i->ifa_addr,
                       family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
                n++;
            }
    freeifaddrs(list);
    return n;
}

int zero_optd_is_host_address(const struct sockaddr *sa)
{
    struct sockaddr_in v4;
    struct ifaddrs *list = NULL;
    int found = 0;
    if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
        memset(&v4, 0, sizeof(v4));
        v4.sin_family = AF_INET;
        memcpy(&v4.sin_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12], 4);
        sa = (const struct sockaddr *)&v4;
    }
    if (getifaddrs(&list) != 0)
        return 0;
    for (struct ifaddrs *i = list; i != NULL && !found; i = i->ifa_next)
        found = i->ifa_addr != NULL && same_address(sa, i->ifa_addr);
    freeifaddrs(list);
    return found;
}

int zero_optd_ucx_progress(zero_optd_ucx_t *u, int n)
{
    int moved = 0;
    for (int i = 0; i < n; i++)
        if (u[i].worker != NULL)
            moved |= ucp_worker_progress(u[i].worker) != 0;
    return moved;
}

int zero_optd_worker_arm(ucp_worker_h worker, int efd, struct pollfd *pfd)
{
    ucs_status_t st = efd < 0 ? UCS_ERR_UNSUPPORTED : ucp_worker_arm(worker);
    if (st == UCS_ERR_BUSY)
        return -1;   /* events pending */
    if (st != UCS_OK)
        return -2;
    *pfd = (struct pollfd){.fd = efd, .events = POLLIN};
    return 1;
}

int zero_optd_ucx_arm(zero_optd_ucx_t *u, int n, struct pollfd *pfd)
{
    int added = 0;
    for (int i = 0; i < n; i++) {
        if (u[i].worker == NULL)
            continue;
        int rc = zero_optd_worker_arm(u[i].worker, u[i].efd, pfd + added);
        if (rc < 0)
            return rc;
        added++;
    }
    return added;
}

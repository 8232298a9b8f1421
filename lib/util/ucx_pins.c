#define ZERO_LOG_MODULE "ucx"
#include "util/ucx_pins.h"
#include "util/checks_ucx.h"
#include "util/log.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

/* One pinned setting: @p key as ucp_config_modify takes it ("MM_..." is
 * the table posix and sysv share, TX_/RX_SEG_SIZE and PUT_ENABLE are tcp's
 * alone), the group (ZERO_UCX_PIN_*) a caller asks for, whether tcp has it
 * (else the shared-memory FIFO), and @p env, the variables that set it
 * otherwise. */
typedef struct pin {
    const char *key, *value;
    unsigned group;
    int tcp;
    const char *env[3];
} pin_t;

static const pin_t pins[] = {
    {"MM_SEG_SIZE", ZERO_UCX_MM_SEG_SIZE, ZERO_UCX_PIN_MM, 0, {"UCX_POSIX_SEG_SIZE", "UCX_SYSV_SEG_SIZE", "UCX_MM_SEG_SIZE"}},
    {"MM_FIFO_SIZE", ZERO_UCX_MM_FIFO_SIZE, ZERO_UCX_PIN_MM, 0,
     {"UCX_POSIX_FIFO_SIZE", "UCX_SYSV_FIFO_SIZE", "UCX_MM_FIFO_SIZE"}},
    {"MM_FIFO_ELEM_SIZE", ZERO_UCX_MM_FIFO_ELEM_SIZE, ZERO_UCX_PIN_MM, 0,
     {"UCX_POSIX_FIFO_ELEM_SIZE", "UCX_SYSV_FIFO_ELEM_SIZE", "UCX_MM_FIFO_ELEM_SIZE"}},
    {"TX_SEG_SIZE", ZERO_UCX_TCP_TX_SEG_SIZE, ZERO_UCX_PIN_TCP, 1, {"UCX_TCP_TX_SEG_SIZE", NULL, NULL}},
    {"RX_SEG_SIZE", ZERO_UCX_TCP_RX_SEG_SIZE, ZERO_UCX_PIN_TCP, 1, {"UCX_TCP_RX_SEG_SIZE", NULL, NULL}},
    {"PUT_ENABLE", ZERO_UCX_TCP_PUT_ENABLE, ZERO_UCX_PIN_TCP_PUT, 1, {"UCX_TCP_PUT_ENABLE", NULL, NULL}},
    /* after ZERO_UCX_PIN_TCP's RX_SEG_SIZE: a later entry for a key wins (superseded) */
    {"RX_SEG_SIZE", ZERO_UCX_OPTD_TCP_RX_SEG_SIZE, ZERO_UCX_PIN_TCP_OPTD_RX, 1, {"UCX_TCP_RX_SEG_SIZE", NULL, NULL}},
    {"RX_MPOOL_SIZES", ZERO_UCX_OPTD_RX_MPOOL_SIZES, ZERO_UCX_PIN_TCP_OPTD_RX, 1, {"UCX_RX_MPOOL_SIZES", NULL, NULL}},
};
#define NPINS (sizeof(pins) / sizeof(pins[0]))

int zero_ucx_list_has(const char *list, const char *name, int suffixed)
{
    size_t n = strlen(name);
    for (const char *e = list; *e != '\0'; e += strcspn(e, ","), e += *e == ',')
        if (strncmp(e, name, n) == 0 && (e[n] == ',' || e[n] == '\0' || (suffixed && e[n] == ':')))
            return 1;
    return 0;
}

/* Whether the UCX_TLS list @p list (each entry maybe with a ":aux"-like
 * suffix) has an entry that is @p name. */
static int tls_has(const char *list, const char *name)
{
    return zero_ucx_list_has(list, name, 1);
}

/* Whether a context limited to UCX_TLS value @p tls (NULL or empty: UCX's
 * own choice) may open tcp (@p tcp) or a shared-memory FIFO transport. An exclusion list
 * ("^...") keeps the group unless it names all of its transports. Pinning
 * a setting no transport of the context has makes UCX warn "invalid
 * configurations" at every worker. */
static int tls_may_use(const char *tls, int tcp)
{
    if (tls == NULL || tls[0] == '\0')
        return 1;
    if (tls[0] == '^') {
        const char *x = tls + 1;
        if (tcp)
            return !tls_has(x, "tcp");
        return !(tls_has(x, "sm") || tls_has(x, "shm") || tls_has(x, "mm") ||
                 (tls_has(x, "posix") && tls_has(x, "sysv")));
    }
    if (tls_has(tls, "all"))
        return 1;
    if (tcp)
        return tls_has(tls, "tcp");
    return tls_has(tls, "posix") || tls_has(tls, "sysv") || tls_has(tls, "sm") || tls_has(tls, "shm") ||
           tls_has(tls, "mm");
}

/* @p text read as UCX reads a size: a number, then k, m or g (any case)
 * and an optional b ("8K", "8kb" and "8192" are one). 0 where it is not
 * one. */
static unsigned long long size_of(const char *text)
{
    char *end;
    unsigned long long v;
    if (!isdigit((unsigned char)text[0]))
        return 0;
    v = strtoull(text, &end, 10);
    switch (tolower((unsigned char)*end)) {
    case 'k': v <<= 10; end++; break;
    case 'm': v <<= 20; end++; break;
    case 'g': v <<= 30; end++; break;
    default: break;
    }
    if (tolower((unsigned char)*end) == 'b')
        end++;
    return *end == '\0' ? v : 0;
}

/* @p text read as UCX reads a yes/no setting: 1, 0, or -1 where it is
 * not one. */
static int flag_of(const char *text)
{
    static const char *const yes[] = {"y", "yes", "on", "1", NULL}, *const no[] = {"n", "no", "off", "0", NULL};
    for (size_t i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return 1;
        if (strcasecmp(text, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Whether @p value sets what @p pinned does: the same size, or the same
 * yes/no (as text where it is neither). */
static int same_value(const char *value, const char *pinned)
{
    unsigned long long a = size_of(value);
    int f = flag_of(value);
    if (a != 0)
        return a == size_of(pinned);
    if (f >= 0 && flag_of(pinned) >= 0)
        return f == flag_of(pinned);
    return strcmp(value, pinned) == 0;
}

/* Logs once per process and pin that the environment sets what pins[@p i]
 * pins otherwise. */
static void warn_overridden(size_t i)
{
    static atomic_int warned[NPINS];
    const pin_t *p = &pins[i];
    for (size_t e = 0; e < 3 && p->env[e] != NULL; e++) {
        const char *value = getenv(p->env[e]);
        if (value == NULL || same_value(value, p->value) || atomic_exchange(&warned[i], 1) != 0)
            continue;
        if (p->group == ZERO_UCX_PIN_TCP_OPTD_RX)
            ZERO_LOG_WARN("%s=%s is not used for the connections between zero-optd and its clients: they use %s=%s, "
                          "with tcp's receive segment of %s on both ends (UCX 1.13's tcp aborts a receiver on a "
                          "fragment longer than its own) and unexpected messages kept in buffers their size "
                          "(docs/optd.md, Safety)",
                          p->env[e], value, p->env[e], p->value, ZERO_UCX_OPTD_TCP_RX_SEG_SIZE);
        else if (p->group == ZERO_UCX_PIN_TCP_PUT)
            ZERO_LOG_WARN("%s=%s is not used for the connections between zero-optd and its clients: they use %s=%s, "
                          "because UCX 1.13's tcp can abort the process on a put's acknowledgement once its peer "
                          "closed (docs/optd.md, Safety)",
                          p->env[e], value, p->env[e], p->value);
        else
            ZERO_LOG_WARN("%s=%s is not used for %s: they use %s=%s on every process, because UCX 1.13's %s trusts "
                          "the sender's size and a mismatch between two processes corrupts or aborts the receiver "
                          "(docs/optd.md, Safety)",
                          p->env[e], value,
                          p->tcp ? "libzero's connections (ranks, zero-optd and its clients)"
                                                       : "the connections between zero-optd and its clients",
                          p->env[e], p->value, p->tcp ? "tcp" : "shared memory");
    }
}

/* Whether an entry after pins[@p i] in @p groups pins the same key (then
 * that one is set, not pins[@p i]). */
static int superseded(size_t i, unsigned groups)
{
    for (size_t j = i + 1; j < NPINS; j++)
        if ((groups & pins[j].group) && pins[j].tcp == pins[i].tcp && strcmp(pins[j].key, pins[i].key) == 0)
            return 1;
    return 0;
}

zero_status_t zero_ucx_pin_sizes(ucp_config_t *config, const char *tls, unsigned groups, const char *who)
{
    zero_status_t status = ZERO_OK;
    if (tls == NULL)
        tls = getenv("UCX_TLS");
    for (size_t i = 0; i < NPINS; i++) {
        if (!(groups & pins[i].group) || !tls_may_use(tls, pins[i].tcp) || superseded(i, groups))
            continue;
        warn_overridden(i);
        ZERO_UCS_CHECK_GOTO(ucp_config_modify(config, pins[i].key, pins[i].value), status, fail,
                            "%s: UCX: setting %s=%s", who, pins[i].key, pins[i].value);
    }
fail:
    return status;
}

#define ZERO_LOG_MODULE "launch"
#include "hostfile.h"
#include "launch_util.h"

#include "util/alloc.h"
#include "util/checks.h"
#include "util/log.h"

#include <string.h>

void zero_launch_hostfile_destroy(zero_launch_hostfile_t *hostfile)
{
    if (hostfile == NULL)
        return;
    for (size_t i = 0; i < hostfile->count; i++)
        zero_free(hostfile->hosts[i].name);
    zero_free(hostfile->hosts);
    zero_free(hostfile);
}

static const char *next_token(const char **p, const char *end, size_t *len_p)
{
    const char *start;
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    start = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    *len_p = (size_t)(*p - start);
    return *len_p ? start : NULL;
}

/* Parses one comment-stripped, trimmed, non-empty line into host/slots. */
static zero_status_t parse_line(const char *line, const char *end, const char *source, unsigned lineno,
                                zero_launch_hostfile_t *hf)
{
    zero_status_t status = ZERO_OK;
    const char *p = line;
    size_t host_len, slots_len, extra_len;
    const char *host = next_token(&p, end, &host_len);
    const char *slots = next_token(&p, end, &slots_len);
    const char *extra = next_token(&p, end, &extra_len);
    char number[16];
    long value = 0;
    int ok;
    const char *reserved;
    zero_launch_host_t *grown;

    if (host == NULL || slots == NULL || extra != NULL || slots_len < 6 || memcmp(slots, "slots=", 6) != 0) {
        ZERO_LOG_ERROR("%s:%u: malformed line '%.*s' (expected 'HOST slots=N')", source, lineno,
                       (int)(end - line), line);
        return ZERO_ERR_CONFIG;
    }
    ok = slots_len - 6 < sizeof(number);
    if (ok) {
        memcpy(number, slots + 6, slots_len - 6);
        number[slots_len - 6] = '\0';
        ok = zero_launch_parse_long(number, 1, ZERO_LAUNCH_MAX_SLOTS, &value) == 0;
    }
    if (!ok) {
        ZERO_LOG_ERROR("%s:%u: slots must be a whole number from 1 to %d, got '%.*s'", source, lineno,
                       ZERO_LAUNCH_MAX_SLOTS, (int)(slots_len - 6), slots + 6);
        return ZERO_ERR_CONFIG;
    }
    if (host[0] == '-') {
        ZERO_LOG_ERROR("%s:%u: host name '%.*s' starts with '-'", source, lineno, (int)host_len, host);
        return ZERO_ERR_CONFIG;
    }
    for (reserved = "@:,="; *reserved; reserved++) {
        if (memchr(host, *reserved, host_len) != NULL) {
            ZERO_LOG_ERROR("%s:%u: host name '%.*s' contains '%c', which the --include/--exclude "
                           "grammar reserves", source, lineno, (int)host_len, host, *reserved);
            return ZERO_ERR_CONFIG;
        }
    }
    for (size_t i = 0; i < hf->count; i++) {
        if (strlen(hf->hosts[i].name) == host_len && memcmp(hf->hosts[i].name, host, host_len) == 0) {
            ZERO_LOG_ERROR("%s:%u: duplicate host '%.*s' (first defined at line %u)", source, lineno,
                           (int)host_len, host, hf->hosts[i].line);
            return ZERO_ERR_CONFIG;
        }
    }
    grown = zero_realloc(hf->hosts, (hf->count + 1) * sizeof(*grown));
    ZERO_REQUIRE_GOTO(grown != NULL, ZERO_ERR_NO_MEMORY, status, out, "%s: out of memory", source);
    hf->hosts = grown;
    grown[hf->count].name = zero_strndup(host, host_len);
    ZERO_REQUIRE_GOTO(grown[hf->count].name != NULL, ZERO_ERR_NO_MEMORY, status, out, "%s: out of memory",
                      source);
    grown[hf->count].slots = (int)value;
    grown[hf->count].line = lineno;
    hf->count++;
out:
    return status;
}

zero_status_t zero_launch_hostfile_parse(const char *text, const char *source,
                                         zero_launch_hostfile_t **hostfile_p)
{
    zero_status_t status = ZERO_OK;
    zero_launch_hostfile_t *hf;
    const char *p = text;
    unsigned lineno = 0;

    if (text == NULL || source == NULL || hostfile_p == NULL) {
        ZERO_LOG_ERROR("zero_launch_hostfile_parse: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    hf = zero_calloc(1, sizeof(*hf));
    ZERO_REQUIRE_GOTO(hf != NULL, ZERO_ERR_NO_MEMORY, status, out, "%s: out of memory", source);
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        const char *line_end = eol ? eol : p + strlen(p);
        const char *hash = memchr(p, '#', (size_t)(line_end - p));
        const char *b = p, *e = hash ? hash : line_end;
        lineno++;
        zero_launch_trim(&b, &e);
        if (b < e)
            ZERO_CHECK_GOTO(parse_line(b, e, source, lineno, hf), status, out_free);
        p = eol ? eol + 1 : line_end;
    }
    ZERO_REQUIRE_GOTO(hf->count > 0, ZERO_ERR_CONFIG, status, out_free,
                      "%s: no hosts defined (expected lines 'HOST slots=N')", source);
    *hostfile_p = hf;
    return ZERO_OK;
out_free:
    zero_launch_hostfile_destroy(hf);
out:
    return status;
}

zero_status_t zero_launch_hostfile_load(const char *path, zero_launch_hostfile_t **hostfile_p)
{
    char *text = NULL;
    zero_status_t status = zero_launch_file_read(path, 1, &text);
    if (status != ZERO_OK)
        return status;
    status = zero_launch_hostfile_parse(text, path, hostfile_p);
    zero_free(text);
    return status;
}

/* Peak resident memory of this process (peak_rss.h). */
#include "peak_rss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long peak_rss_status_kib(const char *key)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key), NULL, 10);
    fclose(f);
    return v;
}

int peak_rss_reset(void)
{
    FILE *clear = fopen("/proc/self/clear_refs", "w");
    int ok = clear != NULL && fputs("5", clear) >= 0;   /* 5: the peak becomes the current RSS */
    if (clear != NULL && fclose(clear) != 0)
        ok = 0;
    return ok;
}

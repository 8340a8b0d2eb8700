/* Logging to stderr with a level filter. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum kiln_log_level current = KILN_LOG_INFO;

void
kiln_log_set_level(enum kiln_log_level level)
{
    current = level;
}

enum kiln_log_level
kiln_log_get_level(void)
{
    return current;
}

void
kiln_log_init_from_env(void)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    const char *v = getenv("KILN_LOG_LEVEL");
    if (!v)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcmp(v, names[i]) == 0)
            current = (enum kiln_log_level)i;
}

void
kiln_log(enum kiln_log_level level, const char *fmt, ...)
{
    static const char *const prefix[] = {"error: ", "warning: ", "", "debug: ", "trace: "};
    if (level > current)
        return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s%s\n", prefix[level], line);
}

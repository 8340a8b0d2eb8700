/* Allocation wrappers: out of memory aborts in exactly one place. */
#include "common/cleanup.h"

#include <stdarg.h>

static void __attribute__((noreturn))
oom(void)
{
    static const char msg[] = "kiln: out of memory\n";
    ssize_t r _unused_ = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    abort();
}

void *
kiln_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *
kiln_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *
kiln_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

void *
kiln_reallocarray(void *p, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        oom();
    return kiln_realloc(p, count * size);
}

char *
kiln_strdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        oom();
    return p;
}

char *
kiln_strndup(const char *s, size_t n)
{
    char *p = strndup(s ? s : "", n);
    if (!p)
        oom();
    return p;
}

char *
kiln_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        oom();
    return s;
}

void
kiln_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

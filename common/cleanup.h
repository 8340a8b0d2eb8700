/* Memory and resource cleanup helpers (systemd style) and allocation wrappers that abort. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(kiln_freep)
#define _cleanup_fclose_ _cleanup_(kiln_fclosep)
#define _cleanup_close_ _cleanup_(kiln_closep)
#define _cleanup_json_ _cleanup_(kiln_json_decrefp)
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Hand a pointer out of a cleanup scope: returns it and leaves NULL behind. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _p = (p);                                                                    \
        (p) = NULL;                                                                                \
        _p;                                                                                        \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _fd = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _fd;                                                                                       \
    })

static inline void
kiln_freep(void *p)
{
    free(*(void **)p);
}

static inline void
kiln_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

static inline void
kiln_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

static inline void
kiln_json_decrefp(json_t **j)
{
    json_decref(*j);
}

/* Allocation failure is not recoverable in Kiln: these abort with a message instead. */
void *kiln_malloc(size_t n);
void *kiln_calloc(size_t count, size_t size);
void *kiln_realloc(void *p, size_t n);
void *kiln_reallocarray(void *p, size_t count, size_t size);
char *kiln_strdup(const char *s);
char *kiln_strndup(const char *s, size_t n);
char *kiln_asprintf(const char *fmt, ...) _printf_(1, 2);

#define kiln_new(type, n) ((type *)kiln_calloc((n), sizeof(type)))

/* Free every string of a NULL-terminated vector, then the vector. */
void kiln_strv_free(char **v);
static inline void
kiln_strv_freep(char ***v)
{
    kiln_strv_free(*v);
}
#define _cleanup_strv_free_ _cleanup_(kiln_strv_freep)

static inline bool
kiln_streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

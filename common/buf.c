/* Growable byte buffer. */
#include "common/buf.h"

#include <stdarg.h>

void
kiln_buf_init(struct kiln_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void
kiln_buf_clear(struct kiln_buf *b)
{
    free(b->data);
    kiln_buf_init(b);
}

void
kiln_buf_reset(struct kiln_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
kiln_buf_reserve(struct kiln_buf *b, size_t extra)
{
    if (extra >= SIZE_MAX - b->len - 1)
        abort();
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = kiln_realloc(b->data, cap);
    b->cap = cap;
}

void
kiln_buf_append(struct kiln_buf *b, const void *data, size_t len)
{
    kiln_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void
kiln_buf_append_str(struct kiln_buf *b, const char *s)
{
    kiln_buf_append(b, s, strlen(s));
}

void
kiln_buf_append_char(struct kiln_buf *b, char c)
{
    kiln_buf_append(b, &c, 1);
}

void
kiln_buf_appendf(struct kiln_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    kiln_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

char *
kiln_buf_steal(struct kiln_buf *b)
{
    char *d = b->data ? b->data : kiln_strdup("");
    kiln_buf_init(b);
    return d;
}

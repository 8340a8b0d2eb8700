/* Growable byte buffer, always NUL-terminated. */
#pragma once

#include <stddef.h>

#include "common/cleanup.h"

struct kiln_buf {
    char *data;
    size_t len;
    size_t cap;
};

void kiln_buf_init(struct kiln_buf *b);
void kiln_buf_clear(struct kiln_buf *b);
void kiln_buf_reset(struct kiln_buf *b);
void kiln_buf_reserve(struct kiln_buf *b, size_t extra);
void kiln_buf_append(struct kiln_buf *b, const void *data, size_t len);
void kiln_buf_append_str(struct kiln_buf *b, const char *s);
void kiln_buf_append_char(struct kiln_buf *b, char c);
void kiln_buf_appendf(struct kiln_buf *b, const char *fmt, ...) _printf_(2, 3);
/* Take ownership of the contents (never NULL); the buffer is left empty. */
char *kiln_buf_steal(struct kiln_buf *b);

static inline void
kiln_buf_clearp(struct kiln_buf *b)
{
    kiln_buf_clear(b);
}
#define _cleanup_buf_ _cleanup_(kiln_buf_clearp)

/* struct kiln_error helpers. */
#include "common/error.h"

#include <stdio.h>
#include <string.h>

int
kiln_error_setv(struct kiln_error *err, int code, const char *fmt, va_list ap)
{
    if (!err || err->code != 0)
        return code;
    err->code = code ? code : -EINVAL;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    return code;
}

int
kiln_error_set(struct kiln_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kiln_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int
kiln_error_errno(struct kiln_error *err, int code, const char *fmt, ...)
{
    if (!err || err->code != 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    kiln_error_setv(err, code, fmt, ap);
    va_end(ap);
    size_t n = strlen(err->message);
    snprintf(err->message + n, sizeof(err->message) - n, ": %s", kiln_strerror(code));
    return code;
}

int
kiln_error_prefix(struct kiln_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (err->code == 0) {
        err->code = code ? code : -EINVAL;
        snprintf(err->message, sizeof(err->message), "%s: %s", prefix, kiln_strerror(code));
        return code;
    }
    char old[KILN_ERROR_MESSAGE_MAX];
    memcpy(old, err->message, sizeof(old));
    snprintf(err->message, sizeof(err->message), "%s: %s", prefix, old);
    return code;
}

void
kiln_error_set_cause(struct kiln_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->cause, sizeof(err->cause), fmt, ap);
    va_end(ap);
}

void
kiln_error_clear(struct kiln_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

const char *
kiln_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case -KILN_E_PARSE:
        return "malformed input";
    case -KILN_E_INVALID:
        return "invalid input";
    case -KILN_E_LIMIT:
        return "limit exceeded";
    case -KILN_E_REMOTE:
        return "remote error";
    case -KILN_E_FAILED:
        return "failed";
    case -KILN_E_UNSUPPORTED:
        return "not supported";
    case -KILN_E_REBOOT:
        return "reboot requested";
    default:
        return strerror(code < 0 ? -code : code);
    }
}

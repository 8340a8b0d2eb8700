/* Rich errors carried by value: the return code is the truth, struct kiln_error says why. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>

#include "common/cleanup.h"

/* Kiln's own codes sit above the errno range; functions return 0 or a negative code. */
enum {
    KILN_E_BASE = 4096,
    KILN_E_PARSE,      /* malformed input: YAML, JSON, XML, frames */
    KILN_E_INVALID,    /* well-formed but invalid document, recipe or argument */
    KILN_E_LIMIT,      /* a size, depth or count bound was exceeded */
    KILN_E_REMOTE,     /* a remote service (AWS, libvirt, the guest) reported an error */
    KILN_E_FAILED,     /* a step, command or build failed */
    KILN_E_UNSUPPORTED,
    KILN_E_REBOOT,     /* the work asked for a reboot and must be resumed */
};

#define KILN_ERROR_MESSAGE_MAX 2048
#define KILN_ERROR_CAUSE_MAX 256

struct kiln_error {
    int code;                            /* negative code, 0 when unset */
    bool retryable;                      /* whether trying again may help */
    char message[KILN_ERROR_MESSAGE_MAX];
    char cause[KILN_ERROR_CAUSE_MAX];    /* e.g. AWS error code, libvirt code, "file:line:col" */
};

/* Set the error unless one is already set (first error wins). err may be NULL. Returns code. */
int kiln_error_set(struct kiln_error *err, int code, const char *fmt, ...) _printf_(3, 4);
int kiln_error_setv(struct kiln_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Like kiln_error_set, with strerror(-code) appended. */
int kiln_error_errno(struct kiln_error *err, int code, const char *fmt, ...) _printf_(3, 4);
/* Prepend context to an error set deeper down ("recipe x: parent image: not found"). */
int kiln_error_prefix(struct kiln_error *err, int code, const char *fmt, ...) _printf_(3, 4);
void kiln_error_set_cause(struct kiln_error *err, const char *fmt, ...) _printf_(2, 3);
void kiln_error_clear(struct kiln_error *err);
/* A human string for a code: strerror for errno codes, a name for Kiln's own. */
const char *kiln_strerror(int code);

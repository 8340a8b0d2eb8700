/* Logging. Library layers (common, cloud, drivers) log at debug level only; the factory and the
 * command-line tools report failures once, where a person reads them. */
#pragma once

#include "common/cleanup.h"

enum kiln_log_level { KILN_LOG_ERROR, KILN_LOG_WARN, KILN_LOG_INFO, KILN_LOG_DEBUG, KILN_LOG_TRACE };

void kiln_log_set_level(enum kiln_log_level level);
enum kiln_log_level kiln_log_get_level(void);
/* Read KILN_LOG_LEVEL (error|warn|info|debug|trace) from the environment. */
void kiln_log_init_from_env(void);
void kiln_log(enum kiln_log_level level, const char *fmt, ...) _printf_(2, 3);

#define kiln_debug(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)
#define kiln_info(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define kiln_warn(...) kiln_log(KILN_LOG_WARN, __VA_ARGS__)

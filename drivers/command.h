/* Running helper programs (qemu-img, ...) without a shell: argv only, stderr captured for the
 * error message, exit status checked. */
#pragma once

#include "common/error.h"

/* Run argv[0] (searched in PATH) with argv, stdin from /dev/null, stdout discarded unless
 * ret_stdout is given (then captured, at most 1 MiB). Returns 0 when it exits with status 0;
 * otherwise -KILN_E_FAILED with the command's stderr (its last 2 KiB) in err. */
int kiln_command_run(char *const argv[], char **ret_stdout, struct kiln_error *err);

/* The fake driver: in-memory and deterministic, for the factory's unit tests. Tests steer it
 * through the functions below (or the "fail" object of the driver settings). */
#pragma once

#include <stdbool.h>

#include "drivers/driver.h"

extern const struct kiln_driver_ops kiln_fake_driver;

/* Make the nth next call (1 = the next one) of op ("launch", "run", "stop", "snapshot",
 * "terminate", "reap") fail with code and message. A job can also fail by its result instead:
 * with op "job", run returns 0 with status KILN_RUN_FAILED and message as the failure. With op
 * "hang", the nth job hangs in a step named message (NULL: "Hang") of its first phase: with a
 * timeout_seconds > 0, run returns 0 with KILN_RUN_FAILED and timed_out, as the libvirt driver
 * does once the job's time ran out ("job ID timed out after N seconds in PHASE/STEP; ..."); with
 * none, run fails with -ETIMEDOUT (a real instance would hang for ever). */
void kiln_fake_inject_failure(void *conn, const char *op, unsigned nth, int code,
                              const char *message);
/* How many instances are live (launched and not terminated or reaped). */
unsigned kiln_fake_live_instances(void *conn);
/* How many times op was called (successful or not). */
unsigned kiln_fake_calls(void *conn, const char *op);
/* Forget an instance without terminating it, as a crashed build would: only reap removes it. */
void kiln_fake_crash(struct kiln_instance *inst);

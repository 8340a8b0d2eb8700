/* The S3 hooks of guest-agent/s3hook.h backed by Kiln's AWS client (cloud/): only the agent
 * program links both layers, so the bridge lives beside its main. */
#pragma once

/* Install the hooks. Nothing is resolved yet: region, endpoint and credentials are looked up
 * at the first transfer, so commands that never touch S3 never reach the network. */
void kiln_s3bridge_install(void);
/* Remove the hooks and free the client (safe to call when not installed). */
void kiln_s3bridge_uninstall(void);

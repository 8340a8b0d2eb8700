/* The agent's version, reported in its hello and by --version. */
#include "guest-agent/version.h"

const char *
kiln_agent_version(void)
{
    return KILN_VERSION;
}

/* The agent's version string. */
#pragma once

const char *kiln_agent_version(void);

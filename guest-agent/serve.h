/* kiln-agent serve: the agent side of the host protocol (virtio-serial port or a socket). */
#pragma once

/* Entry point of "kiln-agent serve ..."; returns the process exit code. */
int kiln_agent_serve_main(int argc, char **argv);

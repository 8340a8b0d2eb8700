/* Temporary stand-in for kiln-agent serve until the protocol side lands (delete on merge). */
#include <stdio.h>

#include "guest-agent/serve.h"

int
kiln_agent_serve_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "serve: not available\n");
    return 2;
}

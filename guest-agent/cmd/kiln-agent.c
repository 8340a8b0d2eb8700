/* kiln-agent: runs AWSTOE component documents (placeholder until the engine lands). */
#include <stdio.h>

int
main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln-agent: not implemented yet\n");
    return 2;
}

/* kiln: the command line. */
#include <stdio.h>
int
main(void)
{
    return 0;
}

/* Fuzz the EBS direct JSON response parsers and the JSON error parser. */
#include <stdint.h>
#include <string.h>

#include "cloud/ebs.h"
#include "cloud/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_error err = {0};
    struct kiln_aws_headers h = {0};
    kiln_aws_headers_add(&h, "x-amzn-ErrorType", size > 0 && data[0] == '{' ? "" : "X#Y:z");
    kiln_aws_parse_error(400, &h, (const char *)data, size, &err, NULL);
    kiln_aws_headers_clear(&h);
    struct kiln_ebs_block_list bl;
    if (kiln_ebs_parse_block_list((const char *)data, size, &bl, NULL) == 0)
        kiln_ebs_block_list_clear(&bl);
    struct kiln_ebs_snapshot s;
    if (kiln_ebs_parse_snapshot((const char *)data, size, &s, NULL) == 0)
        kiln_ebs_snapshot_clear(&s);
    return 0;
}

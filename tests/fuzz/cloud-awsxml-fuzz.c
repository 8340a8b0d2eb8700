/* Fuzz the AWS XML response parsers (EC2, S3, STS) and the error parser. */
#include <stdint.h>
#include <string.h>

#include "cloud/ec2.h"
#include "cloud/http.h"
#include "cloud/s3.h"
#include "cloud/sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kiln_error err = {0};
    char *rid = NULL;
    kiln_aws_parse_error(400, NULL, (const char *)data, size, &err, &rid);
    free(rid);
    xmlDoc *doc = NULL;
    if (kiln_aws_xml_parse((const char *)data, size, &doc, NULL) < 0)
        return 0;
    struct kiln_ec2_instances il;
    if (kiln_ec2_parse_instances(doc, &il, NULL) == 0)
        kiln_ec2_instances_clear(&il);
    struct kiln_ec2_images iml;
    if (kiln_ec2_parse_images(doc, &iml, NULL) == 0)
        kiln_ec2_images_clear(&iml);
    struct kiln_ec2_snapshots sl;
    if (kiln_ec2_parse_snapshots(doc, &sl, NULL) == 0)
        kiln_ec2_snapshots_clear(&sl);
    struct kiln_ec2_state_changes sc;
    if (kiln_ec2_parse_state_changes(doc, &sc, NULL) == 0)
        kiln_ec2_state_changes_clear(&sc);
    struct kiln_ec2_import_tasks tl;
    if (kiln_ec2_parse_import_tasks(doc, &tl, NULL) == 0)
        kiln_ec2_import_tasks_clear(&tl);
    struct kiln_ec2_regions rl;
    if (kiln_ec2_parse_regions(doc, &rl, NULL) == 0)
        kiln_ec2_regions_clear(&rl);
    char *id = NULL;
    if (kiln_ec2_parse_image_id(doc, &id, NULL) == 0)
        free(id);
    struct kiln_s3_list s3l;
    if (kiln_s3_parse_list(doc, &s3l, NULL) == 0)
        kiln_s3_list_clear(&s3l);
    struct kiln_aws_credentials cr;
    if (kiln_sts_parse_assume_role(doc, &cr, NULL) == 0)
        kiln_aws_credentials_clear(&cr);
    xmlFreeDoc(doc);
    return 0;
}

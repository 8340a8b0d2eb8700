/* Fuzz SigV4 canonicalisation: the input is "METHOD PATH?QUERY\nName:value\n...\n\nbody". */
#include <stdint.h>
#include <string.h>

#include "cloud/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *text = kiln_strndup((const char *)data, size);
    char *body = strstr(text, "\n\n");
    size_t body_len = 0;
    if (body) {
        *body = 0;
        body += 2;
        body_len = strlen(body);
    }
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    const char *method = "GET", *path = "/", *query = NULL;
    if (line) {
        char *sp = strchr(line, ' ');
        if (sp) {
            *sp = 0;
            path = sp + 1;
        }
        method = *line ? line : "GET";
        char *q = strchr(path, '?');
        if (q) {
            *q = 0;
            query = q + 1;
        }
    }
    struct kiln_aws_headers h = {0};
    char *hl;
    while ((hl = strtok_r(NULL, "\n", &save))) {
        char *colon = strchr(hl, ':');
        if (!colon)
            continue;
        *colon = 0;
        kiln_aws_headers_add(&h, hl, colon + 1);
    }
    struct kiln_aws_credentials creds = {"AKIDEXAMPLE", "secret", "token", 0};
    for (int mode = 0; mode < 4; mode++) {
        struct kiln_sigv4_request req = {method, path, query, &h, body, body_len, NULL};
        struct kiln_sigv4_params p = {.creds = &creds, .region = "us-east-1", .service = "s3",
                                      .now = 1440938160, .no_path_normalize = mode & 1,
                                      .no_path_encode = mode & 1, .expires = 60,
                                      .content_sha256_header = mode & 2};
        struct kiln_sigv4_result res;
        int r = (mode & 2) ? kiln_sigv4_presign(&req, &p, &res, NULL)
                           : kiln_sigv4_sign_headers(&req, &p, &res, NULL);
        if (r == 0) {
            /* Signing is a function of its input: the same request signs the same way. */
            if (strlen(res.signature) != 64)
                __builtin_trap();
            kiln_sigv4_result_clear(&res);
        }
    }
    char *cq = kiln_sigv4_canonical_query(query);
    /* Canonicalisation is idempotent. */
    char *cq2 = kiln_sigv4_canonical_query(cq);
    if (strcmp(cq, cq2) != 0)
        __builtin_trap();
    free(cq);
    free(cq2);
    kiln_aws_headers_clear(&h);
    free(text);
    return 0;
}

/* Shared AWS client types: credentials, header lists, URI encoding. */
#include "cloud/aws.h"

#include <string.h>
#include <strings.h>

#include "common/buf.h"

void
kiln_aws_credentials_clear(struct kiln_aws_credentials *c)
{
    if (!c)
        return;
    /* Secrets do not linger in freed heap memory. */
    if (c->secret_access_key)
        explicit_bzero(c->secret_access_key, strlen(c->secret_access_key));
    if (c->session_token)
        explicit_bzero(c->session_token, strlen(c->session_token));
    free(c->access_key_id);
    free(c->secret_access_key);
    free(c->session_token);
    memset(c, 0, sizeof(*c));
}

void
kiln_aws_credentials_copy(struct kiln_aws_credentials *dst, const struct kiln_aws_credentials *src)
{
    dst->access_key_id = src->access_key_id ? kiln_strdup(src->access_key_id) : NULL;
    dst->secret_access_key = src->secret_access_key ? kiln_strdup(src->secret_access_key) : NULL;
    dst->session_token = src->session_token ? kiln_strdup(src->session_token) : NULL;
    dst->expiration = src->expiration;
}

void
kiln_aws_headers_add(struct kiln_aws_headers *h, const char *name, const char *value)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->v = kiln_reallocarray(h->v, h->cap, sizeof(*h->v));
    }
    h->v[h->n].name = kiln_strdup(name);
    h->v[h->n].value = kiln_strdup(value ? value : "");
    h->n++;
}

void
kiln_aws_headers_remove(struct kiln_aws_headers *h, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->v[i].name, name) == 0) {
            free(h->v[i].name);
            free(h->v[i].value);
            continue;
        }
        h->v[j++] = h->v[i];
    }
    h->n = j;
}

void
kiln_aws_headers_set(struct kiln_aws_headers *h, const char *name, const char *value)
{
    kiln_aws_headers_remove(h, name);
    kiln_aws_headers_add(h, name, value);
}

const char *
kiln_aws_headers_get(const struct kiln_aws_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0)
            return h->v[i].value;
    return NULL;
}

void
kiln_aws_headers_clear(struct kiln_aws_headers *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].name);
        free(h->v[i].value);
    }
    free(h->v);
    memset(h, 0, sizeof(*h));
}

void
kiln_aws_uri_encode(struct kiln_buf *out, const char *s, size_t len, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            kiln_buf_append_char(out, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            kiln_buf_append(out, e, 3);
        }
    }
}

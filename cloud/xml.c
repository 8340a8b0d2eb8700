/* Hardened libxml2 reading of AWS responses. */
#include "cloud/xml.h"

#include <libxml/parser.h>
#include <string.h>

#include "common/cleanup.h"

static void
silent(void *ctx, const char *msg, ...)
{
}

int
kiln_aws_xml_parse(const char *data, size_t len, xmlDoc **ret, struct kiln_error *err)
{
    *ret = NULL;
    if (len > KILN_AWS_XML_MAX)
        return kiln_error_set(err, -KILN_E_LIMIT, "XML response of %zu bytes exceeds %u bytes", len,
                              KILN_AWS_XML_MAX);
    if (len == 0)
        return kiln_error_set(err, -KILN_E_PARSE, "empty XML response");
    /* AWS never sends a DTD: refuse any, so no entity can be declared or expanded. */
    if (memmem(data, len, "<!DOCTYPE", 9) || memmem(data, len, "<!ENTITY", 8))
        return kiln_error_set(err, -KILN_E_PARSE, "XML response with a DTD is refused");
    xmlSetGenericErrorFunc(NULL, silent);
    xmlParserCtxt *ctx = xmlNewParserCtxt();
    if (!ctx)
        abort();
    xmlDoc *doc = xmlCtxtReadMemory(ctx, data, (int)len, "response.xml", NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                        XML_PARSE_NOCDATA | XML_PARSE_NOBLANKS);
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(ctx);
        int line = e ? e->line : 0;
        char msg[256] = "";
        if (e && e->message) {
            snprintf(msg, sizeof(msg), "%s", e->message);
            size_t l = strlen(msg);
            while (l && msg[l - 1] == '\n')
                msg[--l] = 0;
        }
        xmlFreeParserCtxt(ctx);
        return kiln_error_set(err, -KILN_E_PARSE, "malformed XML response (line %d: %s)", line,
                              msg);
    }
    xmlFreeParserCtxt(ctx);
    if (doc->intSubset || !xmlDocGetRootElement(doc)) {
        xmlFreeDoc(doc);
        return kiln_error_set(err, -KILN_E_PARSE, "XML response without a root element or with "
                                                  "a DTD");
    }
    *ret = doc;
    return 0;
}

xmlNode *
kiln_aws_xml_root(xmlDoc *doc)
{
    return doc ? xmlDocGetRootElement(doc) : NULL;
}

static bool
named(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

xmlNode *
kiln_aws_xml_child(const xmlNode *n, const char *name)
{
    if (!n)
        return NULL;
    for (xmlNode *c = n->children; c; c = c->next)
        if (named(c, name))
            return c;
    return NULL;
}

xmlNode *
kiln_aws_xml_next(const xmlNode *n)
{
    if (!n)
        return NULL;
    for (xmlNode *c = n->next; c; c = c->next)
        if (named(c, (const char *)n->name))
            return c;
    return NULL;
}

xmlNode *
kiln_aws_xml_path(const xmlNode *n, const char *path)
{
    const xmlNode *cur = n;
    const char *p = path;
    while (cur && *p) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        char name[128];
        if (l >= sizeof(name))
            return NULL;
        memcpy(name, p, l);
        name[l] = 0;
        cur = kiln_aws_xml_child(cur, name);
        p += l + (slash ? 1 : 0);
    }
    return (xmlNode *)cur;
}

char *
kiln_aws_xml_text(const xmlNode *n, const char *path)
{
    const xmlNode *e = path && *path ? kiln_aws_xml_path(n, path) : n;
    if (!e)
        return NULL;
    xmlChar *t = xmlNodeGetContent(e);
    char *s = kiln_strdup(t ? (const char *)t : "");
    xmlFree(t);
    return s;
}

bool
kiln_aws_xml_bool(const xmlNode *n, const char *path)
{
    _cleanup_free_ char *t = kiln_aws_xml_text(n, path);
    return t && strcmp(t, "true") == 0;
}

long long
kiln_aws_xml_ll(const xmlNode *n, const char *path, long long dflt)
{
    _cleanup_free_ char *t = kiln_aws_xml_text(n, path);
    if (!t || !*t)
        return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno || *end)
        return dflt;
    return v;
}

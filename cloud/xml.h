/* Hardened XML reading for AWS responses (libxml2): bounded size, no network, no DTD, no entity
 * expansion; element lookups by local name (namespaces ignored, as AWS versions them). */
#pragma once

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define KILN_AWS_XML_MAX (32u << 20)

int kiln_aws_xml_parse(const char *data, size_t len, xmlDoc **ret, struct kiln_error *err);
xmlNode *kiln_aws_xml_root(xmlDoc *doc);
/* First element child with that local name, or NULL. */
xmlNode *kiln_aws_xml_child(const xmlNode *n, const char *name);
/* Next element sibling with the same local name as n. */
xmlNode *kiln_aws_xml_next(const xmlNode *n);
/* Follow "a/b/c" through first children; NULL when missing. */
xmlNode *kiln_aws_xml_path(const xmlNode *n, const char *path);
/* Text of an element (kiln_strdup'ed) or NULL; for a path below n. */
char *kiln_aws_xml_text(const xmlNode *n, const char *path);
bool kiln_aws_xml_bool(const xmlNode *n, const char *path);
long long kiln_aws_xml_ll(const xmlNode *n, const char *path, long long dflt);

static inline void
kiln_aws_xml_freep(xmlDoc **d)
{
    if (*d)
        xmlFreeDoc(*d);
}
#define _cleanup_xml_ _cleanup_(kiln_aws_xml_freep)

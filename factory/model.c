/* Loading and validating recipes, infrastructure and distribution configurations and image
 * pipelines (Image Builder's field names), semantic versions, name templates, the Kiln home. */
#include "factory/model.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/fs.h"
#include "common/yaml.h"
#include "factory/problems.h"

#define S KILN_YAML_SCALAR
#define L KILN_YAML_SEQUENCE
#define M KILN_YAML_MAPPING

/* ---- semantic versions ---- */

static int
parse_node(const char *s, size_t len, bool allow_x, long *ret)
{
    if (len == 0)
        return -EINVAL;
    if (allow_x && len == 1 && (s[0] == 'x' || s[0] == 'X')) {
        *ret = -1;
        return 0;
    }
    if (len > 1 && s[0] == '0')
        return -EINVAL;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
        if (v > KILN_SEMVER_MAX)
            return -ERANGE;
    }
    *ret = v;
    return 0;
}

static int
parse_three(const char *s, bool allow_x, long out[3])
{
    if (!s)
        return -EINVAL;
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        const char *end = strchr(p, '.');
        if (i == 2)
            end = p + strlen(p);
        else if (!end)
            return -EINVAL;
        int r = parse_node(p, (size_t)(end - p), allow_x, &out[i]);
        if (r < 0)
            return r;
        p = end + 1;
    }
    return 0;
}

int
kiln_semver_parse(const char *s, struct kiln_semver *ret)
{
    long v[3];
    int r = parse_three(s, false, v);
    if (r < 0)
        return r;
    *ret = (struct kiln_semver){v[0], v[1], v[2]};
    return 0;
}

int
kiln_semver_compare(const struct kiln_semver *a, const struct kiln_semver *b)
{
    if (a->major != b->major)
        return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor)
        return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch)
        return a->patch < b->patch ? -1 : 1;
    return 0;
}

int
kiln_semver_filter_parse(const char *s, struct kiln_semver_filter *ret)
{
    long v[3];
    int r = parse_three(s, true, v);
    if (r < 0)
        return r;
    /* Image Builder: once a node is a wildcard, every node to its right must be one too. */
    if ((v[0] < 0 && (v[1] >= 0 || v[2] >= 0)) || (v[1] < 0 && v[2] >= 0))
        return -EINVAL;
    *ret = (struct kiln_semver_filter){v[0], v[1], v[2]};
    return 0;
}

bool
kiln_semver_filter_match(const struct kiln_semver_filter *f, const struct kiln_semver *v)
{
    return (f->major < 0 || f->major == v->major) && (f->minor < 0 || f->minor == v->minor) &&
           (f->patch < 0 || f->patch == v->patch);
}

int
kiln_image_version_parse(const char *s, struct kiln_semver *ret_version, long *ret_build)
{
    if (!s)
        return -EINVAL;
    const char *slash = strchr(s, '/');
    if (!slash)
        return -EINVAL;
    _cleanup_free_ char *v = kiln_strndup(s, (size_t)(slash - s));
    struct kiln_semver sv;
    int r = kiln_semver_parse(v, &sv);
    if (r < 0)
        return r;
    long build;
    r = parse_node(slash + 1, strlen(slash + 1), false, &build);
    if (r < 0 || build < 1)
        return -EINVAL;
    if (ret_version)
        *ret_version = sv;
    if (ret_build)
        *ret_build = build;
    return 0;
}

/* ---- name templates ---- */

static const char *const template_vars[] = {"buildDate", "buildVersion", NULL};

static int
template_walk(const char *tmpl, long build_number, time_t date, struct kiln_buf *out,
              char **ret_bad)
{
    const char *p = tmpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open) {
            if (out)
                kiln_buf_append_str(out, p);
            return 0;
        }
        const char *close = strstr(open, "}}");
        if (!close) {
            if (out)
                kiln_buf_append_str(out, p);
            return 0;
        }
        if (out)
            kiln_buf_append(out, p, (size_t)(open - p));
        _cleanup_free_ char *inner = kiln_strndup(open + 2, (size_t)(close - open - 2));
        char *v = inner;
        while (*v == ' ')
            v++;
        char *e = v + strlen(v);
        while (e > v && e[-1] == ' ')
            *--e = '\0';
        if (strncmp(v, "imagebuilder:", 13) != 0) {
            /* Not ours (e.g. a literal "{{"): keep as written. */
            if (out)
                kiln_buf_append(out, open, (size_t)(close + 2 - open));
            p = close + 2;
            continue;
        }
        const char *var = v + 13;
        size_t i = 0;
        while (template_vars[i] && strcmp(template_vars[i], var) != 0)
            i++;
        if (!template_vars[i]) {
            if (ret_bad)
                *ret_bad = kiln_strdup(v);
            return -EINVAL;
        }
        if (out && i == 0) {
            struct tm tm;
            gmtime_r(&date, &tm);
            char buf[64];
            /* AMI names allow no ':', hence the dashes in the time. */
            strftime(buf, sizeof(buf), "%Y-%m-%dT%H-%M-%SZ", &tm);
            kiln_buf_append_str(out, buf);
        } else if (out) {
            kiln_buf_appendf(out, "%ld", build_number);
        }
        p = close + 2;
    }
}

int
kiln_name_template_expand(const char *tmpl, long build_number, time_t build_date, char **ret,
                          struct kiln_error *err)
{
    _cleanup_buf_ struct kiln_buf out;
    kiln_buf_init(&out);
    _cleanup_free_ char *bad = NULL;
    if (template_walk(tmpl, build_number, build_date, &out, &bad) < 0)
        return kiln_error_set(err, -KILN_E_INVALID,
                              "unknown template variable {{%s}} (known: "
                              "{{imagebuilder:buildDate}}, {{imagebuilder:buildVersion}})",
                              bad);
    *ret = kiln_buf_steal(&out);
    return 0;
}

bool
kiln_name_template_check(const char *tmpl, char **ret_bad)
{
    return template_walk(tmpl, 0, 0, NULL, ret_bad) == 0;
}

/* ---- helpers ---- */

static char *
get_str(const struct kiln_yaml_node *map, const char *key)
{
    const char *s = kiln_yaml_scalar(kiln_yaml_map_get(map, key));
    return s && !kiln_yaml_is_null(kiln_yaml_map_get(map, key)) ? kiln_strdup(s) : NULL;
}

/* A list of strings; reports items that are not scalars. */
static char **
get_strv(struct kiln_problems *d, const struct kiln_yaml_node *list, const char *what)
{
    if (!list || list->kind != L)
        return NULL;
    char **v = kiln_new(char *, list->n + 1);
    size_t n = 0;
    for (size_t i = 0; i < list->n; i++) {
        if (list->items[i]->kind != S) {
            kiln_problems_add(d, list->items[i], "%s: items must be strings, not %s", what,
                              kiln_yaml_kind_name(list->items[i]->kind));
            continue;
        }
        v[n++] = kiln_strdup(list->items[i]->value);
    }
    return v;
}

static bool
get_bool(struct kiln_problems *d, const struct kiln_yaml_node *map, const char *key, bool def)
{
    const struct kiln_yaml_node *n = kiln_yaml_map_get(map, key);
    if (!n || kiln_yaml_is_null(n) || n->kind != S)
        return def;
    bool b;
    if (kiln_yaml_bool(n, &b) < 0) {
        kiln_problems_add(d, n, "'%s' must be true or false, not '%s'", key, n->value);
        return def;
    }
    return b;
}

/* Integer in [lo, hi]; def when missing. */
static long long
get_int(struct kiln_problems *d, const struct kiln_yaml_node *map, const char *key, long long lo,
        long long hi, long long def)
{
    const struct kiln_yaml_node *n = kiln_yaml_map_get(map, key);
    if (!n || kiln_yaml_is_null(n) || n->kind != S)
        return def;
    long long v;
    if (kiln_yaml_int(n, &v) < 0) {
        kiln_problems_add(d, n, "'%s' must be a whole number, not '%s'", key, n->value);
        return def;
    }
    if (v < lo || v > hi) {
        kiln_problems_add(d, n, "'%s' must be between %lld and %lld, not %lld", key, lo, hi, v);
        return def;
    }
    return v;
}

/* Image Builder resource names: 1-128 of letters, digits, '-', '_' and inner spaces. */
static void
check_name(struct kiln_problems *d, const struct kiln_yaml_node *map, const char *what)
{
    const struct kiln_yaml_node *n = kiln_yaml_map_get(map, "name");
    const char *s = kiln_yaml_scalar(n);
    if (!s)
        return;
    size_t len = strlen(s);
    bool ok = len >= 1 && len <= 128 && s[0] != ' ' && s[len - 1] != ' ';
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == ' ';
    if (!ok)
        kiln_problems_add(d, n,
                          "%s name '%s' is not valid: use 1-128 letters, digits, '-', '_' or "
                          "inner spaces",
                          what, s);
}

static char *
dir_of(const char *path)
{
    _cleanup_free_ char *abs = realpath(path, NULL);
    const char *p = abs ? abs : path;
    const char *slash = strrchr(p, '/');
    if (!slash)
        return kiln_strdup(".");
    if (slash == p)
        return kiln_strdup("/");
    return kiln_strndup(p, (size_t)(slash - p));
}

static char *
resolve_rel(const char *dir, const char *path)
{
    if (path[0] == '/')
        return kiln_strdup(path);
    return kiln_path_join(dir, path);
}

static int
load_doc(const char *path, struct kiln_yaml_doc **ret, struct kiln_error *err)
{
    int r = kiln_yaml_load_file(path, NULL, ret, err);
    if (r < 0)
        return r;
    if (!(*ret)->root) {
        kiln_yaml_doc_free(*ret);
        *ret = NULL;
        return kiln_error_set(err, -KILN_E_INVALID, "%s:1:1: the file is empty", path);
    }
    return 0;
}

/* ---- image recipe ---- */

static const struct kiln_yaml_field recipe_fields[] = {
    {"name", S, true},
    {"semanticVersion", S, true},
    {"description", S, false},
    {"parentImage", S, true},
    {"components", L, true},
    {"blockDeviceMappings", L, false},
    {"workingDirectory", S, false},
    {"additionalInstanceConfiguration", M, false},
    {"tags", M, false},
    {"clientToken", S, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field component_fields[] = {
    {"componentArn", S, false}, {"path", S, false}, {"name", S, false},
    {"parameters", L, false},   {NULL, S, false},
};

static const struct kiln_yaml_field parameter_fields[] = {
    {"name", S, true},
    {"value", L, true},
    {NULL, S, false},
};

static const struct kiln_yaml_field bdm_fields[] = {
    {"deviceName", S, false}, {"ebs", M, false}, {"virtualName", S, false},
    {"noDevice", S, false},   {NULL, S, false},
};

static const struct kiln_yaml_field ebs_fields[] = {
    {"deleteOnTermination", S, false},
    {"encrypted", S, false},
    {"iops", S, false},
    {"kmsKeyId", S, false},
    {"snapshotId", S, false},
    {"throughput", S, false},
    {"volumeSize", S, false},
    {"volumeType", S, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field aic_fields[] = {
    {"systemsManagerAgent", M, false},
    {"userDataOverride", S, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field ssm_fields[] = {
    {"uninstallAfterBuild", S, false},
    {NULL, S, false},
};

static void
free_component(struct kiln_component_ref *c)
{
    free(c->arn);
    free(c->path);
    free(c->name);
    free(c->resolved);
    for (size_t i = 0; i < c->n_parameters; i++) {
        free(c->parameters[i].name);
        kiln_strv_free(c->parameters[i].values);
    }
    free(c->parameters);
}

void
kiln_recipe_free(struct kiln_recipe *r)
{
    if (!r)
        return;
    free(r->source);
    free(r->dir);
    free(r->name);
    free(r->semantic_version);
    free(r->description);
    free(r->parent_image);
    free(r->working_directory);
    for (size_t i = 0; i < r->n_components; i++)
        free_component(&r->components[i]);
    free(r->components);
    for (size_t i = 0; i < r->n_block_devices; i++) {
        free(r->block_devices[i].device_name);
        free(r->block_devices[i].virtual_name);
        free(r->block_devices[i].volume_type);
    }
    free(r->block_devices);
    free(r->user_data_override);
    json_decref(r->tags);
    free(r);
}

static void
load_component(struct kiln_problems *d, const struct kiln_yaml_node *item,
               struct kiln_component_ref *c)
{
    c->line = item->line;
    c->column = item->column;
    if (!kiln_problems_check_mapping(d, item, "component", component_fields))
        return;
    c->arn = get_str(item, "componentArn");
    c->path = get_str(item, "path");
    c->name = get_str(item, "name");
    int refs = !!c->arn + !!c->path + !!c->name;
    if (refs != 1)
        kiln_problems_add(d, item,
                          "component: give exactly one of 'path' (a document relative to the "
                          "recipe), 'name' (name/version from the catalog) or 'componentArn'");
    if (c->arn && strncmp(c->arn, "arn:", 4) != 0)
        kiln_problems_add(d, kiln_yaml_map_get(item, "componentArn"),
                          "componentArn '%s' is not an ARN "
                          "(arn:aws:imagebuilder:<region>:<account>:component/<name>/<version>)",
                          c->arn);
    const struct kiln_yaml_node *params = kiln_yaml_map_get(item, "parameters");
    if (!params || params->kind != L)
        return;
    c->parameters = kiln_new(struct kiln_component_parameter, params->n);
    for (size_t i = 0; i < params->n; i++) {
        const struct kiln_yaml_node *p = params->items[i];
        if (!kiln_problems_check_mapping(d, p, "component parameter", parameter_fields))
            continue;
        struct kiln_component_parameter *cp = &c->parameters[c->n_parameters];
        cp->name = get_str(p, "name");
        cp->values = get_strv(d, kiln_yaml_map_get(p, "value"), "parameter value");
        if (!cp->name || !cp->values) {
            free(cp->name);
            kiln_strv_free(cp->values);
            memset(cp, 0, sizeof(*cp));
            continue;
        }
        for (size_t j = 0; j < c->n_parameters; j++)
            if (strcmp(c->parameters[j].name, cp->name) == 0)
                kiln_problems_add(d, kiln_yaml_map_get(p, "name"),
                                  "component parameter '%s' is given twice", cp->name);
        c->n_parameters++;
    }
}

static void
load_block_device(struct kiln_problems *d, const struct kiln_yaml_node *item,
                  struct kiln_block_device *b)
{
    if (!kiln_problems_check_mapping(d, item, "block device mapping", bdm_fields))
        return;
    b->device_name = get_str(item, "deviceName");
    b->virtual_name = get_str(item, "virtualName");
    b->no_device = kiln_yaml_map_get(item, "noDevice") != NULL;
    const struct kiln_yaml_node *ebs = kiln_yaml_map_get(item, "ebs");
    if (!ebs || ebs->kind != M)
        return;
    if (!kiln_problems_check_mapping(d, ebs, "ebs", ebs_fields))
        return;
    b->volume_size_gib = get_int(d, ebs, "volumeSize", 1, 16384, 0);
    b->delete_on_termination = get_bool(d, ebs, "deleteOnTermination", true);
    b->encrypted = get_bool(d, ebs, "encrypted", false);
    get_int(d, ebs, "iops", 100, 256000, 0);
    get_int(d, ebs, "throughput", 125, 1000, 0);
    b->volume_type = get_str(ebs, "volumeType");
    static const char *const types[] = {"standard", "io1", "io2", "gp2", "gp3", "sc1", "st1", NULL};
    if (b->volume_type) {
        size_t i = 0;
        while (types[i] && strcmp(types[i], b->volume_type) != 0)
            i++;
        if (!types[i])
            kiln_problems_add(
                d, kiln_yaml_map_get(ebs, "volumeType"),
                "volumeType '%s' is not one of standard, io1, io2, gp2, gp3, sc1, st1",
                b->volume_type);
    }
}

static void
recipe_fill(struct kiln_problems *d, const struct kiln_yaml_node *root, struct kiln_recipe *rec)
{
    int r;
    check_name(d, root, "recipe");
    rec->name = get_str(root, "name");
    rec->semantic_version = get_str(root, "semanticVersion");
    rec->description = get_str(root, "description");
    rec->parent_image = get_str(root, "parentImage");
    if (kiln_yaml_map_get(root, "parentImage")) {
        rec->parent_line = kiln_yaml_map_get(root, "parentImage")->line;
        rec->parent_column = kiln_yaml_map_get(root, "parentImage")->column;
    }
    rec->working_directory = get_str(root, "workingDirectory");
    if (rec->semantic_version) {
        r = kiln_semver_parse(rec->semantic_version, &rec->version);
        if (r == -ERANGE)
            kiln_problems_add(d, kiln_yaml_map_get(root, "semanticVersion"),
                              "semanticVersion '%s': each node must be at most %ld",
                              rec->semantic_version, KILN_SEMVER_MAX);
        else if (r < 0)
            kiln_problems_add(d, kiln_yaml_map_get(root, "semanticVersion"),
                              "semanticVersion '%s' must be <major>.<minor>.<patch> (numbers, no "
                              "leading zeros, no wildcards), e.g. 1.0.0",
                              rec->semantic_version);
    }
    if (rec->description && strlen(rec->description) > 1024)
        kiln_problems_add(d, kiln_yaml_map_get(root, "description"),
                          "description is longer than 1024 characters");
    if (rec->working_directory && rec->working_directory[0] != '/')
        kiln_problems_add(d, kiln_yaml_map_get(root, "workingDirectory"),
                          "workingDirectory '%s' must be an absolute path", rec->working_directory);
    if (!rec->working_directory)
        rec->working_directory = kiln_strdup("/tmp");

    const struct kiln_yaml_node *comps = kiln_yaml_map_get(root, "components");
    if (comps && comps->kind == L) {
        if (comps->n == 0)
            kiln_problems_add(d, comps, "components: a recipe needs at least one component");
        rec->components = kiln_new(struct kiln_component_ref, comps->n);
        rec->n_components = comps->n;
        for (size_t i = 0; i < comps->n; i++)
            load_component(d, comps->items[i], &rec->components[i]);
    }
    const struct kiln_yaml_node *bdms = kiln_yaml_map_get(root, "blockDeviceMappings");
    if (bdms && bdms->kind == L) {
        rec->block_devices = kiln_new(struct kiln_block_device, bdms->n ? bdms->n : 1);
        rec->n_block_devices = bdms->n;
        for (size_t i = 0; i < bdms->n; i++)
            load_block_device(d, bdms->items[i], &rec->block_devices[i]);
    }
    const struct kiln_yaml_node *aic = kiln_yaml_map_get(root, "additionalInstanceConfiguration");
    if (aic && aic->kind == M &&
        kiln_problems_check_mapping(d, aic, "additionalInstanceConfiguration", aic_fields)) {
        const struct kiln_yaml_node *ssm = kiln_yaml_map_get(aic, "systemsManagerAgent");
        if (ssm && ssm->kind == M &&
            kiln_problems_check_mapping(d, ssm, "systemsManagerAgent", ssm_fields))
            rec->ssm_uninstall_after_build = get_bool(d, ssm, "uninstallAfterBuild", false);
        rec->user_data_override = get_str(aic, "userDataOverride");
        _cleanup_buf_ struct kiln_buf ud = {0};
        struct kiln_error uerr = {0};
        if (rec->user_data_override && strlen(rec->user_data_override) > 21847)
            kiln_problems_add(d, kiln_yaml_map_get(aic, "userDataOverride"),
                              "userDataOverride is longer than 21847 characters");
        else if (rec->user_data_override &&
                 kiln_base64_decode(rec->user_data_override, strlen(rec->user_data_override),
                                    &ud, &uerr) < 0)
            kiln_problems_add(d, kiln_yaml_map_get(aic, "userDataOverride"),
                              "userDataOverride must be base64-encoded, as EC2 user data is (%s)",
                              uerr.message);
    }
    const struct kiln_yaml_node *tags = kiln_yaml_map_get(root, "tags");
    if (tags && tags->kind == M)
        rec->tags = kiln_yaml_to_json(tags);
}

static int
recipe_load(const char *path, bool partial, struct kiln_recipe **ret, struct kiln_error *err)
{
    _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
    int r = load_doc(path, &doc, err);
    if (r < 0)
        return r;
    const struct kiln_yaml_node *root = doc->root;

    _cleanup_(kiln_recipe_freep) struct kiln_recipe *rec = kiln_new(struct kiln_recipe, 1);
    rec->source = kiln_strdup(path);
    rec->dir = dir_of(path);

    struct kiln_problems d;
    kiln_problems_init(&d, path);
    if (kiln_problems_check_mapping(&d, root, "recipe", recipe_fields))
        recipe_fill(&d, root, rec);

    r = kiln_problems_finish(&d, err);
    kiln_problems_clear(&d);
    if (r < 0 && !partial)
        return r;
    *ret = TAKE_PTR(rec);
    return r;
}

int
kiln_recipe_load(const char *path, struct kiln_recipe **ret, struct kiln_error *err)
{
    return recipe_load(path, false, ret, err);
}

int
kiln_recipe_load_partial(const char *path, struct kiln_recipe **ret, struct kiln_error *err)
{
    *ret = NULL;
    return recipe_load(path, true, ret, err);
}

/* "name" or "name/1.x.x" in search_dirs: <dir>/<name>/<version>.yml, newest match wins. */
static char *
find_component(const char *ref, char *const *search_dirs, char **ret_why)
{
    _cleanup_free_ char *name = kiln_strdup(ref);
    struct kiln_semver_filter filter = {-1, -1, -1};
    char *slash = strchr(name, '/');
    if (slash) {
        *slash = '\0';
        /* A trailing build number ("1.0.0/1", as in ARNs) pins nothing more locally. */
        char *build = strchr(slash + 1, '/');
        if (build)
            *build = '\0';
        if (kiln_semver_filter_parse(slash + 1, &filter) < 0) {
            *ret_why = kiln_asprintf("'%s' is not a version or a filter such as 1.x.x", slash + 1);
            return NULL;
        }
    }
    char *best = NULL;
    struct kiln_semver best_v = {-1, -1, -1};
    for (size_t i = 0; search_dirs && search_dirs[i]; i++) {
        _cleanup_free_ char *dir = kiln_path_join(search_dirs[i], name);
        DIR *dh = opendir(dir);
        if (!dh)
            continue;
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t len = strlen(de->d_name);
            const char *ext = NULL;
            if (len > 4 && strcmp(de->d_name + len - 4, ".yml") == 0)
                ext = de->d_name + len - 4;
            else if (len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0)
                ext = de->d_name + len - 5;
            if (!ext)
                continue;
            _cleanup_free_ char *ver = kiln_strndup(de->d_name, (size_t)(ext - de->d_name));
            struct kiln_semver v;
            if (kiln_semver_parse(ver, &v) < 0 || !kiln_semver_filter_match(&filter, &v))
                continue;
            if (best && kiln_semver_compare(&v, &best_v) <= 0)
                continue;
            free(best);
            best = kiln_path_join(dir, de->d_name);
            best_v = v;
        }
        closedir(dh);
        if (best)
            break; /* earlier folders win */
    }
    if (!best)
        *ret_why = kiln_strdup("no matching version found");
    return best;
}

int
kiln_recipe_resolve(struct kiln_recipe *r, char *const *search_dirs, struct kiln_error *err)
{
    struct kiln_problems d;
    kiln_problems_init(&d, r->source);
    for (size_t i = 0; i < r->n_components; i++) {
        struct kiln_component_ref *c = &r->components[i];
        free(c->resolved);
        c->resolved = NULL;
        if (c->path) {
            _cleanup_free_ char *p = resolve_rel(r->dir, c->path);
            struct stat st;
            if (stat(p, &st) < 0)
                kiln_problems_add_at(&d, c->line, c->column, "component %zu: path '%s' (%s): %s",
                                     i + 1, c->path, p, strerror(errno));
            else if (!S_ISREG(st.st_mode))
                kiln_problems_add_at(&d, c->line, c->column,
                                     "component %zu: path '%s' (%s) is not a regular file", i + 1,
                                     c->path, p);
            else
                c->resolved = realpath(p, NULL);
            continue;
        }
        _cleanup_free_ char *ref = NULL;
        bool aws_managed = false;
        if (c->name) {
            ref = kiln_strdup(c->name);
        } else if (c->arn) {
            /* arn:aws:imagebuilder:<region>:<account>:component/<name>/<version>[/<build>] */
            const char *p = c->arn;
            for (int k = 0; k < 5 && p; k++) {
                if (k == 4)
                    aws_managed = strncmp(p, "aws:", 4) == 0;
                p = strchr(p, ':');
                if (p)
                    p++;
            }
            if (p && strncmp(p, "component/", 10) == 0)
                ref = kiln_strdup(p + 10);
            else {
                kiln_problems_add_at(&d, c->line, c->column,
                                     "component %zu: componentArn '%s' does not name a component "
                                     "(...:component/<name>/<version>)",
                                     i + 1, c->arn);
                continue;
            }
        } else {
            continue; /* already reported by the loader */
        }
        _cleanup_free_ char *why = NULL;
        c->resolved = find_component(ref, search_dirs, &why);
        if (!c->resolved) {
            _cleanup_buf_ struct kiln_buf dirs;
            kiln_buf_init(&dirs);
            for (size_t k = 0; search_dirs && search_dirs[k]; k++)
                kiln_buf_appendf(&dirs, "%s%s", k ? ", " : "", search_dirs[k]);
            kiln_problems_add_at(&d, c->line, c->column,
                                 "component %zu: '%s': %s%s (looked for <name>/<version>.yml in: "
                                 "%s)",
                                 i + 1, ref, why,
                                 aws_managed ? "; an AWS-managed component is not available "
                                               "locally, reference a local document by 'path'"
                                             : "",
                                 dirs.len ? dirs.data : "no folders");
        }
    }
    int ret = kiln_problems_finish(&d, err);
    kiln_problems_clear(&d);
    return ret;
}

/* ---- infrastructure configuration ---- */

static const struct kiln_yaml_field infra_fields[] = {
    {"name", S, false},
    {"description", S, false},
    {"driver", S, false},
    {"libvirt", M, false},
    {"vcpus", S, false},
    {"memoryMiB", S, false},
    {"region", S, false},
    {"instanceTypes", L, false},
    {"instanceProfileName", S, false},
    {"securityGroupIds", L, false},
    {"subnetId", S, false},
    {"logging", M, false},
    {"keyPair", S, false},
    {"terminateInstanceOnFailure", S, false},
    {"snsTopicArn", S, false},
    {"resourceTags", M, false},
    {"instanceMetadataOptions", M, false},
    {"tags", M, false},
    {"fail", M, false}, /* driver: fake only: failures to inject (tests) */
    {NULL, S, false},
};

static const struct kiln_yaml_field libvirt_fields[] = {
    {"uri", S, false},
    {"accel", S, false},
    {"warmStart", S, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field logging_fields[] = {
    {"s3Logs", M, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field s3logs_fields[] = {
    {"s3BucketName", S, false},
    {"s3KeyPrefix", S, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field imds_fields[] = {
    {"httpTokens", S, false},
    {"httpPutResponseHopLimit", S, false},
    {NULL, S, false},
};

void
kiln_infrastructure_free(struct kiln_infrastructure *i)
{
    if (!i)
        return;
    free(i->source);
    free(i->name);
    free(i->description);
    free(i->driver);
    free(i->uri);
    free(i->accel);
    kiln_strv_free(i->instance_types);
    free(i->subnet_id);
    kiln_strv_free(i->security_group_ids);
    free(i->instance_profile_name);
    free(i->key_pair);
    free(i->s3_bucket_name);
    free(i->s3_key_prefix);
    free(i->sns_topic_arn);
    json_decref(i->resource_tags);
    json_decref(i->settings);
    free(i);
}

struct kiln_infrastructure *
kiln_infrastructure_default(void)
{
    struct kiln_infrastructure *i = kiln_new(struct kiln_infrastructure, 1);
    i->driver = kiln_strdup("libvirt");
    i->uri = kiln_strdup("qemu:///system");
    i->accel = kiln_strdup("auto");
    i->vcpus = 2;
    i->memory_mib = 2048;
    i->terminate_on_failure = true;
    i->settings = json_object();
    return i;
}

static void
check_string_map(struct kiln_problems *d, const struct kiln_yaml_node *map, const char *what)
{
    if (!map || map->kind != M)
        return;
    for (size_t i = 0; i < map->n; i++)
        if (map->items[i]->kind != S)
            kiln_problems_add(d, map->items[i], "%s: the value of '%s' must be a string", what,
                              map->keys[i]->value);
}

static void
infrastructure_fill(struct kiln_problems *d, const struct kiln_yaml_node *root,
                    struct kiln_infrastructure *inf)
{
    if (kiln_yaml_map_get(root, "name"))
        check_name(d, root, "infrastructure configuration");
    inf->name = get_str(root, "name");
    inf->description = get_str(root, "description");
    char *drv = get_str(root, "driver");
    if (drv) {
        free(inf->driver);
        inf->driver = drv;
        if (!kiln_streq(drv, "libvirt") && !kiln_streq(drv, "ec2") && !kiln_streq(drv, "fake"))
            kiln_problems_add(d, kiln_yaml_map_get(root, "driver"),
                              "driver '%s' is not one of libvirt, ec2, fake", drv);
    }
    const struct kiln_yaml_node *lv = kiln_yaml_map_get(root, "libvirt");
    if (lv && lv->kind == M && kiln_problems_check_mapping(d, lv, "libvirt", libvirt_fields)) {
        char *uri = get_str(lv, "uri");
        if (uri) {
            free(inf->uri);
            inf->uri = uri;
            if (!strstr(uri, "://"))
                kiln_problems_add(d, kiln_yaml_map_get(lv, "uri"),
                                  "libvirt uri '%s' is not a URI (e.g. qemu:///system, "
                                  "qemu+ssh://host/system)",
                                  uri);
        }
        char *accel = get_str(lv, "accel");
        if (accel) {
            free(inf->accel);
            inf->accel = accel;
            if (!kiln_streq(accel, "auto") && !kiln_streq(accel, "kvm") &&
                !kiln_streq(accel, "tcg"))
                kiln_problems_add(d, kiln_yaml_map_get(lv, "accel"),
                                  "accel '%s' is not one of auto, kvm, tcg", accel);
        }
        get_bool(d, lv, "warmStart", true); /* checked here, read by the driver */
    }
    inf->vcpus = (unsigned)get_int(d, root, "vcpus", 1, 256, 2);
    inf->memory_mib = (unsigned)get_int(d, root, "memoryMiB", 128, 1 << 22, 2048);
    inf->instance_types = get_strv(d, kiln_yaml_map_get(root, "instanceTypes"), "instanceTypes");
    inf->security_group_ids =
        get_strv(d, kiln_yaml_map_get(root, "securityGroupIds"), "securityGroupIds");
    for (size_t k = 0; inf->security_group_ids && inf->security_group_ids[k]; k++)
        if (strncmp(inf->security_group_ids[k], "sg-", 3) != 0)
            kiln_problems_add(d, kiln_yaml_map_get(root, "securityGroupIds")->items[k],
                              "security group id '%s' must start with sg-",
                              inf->security_group_ids[k]);
    inf->subnet_id = get_str(root, "subnetId");
    if (inf->subnet_id && strncmp(inf->subnet_id, "subnet-", 7) != 0)
        kiln_problems_add(d, kiln_yaml_map_get(root, "subnetId"),
                          "subnetId '%s' must start with subnet-", inf->subnet_id);
    inf->instance_profile_name = get_str(root, "instanceProfileName");
    inf->key_pair = get_str(root, "keyPair");
    inf->sns_topic_arn = get_str(root, "snsTopicArn");
    inf->terminate_on_failure = get_bool(d, root, "terminateInstanceOnFailure", true);
    const struct kiln_yaml_node *logging = kiln_yaml_map_get(root, "logging");
    if (logging && logging->kind == M &&
        kiln_problems_check_mapping(d, logging, "logging", logging_fields)) {
        const struct kiln_yaml_node *s3 = kiln_yaml_map_get(logging, "s3Logs");
        if (s3 && s3->kind == M && kiln_problems_check_mapping(d, s3, "s3Logs", s3logs_fields)) {
            inf->s3_bucket_name = get_str(s3, "s3BucketName");
            inf->s3_key_prefix = get_str(s3, "s3KeyPrefix");
        }
    }
    const struct kiln_yaml_node *imds = kiln_yaml_map_get(root, "instanceMetadataOptions");
    if (imds && imds->kind == M &&
        kiln_problems_check_mapping(d, imds, "instanceMetadataOptions", imds_fields)) {
        const char *tok = kiln_yaml_scalar(kiln_yaml_map_get(imds, "httpTokens"));
        if (tok && !kiln_streq(tok, "required") && !kiln_streq(tok, "optional"))
            kiln_problems_add(d, kiln_yaml_map_get(imds, "httpTokens"),
                              "httpTokens '%s' is not one of required, optional", tok);
        get_int(d, imds, "httpPutResponseHopLimit", 1, 64, 1);
    }
    const struct kiln_yaml_node *fail = kiln_yaml_map_get(root, "fail");
    if (fail && !kiln_streq(inf->driver, "fake"))
        kiln_problems_add(d, fail, "'fail' is only for driver: fake (tests)");
    const struct kiln_yaml_node *rt = kiln_yaml_map_get(root, "resourceTags");
    check_string_map(d, rt, "resourceTags");
    check_string_map(d, kiln_yaml_map_get(root, "tags"), "tags");
    if (rt && rt->kind == M)
        inf->resource_tags = kiln_yaml_to_json(rt);
    json_decref(inf->settings);
    inf->settings = kiln_yaml_to_json(root);
}

int
kiln_infrastructure_load(const char *path, struct kiln_infrastructure **ret, struct kiln_error *err)
{
    _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
    int r = load_doc(path, &doc, err);
    if (r < 0)
        return r;
    const struct kiln_yaml_node *root = doc->root;
    _cleanup_(kiln_infrastructure_freep) struct kiln_infrastructure *inf =
        kiln_infrastructure_default();
    inf->source = kiln_strdup(path);

    struct kiln_problems d;
    kiln_problems_init(&d, path);
    if (kiln_problems_check_mapping(&d, root, "infrastructure configuration", infra_fields))
        infrastructure_fill(&d, root, inf);

    r = kiln_problems_finish(&d, err);
    kiln_problems_clear(&d);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(inf);
    return 0;
}

/* ---- distribution configuration ---- */

static const struct kiln_yaml_field dist_fields[] = {
    {"name", S, false}, {"description", S, false}, {"distributions", L, true},
    {"tags", M, false}, {NULL, S, false},
};

static const struct kiln_yaml_field dist_item_fields[] = {
    {"region", S, false}, {"amiDistributionConfiguration", M, false},
    {"local", M, false},  {"licenseConfigurationArns", L, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field ami_fields[] = {
    {"name", S, false},     {"description", S, false},      {"amiTags", M, false},
    {"kmsKeyId", S, false}, {"launchPermission", M, false}, {"targetAccountIds", L, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field launch_perm_fields[] = {
    {"userIds", L, false},
    {"userGroups", L, false},
    {"organizationArns", L, false},
    {"organizationalUnitArns", L, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field local_fields[] = {
    {"directory", S, true},
    {"formats", L, false},
    {"compress", S, false},
    {NULL, S, false},
};

void
kiln_distribution_free(struct kiln_distribution_config *dc)
{
    if (!dc)
        return;
    free(dc->source);
    free(dc->name);
    free(dc->description);
    for (size_t i = 0; i < dc->n_items; i++) {
        free(dc->items[i].region);
        json_decref(dc->items[i].ami);
        free(dc->items[i].ami_name);
        free(dc->items[i].local.directory);
        kiln_strv_free(dc->items[i].local.formats);
    }
    free(dc->items);
    free(dc);
}

struct kiln_distribution_config *
kiln_distribution_default(const char *home)
{
    struct kiln_distribution_config *dc = kiln_new(struct kiln_distribution_config, 1);
    dc->items = kiln_new(struct kiln_distribution, 1);
    dc->n_items = 1;
    dc->items[0].is_local = true;
    dc->items[0].local.directory = kiln_path_join(home, "outputs");
    dc->items[0].local.formats = kiln_new(char *, 2);
    dc->items[0].local.formats[0] = kiln_strdup("qcow2");
    return dc;
}

static bool
is_account_id(const char *s)
{
    size_t n = strlen(s);
    if (n != 12)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static void
check_account_list(struct kiln_problems *d, const struct kiln_yaml_node *list, const char *what)
{
    if (!list || list->kind != L)
        return;
    for (size_t i = 0; i < list->n; i++) {
        const char *s = kiln_yaml_scalar(list->items[i]);
        if (s && !is_account_id(s))
            kiln_problems_add(d, list->items[i], "%s: '%s' is not a 12-digit AWS account id", what,
                              s);
    }
}

static void
load_ami(struct kiln_problems *d, const struct kiln_yaml_node *ami, struct kiln_distribution *it)
{
    if (!kiln_problems_check_mapping(d, ami, "amiDistributionConfiguration", ami_fields))
        return;
    it->ami = kiln_yaml_to_json(ami);
    it->ami_name = get_str(ami, "name");
    if (it->ami_name) {
        const struct kiln_yaml_node *n = kiln_yaml_map_get(ami, "name");
        _cleanup_free_ char *bad = NULL;
        if (!kiln_name_template_check(it->ami_name, &bad))
            kiln_problems_add(d, n,
                              "AMI name: unknown template variable {{%s}} (known: "
                              "{{imagebuilder:buildDate}}, {{imagebuilder:buildVersion}})",
                              bad);
        size_t len = strlen(it->ami_name);
        if (len < 1 || len > 127)
            kiln_problems_add(d, n, "AMI name must be 1 to 127 characters");
        /* EC2 allows letters, digits, ( ) [ ] space . / - ' @ _ (and the template braces). */
        for (const char *p = it->ami_name; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("()[] ./-'@_{}:", *p)) {
                kiln_problems_add(d, n, "AMI name: character '%c' is not allowed", *p);
                break;
            }
    }
    check_account_list(d, kiln_yaml_map_get(ami, "targetAccountIds"), "targetAccountIds");
    check_string_map(d, kiln_yaml_map_get(ami, "amiTags"), "amiTags");
    const struct kiln_yaml_node *lp = kiln_yaml_map_get(ami, "launchPermission");
    if (lp && lp->kind == M &&
        kiln_problems_check_mapping(d, lp, "launchPermission", launch_perm_fields)) {
        check_account_list(d, kiln_yaml_map_get(lp, "userIds"), "launchPermission.userIds");
        const struct kiln_yaml_node *g = kiln_yaml_map_get(lp, "userGroups");
        for (size_t i = 0; g && g->kind == L && i < g->n; i++)
            if (!kiln_streq(kiln_yaml_scalar(g->items[i]), "all"))
                kiln_problems_add(d, g->items[i],
                                  "launchPermission.userGroups: only 'all' is valid");
    }
}

static void
load_local(struct kiln_problems *d, const struct kiln_yaml_node *loc, const char *base,
           struct kiln_distribution *it)
{
    it->is_local = true;
    if (!kiln_problems_check_mapping(d, loc, "local", local_fields))
        return;
    _cleanup_free_ char *dir = get_str(loc, "directory");
    if (dir)
        it->local.directory = resolve_rel(base, dir);
    it->local.compress = get_bool(d, loc, "compress", false);
    const struct kiln_yaml_node *fmts = kiln_yaml_map_get(loc, "formats");
    if (fmts && fmts->kind == L) {
        it->local.formats = get_strv(d, fmts, "formats");
        if (fmts->n == 0)
            kiln_problems_add(d, fmts, "formats: give at least one of qcow2, raw, vmdk, vhdx");
        for (size_t i = 0; it->local.formats && it->local.formats[i]; i++) {
            const char *f = it->local.formats[i];
            if (!kiln_streq(f, "qcow2") && !kiln_streq(f, "raw") && !kiln_streq(f, "vmdk") &&
                !kiln_streq(f, "vhdx"))
                kiln_problems_add(d, fmts->items[i],
                                  "format '%s' is not one of qcow2, raw, vmdk, vhdx", f);
            for (size_t j = 0; j < i; j++)
                if (kiln_streq(f, it->local.formats[j]))
                    kiln_problems_add(d, fmts->items[i], "format '%s' is listed twice", f);
        }
    } else {
        it->local.formats = kiln_new(char *, 2);
        it->local.formats[0] = kiln_strdup("qcow2");
    }
}

static void
distribution_fill(struct kiln_problems *d, const struct kiln_yaml_node *root,
                  struct kiln_distribution_config *dc, const char *base)
{
    if (kiln_yaml_map_get(root, "name"))
        check_name(d, root, "distribution configuration");
    dc->name = get_str(root, "name");
    dc->description = get_str(root, "description");
    const struct kiln_yaml_node *items = kiln_yaml_map_get(root, "distributions");
    if (!items || items->kind != L)
        return;
    if (items->n == 0)
        kiln_problems_add(d, items, "distributions: give at least one target");
    dc->items = kiln_new(struct kiln_distribution, items->n ? items->n : 1);
    dc->n_items = items->n;
    for (size_t i = 0; i < items->n; i++) {
        const struct kiln_yaml_node *item = items->items[i];
        struct kiln_distribution *it = &dc->items[i];
        it->line = item->line;
        it->column = item->column;
        if (!kiln_problems_check_mapping(d, item, "distribution", dist_item_fields))
            continue;
        it->region = get_str(item, "region");
        const struct kiln_yaml_node *ami = kiln_yaml_map_get(item, "amiDistributionConfiguration");
        const struct kiln_yaml_node *loc = kiln_yaml_map_get(item, "local");
        if (!!it->region == !!(loc && loc->kind == M))
            kiln_problems_add(d, item,
                              "distribution %zu: give either 'region' (an EC2 target) or 'local' "
                              "(a folder on this host)",
                              i + 1);
        if (ami && ami->kind == M) {
            if (!it->region)
                kiln_problems_add(d, ami,
                                  "amiDistributionConfiguration needs a 'region' in the same "
                                  "distribution");
            load_ami(d, ami, it);
        }
        if (loc && loc->kind == M)
            load_local(d, loc, base, it);
        for (size_t j = 0; j < i; j++)
            if (it->region && kiln_streq(it->region, dc->items[j].region))
                kiln_problems_add(d, kiln_yaml_map_get(item, "region"),
                                  "region '%s' is listed twice", it->region);
    }
}

int
kiln_distribution_load(const char *path, struct kiln_distribution_config **ret,
                       struct kiln_error *err)
{
    _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
    int r = load_doc(path, &doc, err);
    if (r < 0)
        return r;
    const struct kiln_yaml_node *root = doc->root;
    _cleanup_(kiln_distribution_freep) struct kiln_distribution_config *dc =
        kiln_new(struct kiln_distribution_config, 1);
    dc->source = kiln_strdup(path);
    _cleanup_free_ char *base = dir_of(path);

    struct kiln_problems d;
    kiln_problems_init(&d, path);
    if (kiln_problems_check_mapping(&d, root, "distribution configuration", dist_fields))
        distribution_fill(&d, root, dc, base);

    r = kiln_problems_finish(&d, err);
    kiln_problems_clear(&d);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(dc);
    return 0;
}

/* ---- image pipeline ---- */

static const struct kiln_yaml_field pipeline_fields[] = {
    {"name", S, true},
    {"description", S, false},
    {"imageRecipe", S, true},
    {"infrastructureConfiguration", S, false},
    {"distributionConfiguration", S, false},
    {"imageTestsConfiguration", M, false},
    {"schedule", M, false},
    {"status", S, false},
    {"enhancedImageMetadataEnabled", S, false},
    {"tags", M, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field tests_fields[] = {
    {"imageTestsEnabled", S, false},
    {"timeoutMinutes", S, false},
    {NULL, S, false},
};

static const struct kiln_yaml_field schedule_fields[] = {
    {"scheduleExpression", S, false},
    {"timezone", S, false},
    {"pipelineExecutionStartCondition", S, false},
    {NULL, S, false},
};

void
kiln_pipeline_free(struct kiln_pipeline *p)
{
    if (!p)
        return;
    free(p->source);
    free(p->name);
    free(p->description);
    free(p->recipe_path);
    free(p->infrastructure_path);
    free(p->distribution_path);
    free(p->schedule_expression);
    free(p->timezone);
    free(p->start_condition);
    free(p);
}

/* cron(<min> <hour> <day-of-month> <month> <day-of-week> [<year>]) as Image Builder writes it. */
static bool
cron_ok(const char *expr)
{
    size_t len = strlen(expr);
    if (len < 7 || strncmp(expr, "cron(", 5) != 0 || expr[len - 1] != ')')
        return false;
    int fields = 0;
    bool in = false;
    for (size_t i = 5; i < len - 1; i++) {
        bool space = expr[i] == ' ';
        if (!space && !in)
            fields++;
        in = !space;
        if (!space && !isalnum((unsigned char)expr[i]) && !strchr("*?/,-#L", expr[i]))
            return false;
    }
    return fields == 5 || fields == 6;
}

static void
pipeline_fill(struct kiln_problems *d, const struct kiln_yaml_node *root, struct kiln_pipeline *p,
              const char *base)
{
    check_name(d, root, "image pipeline");
    p->name = get_str(root, "name");
    p->description = get_str(root, "description");
    const char *const keys[] = {"imageRecipe", "infrastructureConfiguration",
                                "distributionConfiguration"};
    char **dst[] = {&p->recipe_path, &p->infrastructure_path, &p->distribution_path};
    for (size_t i = 0; i < 3; i++) {
        _cleanup_free_ char *v = get_str(root, keys[i]);
        if (v)
            *dst[i] = resolve_rel(base, v);
    }
    const struct kiln_yaml_node *t = kiln_yaml_map_get(root, "imageTestsConfiguration");
    if (t && t->kind == M &&
        kiln_problems_check_mapping(d, t, "imageTestsConfiguration", tests_fields)) {
        p->tests_enabled = get_bool(d, t, "imageTestsEnabled", true);
        p->timeout_minutes = (int)get_int(d, t, "timeoutMinutes", 60, 1440, 720);
    }
    const struct kiln_yaml_node *s = kiln_yaml_map_get(root, "schedule");
    if (s && s->kind == M && kiln_problems_check_mapping(d, s, "schedule", schedule_fields)) {
        p->schedule_expression = get_str(s, "scheduleExpression");
        p->timezone = get_str(s, "timezone");
        p->start_condition = get_str(s, "pipelineExecutionStartCondition");
        if (p->schedule_expression && !cron_ok(p->schedule_expression))
            kiln_problems_add(
                d, kiln_yaml_map_get(s, "scheduleExpression"),
                "scheduleExpression '%s' is not cron(<minutes> <hours> <day-of-month> "
                "<month> <day-of-week> [<year>])",
                p->schedule_expression);
        if (p->start_condition && !kiln_streq(p->start_condition, "EXPRESSION_MATCH_ONLY") &&
            !kiln_streq(p->start_condition, "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"))
            kiln_problems_add(d, kiln_yaml_map_get(s, "pipelineExecutionStartCondition"),
                              "pipelineExecutionStartCondition '%s' is not one of "
                              "EXPRESSION_MATCH_ONLY, "
                              "EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE",
                              p->start_condition);
        if (!p->start_condition)
            p->start_condition = kiln_strdup("EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE");
    }
    const char *status = kiln_yaml_scalar(kiln_yaml_map_get(root, "status"));
    if (status) {
        if (kiln_streq(status, "DISABLED"))
            p->enabled = false;
        else if (!kiln_streq(status, "ENABLED"))
            kiln_problems_add(d, kiln_yaml_map_get(root, "status"),
                              "status '%s' is not one of ENABLED, DISABLED", status);
    }
    get_bool(d, root, "enhancedImageMetadataEnabled", true);
}

int
kiln_pipeline_load(const char *path, struct kiln_pipeline **ret, struct kiln_error *err)
{
    _cleanup_(kiln_yaml_doc_freep) struct kiln_yaml_doc *doc = NULL;
    int r = load_doc(path, &doc, err);
    if (r < 0)
        return r;
    const struct kiln_yaml_node *root = doc->root;
    _cleanup_(kiln_pipeline_freep) struct kiln_pipeline *p = kiln_new(struct kiln_pipeline, 1);
    p->source = kiln_strdup(path);
    p->tests_enabled = true;
    p->timeout_minutes = 720;
    p->enabled = true;
    _cleanup_free_ char *base = dir_of(path);

    struct kiln_problems d;
    kiln_problems_init(&d, path);
    if (kiln_problems_check_mapping(&d, root, "image pipeline", pipeline_fields))
        pipeline_fill(&d, root, p, base);

    r = kiln_problems_finish(&d, err);
    kiln_problems_clear(&d);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(p);
    return 0;
}

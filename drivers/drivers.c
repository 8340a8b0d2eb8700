/* The driver table and the small helpers shared by every driver (image references, results). */
#include "common/cleanup.h"
#include "drivers/driver.h"
#include "drivers/fake.h"
#include "drivers/libvirt.h"

static const struct kiln_driver_ops *const drivers[] = {
    &kiln_libvirt_driver,
    &kiln_fake_driver,
};

const struct kiln_driver_ops *
kiln_driver_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < ARRAY_SIZE(drivers); i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}

void
kiln_image_ref_clear(struct kiln_image_ref *ref)
{
    if (!ref)
        return;
    free(ref->kind);
    free(ref->location);
    free(ref->kernel);
    free(ref->initrd);
    free(ref->cmdline);
    *ref = (struct kiln_image_ref){0};
}

static char *
dup_or_null(const char *s)
{
    return s ? kiln_strdup(s) : NULL;
}

void
kiln_image_ref_copy(struct kiln_image_ref *dst, const struct kiln_image_ref *src)
{
    *dst = (struct kiln_image_ref){
        .kind = dup_or_null(src->kind),
        .location = dup_or_null(src->location),
        .kernel = dup_or_null(src->kernel),
        .initrd = dup_or_null(src->initrd),
        .cmdline = dup_or_null(src->cmdline),
    };
}

void
kiln_job_result_clear(struct kiln_job_result *r)
{
    if (!r)
        return;
    free(r->failure);
    free(r->log_dir);
    *r = (struct kiln_job_result){0};
}

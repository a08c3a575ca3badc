/* fuzz_md_snapshot.c: libFuzzer harness: <domainsnapshot> parsing in every form, formatting back, reparsing. */
#include "md.h"

#include <stdlib.h>
#include <string.h>

static const unsigned parse_flags[] = {
    0,                                          /* the user form (snapshot-create) */
    MD_PARSE_REDEFINE,                          /* snapshot-create --redefine */
    MD_PARSE_ON_DISK,                           /* a file in the store */
    MD_PARSE_ON_DISK | MD_PARSE_SKIP_SUBTREES, /* listing */
};

static const unsigned format_flags[] = {0, MD_FORMAT_ON_DISK, MD_FORMAT_SECURE};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof(parse_flags) / sizeof(parse_flags[0]); i++) {
        struct qs_error *err = NULL;
        struct md_snapshot *snap = md_snapshot_parse((const char *)data, size, parse_flags[i], &err), *copy;

        qs_error_free(err);
        err = NULL;
        if (!snap)
            continue;
        (void)md_snapshot_is_external(snap);
        (void)md_snapshot_validate(snap, &err);
        qs_error_free(err);
        err = NULL;
        (void)md_state_to_string(snap->state);
        (void)md_location_to_string(snap->memory);
        copy = md_snapshot_copy(snap);
        for (size_t f = 0; f < sizeof(format_flags) / sizeof(format_flags[0]); f++) {
            char *xml = md_snapshot_format(copy, format_flags[f], &err);
            struct md_snapshot *again;

            qs_error_free(err);
            err = NULL;
            if (!xml)
                continue;
            /* what we wrote must read back without harm */
            again = md_snapshot_parse(xml, strlen(xml), format_flags[f] & MD_FORMAT_ON_DISK ? parse_flags[i] : 0,
                                      &err);
            qs_error_free(err);
            err = NULL;
            md_snapshot_free(again);
            free(xml);
        }
        md_snapshot_free(copy);
        md_snapshot_free(snap);
    }
    return 0;
}

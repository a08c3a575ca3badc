/* fuzz_md_snapshot.c: libFuzzer harness: <domainsnapshot> parsing in every form, formatting back, reparsing -
 * and what was formatted, parsed back, formats to the same text. */
#include "md.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned parse_flags[] = {
    0,                                          /* the user form (snapshot-create) */
    MD_PARSE_REDEFINE,                          /* snapshot-create --redefine */
    MD_PARSE_ON_DISK,                           /* a file in the store */
    MD_PARSE_ON_DISK | MD_PARSE_SKIP_SUBTREES, /* listing */
};

static const unsigned format_flags[] = {0, MD_FORMAT_ON_DISK, MD_FORMAT_SECURE};

/* A broken round trip: what and both texts on stderr, then abort() (libFuzzer keeps the input). */
static void fail_trip(const char *what, const char *got, const char *xml, unsigned pflags, unsigned fflags)
{
    fprintf(stderr, "%s (parse flags %u, format flags %u):\n---\n%s---\n%s\n---\n", what, pflags, fflags, xml, got);
    abort();
}

/* XML2 came from one trip: parsed back with REPARSE and formatted with FFLAGS it must not change. */
static void second_trip(const char *xml2, unsigned reparse, unsigned fflags, unsigned pflags)
{
    struct qs_error *err = NULL;
    struct md_snapshot *s = md_snapshot_parse(xml2, strlen(xml2), reparse, &err);
    char *xml3;

    if (!s)
        fail_trip("text qsnap wrote and read once does not parse again", err->message, xml2, pflags, fflags);
    if (!(xml3 = md_snapshot_format(s, fflags, &err)))
        fail_trip("a snapshot read back does not format", err->message, xml2, pflags, fflags);
    if (strcmp(xml2, xml3) != 0)
        fail_trip("format, parse, format differs on the second trip", xml3, xml2, pflags, fflags);
    free(xml3);
    md_snapshot_free(s);
}

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
            unsigned reparse = format_flags[f] & MD_FORMAT_ON_DISK ? MD_PARSE_ON_DISK : MD_PARSE_REDEFINE;
            bool strict = parse_flags[i] & (MD_PARSE_REDEFINE | MD_PARSE_ON_DISK);
            struct md_snapshot *again;

            qs_error_free(err);
            err = NULL;
            if (!xml)
                continue;
            /* what we wrote reads back (the on-disk form as the store reads it, the others as --redefine
             * takes dumpxml's output) and formats to the same text: a file qsnap writes survives any number of
             * reads and writes unchanged. A snapshot read in the user form (snapshot-create) has not had
             * libvirt's redefine defaults yet (<memory> from the state): its first trip may add them, the
             * second must change nothing. */
            again = md_snapshot_parse(xml, strlen(xml), reparse, &err);
            if (!again && (parse_flags[i] & MD_PARSE_ON_DISK) && (format_flags[f] & MD_FORMAT_ON_DISK))
                fail_trip("on-disk text qsnap wrote does not parse", err->message, xml, parse_flags[i],
                          format_flags[f]);
            qs_error_free(err);
            err = NULL;
            if (again) {
                char *xml2 = md_snapshot_format(again, format_flags[f], &err);
                if (!xml2)
                    fail_trip("a snapshot read back does not format", err->message, xml, parse_flags[i],
                              format_flags[f]);
                if (strict && strcmp(xml, xml2) != 0)
                    fail_trip("format, parse, format differs", xml2, xml, parse_flags[i], format_flags[f]);
                if (!strict)
                    second_trip(xml2, reparse, format_flags[f], parse_flags[i]);
                free(xml2);
            }
            md_snapshot_free(again);
            free(xml);
        }
        md_snapshot_free(copy);
        md_snapshot_free(snap);
    }
    return 0;
}

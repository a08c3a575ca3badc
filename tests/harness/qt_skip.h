/* qt_skip.h: when a test may skip - a missing tool fails under $QSNAP_REQUIRE_QEMU=1, a designed skip says so. */
#ifndef QT_SKIP_H
#define QT_SKIP_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * scripts/test (and so CI) sets QSNAP_REQUIRE_QEMU=1: QEMU and every tool scripts/setup installs must be
 * there, and a test that would skip for the lack of one fails instead. Without it (a developer's machine
 * without QEMU) such tests skip, so that the unit tests still run.
 */
static inline bool qt_tools_required(void)
{
    const char *v = getenv("QSNAP_REQUIRE_QEMU");
    return v && strcmp(v, "1") == 0;
}

/* WHAT (e.g. "qemu-img is not in PATH") stops this test: a failure under $QSNAP_REQUIRE_QEMU=1, else a skip. */
#define qt_skip_missing(what)                                                                                    \
    do {                                                                                                         \
        if (qt_tools_required())                                                                                 \
            fail_msg("%s, and $QSNAP_REQUIRE_QEMU=1 makes that a failure (scripts/setup installs the tools)",    \
                     (what));                                                                                    \
        print_message("skipped: %s\n", (what));                                                                  \
        skip();                                                                                                  \
    } while (0)

/*
 * A part of a test cannot check what it should because WHAT is missing: a failure under
 * $QSNAP_REQUIRE_QEMU=1, else a printed "not checked" and the test goes on without that part.
 */
#define qt_part_missing(what)                                                                                    \
    do {                                                                                                         \
        if (qt_tools_required())                                                                                 \
            fail_msg("%s, and $QSNAP_REQUIRE_QEMU=1 makes that a failure (scripts/setup installs the tools)",    \
                     (what));                                                                                    \
        print_message("not checked: %s\n", (what));                                                              \
    } while (0)

/*
 * A skip that is part of the design (e.g. a check that needs two QEMU versions, which only scripts/test's
 * QEMU 10 pass has). The line "skipped by design: WHY" is what scripts/test looks for: any other skip fails it.
 */
#define qt_skip_by_design(why)                                                                                   \
    do {                                                                                                         \
        print_message("skipped by design: %s\n", (why));                                                         \
        skip();                                                                                                  \
    } while (0)

#endif

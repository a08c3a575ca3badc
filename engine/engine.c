/* engine.c: library-wide entry points. */
#include "engine.h"

const char *engine_version(void)
{
    return QSNAP_VERSION;
}

/* engine.h: libqsnap's public interface - snapshot operations on QEMU VMs, callable from any front end. */
#ifndef QSNAP_ENGINE_H
#define QSNAP_ENGINE_H

#include "qs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "MAJOR.MINOR.PATCH". Borrowed. */
QS_EXPORT const char *engine_version(void);

#ifdef __cplusplus
}
#endif
#endif

/* md.h: snapshot metadata (placeholder). */
#ifndef MD_H
#define MD_H
#include "qs_error.h"
#endif

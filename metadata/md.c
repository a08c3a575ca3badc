/* md.c: placeholder until the metadata module lands. */
#include "md.h"

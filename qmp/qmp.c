/* qmp.c: placeholder until the QMP client lands. */
#include "qmp.h"

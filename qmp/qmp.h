/* qmp.h: QMP client (placeholder). */
#ifndef QMP_H
#define QMP_H
#include "qs_error.h"
#endif

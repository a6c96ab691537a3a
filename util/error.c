/* One table (OT_ERRNO_MAP in otter/error.h) gives names and texts. */
#include "otter/error.h"
#include "otter/version.h"

#include <stdlib.h>

const char *ot_version(void)
{
    return "0.1.0";
}

const char *ot_strerror(int err)
{
    switch (abs(err)) {
    case 0: return "success";
#define X(code, text) \
    case code: return text;
        OT_ERRNO_MAP(X)
#undef X
    default: return "unknown error";
    }
}

const char *ot_err_name(int err)
{
    switch (abs(err)) {
    case 0: return "OK";
#define X(code, text) \
    case code: return #code;
        OT_ERRNO_MAP(X)
#undef X
    default: return "UNKNOWN";
    }
}

/* otter/version.h: the library's version. */
#ifndef OTTER_VERSION_H
#define OTTER_VERSION_H

#define OT_VERSION_MAJOR 0
#define OT_VERSION_MINOR 1
#define OT_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH".
 * Static storage; any thread. */
const char *ot_version(void);

#ifdef __cplusplus
}
#endif
#endif

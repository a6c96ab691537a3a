/* A process's links and monitors: a small open-addressing hash table that
 * only its process touches (signals change it in the process's own context),
 * so it needs no lock. Most processes have none and pay one NULL pointer. */
#ifndef OT_SCHED_SIGTAB_H
#define OT_SCHED_SIGTAB_H

#include <stddef.h>
#include <stdint.h>

enum {
    OT__ENT_LINK = 1,    /* key = the linked pid */
    OT__ENT_MON_OUT = 2, /* I monitor pid; key = the monitor's ref */
    OT__ENT_MON_IN = 3,  /* pid monitors me; key = the monitor's ref */
};

typedef struct ot__sigent {
    uint64_t key;
    uint64_t pid;
    uint32_t kind; /* 0 = empty slot */
} ot__sigent_t;

#define OT__SIGTAB_INLINE 8

struct ot__sigtab {
    size_t cap; /* power of two */
    size_t used;
    size_t count[4]; /* entries per kind */
    ot__sigent_t *e; /* inline_e until it outgrows it */
    /* The first slots come with the table: most processes that link or
     * monitor at all hold a handful, and one allocation serves them. */
    ot__sigent_t inline_e[OT__SIGTAB_INLINE];
};

/* Add (kind, key) -> pid. Returns 1 if added, 0 if already there, or
 * -ENOMEM. *t is created on first use. */
int ot__sigtab_add(struct ot__sigtab **t, uint32_t kind, uint64_t key, uint64_t pid);
/* Make room for one more entry, so that the next add cannot fail.
 * 0 or -ENOMEM. */
int ot__sigtab_reserve(struct ot__sigtab **t);
/* Remove (kind, key); on success *pid (if not NULL) gets its pid. Returns 1
 * if it was there, 0 if not. */
int ot__sigtab_del(struct ot__sigtab *t, uint32_t kind, uint64_t key, uint64_t *pid);
/* Number of entries of `kind` (0 for a NULL table). */
size_t ot__sigtab_count(const struct ot__sigtab *t, uint32_t kind);
void ot__sigtab_free(struct ot__sigtab *t);

#endif

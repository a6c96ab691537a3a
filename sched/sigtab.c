/* Links and monitors of one process (see sigtab.h). Linear probing with
 * backward-shift deletion, so there are no tombstones and a table that
 * churns (a supervisor linking and unlinking children) never degrades. */
#include "sched/sigtab.h"

#include <errno.h>
#include <stdlib.h>

static size_t hash(uint32_t kind, uint64_t key)
{
    uint64_t h = (key ^ ((uint64_t)kind << 61)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29));
}

static int grow(struct ot__sigtab *t)
{
    size_t cap = t->cap * 2;
    ot__sigent_t *e = calloc(cap, sizeof *e);
    if (!e) return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->e[i].kind) continue;
        size_t j = hash(t->e[i].kind, t->e[i].key) & (cap - 1);
        while (e[j].kind)
            j = (j + 1) & (cap - 1);
        e[j] = t->e[i];
    }
    if (t->e != t->inline_e) free(t->e);
    t->e = e;
    t->cap = cap;
    return 0;
}

static ot__sigent_t *find(const struct ot__sigtab *t, uint32_t kind, uint64_t key, size_t *at)
{
    if (!t || !t->cap) return NULL;
    for (size_t i = hash(kind, key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->e[i].kind) return NULL;
        if (t->e[i].kind == kind && t->e[i].key == key) {
            if (at) *at = i;
            return &t->e[i];
        }
    }
}

int ot__sigtab_reserve(struct ot__sigtab **tp)
{
    struct ot__sigtab *t = *tp;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t) return -ENOMEM;
        t->e = t->inline_e;
        t->cap = OT__SIGTAB_INLINE;
        *tp = t;
    }
    /* Keep the load at most 3/4: probes stay short. */
    if ((t->used + 1) * 4 > t->cap * 3 && grow(t) != 0) return -ENOMEM;
    return 0;
}

int ot__sigtab_add(struct ot__sigtab **tp, uint32_t kind, uint64_t key, uint64_t pid)
{
    if (find(*tp, kind, key, NULL)) return 0;
    if (ot__sigtab_reserve(tp) != 0) return -ENOMEM;
    struct ot__sigtab *t = *tp;
    size_t i = hash(kind, key) & (t->cap - 1);
    while (t->e[i].kind)
        i = (i + 1) & (t->cap - 1);
    t->e[i] = (ot__sigent_t){.key = key, .pid = pid, .kind = kind};
    t->used++;
    t->count[kind]++;
    return 1;
}

int ot__sigtab_del(struct ot__sigtab *t, uint32_t kind, uint64_t key, uint64_t *pid)
{
    size_t i;
    ot__sigent_t *e = find(t, kind, key, &i);
    if (!e) return 0;
    if (pid) *pid = e->pid;
    t->count[kind]--;
    t->used--;
    /* Backward shift: move later entries of the probe run into the hole
     * when their home slot does not lie (cyclically) between the hole and
     * themselves. */
    size_t mask = t->cap - 1, hole = i;
    for (size_t j = (i + 1) & mask; t->e[j].kind; j = (j + 1) & mask) {
        size_t home = hash(t->e[j].kind, t->e[j].key) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->e[hole] = t->e[j];
            hole = j;
        }
    }
    t->e[hole].kind = 0;
    return 1;
}

size_t ot__sigtab_count(const struct ot__sigtab *t, uint32_t kind)
{
    return t ? t->count[kind] : 0;
}

void ot__sigtab_free(struct ot__sigtab *t)
{
    if (!t) return;
    if (t->e != t->inline_e) free(t->e);
    free(t);
}

/* Scheduling policies: the knobs a researcher swaps (ot_config.policy). */
#ifndef OT_SCHED_POLICY_H
#define OT_SCHED_POLICY_H

#include <stdbool.h>
#include <stdint.h>

enum { OT__VICTIM_DISTANCE, OT__VICTIM_RANDOM };

typedef struct ot__policy {
    const char *name;
    int victim_order;     /* OT__VICTIM_*: hwloc distance groups, or random */
    bool steal_half;      /* take half of a victim's queue, or one process */
    unsigned spin_rounds; /* steal sweeps before parking */
    int32_t reductions;   /* budget per turn (BEAM: 4000) */
    bool runnext;         /* a process woken by a send runs next on the sender's core */
    bool depth_first;     /* never-run children wait in the fresh deque, newest first */
    unsigned steal_pays;  /* steals must bring this many times what they cost, or the
                             thief rests (sched/park.c); 0: always steal */
} ot__policy_t;

/* The policy called `name` (NULL = "default"), or NULL if unknown. */
const ot__policy_t *ot__policy_find(const char *name);

#endif

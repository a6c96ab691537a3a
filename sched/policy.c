#include "sched/policy.h"

#include <stddef.h>
#include <string.h>

#include "otter/runtime.h"

static const ot__policy_t policies[] = {
    /* Go's and Tokio's shape: nearest victims first, steal half, LIFO
     * run-next slot for the woken receiver, a short spin before parking. */
    {"default", OT__VICTIM_DISTANCE, true, 16, 4000, true, true, 2},
    /* Victims in random order, ignoring the topology. */
    {"random", OT__VICTIM_RANDOM, true, 16, 4000, true, true, 2},
    /* Steal one process at a time. */
    {"steal-one", OT__VICTIM_DISTANCE, false, 16, 4000, true, true, 2},
    /* Park as soon as one sweep finds nothing. */
    {"no-spin", OT__VICTIM_DISTANCE, true, 1, 4000, true, true, 2},
    /* No run-next slot: a woken process goes to the back of the queue. */
    {"fifo", OT__VICTIM_DISTANCE, true, 16, 4000, false, false, 2},
    /* Spawn trees breadth first: a never-run child displaced from the
     * run-next slot joins the run queue (no fresh deque). */
    {"breadth-first", OT__VICTIM_DISTANCE, true, 16, 4000, true, false, 2},
    /* Steal whenever there is work to steal, whatever moving it costs. */
    {"eager", OT__VICTIM_DISTANCE, true, 16, 4000, true, true, 0},
};

static const char *const names[] = {"default", "random",        "steal-one", "no-spin",
                                    "fifo",    "breadth-first", "eager",     NULL};

const ot__policy_t *ot__policy_find(const char *name)
{
    if (!name) name = "default";
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
        if (strcmp(policies[i].name, name) == 0) return &policies[i];
    return NULL;
}

const char *const *ot_policy_names(void)
{
    return names;
}

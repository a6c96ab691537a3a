/* Topology: which core each scheduler runs on, which NUMA node its memory
 * comes from, and the order in which it tries victims when stealing
 * (nearest first: same core, same cache, same package/NUMA node, remote),
 * all from hwloc. Works on synthetic topologies for testing. */
#ifndef OT_SCHED_TOPO_H
#define OT_SCHED_TOPO_H

#include <stdint.h>

typedef struct ot__topo {
    void *hw;      /* hwloc_topology_t */
    int synthetic; /* no binding on a synthetic topology */
    unsigned ncores;
    unsigned nsched;
    int *core; /* logical core index per scheduler */
    int *numa; /* logical NUMA node index per scheduler, -1 none */
    /* victims[i*(nsched-1) + k]: k-th victim of scheduler i; victims with
     * the same group[] value are equally near. */
    uint16_t *victims;
    uint16_t *group;
} ot__topo_t;

/* Load this machine's topology, or the synthetic one when `synthetic` is
 * not NULL, and plan `nsched` schedulers (0 = one per core). */
int ot__topo_init(ot__topo_t *t, const char *synthetic, unsigned nsched);
void ot__topo_destroy(ot__topo_t *t);
/* Bind the calling thread to scheduler i's core (no-op when synthetic). */
int ot__topo_bind(ot__topo_t *t, unsigned i);

#endif

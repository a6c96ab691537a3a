#define _GNU_SOURCE /* qsort_r */
#include "sched/topo.h"

#include <errno.h>
#include <hwloc.h>
#include <stdlib.h>

static hwloc_obj_t core_obj(const ot__topo_t *t, int i)
{
    hwloc_topology_t hw = t->hw;
    hwloc_obj_t o = hwloc_get_obj_by_type(hw, HWLOC_OBJ_CORE, (unsigned)i);
    return o ? o : hwloc_get_obj_by_type(hw, HWLOC_OBJ_PU, (unsigned)i);
}

static int numa_of(hwloc_topology_t hw, hwloc_obj_t core)
{
    int n = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_NUMANODE);
    for (int k = 0; k < n; k++) {
        hwloc_obj_t node = hwloc_get_obj_by_type(hw, HWLOC_OBJ_NUMANODE, (unsigned)k);
        if (node && hwloc_bitmap_isincluded(core->cpuset, node->cpuset)) return k;
    }
    return -1;
}

/* Larger is nearer. */
static int nearness(const ot__topo_t *t, unsigned i, unsigned j)
{
    if (t->core[i] == t->core[j]) return 1 << 20;
    hwloc_obj_t a = core_obj(t, t->core[i]), b = core_obj(t, t->core[j]);
    hwloc_obj_t anc = hwloc_get_common_ancestor_obj(t->hw, a, b);
    int d = anc ? anc->depth : 0;
    /* Same NUMA node counts even where the node is not in the CPU tree. */
    if (t->numa[i] >= 0 && t->numa[i] == t->numa[j]) d += 1 << 10;
    return d;
}

struct sort_ctx {
    const ot__topo_t *t;
    unsigned i;
};

static int cmp_victim(const void *x, const void *y, void *arg)
{
    const struct sort_ctx *c = arg;
    unsigned a = *(const uint16_t *)x, b = *(const uint16_t *)y;
    int na = nearness(c->t, c->i, a), nb = nearness(c->t, c->i, b);
    if (na != nb) return na > nb ? -1 : 1;
    unsigned n = c->t->nsched;
    unsigned da = (a + n - c->i) % n, db = (b + n - c->i) % n;
    return da < db ? -1 : da > db;
}

int ot__topo_init(ot__topo_t *t, const char *synthetic, unsigned nsched)
{
    hwloc_topology_t hw;
    *t = (ot__topo_t){0};
    if (hwloc_topology_init(&hw) != 0) return -ENOMEM;
    if (synthetic && hwloc_topology_set_synthetic(hw, synthetic) != 0) {
        hwloc_topology_destroy(hw);
        return -EINVAL;
    }
    if (hwloc_topology_load(hw) != 0) {
        hwloc_topology_destroy(hw);
        return -ENOSYS;
    }
    t->hw = hw;
    t->synthetic = synthetic != NULL;
    int nc = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_CORE);
    if (nc <= 0) nc = hwloc_get_nbobjs_by_type(hw, HWLOC_OBJ_PU);
    if (nc <= 0) nc = 1;
    t->ncores = (unsigned)nc;
    t->nsched = nsched ? nsched : t->ncores;
    unsigned n = t->nsched, nv = n > 1 ? n - 1 : 1;
    t->core = calloc(n, sizeof *t->core);
    t->numa = calloc(n, sizeof *t->numa);
    t->victims = calloc((size_t)n * nv, sizeof *t->victims);
    t->group = calloc((size_t)n * nv, sizeof *t->group);
    if (!t->core || !t->numa || !t->victims || !t->group) {
        ot__topo_destroy(t);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        t->core[i] = (int)(i % t->ncores);
        hwloc_obj_t c = core_obj(t, t->core[i]);
        t->numa[i] = c ? numa_of(hw, c) : -1;
    }
    for (unsigned i = 0; i < n && n > 1; i++) {
        uint16_t *v = &t->victims[(size_t)i * nv];
        unsigned k = 0;
        for (unsigned j = 0; j < n; j++)
            if (j != i) v[k++] = (uint16_t)j;
        struct sort_ctx ctx = {t, i};
        qsort_r(v, nv, sizeof *v, cmp_victim, &ctx);
        uint16_t *g = &t->group[(size_t)i * nv];
        for (unsigned k2 = 0; k2 < nv; k2++)
            g[k2] = k2 == 0 ? 0
                            : (uint16_t)(g[k2 - 1] +
                                         (nearness(t, i, v[k2]) != nearness(t, i, v[k2 - 1])));
    }
    return 0;
}

void ot__topo_destroy(ot__topo_t *t)
{
    if (t->hw) hwloc_topology_destroy(t->hw);
    free(t->core);
    free(t->numa);
    free(t->victims);
    free(t->group);
    *t = (ot__topo_t){0};
}

int ot__topo_bind(ot__topo_t *t, unsigned i)
{
    if (t->synthetic) return 0;
    hwloc_obj_t c = core_obj(t, t->core[i]);
    if (!c) return -EINVAL;
    if (hwloc_set_cpubind(t->hw, c->cpuset, HWLOC_CPUBIND_THREAD) != 0) return -errno;
    return 0;
}

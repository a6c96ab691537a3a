/* otter-bench workloads: the same programs as bench/erlang/otter_bench.erl. */
#ifndef OTB_WORKLOADS_H
#define OTB_WORKLOADS_H

#include <stdint.h>

typedef struct otb_result {
    double ns_per_op; /* NAN when not applicable */
    uint64_t ops;
    double seconds;
    double p50_ns, p99_ns, p999_ns; /* NAN when not a latency workload */
    double value;                   /* NAN unless the workload reports a value */
    const char *unit;               /* NULL unless value */
    uint64_t processes;             /* 0 unless it applies */
} otb_result_t;

/* Runs inside a process. Returns 0, or a negative code on failure (a wrong
 * checksum is a failure). */
typedef int (*otb_fn)(otb_result_t *r);

typedef struct otb_workload {
    const char *name;
    const char *what;
    otb_fn fn;
    /* Each repetition in a runtime of its own: the workload measures the
     * memory a runtime takes, which the pools' high-water mark from an
     * earlier repetition would hide (the BEAM side starts a VM per
     * repetition for it, the Tokio side a process). */
    int fresh_runtime;
} otb_workload_t;

extern const otb_workload_t otb_workloads[];
extern const unsigned otb_nworkloads;

double otb_now_s(void);

#endif

// The C++ shim: registers the C micro-benchmark bodies (cases.c) with
// Google Benchmark. Nothing is measured here.
//
// Each case is one C call per Google Benchmark run: it gets the whole
// iteration count, does its own setup (queues, stacks, pinned threads)
// outside its timed loop, and returns the seconds of that loop, which are
// reported as manual time. "Time" is therefore nanoseconds per iteration,
// where an iteration is what the label says (round trip, message, ...).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cases.h"

namespace {

using CaseFn = double (*)(uint64_t);

struct Case {
    const char *name; // "<comparison>/<implementation>"
    CaseFn fn;
    int64_t items;    // items per iteration, for items_per_second
    const char *unit; // what one iteration is (the label)
};

// Ours first in each group, then the alternatives.
const Case kCases[] = {
    // 0. Baseline for the two-thread cases (how far apart the two CPUs are).
    {"baseline/xcore_pingpong", otb_xcore_pingpong, 1, "line round trip"},
    // 1. Context switch.
    {"ctx_switch/otter", otb_ctx_otter, 1, "round trip"},
    {"ctx_switch/ucontext", otb_ctx_ucontext, 1, "round trip"},
    // 2. Mailbox queue.
    {"mbox_pair/otter_mpsc", otb_mbox_pair_otter, 1, "msg"},
    {"mbox_pair/urcu_wfcq", otb_mbox_pair_wfcq, 1, "msg"},
    {"mbox_pair/ck_fifo_mpmc", otb_mbox_pair_ck, 1, "msg"},
    {"mbox_burst32/otter_mpsc", otb_mbox_burst_otter, 1, "msg"},
    {"mbox_burst32/urcu_wfcq", otb_mbox_burst_wfcq, 1, "msg"},
    {"mbox_burst32/ck_fifo_mpmc", otb_mbox_burst_ck, 1, "msg"},
    {"mbox_2t/otter_mpsc", otb_mbox_2t_otter, 1, "msg"},
    {"mbox_2t/urcu_wfcq", otb_mbox_2t_wfcq, 1, "msg"},
    {"mbox_2t/urcu_wfcq_blocking", otb_mbox_2t_wfcq_blocking, 1, "msg"},
    {"mbox_2t/ck_fifo_mpmc", otb_mbox_2t_ck, 1, "msg"},
    // 3. Run queue.
    {"runq_pair/otter_runq", otb_runq_pair_otter, 1, "push+pop"},
    {"runq_pair/ck_ring_spmc", otb_runq_pair_ck, 1, "push+pop"},
    {"runq_steal_half128/otter_runq", otb_runq_steal_otter, OTB_RUNQ_STEAL_ITEMS,
     "steal of 64"},
    {"runq_steal_half128/ck_ring_spmc", otb_runq_steal_ck, OTB_RUNQ_STEAL_ITEMS, "steal of 64"},
    // 4. Object pool.
    {"pool_pair/otter_pool", otb_pool_pair_otter, 1, "obj"},
    {"pool_pair/malloc", otb_pool_pair_malloc, 1, "obj"},
    {"pool_burst64/otter_pool", otb_pool_burst_otter, 1, "obj"},
    {"pool_burst64/malloc", otb_pool_burst_malloc, 1, "obj"},
    {"pool_remote_2t/otter_pool", otb_pool_remote_2t_otter, 1, "obj"},
    {"pool_remote_2t/otter_pool_magazines", otb_pool_remote_2t_otter_mag, 1, "obj"},
    {"pool_remote_2t/malloc", otb_pool_remote_2t_malloc, 1, "obj"},
};

const char *error_text(double code)
{
    if (code == OTB_ERR_CPUS) return "needs two CPUs in the affinity mask";
    if (code == OTB_ERR_MEM) return "out of memory in setup";
    return "the case's own result check failed";
}

double min_of(const std::vector<double> &v)
{
    return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

void run_case(benchmark::State &state, const Case *c)
{
    // One batch of max_iterations: a single C call per run.
    while (state.KeepRunningBatch(state.max_iterations)) {
        double secs = c->fn(static_cast<uint64_t>(state.max_iterations));
        if (secs < 0) {
            state.SkipWithError(error_text(secs));
            break;
        }
        state.SetIterationTime(secs);
    }
    state.SetItemsProcessed(state.iterations() * c->items);
    state.SetLabel(c->unit);
}

} // namespace

int main(int argc, char **argv)
{
    for (const Case &c : kCases)
        benchmark::RegisterBenchmark(c.name, run_case, &c)
            ->UseManualTime()
            // With --benchmark_repetitions: the least-disturbed run too.
            ->ComputeStatistics("min", min_of);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

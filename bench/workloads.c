/* The macro workloads. Each runs in a driver process and times itself.
 * Parameters are fixed: they must match bench/erlang/otter_bench.erl. */
#include "workloads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "otter/otter.h"

#define CHECK(call)                                                                   \
    do {                                                                              \
        int rc_ = (call);                                                             \
        if (rc_ < 0) {                                                                \
            fprintf(stderr, "otter-bench: %s failed: %s\n", #call, ot_strerror(rc_)); \
            return rc_;                                                               \
        }                                                                             \
    } while (0)

double otb_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void no_latency(otb_result_t *r)
{
    r->p50_ns = r->p99_ns = r->p999_ns = NAN;
    r->value = NAN;
    r->unit = NULL;
    r->processes = 0;
}

static int recv_any(ot_msg_t **m)
{
    return ot_receive(NULL, NULL, OT_INFINITY, m);
}

/* ---- spawn_exit: 1,000,000 processes each send one message and exit -------- */

#define SPAWN_N 1000000

static void spawn_child(void *arg)
{
    ot_send((ot_pid_t)(uintptr_t)arg, 1, NULL, 0);
}

static int w_spawn_exit(otb_result_t *r)
{
    ot_pid_t me = ot_self();
    double t0 = otb_now_s();
    for (int i = 0; i < SPAWN_N; i++)
        CHECK(ot_spawn(spawn_child, (void *)(uintptr_t)me, NULL, NULL));
    for (int i = 0; i < SPAWN_N; i++) {
        ot_msg_t *m;
        CHECK(recv_any(&m));
        ot_msg_free(m);
    }
    r->seconds = otb_now_s() - t0;
    r->ops = SPAWN_N;
    r->ns_per_op = r->seconds * 1e9 / SPAWN_N;
    no_latency(r);
    r->processes = SPAWN_N;
    return 0;
}

/* ---- pingpong: 1,000,000 round trips ------------------------------------ */

#define PING_N 1000000

static void ponger(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        if (recv_any(&m) < 0) return;
        uint64_t tag = ot_msg_tag(m);
        ot_pid_t from = ot_msg_sender(m);
        ot_msg_free(m);
        if (tag != 1) return;
        ot_send(from, 1, NULL, 0);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int w_pingpong(otb_result_t *r)
{
    ot_pid_t pong;
    CHECK(ot_spawn(ponger, NULL, NULL, &pong));
    /* Throughput: a plain run, with no clock reads inside the loop. */
    double t0 = otb_now_s();
    for (int i = 0; i < PING_N; i++) {
        ot_msg_t *m;
        CHECK(ot_send(pong, 1, NULL, 0));
        CHECK(recv_any(&m));
        ot_msg_free(m);
    }
    r->seconds = otb_now_s() - t0;
    r->ops = PING_N;
    r->ns_per_op = r->seconds * 1e9 / PING_N;
    /* Latency: a second run, each round trip timed. */
    uint64_t *lat = malloc(PING_N * sizeof *lat);
    if (!lat) return -ENOMEM;
    uint64_t prev = now_ns();
    for (int i = 0; i < PING_N; i++) {
        ot_msg_t *m;
        CHECK(ot_send(pong, 1, NULL, 0));
        CHECK(recv_any(&m));
        ot_msg_free(m);
        uint64_t t = now_ns();
        lat[i] = t - prev;
        prev = t;
    }
    ot_send(pong, 2, NULL, 0);
    qsort(lat, PING_N, sizeof *lat, cmp_u64);
    r->p50_ns = (double)lat[PING_N / 2];
    r->p99_ns = (double)lat[(size_t)(PING_N * 0.99)];
    r->p999_ns = (double)lat[(size_t)(PING_N * 0.999)];
    free(lat);
    r->value = NAN;
    r->unit = NULL;
    r->processes = 2;
    return 0;
}

/* ---- ring: 1000 processes, a token passed 1,000,000 hops ----------------- */

#define RING_N 1000
#define RING_HOPS 1000000
enum { T_NEXT = 1, T_TOKEN = 2, T_DONE = 3, T_STOP = 4 };

static void ring_node(void *arg)
{
    ot_pid_t driver = (ot_pid_t)(uintptr_t)arg, next = 0;
    for (;;) {
        ot_msg_t *m;
        if (recv_any(&m) < 0) return;
        uint64_t tag = ot_msg_tag(m), v = 0;
        if (ot_msg_len(m) == sizeof v) memcpy(&v, ot_msg_data(m), sizeof v);
        ot_msg_free(m);
        if (tag == T_NEXT) {
            next = v;
        } else if (tag == T_TOKEN) {
            if (v == 0)
                ot_send(driver, T_DONE, NULL, 0);
            else {
                v--;
                ot_send(next, T_TOKEN, &v, sizeof v);
            }
        } else {
            return;
        }
    }
}

static int w_ring(otb_result_t *r)
{
    ot_pid_t me = ot_self(), pids[RING_N];
    for (int i = 0; i < RING_N; i++)
        CHECK(ot_spawn(ring_node, (void *)(uintptr_t)me, NULL, &pids[i]));
    for (int i = 0; i < RING_N; i++) {
        uint64_t next = pids[(i + 1) % RING_N];
        CHECK(ot_send(pids[i], T_NEXT, &next, sizeof next));
    }
    uint64_t hops = RING_HOPS;
    double t0 = otb_now_s();
    CHECK(ot_send(pids[0], T_TOKEN, &hops, sizeof hops));
    ot_msg_t *m;
    CHECK(recv_any(&m));
    r->seconds = otb_now_s() - t0;
    ot_msg_free(m);
    for (int i = 0; i < RING_N; i++)
        ot_send(pids[i], T_STOP, NULL, 0);
    r->ops = RING_HOPS;
    r->ns_per_op = r->seconds * 1e9 / RING_HOPS;
    no_latency(r);
    r->processes = RING_N;
    return 0;
}

/* ---- skynet: 1,000,000 leaves in a 10-ary tree ----------------------------- */

typedef struct sky_arg {
    uint64_t num, size;
    ot_pid_t parent;
} sky_arg_t;

static void skynet(void *argp)
{
    /* Copy the arguments: they live on the parent's stack, which stays put
     * until this process has replied. */
    sky_arg_t a = *(sky_arg_t *)argp;
    uint64_t sum = 0;
    if (a.size == 1) {
        sum = a.num;
    } else {
        sky_arg_t kids[10];
        uint64_t step = a.size / 10;
        ot_pid_t me = ot_self();
        for (int i = 0; i < 10; i++) {
            kids[i] = (sky_arg_t){a.num + (uint64_t)i * step, step, me};
            if (ot_spawn(skynet, &kids[i], NULL, NULL) < 0) abort();
        }
        for (int i = 0; i < 10; i++) {
            ot_msg_t *m;
            if (recv_any(&m) < 0) abort();
            uint64_t v;
            memcpy(&v, ot_msg_data(m), sizeof v);
            sum += v;
            ot_msg_free(m);
        }
    }
    ot_send(a.parent, 1, &sum, sizeof sum);
}

static int w_skynet(otb_result_t *r)
{
    sky_arg_t root = {0, 1000000, ot_self()};
    double t0 = otb_now_s();
    CHECK(ot_spawn(skynet, &root, NULL, NULL));
    ot_msg_t *m;
    CHECK(recv_any(&m));
    r->seconds = otb_now_s() - t0;
    uint64_t sum;
    memcpy(&sum, ot_msg_data(m), sizeof sum);
    ot_msg_free(m);
    if (sum != 499999500000ull) {
        fprintf(stderr, "otter-bench: skynet sum %llu, expected 499999500000\n",
                (unsigned long long)sum);
        return -EINVAL;
    }
    r->ops = 1111111;
    r->ns_per_op = r->seconds * 1e9 / 1111111.0;
    no_latency(r);
    r->processes = 1111111;
    return 0;
}

/* ---- fan_in: 2 senders x 1,000,000 messages into one receiver ------------ */

#define FAN_SENDERS 2
#define FAN_N 1000000

static void fan_sender(void *arg)
{
    ot_pid_t to = (ot_pid_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < FAN_N; i++)
        ot_send(to, 1, &i, sizeof i);
}

static int w_fan_in(otb_result_t *r)
{
    ot_pid_t me = ot_self();
    double t0 = otb_now_s();
    for (int i = 0; i < FAN_SENDERS; i++)
        CHECK(ot_spawn(fan_sender, (void *)(uintptr_t)me, NULL, NULL));
    for (uint64_t i = 0; i < (uint64_t)FAN_SENDERS * FAN_N; i++) {
        ot_msg_t *m;
        CHECK(recv_any(&m));
        ot_msg_free(m);
    }
    r->seconds = otb_now_s() - t0;
    r->ops = (uint64_t)FAN_SENDERS * FAN_N;
    r->ns_per_op = r->seconds * 1e9 / (double)r->ops;
    no_latency(r);
    r->processes = FAN_SENDERS + 1;
    return 0;
}

/* ---- link_exit_storm: 100,000 linked pairs, one side dies, the other traps - */

#define LINK_PAIRS 100000
enum { T_LINK_OK = 1, T_LINK_BAD = 2 };

static void link_child(void *arg)
{
    (void)arg;
    ot_reason_t why;
    ot_reason_make(&why, OT_EXIT_SHUTDOWN, NULL, 0);
    ot_exit_reason(&why);
}

/* Traps exits, spawns a linked child that dies with `shutdown`, receives the
 * {EXIT, child, shutdown} message and reports to the driver. */
static void link_watcher(void *arg)
{
    ot_pid_t driver = (ot_pid_t)(uintptr_t)arg, child = 0;
    uint64_t tag = T_LINK_BAD;
    ot_msg_t *m;
    if (ot_trap_exit(true) >= 0 && ot_spawn_link(link_child, NULL, NULL, &child) == 0 &&
        recv_any(&m) == 0) {
        ot_reason_t why;
        if (ot_msg_tag(m) == OT_TAG_EXIT && ot_msg_sender(m) == child &&
            ot_msg_reason(m, &why) == 0 && why.code == OT_EXIT_SHUTDOWN)
            tag = T_LINK_OK;
        ot_msg_free(m);
    }
    ot_send(driver, tag, NULL, 0);
}

static int w_link_exit_storm(otb_result_t *r)
{
    ot_pid_t me = ot_self();
    int bad = 0;
    double t0 = otb_now_s();
    for (int i = 0; i < LINK_PAIRS; i++)
        CHECK(ot_spawn(link_watcher, (void *)(uintptr_t)me, NULL, NULL));
    for (int i = 0; i < LINK_PAIRS; i++) {
        ot_msg_t *m;
        CHECK(recv_any(&m));
        if (ot_msg_tag(m) != T_LINK_OK) bad++;
        ot_msg_free(m);
    }
    r->seconds = otb_now_s() - t0;
    if (bad) {
        fprintf(stderr, "otter-bench: link_exit_storm: %d of %d watchers got a wrong exit\n",
                bad, LINK_PAIRS);
        return -EINVAL;
    }
    r->ops = LINK_PAIRS;
    r->ns_per_op = r->seconds * 1e9 / LINK_PAIRS;
    no_latency(r);
    r->processes = 2 * LINK_PAIRS;
    return 0;
}

/* ---- idle_process_bytes: 1,000,000 processes blocked in receive ---------- */

#define IDLE_N 1000000

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

static void idler(void *arg)
{
    ot_send((ot_pid_t)(uintptr_t)arg, 1, NULL, 0);
    ot_msg_t *m;
    if (recv_any(&m) == 0) ot_msg_free(m);
}

static int w_idle_bytes(otb_result_t *r)
{
    ot_pid_t me = ot_self();
    ot_pid_t *pids = malloc(IDLE_N * sizeof *pids);
    if (!pids) return -ENOMEM;
    long before = rss_bytes();
    double t0 = otb_now_s();
    for (int i = 0; i < IDLE_N; i++)
        CHECK(ot_spawn(idler, (void *)(uintptr_t)me, NULL, &pids[i]));
    for (int i = 0; i < IDLE_N; i++) {
        ot_msg_t *m;
        CHECK(recv_any(&m));
        ot_msg_free(m);
    }
    r->seconds = otb_now_s() - t0;
    long after = rss_bytes();
    for (int i = 0; i < IDLE_N; i++)
        ot_send(pids[i], 2, NULL, 0);
    free(pids);
    r->ops = IDLE_N;
    r->ns_per_op = NAN;
    r->p50_ns = r->p99_ns = r->p999_ns = NAN;
    /* The pids array (8 MB) is the driver's, allocated before `before`. */
    r->value = (double)(after - before) / IDLE_N;
    r->unit = "bytes/process";
    r->processes = IDLE_N;
    return 0;
}

const otb_workload_t otb_workloads[] = {
    {"spawn_exit",
     "spawn 1,000,000 processes that each send one message and exit; ns per process",
     w_spawn_exit, 0},
    {"pingpong", "1,000,000 round trips between two processes; ns per round trip", w_pingpong,
     0},
    {"ring", "1000 processes in a ring, a token passed 1,000,000 hops; ns per hop", w_ring, 0},
    {"skynet", "1,111,111 processes in a 10-ary tree summing 0..999,999; ns per process",
     w_skynet, 0},
    {"fan_in", "2 senders x 1,000,000 messages into one receiver; ns per message", w_fan_in, 0},
    {"link_exit_storm",
     "100,000 linked pairs, one side dies with shutdown, the trapping other gets the EXIT; "
     "ns per pair",
     w_link_exit_storm, 0},
    {"idle_process_bytes", "1,000,000 processes blocked in receive; resident bytes per process",
     w_idle_bytes, 1},
};
const unsigned otb_nworkloads = sizeof otb_workloads / sizeof otb_workloads[0];

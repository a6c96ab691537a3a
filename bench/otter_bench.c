/* otter-bench: runs the named macro workloads and prints a table (and, with
 * --json, a stable JSON document). With --baseline it reads a peer's
 * figures (bench/erlang/run.sh and bench/tokio/run.sh write them) and
 * prints the ratios, under the peer's name (--baseline-name, "BEAM"). */
#include <getopt.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "otter/otter.h"
#include "workloads.h"

typedef struct {
    const otb_workload_t *w;
    otb_result_t r;
    int rc;
    ot_pid_t main;
} job_t;

typedef struct {
    char name[64];
    double ns_per_op, value;
} base_t;

static void driver(void *arg)
{
    job_t *j = arg;
    j->rc = j->w->fn(&j->r);
    ot_send(j->main, 1, NULL, 0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: otter-bench [--list] [--filter REGEX] [--schedulers N] [--policy P]\n"
               "                   [--repetitions N (5)] [--json FILE] [--baseline FILE.tsv]\n"
               "                   [--baseline-name NAME] [--stats]\n");
}

static const char *cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
    return buf;
}

static int load_baseline(const char *path, base_t *b, int max)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "otter-bench: cannot read baseline %s\n", path);
        return -1;
    }
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        if (strncmp(line, "name\t", 5) == 0) continue;
        char name[64], ns[64], p50[64], p99[64], p999[64], value[64];
        if (sscanf(line, "%63[^\t]\t%63[^\t]\t%63[^\t]\t%63[^\t]\t%63[^\t]\t%63[^\t\n]", name,
                   ns, p50, p99, p999, value) != 6)
            continue;
        snprintf(b[n].name, sizeof b[n].name, "%s", name);
        b[n].ns_per_op = strcmp(ns, "-") ? atof(ns) : NAN;
        b[n].value = strcmp(value, "-") ? atof(value) : NAN;
        n++;
    }
    fclose(f);
    return n;
}

static void fmt(char *buf, size_t n, double v, const char *f)
{
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, f, v);
}

static void json_num(FILE *f, const char *key, double v, int last)
{
    if (isnan(v))
        fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
    else
        fprintf(f, "\"%s\": %.3f%s", key, v, last ? "" : ", ");
}

int main(int argc, char **argv)
{
    const char *filter = NULL, *json = NULL, *policy = NULL, *baseline = NULL;
    const char *base_name = "BEAM";
    unsigned scheds = 0, reps = 5;
    int list = 0, stats = 0;
    static const struct option opts[] = {{"list", no_argument, 0, 'l'},
                                         {"filter", required_argument, 0, 'f'},
                                         {"schedulers", required_argument, 0, 's'},
                                         {"policy", required_argument, 0, 'p'},
                                         {"repetitions", required_argument, 0, 'r'},
                                         {"json", required_argument, 0, 'j'},
                                         {"baseline", required_argument, 0, 'b'},
                                         {"baseline-name", required_argument, 0, 'B'},
                                         {"help", no_argument, 0, 'h'},
                                         {"stats", no_argument, 0, 'S'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "lf:s:p:r:j:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': list = 1; break;
        case 'f': filter = optarg; break;
        case 's': scheds = (unsigned)atoi(optarg); break;
        case 'p': policy = optarg; break;
        case 'r': reps = (unsigned)atoi(optarg); break;
        case 'j': json = optarg; break;
        case 'b': baseline = optarg; break;
        case 'B': base_name = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'S': stats = 1; break;
        default: usage(stderr); return 2;
        }
    }
    if (reps == 0 || reps > 1000) {
        fprintf(stderr, "otter-bench: --repetitions takes 1 to 1000\n");
        return 2;
    }
    if (list) {
        for (unsigned i = 0; i < otb_nworkloads; i++)
            printf("%-20s %s\n", otb_workloads[i].name, otb_workloads[i].what);
        printf("policies:");
        for (const char *const *p = ot_policy_names(); *p; p++)
            printf(" %s", *p);
        printf("\n");
        return 0;
    }
    regex_t re;
    if (filter && regcomp(&re, filter, REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "otter-bench: bad --filter regex\n");
        return 2;
    }
    base_t base[32];
    int nbase = baseline ? load_baseline(baseline, base, 32) : 0;
    if (nbase < 0) return 2;

    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = scheds;
    cfg.policy = policy;

    job_t results[32];
    int nres = 0, failed = 0;
    unsigned nsched_used = 0;
    for (unsigned wi = 0; wi < otb_nworkloads; wi++) {
        const otb_workload_t *w = &otb_workloads[wi];
        if (filter && regexec(&re, w->name, 0, NULL, 0) != 0) continue;
        /* The repetitions share one runtime, as the BEAM side's share one VM
         * and the Tokio side's one process (and its allocator): a runtime's
         * pools keep their high-water mark, so the first repetition maps
         * and faults in the memory the others reuse. A fresh runtime per
         * repetition measured that first touch every time (on this KVM
         * guest with free page reporting, 64 MB of envelopes cost 4.5 ms
         * when the host still backed the pages and 50-100 ms when it did
         * not). Each repetition's driver starts on scheduler 0, so that the
         * repetitions draw on the same scheduler's pools. */
        job_t *runs = calloc(reps, sizeof *runs);
        double *ns = calloc(reps, sizeof *ns);
        ot_sched_stats_t total = {0};
        ot_spawn_opts_t on0;
        ot_spawn_opts_init(&on0);
        on0.scheduler = 0;
        ot_runtime_t *rt = NULL;
        int ok = 1;
        for (unsigned k = 0; k < reps && ok; k++) {
            int rc;
            if (!rt && (rc = ot_runtime_start(&cfg, &rt)) < 0) {
                fprintf(stderr, "otter-bench: cannot start the runtime: %s\n", ot_strerror(rc));
                return 1;
            }
            nsched_used = (unsigned)ot_runtime_schedulers(rt);
            ot_pid_t me;
            ot_attach(&me);
            runs[k] = (job_t){.w = w, .main = me};
            rc = ot_spawn(driver, &runs[k], &on0, NULL);
            ot_msg_t *m;
            if (rc == 0) rc = ot_receive(NULL, NULL, OT_INFINITY, &m);
            if (rc == 0) ot_msg_free(m);
            if (rc < 0 || runs[k].rc < 0) {
                fprintf(stderr, "otter-bench: %s failed\n", w->name);
                ok = 0;
            } else {
                ns[k] = isnan(runs[k].r.ns_per_op) ? runs[k].r.value : runs[k].r.ns_per_op;
                ot_runtime_wait_idle(rt, 60000);
            }
            ot_detach();
            if (ok && !w->fresh_runtime && k + 1 < reps) continue;
            ot_sched_stats_t st;
            ot_runtime_stats(rt, &st);
            total.switches += st.switches;
            total.runnext_hits += st.runnext_hits;
            total.steals += st.steals;
            total.stolen += st.stolen;
            total.parks += st.parks;
            total.wakeups += st.wakeups;
            total.rests += st.rests;
            ot_runtime_stop(rt);
            rt = NULL;
        }
        if (stats)
            fprintf(stderr,
                    "%s: switches %llu runnext %llu steals %llu stolen %llu parks %llu "
                    "wakeups %llu rests %llu\n",
                    w->name, (unsigned long long)total.switches,
                    (unsigned long long)total.runnext_hits, (unsigned long long)total.steals,
                    (unsigned long long)total.stolen, (unsigned long long)total.parks,
                    (unsigned long long)total.wakeups, (unsigned long long)total.rests);
        if (!ok) {
            failed++;
            free(runs);
            free(ns);
            continue;
        }
        /* The repetition whose main figure is the median. */
        double *sorted = malloc(reps * sizeof *sorted);
        memcpy(sorted, ns, reps * sizeof *sorted);
        qsort(sorted, reps, sizeof *sorted, cmp_double);
        double med = sorted[(reps - 1) / 2];
        unsigned pick = 0;
        for (unsigned k = 0; k < reps; k++)
            if (ns[k] == med) pick = k;
        results[nres++] = runs[pick];
        free(sorted);
        free(runs);
        free(ns);
    }

    printf("%-20s %12s %14s %10s %10s %10s %22s", "workload", "ns/op", "ops/s", "p50 ns",
           "p99 ns", "p99.9 ns", "value");
    if (nbase) {
        char h1[64], h2[64];
        snprintf(h1, sizeof h1, "%s ns/op", base_name);
        snprintf(h2, sizeof h2, "x %s", base_name);
        printf(" %12s %9s", h1, h2);
    }
    printf("\n");
    for (int i = 0; i < nres; i++) {
        otb_result_t *r = &results[i].r;
        char a[32], b[32], p50[32], p99[32], p999[32], v[48];
        fmt(a, sizeof a, r->ns_per_op, "%.1f");
        fmt(b, sizeof b, isnan(r->ns_per_op) ? NAN : 1e9 / r->ns_per_op, "%.0f");
        fmt(p50, sizeof p50, r->p50_ns, "%.0f");
        fmt(p99, sizeof p99, r->p99_ns, "%.0f");
        fmt(p999, sizeof p999, r->p999_ns, "%.0f");
        if (isnan(r->value))
            snprintf(v, sizeof v, "-");
        else
            snprintf(v, sizeof v, "%.0f %s", r->value, r->unit);
        printf("%-20s %12s %14s %10s %10s %10s %22s", results[i].w->name, a, b, p50, p99, p999,
               v);
        for (int k = 0; k < nbase; k++) {
            if (strcmp(base[k].name, results[i].w->name) != 0) continue;
            char bn[32], ratio[32];
            fmt(bn, sizeof bn, base[k].ns_per_op, "%.1f");
            double rt = !isnan(r->ns_per_op) ? base[k].ns_per_op / r->ns_per_op
                                             : base[k].value / r->value;
            fmt(ratio, sizeof ratio, rt, "%.1fx");
            printf(" %12s %9s", bn, ratio);
        }
        printf("\n");
    }

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "otter-bench: cannot write %s\n", json);
            return 1;
        }
        char cpu[256];
        struct utsname u;
        uname(&u);
        fprintf(f,
                "{\"machine\": {\"cpu\": \"%s\", \"cores_online\": %ld, \"schedulers\": %u, "
                "\"policy\": \"%s\", \"kernel\": \"%s\", \"otter\": \"%s\", "
                "\"repetitions\": %u},\n \"results\": [",
                cpu_model(cpu, sizeof cpu), sysconf(_SC_NPROCESSORS_ONLN), nsched_used,
                policy ? policy : "default", u.release, ot_version(), reps);
        for (int i = 0; i < nres; i++) {
            otb_result_t *r = &results[i].r;
            fprintf(f, "%s\n  {\"name\": \"%s\", ", i ? "," : "", results[i].w->name);
            json_num(f, "ns_per_op", r->ns_per_op, 0);
            fprintf(f, "\"ops\": %llu, ", (unsigned long long)r->ops);
            json_num(f, "seconds", r->seconds, 0);
            json_num(f, "p50_ns", r->p50_ns, 0);
            json_num(f, "p99_ns", r->p99_ns, 0);
            json_num(f, "p999_ns", r->p999_ns, 0);
            json_num(f, "value", r->value, 0);
            if (r->unit)
                fprintf(f, "\"unit\": \"%s\", ", r->unit);
            else
                fprintf(f, "\"unit\": null, ");
            if (r->processes)
                fprintf(f, "\"processes\": %llu}", (unsigned long long)r->processes);
            else
                fprintf(f, "\"processes\": null}");
        }
        fprintf(f, "\n]}\n");
        fclose(f);
    }
    if (filter) regfree(&re);
    return failed ? 1 : 0;
}

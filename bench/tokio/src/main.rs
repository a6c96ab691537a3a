//! The otter-bench workloads on Tokio's multi-threaded runtime (2 workers),
//! with tasks as processes and unbounded mpsc channels as mailboxes: the
//! peer the goals name. Same names and parameters as
//! bench/workloads.c and bench/erlang/otter_bench.erl; link_exit_storm has
//! no Tokio counterpart (tasks have no links).
//!
//! usage: otter-tokio-bench OUT.tsv [--filter SUBSTRING|^NAME$|A|B] [--repetitions N (5)]
//!
//! Prints a table and writes the medians over the repetitions to OUT.tsv in
//! the format otter-bench --baseline reads. Every repetition runs in a new
//! runtime (in the same process, so on memory its allocator kept), the
//! driver itself a task on it (not the block_on thread).

use std::fs::File;
use std::io::Write;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

#[derive(Clone, Copy, Default)]
struct Res {
    ns_per_op: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    value: Option<f64>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime")
}

/// Run `f` as a task on a fresh 2-worker runtime and return what it returns.
fn on_runtime<F, Fut>(f: F) -> Res
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Res> + Send + 'static,
{
    let rt = runtime();
    let h = rt.spawn(f());
    let r = rt.block_on(h).expect("driver task");
    rt.shutdown_background();
    r
}

const SPAWN_N: u64 = 1_000_000;

async fn spawn_exit() -> Res {
    let (tx, mut rx) = unbounded_channel::<u64>();
    let t0 = Instant::now();
    for _ in 0..SPAWN_N {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(1);
        });
    }
    for _ in 0..SPAWN_N {
        rx.recv().await.expect("spawn_exit message");
    }
    Res {
        ns_per_op: t0.elapsed().as_nanos() as f64 / SPAWN_N as f64,
        ..Default::default()
    }
}

const PING_N: usize = 1_000_000;

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

/// One untimed-per-trip run for ns/op, then a second that times each round
/// trip for the percentiles, as otter-bench does.
async fn pingpong() -> Res {
    let (to_pong, mut pong_rx) = unbounded_channel::<u64>();
    let (to_ping, mut ping_rx) = unbounded_channel::<u64>();
    tokio::spawn(async move {
        while let Some(v) = pong_rx.recv().await {
            if to_ping.send(v).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    for i in 0..PING_N {
        to_pong.send(i as u64).expect("ping");
        ping_rx.recv().await.expect("pong");
    }
    let total = t0.elapsed().as_nanos() as f64;
    let mut lat = Vec::with_capacity(PING_N);
    for i in 0..PING_N {
        let s = Instant::now();
        to_pong.send(i as u64).expect("ping");
        ping_rx.recv().await.expect("pong");
        lat.push(s.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    Res {
        ns_per_op: total / PING_N as f64,
        p50: Some(pct(&lat, 0.50)),
        p99: Some(pct(&lat, 0.99)),
        p999: Some(pct(&lat, 0.999)),
        value: None,
    }
}

const RING_SIZE: usize = 1000;
const RING_HOPS: u64 = 1_000_000;

/// One ring member: passes the token on, counting it down; the one that
/// takes it to zero tells the driver.
async fn ring_node(
    mut rx: UnboundedReceiver<u64>,
    next: UnboundedSender<u64>,
    done: UnboundedSender<()>,
) {
    while let Some(left) = rx.recv().await {
        if left == 0 {
            let _ = done.send(());
            continue;
        }
        if next.send(left - 1).is_err() {
            return;
        }
    }
}

async fn ring() -> Res {
    let (done_tx, mut done_rx) = unbounded_channel::<()>();
    let (first_tx, mut prev_rx) = unbounded_channel::<u64>();
    for _ in 1..RING_SIZE {
        let (tx, rx) = unbounded_channel::<u64>();
        tokio::spawn(ring_node(prev_rx, tx, done_tx.clone()));
        prev_rx = rx;
    }
    tokio::spawn(ring_node(prev_rx, first_tx.clone(), done_tx.clone()));
    let t0 = Instant::now();
    first_tx.send(RING_HOPS).expect("token");
    done_rx.recv().await.expect("ring done");
    Res {
        ns_per_op: t0.elapsed().as_nanos() as f64 / RING_HOPS as f64,
        ..Default::default()
    }
}

const SKYNET_LEAVES: u64 = 1_000_000;
const SKYNET_PROCS: f64 = 1_111_111.0;

fn skynet_node(
    num: u64,
    size: u64,
    parent: UnboundedSender<u64>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        if size == 1 {
            let _ = parent.send(num);
            return;
        }
        let (tx, mut rx) = unbounded_channel::<u64>();
        let child = size / 10;
        for i in 0..10 {
            tokio::spawn(skynet_node(num + i * child, child, tx.clone()));
        }
        drop(tx);
        let mut sum = 0;
        for _ in 0..10 {
            sum += rx.recv().await.expect("skynet child");
        }
        let _ = parent.send(sum);
    })
}

async fn skynet() -> Res {
    let (tx, mut rx) = unbounded_channel::<u64>();
    let t0 = Instant::now();
    tokio::spawn(skynet_node(0, SKYNET_LEAVES, tx));
    let sum = rx.recv().await.expect("skynet root");
    let ns = t0.elapsed().as_nanos() as f64;
    assert_eq!(sum, 499_999_500_000, "skynet sum");
    Res {
        ns_per_op: ns / SKYNET_PROCS,
        ..Default::default()
    }
}

const FAN_SENDERS: u64 = 2;
const FAN_N: u64 = 1_000_000;

async fn fan_in() -> Res {
    let (tx, mut rx) = unbounded_channel::<u64>();
    let t0 = Instant::now();
    for _ in 0..FAN_SENDERS {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..FAN_N {
                let _ = tx.send(i);
            }
        });
    }
    drop(tx);
    for _ in 0..FAN_SENDERS * FAN_N {
        rx.recv().await.expect("fan_in message");
    }
    Res {
        ns_per_op: t0.elapsed().as_nanos() as f64 / (FAN_SENDERS * FAN_N) as f64,
        ..Default::default()
    }
}

const IDLE_N: usize = 1_000_000;

fn rss_bytes() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("rss number");
    pages * 4096.0
}

/// 1,000,000 tasks alive at once, each waiting on its own channel: resident
/// bytes per task (the RSS delta, channels included).
async fn idle_process_bytes() -> Res {
    let before = rss_bytes();
    let mut senders = Vec::with_capacity(IDLE_N);
    let (ready_tx, mut ready_rx) = unbounded_channel::<()>();
    for _ in 0..IDLE_N {
        let (tx, mut rx) = unbounded_channel::<u64>();
        let ready = ready_tx.clone();
        tokio::spawn(async move {
            let _ = ready.send(());
            let _ = rx.recv().await;
        });
        senders.push(tx);
    }
    for _ in 0..IDLE_N {
        ready_rx.recv().await.expect("idle task started");
    }
    let after = rss_bytes();
    for tx in &senders {
        let _ = tx.send(0);
    }
    Res {
        ns_per_op: f64::NAN,
        value: Some((after - before) / IDLE_N as f64),
        ..Default::default()
    }
}

/// idle_process_bytes in a process of its own for every repetition: in one
/// process, the memory the first repetition's tasks gave back stays with
/// the allocator and the next repetitions' RSS hardly moves (9 bytes per
/// task measured). The BEAM side likewise starts a VM per repetition.
fn idle_in_child() -> Res {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .arg("--idle-once")
        .output()
        .expect("idle child");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: f64 = text.trim().parse().expect("idle child's figure");
    Res {
        ns_per_op: f64::NAN,
        value: Some(v),
        ..Default::default()
    }
}

type Workload = (&'static str, fn() -> Res);

fn workloads() -> Vec<Workload> {
    vec![
        ("spawn_exit", || on_runtime(spawn_exit)),
        ("pingpong", || on_runtime(pingpong)),
        ("ring", || on_runtime(ring)),
        ("skynet", || on_runtime(skynet)),
        ("fan_in", || on_runtime(fan_in)),
        ("idle_process_bytes", idle_in_child),
    ]
}

/// The filter otter-bench's users pass is an extended regex; the forms the
/// scripts use are alternatives of names, each maybe anchored: `^a$|b`.
fn selected(filter: &Option<String>, name: &str) -> bool {
    match filter {
        None => true,
        Some(f) => f
            .trim_start_matches('(')
            .split('|')
            .map(|alt| alt.trim_matches(|c| c == '^' || c == '$' || c == '(' || c == ')'))
            .any(|alt| name.contains(alt)),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[(xs.len() - 1) / 2]
}

fn med_opt(runs: &[Res], f: fn(&Res) -> Option<f64>) -> Option<f64> {
    let xs: Vec<f64> = runs.iter().filter_map(f).collect();
    if xs.is_empty() {
        None
    } else {
        Some(median(xs))
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:.1}", x),
        _ => "-".to_string(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: otter-tokio-bench OUT.tsv [--filter REGEX] [--repetitions N (5)]";
    if args.len() < 2 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    if args[1] == "--idle-once" {
        println!(
            "{}",
            on_runtime(idle_process_bytes).value.unwrap_or(f64::NAN)
        );
        return;
    }
    let out = &args[1];
    let mut filter = None;
    let mut reps = 5usize;
    let mut i = 2;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--filter", Some(v)) => filter = Some(v.clone()),
            ("--repetitions", Some(v)) => {
                reps = v.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                    eprintln!("--repetitions needs a positive integer");
                    std::process::exit(2)
                })
            }
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let mut tsv = File::create(out).expect("create OUT.tsv");
    writeln!(tsv, "name\tns_per_op\tp50_ns\tp99_ns\tp999_ns\tvalue\tunit").unwrap();
    println!(
        "Tokio 1.24 multi-threaded runtime, 2 workers, {reps} repetition(s), median reported\n"
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "name", "ns/op", "p50", "p99", "p99.9", "value"
    );
    for (name, run) in workloads() {
        if !selected(&filter, name) {
            continue;
        }
        let runs: Vec<Res> = (0..reps).map(|_| run()).collect();
        let ns = median(runs.iter().map(|r| r.ns_per_op).collect());
        let (p50, p99, p999) = (
            med_opt(&runs, |r| r.p50),
            med_opt(&runs, |r| r.p99),
            med_opt(&runs, |r| r.p999),
        );
        let value = med_opt(&runs, |r| r.value);
        let unit = if value.is_some() {
            "bytes/process"
        } else {
            "-"
        };
        println!(
            "{:<20} {:>10} {:>10} {:>10} {:>10} {:>12}",
            name,
            cell(Some(ns)),
            cell(p50),
            cell(p99),
            cell(p999),
            cell(value)
        );
        writeln!(
            tsv,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            name,
            cell(Some(ns)),
            cell(p50),
            cell(p99),
            cell(p999),
            cell(value),
            unit
        )
        .unwrap();
    }
}

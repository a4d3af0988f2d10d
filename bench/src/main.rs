//! The benchmark harness (issue 7). Six figures, each a rate or a ratio measured side by
//! side in one run, printed as one Markdown table: figure, value, baseline, ratio, goal,
//! met?.
//!
//! ```text
//! bench [--tiny | --quick] [--only NAME] [--concurrency C]
//! ```
//!
//! 1. `dispatch`: N trivial agent processes through the engine (`ProcessAgent`, one process
//!    per task, C instances) against `xargs -P C` running the same script N times.
//! 2. `latency`: submit-to-start and finish-to-dependent-start with idle instances, on an
//!    in-process agent that answers at once.
//! 3. `engine`: the same in-process agent, no processes: independent tasks submitted one by
//!    one, and 100,000-task DAGs (a chain, a fan-out, a random DAG) validated and run.
//! 4. `api`: a load generator of 50 clients sending SubmitTask / GetTask over gRPC (tonic)
//!    and over REST (HTTP/1.1 keep-alive, written here on a `TcpStream`), against `serve`
//!    and, side by side, against the same router on sockets with `TCP_NODELAY`.
//! 5. `fanout`: StreamEvents subscribers during a run: each must get every event in order;
//!    the run's throughput with them against without them. Once with the default event
//!    buffer, once with a buffer that holds the whole run (nobody can be dropped).
//! 6. `memory`: resident memory per queued task and per idle instance, each measured in a
//!    fresh child process (`/proc/self/status` VmRSS before and after).
//!
//! Progress goes to stderr, the table to stdout. Nothing here asserts on time: `met?` says
//! whether this run reached each goal.

/// The allocator `claude-swarm` itself uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    fmt::{self, Display},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use claude_swarm::{
    agent::{AgentCommand, ProcessAgent, instant::InstantAgent},
    api::server::{self, ServerOptions},
    engine::{
        Engine, EngineConfig, EventFilter, EventKind, TaskQuery, TaskSpec, TaskStatus, ports::Agent,
    },
    pb::{self, task_service_client::TaskServiceClient},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Barrier, mpsc, oneshot, watch},
    task::JoinHandle,
};
use tonic::transport::Channel;

/// The `result` line the trivial agent prints: what Claude Code prints on success, reduced.
const RESULT_LINE: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"bench","num_turns":1,"total_cost_usd":0,"duration_ms":0,"usage":{"input_tokens":1,"output_tokens":1}}"#;

/// The id of the task submitted after a fan-out run: subscribers stop at its submission.
const SENTINEL: &str = "fanout-end";

type Res<T> = Result<T, String>;

fn err(e: impl Display) -> String {
    e.to_string()
}

// ---- command line ------------------------------------------------------------------------

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of claude-swarm: prints one Markdown table")]
struct Args {
    /// Sizes that finish the whole suite in well under five minutes on 2 cores.
    #[arg(long, conflicts_with = "tiny")]
    quick: bool,
    /// Very small sizes (seconds, even in a debug build): checks that the harness runs.
    #[arg(long)]
    tiny: bool,
    /// Run only this figure.
    #[arg(long, value_enum)]
    only: Option<Figure>,
    /// Concurrency C of the dispatch figure (instances, and `xargs -P C`).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Internal: measure memory in this fresh process and print `before after` (bytes).
    /// KIND is `tasks` or `instances`; RETENTION is the engine's event retention.
    #[arg(long, hide = true, num_args = 3, value_names = ["KIND", "COUNT", "RETENTION"])]
    probe_memory: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Figure {
    Dispatch,
    Latency,
    Engine,
    Api,
    Fanout,
    Memory,
    Durable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Tiny,
    Quick,
    Full,
}

/// How big each figure is.
#[derive(Clone, Debug)]
struct Sizes {
    dispatch_tasks: usize,
    dispatch_concurrency: usize,
    /// Alternating rounds of xargs and claude-swarm; the best of each is kept.
    dispatch_rounds: usize,
    latency_samples: usize,
    /// Independent tasks submitted one by one.
    engine_tasks: usize,
    engine_submitters: usize,
    dag_tasks: usize,
    /// Instances of the in-process engine figures.
    engine_instances: usize,
    api_duration: Duration,
    api_clients: usize,
    fanout_subscribers: usize,
    fanout_tasks: usize,
    /// The run with an event buffer that holds all of it, where every event reaches every
    /// subscriber: delivery bound, so shorter in `--quick`.
    fanout_sized_tasks: usize,
    memory_tasks: usize,
    memory_instances: usize,
}

impl Sizes {
    fn of(mode: Mode) -> Self {
        let full = Sizes {
            dispatch_tasks: 2_000,
            dispatch_concurrency: 4,
            dispatch_rounds: 3,
            latency_samples: 10_000,
            engine_tasks: 100_000,
            engine_submitters: 16,
            dag_tasks: 100_000,
            engine_instances: 8,
            api_duration: Duration::from_secs(10),
            api_clients: 50,
            fanout_subscribers: 1_000,
            fanout_tasks: 10_000,
            fanout_sized_tasks: 10_000,
            memory_tasks: 100_000,
            memory_instances: 100,
        };
        match mode {
            Mode::Full => full,
            Mode::Quick => Sizes {
                dispatch_rounds: 2,
                latency_samples: 5_000,
                api_duration: Duration::from_secs(5),
                fanout_sized_tasks: 1_000,
                ..full
            },
            Mode::Tiny => Sizes {
                dispatch_tasks: 20,
                dispatch_rounds: 1,
                latency_samples: 100,
                engine_tasks: 1_000,
                engine_submitters: 4,
                dag_tasks: 1_000,
                api_duration: Duration::from_millis(300),
                api_clients: 4,
                fanout_subscribers: 10,
                fanout_tasks: 100,
                fanout_sized_tasks: 100,
                memory_tasks: 1_000,
                memory_instances: 10,
                ..full
            },
        }
    }
}

// ---- the table ---------------------------------------------------------------------------

struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
    goal: String,
    met: Option<bool>,
}

impl Row {
    fn new(figure: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            value: value.into(),
            baseline: "-".into(),
            ratio: "-".into(),
            goal: "-".into(),
            met: None,
        }
    }

    fn baseline(mut self, baseline: impl Into<String>, ratio: f64) -> Self {
        self.baseline = baseline.into();
        self.ratio = format!("{ratio:.2}");
        self
    }

    fn goal(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.goal = goal.into();
        self.met = Some(met);
        self
    }

    fn failed(figure: impl Into<String>, goal: &str, error: &str) -> Self {
        let mut row = Self::new(figure, format!("error: {error}"));
        row.goal = goal.into();
        row.met = Some(false);
        row
    }
}

fn print_table(rows: &[Row]) {
    println!("| figure | value | baseline | ratio | goal | met? |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let cell = |s: &str| s.replace('|', "\\|");
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            cell(&r.figure),
            cell(&r.value),
            cell(&r.baseline),
            r.ratio,
            cell(&r.goal),
            met
        );
    }
}

// ---- formatting --------------------------------------------------------------------------

/// `12,345`.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `850 µs`, `1.24 ms`, `2.5 s`.
fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn bytes(n: f64) -> String {
    if n.abs() < 10.0 * 1024.0 {
        format!("{n:.0} B")
    } else if n.abs() < 10.0 * 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// p50, p99 and max of `samples` (sorted in place).
struct Percentiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Percentiles {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} · p99 {} · max {}",
            human(self.p50),
            human(self.p99),
            human(self.max)
        )
    }
}

// ---- the in-process agent ----------------------------------------------------------------

// ---- engine and server helpers -----------------------------------------------------------

fn engine_config(instances: usize, max_instances: usize, dir: &Path) -> EngineConfig {
    EngineConfig {
        initial_instances: instances,
        max_instances: max_instances.max(instances).max(1),
        working_directory: dir.to_owned(),
        ..EngineConfig::default()
    }
}

/// Waits until `expected` tasks are terminal; fails if any did not complete.
async fn wait_done(engine: &Engine, expected: usize, limit: Duration) -> Res<()> {
    let deadline = Instant::now() + limit;
    let terminal = [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ];
    loop {
        let status = engine.status().await.map_err(err)?;
        let done: u64 = terminal.iter().map(|s| status.tasks[s.index()]).sum();
        if done >= expected as u64 {
            let completed = status.tasks[TaskStatus::Completed.index()];
            if completed < expected as u64 {
                return Err(format!(
                    "{} of {expected} tasks did not complete (first: {})",
                    expected as u64 - completed,
                    first_failure(engine).await
                ));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {done} of {expected} tasks finished within {}",
                human(limit)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn first_failure(engine: &Engine) -> String {
    let query = TaskQuery {
        statuses: vec![TaskStatus::Failed, TaskStatus::Skipped],
        limit: 1,
        ..TaskQuery::default()
    };
    match engine.list_tasks(query).await {
        Ok(page) => page
            .tasks
            .first()
            .and_then(|t| t.error.clone())
            .unwrap_or_else(|| "no error recorded".into()),
        Err(e) => e.to_string(),
    }
}

/// What [`run_independent`] measured.
struct Independent {
    /// Until every submission was answered.
    submitted: Duration,
    /// Until every task completed.
    done: Duration,
    /// Of each `submit` call.
    submit_latency: Percentiles,
}

/// Submits `n` independent tasks one by one from `submitters` concurrent callers and
/// waits until all of them (and the `already` submitted before) have completed.
async fn run_independent(
    engine: &Engine,
    n: usize,
    submitters: usize,
    already: usize,
) -> Res<Independent> {
    let start = Instant::now();
    let callers: Vec<JoinHandle<Res<Vec<Duration>>>> = (0..submitters)
        .map(|s| {
            let engine = engine.clone();
            let count = n / submitters + usize::from(s < n % submitters);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                for i in 0..count {
                    let called = Instant::now();
                    engine
                        .submit(TaskSpec::new(format!("task {s}-{i}")))
                        .await
                        .map_err(err)?;
                    latencies.push(called.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for caller in callers {
        latencies.extend(caller.await.map_err(err)??);
    }
    let submitted = start.elapsed();
    wait_done(engine, already + n, Duration::from_secs(600)).await?;
    Ok(Independent {
        submitted,
        done: start.elapsed(),
        submit_latency: Percentiles::of(&mut latencies),
    })
}

/// Figure 3 again on the SQLite store (group commit), side by side with memory.
/// The durable path's goal (issue 15): fast in itself, at least half the in-memory rate,
/// and no submitter kept waiting on the disk.
const DURABLE_GOAL: &str = "≥ 40,000 tasks/s, ≥ 0.5x of memory, submit p99 ≤ 5 ms";

async fn durable(s: &Sizes, dir: &Path) -> Res<Vec<Row>> {
    let n = s.engine_tasks;
    let instances = s.engine_instances;
    let memory = Engine::start(
        engine_config(instances, instances, dir),
        Arc::new(InstantAgent::default()),
    );
    let in_memory = run_independent(&memory, n, s.engine_submitters, 0).await?;
    memory.shutdown(Duration::from_secs(5)).await;
    let data = dir.join("durable-store");
    let _ = std::fs::remove_dir_all(&data);
    let store = claude_swarm::store::sqlite::SqliteStore::open(&data, 100_000).map_err(err)?;
    let engine = Engine::start_durable(
        engine_config(instances, instances, dir),
        Arc::new(InstantAgent::default()),
        Box::new(store),
    )
    .map_err(err)?;
    let stored = run_independent(&engine, n, s.engine_submitters, 0).await?;
    engine.shutdown(Duration::from_secs(5)).await;
    let (memory_rate, durable_rate) = (rate(n, in_memory.done), rate(n, stored.done));
    eprintln!(
        "  durable: {} tasks/s vs {} in memory",
        thousands(durable_rate),
        thousands(memory_rate)
    );
    Ok(vec![
        Row::new(
            format!(
                "6b durable: {} tasks submitted by {} callers and completed, every change stored (SQLite WAL, group commit)",
                thousands(n as f64),
                s.engine_submitters
            ),
            format!(
                "{} tasks/s completed (submit call {})",
                thousands(durable_rate),
                stored.submit_latency
            ),
        )
        .baseline(format!("in memory: {} tasks/s", thousands(memory_rate)), durable_rate / memory_rate)
        .goal(
            DURABLE_GOAL,
            durable_rate >= 40_000.0
                && durable_rate >= 0.5 * memory_rate
                && stored.submit_latency.p99 <= Duration::from_millis(5),
        ),
    ])
}

/// CPU time this process has used (every thread), user and system.
fn cpu_time() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a valid pointer; the call cannot fail.
    unsafe { libc::getrusage(who, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal), from
/// `/proc/stat`.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| ticks.get(*i))
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Duration::from_secs_f64(busy as f64 / hz))
}

/// How much CPU other processes took while a figure ran: the machine's busy time less this
/// process's and its children's (xargs, agent scripts, memory probes).
struct Interference {
    machine: Option<Duration>,
    own: Duration,
    started: Instant,
}

impl Interference {
    fn start() -> Self {
        Self {
            machine: machine_busy(),
            own: rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN),
            started: Instant::now(),
        }
    }

    /// `0.4 CPU-s (3%)`: other work, and its share of all CPUs over the time.
    fn report(&self) -> String {
        let (Some(before), Some(after)) = (self.machine, machine_busy()) else {
            return "unknown".into();
        };
        let own =
            (rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN)).saturating_sub(self.own);
        let others = after.saturating_sub(before).saturating_sub(own);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let share = others.as_secs_f64() / (self.started.elapsed().as_secs_f64() * cpus).max(1e-9);
        format!("{:.1} CPU-s ({:.0}%)", others.as_secs_f64(), share * 100.0)
    }
}

/// How a [`Server`] listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listen {
    /// `claude_swarm::api::server::serve`, as `claude-swarm serve` runs it.
    Serve,
    /// The same router, on accepted sockets with `TCP_NODELAY` set (a comparison only).
    NoDelay,
    /// `serve_with`, with room for this many event streams from one client address (the
    /// fan-out figure's subscribers; the default `max_streams_per_key` is 32).
    Streams(usize),
}

/// A real server (gRPC and REST on one port) on 127.0.0.1:0, as the tests start it.
struct Server {
    addr: SocketAddr,
    engine: Engine,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: EngineConfig, agent: impl Agent) -> Res<Self> {
        Self::start_with(config, agent, Listen::Serve).await
    }

    async fn start_with(config: EngineConfig, agent: impl Agent, listen: Listen) -> Res<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let engine = Engine::start(config, Arc::new(agent));
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = match listen {
            Listen::Serve => tokio::spawn(server::serve(listener, engine.clone(), async {
                let _ = stopped.await;
            })),
            Listen::Streams(max_streams_per_key) => {
                let options = ServerOptions {
                    max_streams_per_key,
                    ..ServerOptions::default()
                };
                tokio::spawn(server::serve_with(
                    listener,
                    engine.clone(),
                    options,
                    async {
                        let _ = stopped.await;
                    },
                ))
            }
            Listen::NoDelay => {
                use axum::serve::ListenerExt;
                let (down_tx, down_rx) = watch::channel(false);
                let app = server::router(engine.clone(), ServerOptions::default(), down_rx).await;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let engine = engine.clone();
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                            let _ = down_tx.send(true);
                        })
                        .await?;
                    engine.shutdown(Duration::from_secs(5)).await;
                    Ok(())
                })
            }
        };
        Ok(Self {
            addr,
            engine,
            stop,
            handle,
        })
    }

    async fn channel(&self) -> Res<Channel> {
        Channel::from_shared(format!("http://{}", self.addr))
            .map_err(err)?
            .connect()
            .await
            .map_err(err)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .is_err()
        {
            eprintln!("  (the server did not stop within 20 s)");
        }
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Res<Self> {
        let dir = std::env::temp_dir().join(format!("claude-swarm-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(err)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- 1. dispatch overhead ----------------------------------------------------------------

async fn dispatch(s: &Sizes, dir: &Path) -> Res<Vec<Row>> {
    let script = dir.join("agent.sh");
    std::fs::write(&script, format!("printf '%s\\n' '{RESULT_LINE}'\n")).map_err(err)?;
    let (n, c) = (s.dispatch_tasks, s.dispatch_concurrency);
    let (mut best_swarm, mut best_xargs) = (0.0f64, 0.0f64);
    let mut cpu = Duration::MAX;
    for round in 1..=s.dispatch_rounds {
        let xargs = xargs_rate(&script, n, c).await?;
        let before = cpu_time();
        let swarm = swarm_rate(&script, n, c, dir).await?;
        let used = cpu_time().saturating_sub(before) / n as u32;
        eprintln!(
            "  round {round}: xargs -P {c} {} tasks/s, claude-swarm {} tasks/s ({} CPU per task in this process)",
            thousands(xargs),
            thousands(swarm),
            human(used)
        );
        best_xargs = best_xargs.max(xargs);
        best_swarm = best_swarm.max(swarm);
        cpu = cpu.min(used);
    }
    let ratio = best_swarm / best_xargs;
    Ok(vec![
        Row::new(
            format!("1 dispatch: {n} tasks of a trivial agent script, C={c}, process per task"),
            format!(
                "{} tasks/s (orchestrator CPU {} per task)",
                thousands(best_swarm),
                human(cpu)
            ),
        )
        .baseline(
            format!("xargs -P {c}: {} tasks/s", thousands(best_xargs)),
            ratio,
        )
        .goal("≥ 0.9 × xargs -P", ratio >= 0.9),
    ])
}

/// `xargs -P c -n 1 /bin/sh script` fed `n` lines; checks that every run printed its line.
async fn xargs_rate(script: &Path, n: usize, c: usize) -> Res<f64> {
    let input: String = (0..n).map(|i| format!("{i}\n")).collect();
    let start = Instant::now();
    let mut child = tokio::process::Command::new("xargs")
        .args(["-P", &c.to_string(), "-n", "1", "/bin/sh"])
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("xargs: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await.map_err(err)?;
    let status = child.wait().await.map_err(err)?;
    let elapsed = start.elapsed();
    let _ = feed.await;
    let lines = out.iter().filter(|b| **b == b'\n').count();
    if !status.success() || lines != n {
        return Err(format!("xargs exited {status} with {lines} of {n} lines"));
    }
    Ok(rate(n, elapsed))
}

/// The same script as the agent of `c` instances: `n` tasks submitted in one batch.
async fn swarm_rate(script: &Path, n: usize, c: usize, dir: &Path) -> Res<f64> {
    let agent = ProcessAgent::new(AgentCommand {
        program: "/bin/sh".into(),
        leading_args: vec![script.display().to_string()],
        label: "bench-script".into(),
        stop_grace: Duration::from_secs(2),
        env: Vec::new(),
        long_lived: false,
        keep_worktrees: false,
        memory_limit: None,
        workspace_root: None,
        accounts: Default::default(),
    });
    let engine = Engine::start(engine_config(c, c, dir), Arc::new(agent));
    let specs = (0..n)
        .map(|i| TaskSpec::new(format!("dispatch {i}")))
        .collect();
    let start = Instant::now();
    engine.submit_batch(specs).await.map_err(err)?;
    wait_done(&engine, n, Duration::from_secs(600)).await?;
    let elapsed = start.elapsed();
    engine.shutdown(Duration::from_secs(5)).await;
    Ok(rate(n, elapsed))
}

// ---- 2. scheduling latency -----------------------------------------------------------------

async fn latency(s: &Sizes, dir: &Path) -> Res<Vec<Row>> {
    let n = s.latency_samples;
    let warmup = (n / 10).clamp(10, 500);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let instances = 4;
    let engine = Engine::start(
        engine_config(instances, instances, dir),
        Arc::new(InstantAgent::timed(tx)),
    );

    // Submit-to-start: one task at a time, so an instance is always idle.
    let mut submit_to_start = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let submitted = Instant::now();
        let task = engine.submit(TaskSpec::new("latency")).await.map_err(err)?;
        let timing = rx.recv().await.ok_or("the agent went away")?;
        if timing.task_id != task.id {
            return Err(format!(
                "expected {} to start, not {}",
                task.id, timing.task_id
            ));
        }
        if i >= warmup {
            submit_to_start.push(timing.started.saturating_duration_since(submitted));
        }
    }
    wait_done(&engine, warmup + n, Duration::from_secs(60)).await?;

    // Finish-to-dependent-start: a chain, each link released by the end of the one before.
    let chain = n + 1;
    let specs = (0..chain)
        .map(|i| TaskSpec {
            id: Some(format!("link-{i}").into()),
            depends_on: if i == 0 {
                Vec::new()
            } else {
                vec![format!("link-{}", i - 1).into()]
            },
            ..TaskSpec::new("latency chain")
        })
        .collect();
    engine.submit_batch(specs).await.map_err(err)?;
    let mut seen: Vec<Option<(Instant, Instant)>> = vec![None; chain];
    for _ in 0..chain {
        let timing = rx.recv().await.ok_or("the agent went away")?;
        let index: usize = timing
            .task_id
            .strip_prefix("link-")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| format!("unexpected task {}", timing.task_id))?;
        seen[index] = Some((timing.started, timing.ended));
    }
    wait_done(&engine, warmup + n + chain, Duration::from_secs(60)).await?;
    let mut finish_to_start: Vec<Duration> = seen
        .windows(2)
        .map(|w| {
            let (_, ended) = w[0].expect("every link ran");
            let (started, _) = w[1].expect("every link ran");
            started.saturating_duration_since(ended)
        })
        .collect();
    engine.shutdown(Duration::from_secs(5)).await;

    let goal = Duration::from_millis(2);
    let a = Percentiles::of(&mut submit_to_start);
    let b = Percentiles::of(&mut finish_to_start);
    Ok(vec![
        Row::new(
            format!(
                "2 latency: submit → start, {n} tasks one at a time, {instances} idle instances"
            ),
            a.to_string(),
        )
        .goal("p99 < 2 ms", a.p99 < goal),
        Row::new(
            format!("2 latency: finish → dependent start, chain of {chain}"),
            b.to_string(),
        )
        .goal("p99 < 2 ms", b.p99 < goal),
    ])
}

// ---- 3. engine throughput ----------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Dag {
    Chain,
    FanOut,
    Random,
}

/// Task `i` is `t<i>`; its dependencies always point at earlier tasks.
fn dag(kind: Dag, n: usize) -> Vec<TaskSpec> {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    (0..n)
        .map(|i| {
            let depends_on = match (kind, i) {
                (_, 0) => Vec::new(),
                (Dag::Chain, i) => vec![format!("t{}", i - 1)],
                (Dag::FanOut, _) => vec!["t0".to_string()],
                (Dag::Random, i) => {
                    // 0 to 3 distinct tasks among the 1,000 before this one.
                    let window = i.min(1_000) as u64;
                    let wanted = (next() % 4).min(window) as usize;
                    let mut deps: Vec<String> = Vec::with_capacity(wanted);
                    while deps.len() < wanted {
                        let dep = format!("t{}", i - 1 - (next() % window) as usize);
                        if !deps.contains(&dep) {
                            deps.push(dep);
                        }
                    }
                    deps
                }
            };
            TaskSpec {
                id: Some(format!("t{i}").into()),
                depends_on: depends_on.into_iter().map(Into::into).collect(),
                ..TaskSpec::new("dag task")
            }
        })
        .collect()
}

async fn engine_throughput(s: &Sizes, dir: &Path) -> Res<Vec<Row>> {
    let goal = 25_000.0;
    let goal_text = "≥ 25,000 tasks/s";
    let mut rows = Vec::new();
    let instances = s.engine_instances;

    let n = s.engine_tasks;
    let engine = Engine::start(
        engine_config(instances, instances, dir),
        Arc::new(InstantAgent::default()),
    );
    let run = run_independent(&engine, n, s.engine_submitters, 0).await?;
    engine.shutdown(Duration::from_secs(5)).await;
    drop(engine);
    let (submitted, completed) = (rate(n, run.submitted), rate(n, run.done));
    eprintln!(
        "  independent: submitted {} tasks/s, completed {} tasks/s",
        thousands(submitted),
        thousands(completed)
    );
    rows.push(
        Row::new(
            format!(
                "3 engine: {} independent tasks, submitted one by one by {} callers, {instances} instances, no-op agent",
                thousands(n as f64),
                s.engine_submitters
            ),
            format!(
                "{} tasks/s completed (submitted at {} tasks/s; submit call {})",
                thousands(completed),
                thousands(submitted),
                run.submit_latency
            ),
        )
        .goal(goal_text, completed >= goal),
    );

    for kind in [Dag::Chain, Dag::FanOut, Dag::Random] {
        let n = s.dag_tasks;
        let specs = dag(kind, n);
        let edges: usize = specs.iter().map(|t| t.depends_on.len()).sum();
        let engine = Engine::start(
            engine_config(instances, instances, dir),
            Arc::new(InstantAgent::default()),
        );
        let start = Instant::now();
        engine.submit_batch(specs).await.map_err(err)?;
        let submitted = start.elapsed();
        wait_done(&engine, n, Duration::from_secs(600)).await?;
        let total = start.elapsed();
        engine.shutdown(Duration::from_secs(5)).await;
        drop(engine);
        let tasks_per_s = rate(n, total);
        eprintln!(
            "  {kind:?}: batch validated and submitted in {}, all done in {}",
            human(submitted),
            human(total)
        );
        let name = match kind {
            Dag::Chain => "deep chain",
            Dag::FanOut => "wide fan-out (1 root → rest)",
            Dag::Random => "random DAG (0-3 deps in the previous 1,000)",
        };
        rows.push(
            Row::new(
                format!(
                    "3 engine: {}-task {name}, {} edges, one batch",
                    thousands(n as f64),
                    thousands(edges as f64)
                ),
                format!(
                    "{} tasks/s (validate+submit {}, run {})",
                    thousands(tasks_per_s),
                    human(submitted),
                    human(total - submitted)
                ),
            )
            .goal(goal_text, tasks_per_s >= goal),
        );
    }
    Ok(rows)
}

// ---- 4. API load -------------------------------------------------------------------------

/// What a load run saw.
#[derive(Default)]
struct Load {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    /// The submissions' latencies, and the reads'.
    submits: Vec<Duration>,
    reads: Vec<Duration>,
}

impl Load {
    fn merge(&mut self, other: Load) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
        self.submits.extend(other.submits);
        self.reads.extend(other.reads);
    }

    fn ok(&mut self, started: Instant) {
        self.requests += 1;
        self.latencies.push(started.elapsed());
    }

    fn submitted(&mut self, started: Instant) {
        self.submits.push(started.elapsed());
        self.ok(started);
    }

    fn read(&mut self, started: Instant) {
        self.reads.push(started.elapsed());
        self.ok(started);
    }

    fn error(&mut self, e: impl Display) {
        self.requests += 1;
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Rest,
}

/// What one load run measured.
struct LoadFigure {
    rps: f64,
    latency: Percentiles,
    /// The p50 of SubmitTask (POST /tasks) and of GetTask (GET /tasks/{id}).
    submit_p50: Duration,
    get_p50: Duration,
    errors: u64,
    first_error: Option<String>,
}

impl LoadFigure {
    fn met(&self) -> bool {
        self.rps >= 20_000.0 && self.latency.p99 < Duration::from_millis(10) && self.errors == 0
    }

    fn short(&self) -> String {
        format!(
            "{} req/s, p99 {}",
            thousands(self.rps),
            human(self.latency.p99)
        )
    }
}

impl Display for LoadFigure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} req/s · {} · {} errors",
            thousands(self.rps),
            self.latency,
            self.errors
        )?;
        if let Some(e) = &self.first_error {
            write!(f, " (first: {e})")?;
        }
        Ok(())
    }
}

/// `clients` clients alternate SubmitTask and GetTask for `duration` against a fresh server.
async fn load(
    protocol: Protocol,
    clients: usize,
    duration: Duration,
    listen: Listen,
    dir: &Path,
) -> Res<LoadFigure> {
    let server =
        Server::start_with(engine_config(4, 4, dir), InstantAgent::default(), listen).await?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let stop_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles: Vec<JoinHandle<Load>> = Vec::with_capacity(clients);
    for _ in 0..clients {
        let barrier = barrier.clone();
        let stop_at = stop_at.clone();
        let handle = match protocol {
            Protocol::Grpc => {
                let channel = server.channel().await?;
                tokio::spawn(grpc_client(channel, barrier, stop_at))
            }
            Protocol::Rest => {
                let stream = TcpStream::connect(server.addr).await.map_err(err)?;
                stream.set_nodelay(true).map_err(err)?;
                let http = Http::new(stream, server.addr);
                tokio::spawn(rest_client(http, barrier, stop_at))
            }
        };
        handles.push(handle);
    }
    let start = Instant::now();
    let _ = stop_at.set(start + duration);
    barrier.wait().await;
    let mut total = Load::default();
    for handle in handles {
        total.merge(handle.await.map_err(err)?);
    }
    let elapsed = start.elapsed();
    server.stop().await;
    eprintln!(
        "  {protocol:?}, {clients} clients, {listen:?}: {} requests in {}, {} errors",
        total.requests,
        human(elapsed),
        total.errors
    );
    let submit_p50 = Percentiles::of(&mut total.submits).p50;
    let get_p50 = Percentiles::of(&mut total.reads).p50;
    Ok(LoadFigure {
        rps: total.requests as f64 / elapsed.as_secs_f64(),
        submit_p50,
        get_p50,
        latency: Percentiles::of(&mut total.latencies),
        errors: total.errors,
        first_error: total.first_error,
    })
}

async fn api(s: &Sizes, dir: &Path) -> Res<Vec<Row>> {
    let goal = "≥ 20,000 req/s, p99 < 10 ms, 0 errors";
    let light = 4;
    let mut runs = vec![
        (Protocol::Grpc, s.api_clients, s.api_duration),
        (Protocol::Rest, s.api_clients, s.api_duration),
    ];
    if s.api_clients > light {
        // Light load shows what a lone client waits for.
        let duration = s.api_duration.min(Duration::from_secs(2));
        runs.push((Protocol::Grpc, light, duration));
    }
    let mut rows = Vec::new();
    for (protocol, clients, duration) in runs {
        // Two halves in the order A B B A, the better half of each kept: a burst of other
        // work on the machine then hits both sides or neither.
        let half = duration / 2;
        let mut best: [Option<LoadFigure>; 2] = [None, None];
        for listen in [
            Listen::Serve,
            Listen::NoDelay,
            Listen::NoDelay,
            Listen::Serve,
        ] {
            let figure = load(protocol, clients, half, listen, dir).await?;
            let slot = &mut best[usize::from(listen == Listen::NoDelay)];
            if slot.as_ref().is_none_or(|b| figure.rps > b.rps) {
                *slot = Some(figure);
            }
        }
        let [Some(served), Some(nodelay)] = best else {
            unreachable!("both sides ran")
        };
        let name = match protocol {
            Protocol::Grpc => "gRPC",
            Protocol::Rest => "REST",
        };
        rows.push(
            Row::new(
                format!(
                    "4 api: {name}, {clients} clients, SubmitTask + GetTask alternating, best of 2 × {} s, loopback",
                    half.as_secs_f64()
                ),
                served.to_string(),
            )
            .baseline(
                format!("same router, TCP_NODELAY: {}", nodelay.short()),
                served.rps / nodelay.rps,
            )
            .goal(goal, served.met()),
        );
        if clients > light {
            // A submission should cost about what a read does: it is a little more work
            // in the same scheduler turn, not a wait of its own.
            let ratio = served.submit_p50.as_secs_f64() / served.get_p50.as_secs_f64().max(1e-9);
            rows.push(
                Row::new(
                    format!("4 api: {name}, {clients} clients, submit p50 vs read p50"),
                    format!(
                        "submit p50 {} · read p50 {}",
                        human(served.submit_p50),
                        human(served.get_p50)
                    ),
                )
                .baseline("read p50", ratio)
                .goal("submit p50 ≤ 1.5× read p50", ratio <= 1.5),
            );
        }
    }
    Ok(rows)
}

async fn grpc_client(
    channel: Channel,
    barrier: Arc<Barrier>,
    stop_at: Arc<std::sync::OnceLock<Instant>>,
) -> Load {
    let mut client = TaskServiceClient::new(channel);
    let mut load = Load::default();
    barrier.wait().await;
    let stop_at = *stop_at.get().expect("set before the barrier");
    while Instant::now() < stop_at {
        let started = Instant::now();
        let request = pb::SubmitTaskRequest {
            task: Some(pb::TaskSpec {
                prompt: "api load".into(),
                ..Default::default()
            }),
        };
        let task_id = match client.submit_task(request).await {
            Ok(response) => {
                load.submitted(started);
                response.into_inner().task_id
            }
            Err(e) => {
                load.error(format!("SubmitTask: {e}"));
                continue;
            }
        };
        let started = Instant::now();
        match client.get_task(pb::GetTaskRequest { task_id }).await {
            Ok(_) => load.read(started),
            Err(e) => load.error(format!("GetTask: {e}")),
        }
    }
    load
}

async fn rest_client(
    mut http: Http,
    barrier: Arc<Barrier>,
    stop_at: Arc<std::sync::OnceLock<Instant>>,
) -> Load {
    let mut load = Load::default();
    barrier.wait().await;
    let stop_at = *stop_at.get().expect("set before the barrier");
    while Instant::now() < stop_at {
        let started = Instant::now();
        let task_id = match http
            .call("POST", "/tasks", r#"{"prompt":"api load"}"#)
            .await
        {
            Ok((200 | 201, body)) => {
                let id = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("task_id")?.as_str().map(str::to_owned));
                match id {
                    Some(id) => {
                        load.submitted(started);
                        id
                    }
                    None => {
                        load.error("POST /tasks: no task_id in the answer");
                        continue;
                    }
                }
            }
            Ok((status, body)) => {
                load.error(format!(
                    "POST /tasks: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
                continue;
            }
            Err(e) => {
                load.error(format!("POST /tasks: {e}"));
                return load;
            }
        };
        let started = Instant::now();
        match http.call("GET", &format!("/tasks/{task_id}"), "").await {
            Ok((200, _)) => load.read(started),
            Ok((status, _)) => load.error(format!("GET /tasks/{{id}}: {status}")),
            Err(e) => {
                load.error(format!("GET /tasks/{{id}}: {e}"));
                return load;
            }
        }
    }
    load
}

/// A minimal HTTP/1.1 client on one keep-alive connection: enough for JSON requests and
/// answers with a `Content-Length` or chunked body.
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
    line: String,
}

impl Http {
    fn new(stream: TcpStream, addr: SocketAddr) -> Self {
        Self {
            stream: BufReader::new(stream),
            host: addr.to_string(),
            line: String::new(),
        }
    }

    async fn call(&mut self, method: &str, path: &str, body: &str) -> Res<(u16, Vec<u8>)> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(err)?;

        self.read_line().await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {:?}", self.line))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            self.read_line().await?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().map_err(err)?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if let Some(length) = length {
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await.map_err(err)?;
        } else if chunked {
            loop {
                self.read_line().await?;
                let size = usize::from_str_radix(self.line.trim_end(), 16).map_err(err)?;
                if size == 0 {
                    self.read_line().await?;
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                self.stream.read_exact(&mut body[at..]).await.map_err(err)?;
                self.read_line().await?;
            }
        }
        Ok((status, body))
    }

    async fn read_line(&mut self) -> Res<()> {
        self.line.clear();
        let n = self.stream.read_line(&mut self.line).await.map_err(err)?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }
}

// ---- 5. stream fan-out -------------------------------------------------------------------

/// The fields of `claude_swarm.v1.Event` a subscriber checks; the payload is skipped
/// unread, so the load generator spends its time on the stream and not on decoding.
#[derive(Clone, PartialEq, prost::Message)]
struct SlimEvent {
    #[prost(uint64, tag = "1")]
    sequence: u64,
    #[prost(int32, tag = "3")]
    kind: i32,
    #[prost(string, tag = "4")]
    task_id: String,
}

/// What one subscriber saw.
struct Watched {
    events: u64,
    last_sequence: u64,
    /// Why it stopped early: out of order, an error, or the stream ended.
    problem: Option<String>,
}

/// One run with subscribers.
struct FanOut {
    rate: f64,
    /// Subscribers that got every event, in order.
    complete: usize,
    events: u64,
    /// From the end of the run until the last subscriber had everything.
    caught_up: Duration,
    problem: Option<String>,
}

async fn fanout(s: &Sizes, dir: &Path) -> Res<Vec<Row>> {
    let (n, subscribers) = (s.fanout_tasks, s.fanout_subscribers);
    let submitters = 16.min(n.max(1));
    let instances = s.engine_instances;

    // Without subscribers, after a warm-up.
    let server = Server::start(
        engine_config(instances, instances, dir),
        InstantAgent::default(),
    )
    .await?;
    let warmup = n.min(1_000);
    run_independent(&server.engine, warmup, submitters, 0).await?;
    let alone = run_independent(&server.engine, n, submitters, warmup).await?;
    server.stop().await;
    let without = rate(n, alone.done);
    eprintln!("  without subscribers: {} tasks/s", thousands(without));

    let default_buffer = EngineConfig::default().event_buffer;
    let sized = s.fanout_sized_tasks;
    // Every event of the run fits: no subscriber can be dropped for falling behind.
    let sized_buffer = (sized * 8 + 1_024).next_power_of_two();
    let mut rows = Vec::new();
    for (n, buffer, note) in [
        (n, default_buffer, "default event_buffer"),
        (sized, sized_buffer, "event_buffer holding the whole run"),
    ] {
        let config = EngineConfig {
            event_buffer: buffer,
            ..engine_config(instances, instances, dir)
        };
        let f = fanout_run(config, n, subscribers, submitters).await?;
        let mut value = format!(
            "{} tasks/s; {} of {subscribers} got all {} events in order; the last caught up {} after the run",
            thousands(f.rate),
            f.complete,
            thousands(f.events as f64),
            human(f.caught_up)
        );
        if let Some(p) = f.problem {
            value.push_str(&format!(" (first problem: {p})"));
        }
        rows.push(
            Row::new(
                format!(
                    "5 fan-out: {subscribers} StreamEvents subscribers (gRPC) during a {}-task run, {note} ({})",
                    thousands(n as f64),
                    thousands(buffer as f64)
                ),
                value,
            )
            .baseline(
                format!("no subscribers: {} tasks/s", thousands(without)),
                f.rate / without,
            )
            .goal(
                "every subscriber gets every event in order",
                f.complete == subscribers,
            ),
        );
    }
    Ok(rows)
}

/// Every subscriber replays from the start, so it must see sequence 1, 2, ... up to the
/// submission of a sentinel task submitted after the run, with no gap.
async fn fanout_run(
    config: EngineConfig,
    n: usize,
    subscribers: usize,
    submitters: usize,
) -> Res<FanOut> {
    let server = Server::start_with(
        config,
        InstantAgent::default(),
        Listen::Streams(subscribers + 1),
    )
    .await?;
    let per_connection = 20;
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(per_connection) {
        channels.push(server.channel().await?);
    }
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(subscribers.max(1));
    let watchers: Vec<JoinHandle<Watched>> = (0..subscribers)
        .map(|i| {
            let channel = channels[i / per_connection].clone();
            tokio::spawn(watch(channel, ready_tx.clone()))
        })
        .collect();
    drop(ready_tx);
    for _ in 0..subscribers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .map_err(|_| "subscribers did not all start within 60 s")?
            .ok_or("a subscriber failed before its first event")?;
    }
    let run = run_independent(&server.engine, n, submitters, 0).await?;
    let run_end = Instant::now();
    let rate = rate(n, run.done);
    eprintln!(
        "  with {subscribers} subscribers: {} tasks/s; waiting for them to catch up",
        thousands(rate)
    );

    // The sentinel's sequence is the number of events every subscriber must get.
    let filter = EventFilter {
        task_id: Some(SENTINEL.into()),
        kinds: vec![EventKind::TaskSubmitted],
        ..EventFilter::default()
    };
    let mut reference = server.engine.subscribe(None, filter).await.map_err(err)?;
    server
        .engine
        .submit(TaskSpec {
            id: Some(SENTINEL.into()),
            ..TaskSpec::new("end of the fan-out run")
        })
        .await
        .map_err(err)?;
    let events = match reference.next().await {
        Some(Ok(event)) => event.sequence,
        Some(Err(e)) => return Err(err(e)),
        None => return Err("the engine stopped".into()),
    };

    let mut seen = Vec::with_capacity(subscribers);
    for watcher in watchers {
        match tokio::time::timeout(Duration::from_secs(600), watcher).await {
            Ok(Ok(w)) => seen.push(w),
            Ok(Err(e)) => return Err(err(e)),
            Err(_) => return Err("a subscriber did not finish within 600 s".into()),
        }
    }
    let caught_up = run_end.elapsed();
    drop(channels);
    server.stop().await;
    Ok(FanOut {
        rate,
        complete: seen
            .iter()
            .filter(|w| w.problem.is_none() && w.events == events && w.last_sequence == events)
            .count(),
        events,
        caught_up,
        problem: seen.iter().find_map(|w| w.problem.clone()),
    })
}

async fn watch(channel: Channel, ready: mpsc::Sender<()>) -> Watched {
    let mut watched = Watched {
        events: 0,
        last_sequence: 0,
        problem: None,
    };
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        ..Default::default()
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/claude_swarm.v1.EventService/StreamEvents",
    );
    let codec = tonic_prost::ProstCodec::<pb::StreamEventsRequest, SlimEvent>::new();
    let opened = match grpc.ready().await {
        Ok(()) => {
            grpc.server_streaming(tonic::Request::new(request), path, codec)
                .await
        }
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    let mut stream = match opened {
        Ok(response) => response.into_inner(),
        Err(e) => {
            watched.problem = Some(format!("StreamEvents: {e}"));
            return watched;
        }
    };
    let mut ready = Some(ready);
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                if event.sequence != watched.last_sequence + 1 {
                    watched.problem = Some(format!(
                        "sequence {} after {}",
                        event.sequence, watched.last_sequence
                    ));
                    return watched;
                }
                watched.events += 1;
                watched.last_sequence = event.sequence;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(()).await;
                }
                if event.task_id == SENTINEL && event.kind == pb::EventKind::TaskSubmitted as i32 {
                    return watched;
                }
            }
            Ok(None) => {
                watched.problem = Some("the stream ended".into());
                return watched;
            }
            Err(e) => {
                watched.problem = Some(format!("{:?}: {}", e.code(), e.message()));
                return watched;
            }
        }
    }
}

// ---- 6. memory ---------------------------------------------------------------------------

/// Resident memory of this process, in bytes.
fn rss() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(err)?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or("bad VmRSS line")?;
    Ok(kib * 1024)
}

/// Runs in a fresh child process: RSS before and after `count` queued tasks or idle
/// instances.
async fn probe_memory(kind: &str, count: usize, retention: usize) -> Res<(u64, u64)> {
    let scratch = Scratch::new()?;
    let config = EngineConfig {
        event_retention: retention,
        // The warm-up task and the measured ones are all queued at once.
        max_queued_tasks: count + 1,
        ..engine_config(0, count + 1, &scratch.0)
    };
    let engine = Engine::start(config, Arc::new(InstantAgent::default()));
    // One of each first, so that what every engine allocates once is not counted.
    let warm = match kind {
        "instances" => engine.spawn_instances(1, None).await.map(|_| ()),
        _ => engine.submit(TaskSpec::new("warm-up")).await.map(|_| ()),
    };
    warm.map_err(err)?;
    engine.status().await.map_err(err)?;
    let before = rss()?;
    match kind {
        "instances" => {
            engine
                .spawn_instances(count as u32, None)
                .await
                .map_err(err)?;
            let status = engine.status().await.map_err(err)?;
            if status.instances_idle != count as u64 + 1 {
                return Err(format!("{} idle instances", status.instances_idle));
            }
        }
        "tasks" => {
            let mut submitted = 0;
            while submitted < count {
                let batch = (count - submitted).min(1_000);
                let specs = (submitted..submitted + batch)
                    .map(|i| TaskSpec::new(format!("queued task number {i}")))
                    .collect();
                engine.submit_batch(specs).await.map_err(err)?;
                submitted += batch;
            }
            let status = engine.status().await.map_err(err)?;
            let queued: u64 = status.queued.iter().sum();
            if queued != count as u64 + 1 {
                return Err(format!("{queued} of {count} tasks queued"));
            }
        }
        other => return Err(format!("unknown probe {other}")),
    }
    let after = rss()?;
    drop(engine);
    Ok((before, after))
}

/// Runs `bench --probe-memory` in a child process and reads `before after`.
async fn measure_memory(kind: &str, count: usize, retention: usize) -> Res<(u64, u64)> {
    let exe = std::env::current_exe().map_err(err)?;
    let output = tokio::process::Command::new(exe)
        .args([
            "--probe-memory",
            kind,
            &count.to_string(),
            &retention.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(err)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match (output.status.success(), numbers.as_slice()) {
        (true, [before, after]) => Ok((*before, *after)),
        _ => Err(format!(
            "memory probe {kind} failed ({}): {}",
            output.status,
            text.trim()
        )),
    }
}

async fn memory(s: &Sizes) -> Res<Vec<Row>> {
    let retention = EngineConfig::default().event_retention;
    let tasks = s.memory_tasks;
    let instances = s.memory_instances;
    let per = |(before, after): (u64, u64), count: usize| {
        (
            after.saturating_sub(before) as f64 / count as f64,
            after - before.min(after),
        )
    };
    let (per_task, total) = per(measure_memory("tasks", tasks, retention).await?, tasks);
    let (per_task_bare, total_bare) = per(measure_memory("tasks", tasks, 1).await?, tasks);
    let (per_instance, total_instances) = per(
        measure_memory("instances", instances, retention).await?,
        instances,
    );
    Ok(vec![
        Row::new(
            format!(
                "6 memory: per queued task, {} queued, event retention {} (default)",
                thousands(tasks as f64),
                thousands(retention as f64)
            ),
            format!(
                "{} per task (RSS +{})",
                bytes(per_task),
                bytes(total as f64)
            ),
        ),
        Row::new(
            format!(
                "6 memory: per queued task, {} queued, event retention 1",
                thousands(tasks as f64)
            ),
            format!(
                "{} per task (RSS +{})",
                bytes(per_task_bare),
                bytes(total_bare as f64)
            ),
        ),
        Row::new(
            format!("6 memory: per idle instance, {instances} instances"),
            format!(
                "{} per instance (RSS +{}; 4 KiB page granularity)",
                bytes(per_instance),
                bytes(total_instances as f64)
            ),
        ),
    ])
}

// ---- main --------------------------------------------------------------------------------

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or("unknown memory".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    format!("{cpus} CPUs ({model}), {memory}")
}

async fn suite(args: &Args, mode: Mode) -> (Vec<Row>, Vec<String>) {
    let mut sizes = Sizes::of(mode);
    if let Some(c) = args.concurrency {
        sizes.dispatch_concurrency = c.max(1);
    }
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return (vec![Row::failed("scratch directory", "-", &e)], Vec::new()),
    };
    let dir = scratch.0.as_path();
    let wanted = |f: Figure| args.only.is_none_or(|only| only == f);
    let mut rows = Vec::new();
    let mut disturbed = Vec::new();
    let figures: [(Figure, &str); 6] = [
        (Figure::Dispatch, "≥ 0.9 × xargs -P"),
        (Figure::Latency, "p99 < 2 ms"),
        (Figure::Engine, "≥ 25,000 tasks/s"),
        (Figure::Api, "≥ 20,000 req/s, p99 < 10 ms, 0 errors"),
        (Figure::Fanout, "every subscriber gets every event in order"),
        (Figure::Memory, "-"),
    ];
    for (figure, goal) in figures {
        if !wanted(figure) {
            continue;
        }
        eprintln!("{figure:?}...");
        let started = Instant::now();
        let interference = Interference::start();
        let result = match figure {
            Figure::Dispatch => dispatch(&sizes, dir).await,
            Figure::Latency => latency(&sizes, dir).await,
            Figure::Engine => engine_throughput(&sizes, dir).await,
            Figure::Api => api(&sizes, dir).await,
            Figure::Fanout => fanout(&sizes, dir).await,
            Figure::Memory => memory(&sizes).await,
            Figure::Durable => unreachable!("not in the list"),
        };
        let others = interference.report();
        eprintln!(
            "  ({figure:?} took {}; other processes used {others})",
            human(started.elapsed())
        );
        let name = format!("{figure:?}").to_lowercase();
        disturbed.push(format!("{name} {others}"));
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("  error: {e}");
                rows.push(Row::failed(format!("{figure:?}"), goal, &e));
            }
        }
    }
    if wanted(Figure::Durable) {
        eprintln!("Durable...");
        match durable(&sizes, dir).await {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::failed("durable", DURABLE_GOAL, &e)),
        }
    }
    (rows, disturbed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(probe) = &args.probe_memory {
        let (kind, count, retention) = (&probe[0], probe[1].parse(), probe[2].parse());
        let (Ok(count), Ok(retention)) = (count, retention) else {
            eprintln!("error: --probe-memory KIND COUNT RETENTION");
            return ExitCode::FAILURE;
        };
        return match runtime.block_on(probe_memory(kind, count, retention)) {
            Ok((before, after)) => {
                println!("{before} {after}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mode = match (args.tiny, args.quick) {
        (true, _) => Mode::Tiny,
        (_, true) => Mode::Quick,
        _ => Mode::Full,
    };
    let (started, interference) = (Instant::now(), Interference::start());
    let (rows, disturbed) = runtime.block_on(suite(&args, mode));
    let elapsed = started.elapsed();
    println!(
        "claude-swarm bench ({}) on {}, {} in all; other processes used {} of the machine meanwhile\n",
        match mode {
            Mode::Tiny => "--tiny",
            Mode::Quick => "--quick",
            Mode::Full => "full",
        },
        machine(),
        human(elapsed),
        interference.report()
    );
    print_table(&rows);
    if !disturbed.is_empty() {
        println!(
            "\nCPU used by other processes during each figure: {}.",
            disturbed.join(", ")
        );
    }
    // Figures that missed a goal are reported, not failed: this is a measurement.
    if rows.iter().any(|r| r.value.starts_with("error:")) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

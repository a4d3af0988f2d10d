//! The PostgreSQL store's figures (issue 16), printed as one Markdown table:
//!
//! 1. the same no-op tasks (an in-process agent that answers at once) submitted by
//!    concurrent callers and completed, every change durable, on SQLite and on PostgreSQL;
//! 2. claim latency: one task at a time on idle instances, from the call to its answer,
//!    which comes once the claim (the task RUNNING on an instance) is stored;
//! 3. an instance-bound workload: an agent that takes 200 ms, 4 instances, on PostgreSQL;
//! 4. the same work on 1, 2 and 3 `claude-swarm serve` nodes of one database, 4 instances
//!    each (the simulated agent told to take 200 ms): every node runs tasks, so the swarm's
//!    rate should grow with its nodes.
//!
//! ```text
//! bench-nodes [--tasks N] [--submitters C]
//! ```
//!
//! PostgreSQL is `SWARM_BENCH_DATABASE_URL` (a superuser's URL naming a database to create
//! the benchmark's from) or a throwaway cluster made with the system's `initdb` in a
//! temporary directory (run as `postgres` when we are root), stopped at the end.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use claude_swarm::{
    agent::instant::InstantAgent,
    engine::{
        Engine, EngineConfig, TaskResult, TaskSpec, TaskStatus,
        ports::{Agent, BoxFuture, OutputSink, RunOutcome, RunRequest, StopSignal, Store},
    },
    store::{
        postgres::{PostgresStore, Target},
        sqlite::SqliteStore,
    },
};

type Res<T> = Result<T, String>;

#[derive(Parser)]
struct Args {
    /// No-op tasks of figure 1.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Concurrent callers submitting them.
    #[arg(long, default_value_t = 8)]
    submitters: usize,
}

/// Completes every task after 200 ms, as an instance-bound agent would.
struct Slow;

impl Agent for Slow {
    fn run(&self, _: RunRequest, _: OutputSink, _: StopSignal) -> BoxFuture<RunOutcome> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            RunOutcome::completed(TaskResult {
                text: "ok".into(),
                session_id: "slow".into(),
                ..TaskResult::default()
            })
        })
    }

    fn describe(&self) -> String {
        "200 ms".into()
    }
}

/// A throwaway cluster, stopped when dropped.
struct Cluster {
    child: Child,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects; SIGINT is PostgreSQL's fast shutdown.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_server_user(program: &Path) -> Command {
    let mut command = Command::new(program);
    // SAFETY: geteuid and getpwnam before the fork; only async-signal-safe calls after it.
    let user = unsafe {
        let user = libc::getpwnam(c"postgres".as_ptr());
        (libc::geteuid() == 0 && !user.is_null()).then(|| ((*user).pw_uid, (*user).pw_gid))
    };
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    command
}

fn start_cluster() -> Res<(Cluster, String)> {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL is not installed (scripts/setup): {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .max()
        .ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
    let dir = std::env::temp_dir().join(format!("swarm-bench-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // SAFETY: getpwnam returns a static record or null.
    unsafe {
        let user = libc::getpwnam(c"postgres".as_ptr());
        if libc::geteuid() == 0 && !user.is_null() {
            std::os::unix::fs::chown(&dir, Some((*user).pw_uid), Some((*user).pw_gid))
                .map_err(|e| e.to_string())?;
        }
    }
    let data = dir.join("data");
    let out = as_server_user(&bin.join("initdb"))
        .args(["--auth=trust", "--username=swarm", "--encoding=UTF8", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // Durable as shipped: fsync on, synchronous_commit on (the defaults).
    let child = as_server_user(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let cluster = Cluster { child, dir };
    let url = format!("postgres://swarm@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while postgres::Client::connect(&url, postgres::NoTls).is_err() {
        if Instant::now() > deadline {
            return Err("the cluster did not start within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((cluster, url))
}

/// A new database on the server of `admin`: its URL.
fn database(admin: &str, name: &str) -> Res<String> {
    let mut client =
        postgres::Client::connect(admin, postgres::NoTls).map_err(|e| e.to_string())?;
    // One statement each: CREATE DATABASE cannot run inside a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .map_err(|e| format!("{sql}: {e:?}"))?;
    }
    let (server, _) = admin.rsplit_once('/').ok_or("the URL names no database")?;
    Ok(format!("{server}/{name}"))
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn config(instances: usize) -> EngineConfig {
    EngineConfig {
        initial_instances: instances,
        max_instances: instances,
        working_directory: std::env::temp_dir(),
        ..EngineConfig::default()
    }
}

/// Waits until `n` tasks have completed.
async fn done(engine: &Engine, n: usize) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let status = engine.status().await.map_err(|e| e.to_string())?;
        let terminal: u64 = [TaskStatus::Completed, TaskStatus::Failed]
            .iter()
            .map(|s| status.tasks[s.index()])
            .sum();
        if terminal >= n as u64 {
            let completed = status.tasks[TaskStatus::Completed.index()];
            return if completed >= n as u64 {
                Ok(())
            } else {
                Err(format!("{} tasks failed", n as u64 - completed))
            };
        }
        if Instant::now() > deadline {
            return Err(format!("only {terminal} of {n} finished"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` tasks from `submitters` callers, until all completed: tasks/s, and the submit calls'
/// latencies.
async fn throughput(engine: &Engine, n: usize, submitters: usize) -> Res<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let mut callers = Vec::new();
    for s in 0..submitters {
        let engine = engine.clone();
        let count = n / submitters + usize::from(s < n % submitters);
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let called = Instant::now();
                engine
                    .submit(TaskSpec::new(format!("task {s}-{i}")))
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(called.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for caller in callers {
        latencies.extend(caller.await.map_err(|e| e.to_string())??);
    }
    done(engine, n).await?;
    Ok((n as f64 / start.elapsed().as_secs_f64(), latencies))
}

fn start(instances: usize, agent: Arc<dyn Agent>, store: Box<dyn Store>) -> Res<Engine> {
    tokio::task::block_in_place(|| Engine::start_durable(config(instances), agent, store))
        .map_err(|e| e.to_string())
}

fn postgres_store(admin: &str, name: &str) -> Res<Box<dyn Store>> {
    let url = database(admin, name)?;
    let target = Target {
        url,
        node: "bench".into(),
        lease: Duration::from_secs(10),
    };
    let store = PostgresStore::open(&target, 100_000).map_err(|e| e.to_string())?;
    Ok(Box::new(store))
}

fn sqlite_store(dir: &Path) -> Res<Box<dyn Store>> {
    let _ = std::fs::remove_dir_all(dir);
    Ok(Box::new(
        SqliteStore::open(dir, 100_000).map_err(|e| e.to_string())?,
    ))
}

async fn run(args: Args, admin: String) -> Res<Vec<[String; 3]>> {
    let scratch = tempfile_dir()?;
    let mut rows = Vec::new();
    // 1. No-op tasks, durable.
    let mut rates = Vec::new();
    for kind in ["SQLite", "PostgreSQL"] {
        let store = match kind {
            "SQLite" => sqlite_store(&scratch.join("noop"))?,
            _ => tokio::task::block_in_place(|| postgres_store(&admin, "bench_noop"))?,
        };
        let engine = start(4, Arc::new(InstantAgent::default()), store)?;
        let (rate, mut latencies) = throughput(&engine, args.tasks, args.submitters).await?;
        engine.shutdown(Duration::from_secs(10)).await;
        eprintln!("  {kind}: {rate:.0} no-op tasks/s");
        rows.push([
            format!(
                "{} no-op tasks, {} callers, durable, {kind}",
                args.tasks, args.submitters
            ),
            format!("{rate:.0} tasks/s"),
            format!(
                "submit call p50 {} · p99 {}",
                ms(percentile(&mut latencies, 0.5)),
                ms(percentile(&mut latencies, 0.99))
            ),
        ]);
        rates.push(rate);
    }
    rows.push([
        "PostgreSQL / SQLite, no-op tasks".into(),
        format!("{:.2}×", rates[1] / rates[0]),
        String::new(),
    ]);
    // 2. Claim latency: one task at a time on idle instances.
    for kind in ["SQLite", "PostgreSQL"] {
        let store = match kind {
            "SQLite" => sqlite_store(&scratch.join("claim"))?,
            _ => tokio::task::block_in_place(|| postgres_store(&admin, "bench_claim"))?,
        };
        let engine = start(4, Arc::new(InstantAgent::default()), store)?;
        let (_, mut latencies) = throughput(&engine, 2_000, 1).await?;
        engine.shutdown(Duration::from_secs(10)).await;
        rows.push([
            format!("claim latency, one task at a time, idle instances, {kind}"),
            format!(
                "p50 {} · p99 {}",
                ms(percentile(&mut latencies, 0.5)),
                ms(percentile(&mut latencies, 0.99))
            ),
            "submit call until the stored claim is acknowledged".into(),
        ]);
    }
    // 3. Instance-bound: 200 ms runs on 4 instances.
    let n = 200;
    let store = tokio::task::block_in_place(|| postgres_store(&admin, "bench_slow"))?;
    let engine = start(4, Arc::new(Slow), store)?;
    let (rate, _) = throughput(&engine, n, 4).await?;
    engine.shutdown(Duration::from_secs(10)).await;
    rows.push([
        format!("{n} tasks of 200 ms, 4 instances, one node, PostgreSQL"),
        format!("{rate:.1} tasks/s"),
        format!("ideal 20.0 tasks/s ({:.0}%)", rate / 20.0 * 100.0),
    ]);
    // 4. 1, 2 and 3 nodes, 4 instances each, 100 tasks of 200 ms per node.
    let mut one = None;
    for nodes in 1..=3 {
        let url =
            tokio::task::block_in_place(|| database(&admin, &format!("bench_nodes_{nodes}")))?;
        let rate = across_nodes(&url, nodes, 100 * nodes).await?;
        let base = *one.get_or_insert(rate);
        eprintln!("  {nodes} node(s): {rate:.1} tasks/s");
        rows.push([
            format!(
                "{} tasks of 200 ms, {nodes} node(s) × 4 instances, PostgreSQL",
                100 * nodes
            ),
            format!("{rate:.1} tasks/s"),
            format!(
                "{:.2}× one node; ideal {:.0} tasks/s ({:.0}%)",
                rate / base,
                20.0 * nodes as f64,
                rate / (20.0 * nodes as f64) * 100.0
            ),
        ]);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(rows)
}

/// `tasks` tasks of 200 ms submitted to the owner of `nodes` serve processes on `url`,
/// once every node's instances are attached: tasks a second, from submission to the last.
async fn across_nodes(url: &str, nodes: usize, tasks: usize) -> Res<f64> {
    use claude_swarm::pb::{
        self, instance_service_client::InstanceServiceClient,
        task_service_client::TaskServiceClient,
    };
    use std::io::BufRead;
    let binary =
        std::env::var("SWARM_BIN").unwrap_or_else(|_| "target/release/claude-swarm".into());
    let mut children = Vec::new();
    let (address_tx, address) = std::sync::mpsc::channel();
    for n in 0..nodes {
        let mut child = Command::new(&binary)
            .args([
                "serve",
                "--agent",
                "simulated",
                "--listen",
                "127.0.0.1:0",
                "--instances",
                "4",
            ])
            .args(["--node-name", &format!("n{n}"), "--lease", "5"])
            .env("SWARM_STORE", url)
            .env("SWARM_LOG", "claude_swarm=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{binary}: {e} (scripts/bench-nodes builds it)"))?;
        let stderr = std::io::BufReader::new(child.stderr.take().ok_or("no stderr")?);
        let tx = address_tx.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("address=").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        children.push(Killed(child, None));
        if n == 0 {
            // The first owns the database; the others attach to it.
            let owner =
                tokio::task::block_in_place(|| address.recv_timeout(Duration::from_secs(60)))
                    .map_err(|_| "the first node did not start")?;
            children[0].1 = Some(owner);
        }
    }
    let owner = children[0].1.clone().ok_or("no owner")?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{owner}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = InstanceServiceClient::new(channel.clone())
            .list_instances(pb::ListInstancesRequest::default())
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .instances
            .len();
        if live >= 4 * nodes {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{live} of {} instances attached", 4 * nodes));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let request = pb::SubmitTasksRequest {
        tasks: (0..tasks)
            .map(|i| pb::TaskSpec {
                prompt: format!("task {i} sim:delay=200"),
                ..Default::default()
            })
            .collect(),
    };
    let began = Instant::now();
    let ids: Vec<String> = TaskServiceClient::new(channel.clone())
        .submit_tasks(request)
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect();
    let mut last = began;
    for id in ids {
        let mut stream = pb::event_service_client::EventServiceClient::new(channel.clone())
            .stream_events(pb::StreamEventsRequest {
                after_sequence: Some(0),
                task_id: id,
                kinds: vec![pb::EventKind::TaskCompleted as i32],
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let event = tokio::time::timeout(Duration::from_secs(600), stream.message())
            .await
            .map_err(|_| "a task did not complete")?
            .map_err(|e| e.to_string())?
            .ok_or("the stream ended")?;
        let at = event.time.map_or(began, |t| {
            let when = std::time::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32);
            let ago = std::time::SystemTime::now()
                .duration_since(when)
                .unwrap_or_default();
            Instant::now() - ago
        });
        last = last.max(at);
    }
    Ok(tasks as f64 / (last - began).as_secs_f64())
}

/// A node process, killed when dropped; the owner's address once known.
struct Killed(Child, Option<String>);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tempfile_dir() -> Res<PathBuf> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (cluster, admin) = match std::env::var("SWARM_BENCH_DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => match start_cluster() {
            Ok((cluster, url)) => (Some(cluster), url),
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let outcome = runtime.block_on(run(args, admin));
    drop(runtime);
    drop(cluster);
    match outcome {
        Ok(rows) => {
            println!("| figure | value | note |\n|---|---|---|");
            for [figure, value, note] in rows {
                println!("| {figure} | {value} | {note} |");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

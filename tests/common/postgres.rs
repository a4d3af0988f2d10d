//! A throwaway PostgreSQL for the tests: one cluster per test binary, made with the
//! system's `initdb` and run with `postgres` in a temporary directory (as the `postgres`
//! user when the tests run as root), listening on 127.0.0.1 on a free port; each test
//! gets a database of its own. `SWARM_TEST_DATABASE_URL` (a superuser's URL) is used
//! instead when set. The cluster is stopped and its directory removed when the test binary
//! exits, and dies with it if it is killed.

use std::{
    io::{BufRead, BufReader},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use claude_swarm::pb;
use tokio::sync::Notify;
use tonic::transport::Channel;

use super::BIN;

/// The running cluster: its process and directory, and a superuser's URL of a database to
/// create the tests' databases from.
struct Cluster {
    base_url: String,
    /// `None` when `SWARM_TEST_DATABASE_URL` points at a server of someone else's.
    own: Option<(Child, PathBuf)>,
}

static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(1);

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("PostgreSQL is installed (scripts/setup installs Debian's `postgresql`)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// The uid and gid of `postgres`, when we are root and must run the server as someone else.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam returns a static record or null.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let user = libc::getpwnam(c"postgres".as_ptr());
        assert!(!user.is_null(), "running as root needs a `postgres` user");
        Some(((*user).pw_uid, (*user).pw_gid))
    }
}

/// `program` as the server's user, dying with this process (SIGQUIT: an immediate stop).
fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After setuid, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    command
}

extern "C" fn stop_cluster() {
    let Some(cluster) = CLUSTER.get() else { return };
    let Ok(mut cluster) = cluster.lock() else {
        return;
    };
    if let Some((mut child, dir)) = cluster.own.take() {
        // SIGINT: a fast shutdown (clients are disconnected, nothing is written).
        // SAFETY: kill has no memory effects.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn start() -> Cluster {
    if let Ok(url) = std::env::var("SWARM_TEST_DATABASE_URL") {
        return Cluster {
            base_url: url,
            own: None,
        };
    }
    let bin = bin_dir();
    let user = run_as();
    let dir = tempfile::Builder::new()
        .prefix("swarm-pg-")
        .tempdir()
        .unwrap()
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let data = dir.join("data");
    let out = command(&bin.join("initdb"), user)
        .args([
            "--auth=trust",
            "--username=swarm",
            "--no-sync",
            "--encoding=UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = command(&bin.join("postgres"), user);
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        // English log lines: readiness is read from them.
        .args(["-c", "lc_messages=C"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // The server dies with the thread that started it (PR_SET_PDEATHSIG): one that lives as
    // long as the test binary, not the test that happened to come first.
    let (started, child) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            started.send(server.spawn()).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    let mut child = child.recv().unwrap().unwrap();
    // Ready once the server says so in its log; the log is read to its end, so the server
    // never blocks on a full pipe.
    let log = child.stderr.take().unwrap();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(log)).map_while(Result::ok) {
            if line.contains("ready to accept connections") {
                let _ = ready_tx.send(());
            }
        }
    });
    // SAFETY: registering a plain function with no captured state.
    unsafe {
        libc::atexit(stop_cluster);
    }
    let base_url = format!("postgres://swarm@127.0.0.1:{port}/postgres");
    ready
        .recv_timeout(Duration::from_secs(30))
        .expect("the test cluster did not say it was ready within 30 s");
    if let Err(e) = postgres::Client::connect(&base_url, postgres::NoTls) {
        panic!("the test cluster is ready but refuses connections: {e}");
    }
    Cluster {
        base_url,
        own: Some((child, dir)),
    }
}

/// A new, empty database on the test cluster: its URL. Blocking (call it off the runtime).
pub fn database() -> String {
    let cluster = CLUSTER.get_or_init(|| Mutex::new(start()));
    let base = cluster.lock().unwrap().base_url.clone();
    let name = format!(
        "swarm_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (server, _) = base
        .rsplit_once('/')
        .expect("SWARM_TEST_DATABASE_URL names a database");
    format!("{server}/{name}")
}

/// A new database, from async code.
pub async fn database_async() -> String {
    tokio::task::spawn_blocking(database).await.unwrap()
}

/// One `claude-swarm serve` node on a PostgreSQL store, with the simulated agent; killed
/// when dropped. Its port opens at once; until it owns the database it forwards there.
pub struct Node {
    child: Child,
    pub name: String,
    /// Signalled (a permit kept until taken) each time it logs that it owns the database.
    owner: Arc<Notify>,
    /// The address, logged when it listens (again once it owns the database).
    logged: std::sync::mpsc::Receiver<String>,
    address: std::sync::OnceLock<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Node {
    /// Starts node `name` on `url` with `args` added.
    pub fn spawn(url: &str, name: &str, args: &[&str]) -> Self {
        Self::spawn_with(url, name, args, &[])
    }

    /// [`Node::spawn`] with `env` set too.
    pub fn spawn_with(url: &str, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        super::install_tls_provider();
        let mut child = Command::new(BIN)
            .args(["serve", "--agent", "simulated", "--listen", "127.0.0.1:0"])
            .args(["--node-name", name])
            .args(args)
            .envs(env.iter().copied())
            .env("SWARM_STORE", url)
            .env("SWARM_LOG", "claude_swarm=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let owner = Arc::new(Notify::new());
        let owned = owner.clone();
        // Shown with the test's output (on failure) when SWARM_TEST_NODE_LOG is set.
        let echo = std::env::var_os("SWARM_TEST_NODE_LOG").map(|_| name.to_owned());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(name) = &echo {
                    println!("[{name}] {line}");
                }
                if let Some(address) = line.split("address=").nth(1) {
                    let address = address.split_whitespace().next().unwrap_or_default();
                    let _ = address_tx.send(address.to_owned());
                }
                // Logged once it owns the database and has stopped forwarding its port.
                if line.contains("serving gRPC, grpc-web and REST") {
                    owned.notify_one();
                }
            }
        });
        Self {
            child,
            name: name.to_owned(),
            owner,
            logged: address_rx,
            address: std::sync::OnceLock::new(),
        }
    }

    /// Where the node listens (`ip:port`), once it has said so.
    pub fn address(&self) -> String {
        self.address
            .get_or_init(|| {
                tokio::task::block_in_place(|| self.logged.recv_timeout(Duration::from_secs(30)))
                    .expect("the node logs its address when it listens")
            })
            .clone()
    }

    /// Waits until this node owns the database (at most `limit`), then connects to it.
    pub async fn serving(&self, limit: Duration) -> Channel {
        tokio::time::timeout(limit, self.owner.notified())
            .await
            .unwrap_or_else(|_| panic!("node {} took over within {limit:?}", self.name));
        self.connect().await
    }

    /// A channel to the node's port, whether it owns the database or forwards there.
    pub async fn connect(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address()))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory effects; the child is ours and not yet waited for.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the node to exit (at most `limit`): its status code. The wait is on a
    /// pidfd, which turns readable when the process ends, so nothing is polled.
    pub fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        if let Some(status) = self.child.try_wait().unwrap() {
            return status.code();
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; the
        // child is ours and not yet waited for, so its pid is still its own.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid(), 0) };
        assert!(raw >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        // SAFETY: a descriptor just opened for us, owned by nothing else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        let mut ended = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd of ours, alive for the whole call.
        let ready = unsafe { libc::poll(&mut ended, 1, millis) };
        assert!(
            ready >= 0,
            "poll on node {}'s pidfd: {}",
            self.name,
            std::io::Error::last_os_error()
        );
        assert!(
            ready > 0,
            "node {} did not exit within {limit:?}",
            self.name
        );
        self.child.wait().unwrap().code()
    }
}

/// Waits until one of `nodes` owns the database (at most `limit`): which, and a channel to it.
pub async fn new_owner(nodes: &[Node], limit: Duration) -> (usize, Channel) {
    let mut waits = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let owner = node.owner.clone();
        waits.spawn(async move {
            owner.notified().await;
            i
        });
    }
    // The other waits are aborted with the set; a signal one of them took is passed on.
    let index = tokio::time::timeout(limit, waits.join_next())
        .await
        .unwrap_or_else(|_| panic!("no node took over within {limit:?}"))
        .expect("a node to wait on")
        .unwrap();
    (index, nodes[index].connect().await)
}

/// Every event of the swarm after `after`, as far as one connection replays them.
pub async fn events_until(
    channel: &Channel,
    after: u64,
    mut done: impl FnMut(&[pb::Event]) -> bool,
) -> Vec<pb::Event> {
    use tokio_stream::StreamExt;
    let mut client = pb::event_service_client::EventServiceClient::new(channel.clone());
    let request = pb::StreamEventsRequest {
        after_sequence: Some(after),
        ..Default::default()
    };
    let mut stream = client.stream_events(request).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("events keep coming")
    {
        seen.push(event.unwrap());
        if done(&seen) {
            break;
        }
    }
    seen
}

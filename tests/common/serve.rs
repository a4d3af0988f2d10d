//! `claude-swarm serve` as a child process on a data directory, for what crosses a process's
//! life: SIGKILL, SIGTERM, restarts.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use claude_swarm::pb::{self, task_service_client::TaskServiceClient};
use tonic::transport::Channel;

use super::BIN;

/// A `claude-swarm serve` child with the simulated agent on a free port; killed if dropped
/// while it runs (a failed test leaves no server behind).
pub struct Served {
    child: Child,
    pub channel: Channel,
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Served {
    /// Starts the server on `data` with `args` added; ready once it logged its address.
    pub async fn start(data: &Path, args: &[&str]) -> Self {
        super::install_tls_provider();
        let mut child = Command::new(BIN)
            .args(["serve", "--agent", "simulated", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .env("SWARM_LOG", "claude_swarm=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in stderr.lines().map_while(Result::ok) {
                if !sent && let Some(address) = line.split("address=").nth(1) {
                    let address = address
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(address);
                    sent = true;
                }
            }
        });
        let address = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the server logs its address when it listens");
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self { child, channel }
    }

    /// SIGKILL: the server runs no code of its own on the way out.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits for a clean exit (on a multi-threaded runtime).
    pub fn terminate(mut self) {
        // SAFETY: kill has no memory effects; the child is ours and not yet waited for.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = tokio::task::block_in_place(|| self.child.wait()).unwrap();
        assert!(status.success(), "a clean exit after SIGTERM: {status}");
    }

    pub async fn pid_of(&self, id: &str) -> u32 {
        super::pid_on(&self.channel, id).await
    }

    pub fn tasks(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel.clone())
    }

    pub async fn submit(&self, spec: pb::TaskSpec) -> pb::Task {
        super::submit_on(&self.channel, spec).await
    }

    pub async fn get(&self, id: &str) -> pb::Task {
        super::get_on(&self.channel, id).await
    }

    /// The first event of task `id` of one of `kinds` (replayed if it already happened).
    pub async fn event(&self, id: &str, kinds: &[pb::EventKind]) -> pb::Event {
        super::first_event(&self.channel, id, kinds).await
    }

    /// Waits for the task's terminal event, then reads it.
    pub async fn wait(&self, id: &str) -> pb::Task {
        self.event(id, &super::TERMINAL).await;
        self.get(id).await
    }

    pub async fn all_tasks(&self) -> HashMap<String, pb::Task> {
        let mut tasks = HashMap::new();
        let mut token = String::new();
        loop {
            let request = pb::ListTasksRequest {
                limit: 1000,
                page_token: token.clone(),
                ..Default::default()
            };
            let page = self.tasks().list_tasks(request).await.unwrap().into_inner();
            tasks.extend(page.tasks.into_iter().map(|t| (t.id.clone(), t)));
            if page.next_page_token.is_empty() {
                return tasks;
            }
            token = page.next_page_token;
        }
    }
}

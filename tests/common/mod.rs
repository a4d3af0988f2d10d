//! A real server on 127.0.0.1:0 with the simulated agent (or another), and tonic clients
//! for it; `serve` runs one as a `claude-swarm serve` child process instead.
#![allow(dead_code)]

pub mod fake_api;
pub mod postgres;
pub mod real_cli;
pub mod serve;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use claude_swarm::{
    agent::{AgentCommand, ProcessAgent},
    api::server,
    config::SIMULATE_AGENT,
    engine::{Engine, EngineConfig, ports::Agent},
    pb::{
        self, event_service_client::EventServiceClient,
        instance_service_client::InstanceServiceClient, swarm_service_client::SwarmServiceClient,
        task_service_client::TaskServiceClient, workflow_service_client::WorkflowServiceClient,
    },
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_claude-swarm");

pub fn simulated_agent() -> ProcessAgent {
    ProcessAgent::new(simulated_command())
}

/// The simulated agent's command, for a test to change.
pub fn simulated_command() -> AgentCommand {
    AgentCommand {
        program: BIN.into(),
        leading_args: vec![SIMULATE_AGENT.into()],
        label: "simulated".into(),
        stop_grace: Duration::from_secs(2),
        env: Vec::new(),
        long_lived: false,
        keep_worktrees: false,
        memory_limit: None,
        accounts: Default::default(),
        workspace_root: None,
    }
}

pub fn config(instances: usize) -> EngineConfig {
    EngineConfig {
        initial_instances: instances,
        max_instances: 8,
        ..EngineConfig::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: EngineConfig) -> Self {
        Self::start_with_agent(config, simulated_agent()).await
    }

    /// A server whose tasks run on `agent`.
    pub async fn start_with_agent(config: EngineConfig, agent: impl Agent) -> Self {
        Self::start_with_options(config, agent, server::ServerOptions::default()).await
    }

    /// A server with explicit HTTP options (allowed hosts, CORS origins, workspace root).
    pub async fn start_with_options(
        config: EngineConfig,
        agent: impl Agent,
        options: server::ServerOptions,
    ) -> Self {
        install_tls_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let engine = Engine::start(config, Arc::new(agent));
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve_with(listener, engine, options, async {
            let _ = stopped.await;
        }));
        // The listener is bound already: connecting needs no wait.
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            addr,
            channel,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn tasks(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel.clone())
    }

    pub fn instances(&self) -> InstanceServiceClient<Channel> {
        InstanceServiceClient::new(self.channel.clone())
    }

    pub fn workflows(&self) -> WorkflowServiceClient<Channel> {
        WorkflowServiceClient::new(self.channel.clone())
    }

    pub fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel.clone())
    }

    pub fn swarm(&self) -> SwarmServiceClient<Channel> {
        SwarmServiceClient::new(self.channel.clone())
    }

    pub async fn submit(&self, spec: pb::TaskSpec) -> pb::Task {
        submit_on(&self.channel, spec).await
    }

    pub async fn get(&self, id: &str) -> pb::Task {
        get_on(&self.channel, id).await
    }

    /// Waits for the task's terminal event (replayed if it already happened), then reads it.
    pub async fn wait(&self, id: &str) -> pb::Task {
        let event = first_event(&self.channel, id, &TERMINAL).await;
        assert_eq!(event.task_id, id);
        self.get(id).await
    }

    /// Waits for the first event matching `kind` for this task.
    pub async fn wait_for(&self, id: &str, kind: pb::EventKind) -> pb::Event {
        first_event(&self.channel, id, &[kind]).await
    }

    /// Cancels a task and returns it as the cancel left it.
    pub async fn cancel(&self, id: &str) -> pb::Task {
        self.tasks()
            .cancel_task(pb::CancelTaskRequest { task_id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// The pid of the agent running `id`, once its first output line has arrived (the pid
    /// is recorded before any output is forwarded).
    pub async fn pid_of(&self, id: &str) -> u32 {
        pid_on(&self.channel, id).await
    }

    /// Waits for the server to end on its own and returns how it ended.
    pub async fn join(mut self) -> std::io::Result<()> {
        self.handle.take().unwrap().await.unwrap()
    }

    /// Stops the server the way a signal would, and waits for it to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap().unwrap();
    }
}

/// The events that end a task.
pub const TERMINAL: [pb::EventKind; 4] = [
    pb::EventKind::TaskCompleted,
    pb::EventKind::TaskFailed,
    pb::EventKind::TaskCancelled,
    pb::EventKind::TaskSkipped,
];

/// The first event of task `id` of one of `kinds`, replayed if it already happened.
/// Submits one task on `channel` and returns it as accepted.
pub async fn submit_on(channel: &Channel, spec: pb::TaskSpec) -> pb::Task {
    TaskServiceClient::new(channel.clone())
        .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
}

pub async fn get_on(channel: &Channel, id: &str) -> pb::Task {
    TaskServiceClient::new(channel.clone())
        .get_task(pb::GetTaskRequest { task_id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// The pid the instance running `id` reports, once the task has printed a line (the pid
/// is recorded before any output is forwarded).
pub async fn pid_on(channel: &Channel, id: &str) -> u32 {
    first_event(channel, id, &[pb::EventKind::TaskOutput]).await;
    let instance_id = get_on(channel, id).await.instance_id;
    InstanceServiceClient::new(channel.clone())
        .get_instance(pb::GetInstanceRequest { instance_id })
        .await
        .unwrap()
        .into_inner()
        .pid
}

pub async fn first_event(channel: &Channel, id: &str, kinds: &[pb::EventKind]) -> pb::Event {
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        task_id: id.into(),
        kinds: kinds.iter().map(|k| *k as i32).collect(),
        ..Default::default()
    };
    let mut stream = EventServiceClient::new(channel.clone())
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
        Ok(event) => event.unwrap().expect("an event"),
        // Say where the task stands: a rare miss is then read from the log, not guessed.
        Err(_) => {
            let task = get_on(channel, id).await;
            panic!("an event of {kinds:?} for {id} within 30s; the task is {task:?}")
        }
    }
}

pub fn spec(prompt: &str) -> pb::TaskSpec {
    pb::TaskSpec {
        prompt: prompt.into(),
        ..Default::default()
    }
}

pub fn status(task: &pb::Task) -> pb::TaskStatus {
    pb::TaskStatus::try_from(task.status).unwrap()
}

/// True while any process of the group led by `pid` is alive.
pub fn group_alive(pid: u32) -> bool {
    unsafe { libc::kill(-(pid as i32), 0) == 0 }
}

/// reqwest is built with rustls and no crypto provider of its own (the server's webhooks
/// pick ring), so a test's HTTP client needs the process-wide one installed before it is
/// made; every server a test starts does it first. Installing twice is a no-op.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

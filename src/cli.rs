//! The command line: `serve`, `run` (a workflow in-process), and client subcommands that
//! talk to a running server over gRPC. Tables for people, `--json` for scripts.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::{
    api::{convert, server},
    config::{Config, Overrides},
    engine::{EngineError, events::EventFilter, scheduler::TaskQuery, task::Priority},
    pb::{
        self, event_service_client::EventServiceClient,
        instance_service_client::InstanceServiceClient, swarm_service_client::SwarmServiceClient,
        task_service_client::TaskServiceClient, workflow_service_client::WorkflowServiceClient,
    },
    workflow,
};

#[derive(Parser, Debug)]
#[command(
    name = "claude-swarm",
    version,
    about = "Run a pool of Claude Code agents over a queue of prompts"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Server to talk to (client subcommands).
    #[arg(
        long,
        global = true,
        env = "SWARM_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve gRPC, grpc-web and REST on one port.
    Serve {
        /// Address to listen on [default: 127.0.0.1:50051].
        #[arg(long, env = "SWARM_LISTEN")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Run a workflow file in this process, end to end; exits non-zero if a task did not complete.
    Run {
        file: PathBuf,
        /// Set a workflow variable (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Show the swarm's status.
    Status,
    /// Submit one task.
    Submit {
        prompt: String,
        #[arg(long)]
        name: Option<String>,
        /// low, normal, high or critical.
        #[arg(long, default_value = "normal")]
        priority: String,
        /// Seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Task ids that must complete first.
        #[arg(long = "depends-on")]
        depends_on: Vec<String>,
        #[arg(long)]
        working_directory: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Wait for the task to finish and print it.
        #[arg(long)]
        wait: bool,
    },
    /// List, show or cancel tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// List, spawn, scale or terminate instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Run, show, list or cancel workflows on the server.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Print events as they happen.
    Watch {
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        instance: Option<String>,
        /// Replay retained events after this sequence number first.
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    List {
        /// Only tasks in this state (repeatable).
        #[arg(long)]
        status: Vec<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Get {
        id: String,
    },
    Cancel {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum InstanceCommand {
    List,
    Spawn {
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long)]
        working_directory: Option<String>,
    },
    Scale {
        target: i32,
    },
    Terminate {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum WorkflowCommand {
    /// Submit a workflow file and follow it to its end.
    Run {
        file: PathBuf,
        /// Set a workflow variable (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Check a workflow file without running anything (locally; no server needed).
    Validate {
        file: PathBuf,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    Get {
        id: String,
    },
    List,
    Cancel {
        id: String,
    },
}

impl Cli {
    /// Talks to a server (as opposed to being one, or running a workflow in-process).
    pub fn is_client(&self) -> bool {
        !matches!(self.command, Command::Serve { .. } | Command::Run { .. })
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

pub async fn main(cli: Cli) -> ExitCode {
    let json = cli.json;
    let outcome = match cli.command {
        Command::Serve { listen, overrides } => serve(listen, &overrides).await,
        Command::Run {
            file,
            vars,
            overrides,
        } => run_local(&file, &vars, &overrides, json).await,
        Command::Workflow(WorkflowCommand::Validate { file, vars }) => validate(&file, &vars),
        command => client(command, &cli.server, json).await,
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {e}"),
            }
            ExitCode::from(2)
        }
    }
}

async fn serve(listen: Option<SocketAddr>, overrides: &Overrides) -> CliResult {
    let config = Config::load(overrides, listen)?;
    let agent = config.agent()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let engine = config.start_engine(Arc::new(agent), crate::config::default_data_dir())?;
    tracing::info!(address = %listener.local_addr()?, agent = ?config.agent, "serving gRPC, grpc-web and REST");
    let options = server::ServerOptions {
        workspace_root: config.engine.working_directory.clone(),
        cors_origins: config.cors_origins.clone(),
    };
    server::serve_with(listener, engine, options, server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `NAME=VALUE` of `--var`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// Reads and checks a workflow file; errors name the file, the field, the line and column.
fn load_workflow(
    file: &PathBuf,
    vars: &[(String, String)],
) -> Result<(String, workflow::WorkflowPlan), String> {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let vars = vars.iter().cloned().collect();
    let plan = workflow::parse(&yaml, &vars).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((yaml, plan))
}

fn validate(file: &PathBuf, vars: &[(String, String)]) -> CliResult {
    let (_, plan) = load_workflow(file, vars)?;
    println!(
        "{}: workflow {:?} is valid, {} tasks",
        file.display(),
        plan.name,
        plan.tasks.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_local(
    file: &PathBuf,
    vars: &[(String, String)],
    overrides: &Overrides,
    json: bool,
) -> CliResult {
    let config = Config::load(overrides, None)?;
    let (_, plan) = load_workflow(file, vars)?;
    let agent = config.agent()?;
    let engine = config.start_engine(Arc::new(agent), None)?;
    let info = engine.execute_workflow(plan).await?;
    let filter = EventFilter {
        workflow_id: Some(info.id.clone()),
        ..EventFilter::default()
    };
    let mut subscription = engine.subscribe(Some(0), filter).await?;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Some(Ok(event)) = subscription.next().await {
            if tx.send(pb::Event::from(event.as_ref())).await.is_err() {
                break;
            }
        }
    });
    let finished = follow_workflow(rx, &info.id, json).await;
    let query = TaskQuery {
        workflow_id: Some(info.id.clone()),
        limit: 1000,
        ..TaskQuery::default()
    };
    let mut tasks = Vec::new();
    let mut page = engine.list_tasks(query.clone()).await?;
    loop {
        tasks.extend(page.tasks.iter().map(pb::Task::from));
        let Some(token) = page.next_page_token else {
            break;
        };
        page = engine
            .list_tasks(TaskQuery {
                page_token: Some(token),
                ..query.clone()
            })
            .await?;
    }
    engine.shutdown(std::time::Duration::from_secs(10)).await;
    report_workflow(finished?, &tasks, json)
}

/// Prints progress for a workflow's events until it finishes; returns its final state.
async fn follow_workflow(
    mut events: mpsc::Receiver<pb::Event>,
    workflow_id: &str,
    quiet: bool,
) -> Result<pb::Workflow, EngineError> {
    use pb::{EventKind as K, event::Payload};
    while let Some(event) = events.recv().await {
        let kind = K::try_from(event.kind).unwrap_or(K::Unspecified);
        match (kind, event.payload) {
            (K::WorkflowFinished, Some(Payload::Workflow(w))) if w.id == workflow_id => {
                return Ok(w);
            }
            (
                K::TaskStarted
                | K::TaskCompleted
                | K::TaskFailed
                | K::TaskCancelled
                | K::TaskRetrying
                | K::TaskSkipped,
                Some(Payload::Task(t)),
            ) if !quiet => {
                let detail = match kind {
                    K::TaskStarted if t.instance_id.is_empty() => "one task per item".to_string(),
                    K::TaskStarted => format!("on {}", t.instance_id),
                    K::TaskCompleted => format!("in {} for ${:.4}", duration(&t), cost(&t)),
                    _ => t.error.clone(),
                };
                eprintln!(
                    "[{:>5}] {:<10} {}  {}",
                    event.sequence,
                    status_word(t.status),
                    t.name,
                    detail
                );
            }
            _ => {}
        }
    }
    Err(EngineError::Unavailable(
        "the event stream ended before the workflow finished".into(),
    ))
}

fn report_workflow(workflow: pb::Workflow, tasks: &[pb::Task], json: bool) -> CliResult {
    if json {
        let doc = serde_json::json!({ "workflow": workflow, "tasks": tasks });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_tasks(tasks);
        println!(
            "\nworkflow {} ({}): {} in {:.1}s, ${:.4}",
            workflow.name,
            workflow.id,
            workflow_word(workflow.status),
            seconds_between(workflow.created_at.as_ref(), workflow.completed_at.as_ref()),
            workflow.total_cost_usd
        );
    }
    Ok(if workflow.status == pb::WorkflowStatus::Completed as i32 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn client(command: Command, server: &str, json: bool) -> CliResult {
    let channel = Channel::from_shared(server.to_owned())
        .map_err(|e| format!("--server {server:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach the server at {server}: {e}"))?;
    let mut tasks = TaskServiceClient::new(channel.clone());
    let mut instances = InstanceServiceClient::new(channel.clone());
    let mut workflows = WorkflowServiceClient::new(channel.clone());
    match command {
        Command::Serve { .. }
        | Command::Run { .. }
        | Command::Workflow(WorkflowCommand::Validate { .. }) => {
            unreachable!("handled by main")
        }
        Command::Status => {
            let status = SwarmServiceClient::new(channel)
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner();
            print(json, &status, |s| {
                let i = s.instances.unwrap_or_default();
                let t = s.tasks.unwrap_or_default();
                let q = s.queue.unwrap_or_default();
                println!(
                    "claude-swarm {} (agent: {}), up {:.0}s",
                    s.version, s.agent, s.uptime_seconds
                );
                println!(
                    "instances: {} idle, {} busy, {} stopping ({} of max {})",
                    i.idle, i.busy, i.stopping, i.total, i.max
                );
                println!(
                    "tasks:     {} pending, {} queued, {} running, {} completed, {} failed, {} cancelled, {} skipped",
                    t.pending, t.queued, t.running, t.completed, t.failed, t.cancelled, t.skipped
                );
                println!(
                    "queue:     {} critical, {} high, {} normal, {} low",
                    q.critical, q.high, q.normal, q.low
                );
                println!(
                    "workflows: {} running; total cost ${:.4}",
                    s.workflows_running, s.total_cost_usd
                );
            })?;
        }
        Command::Submit {
            prompt,
            name,
            priority,
            timeout,
            depends_on,
            working_directory,
            model,
            wait,
        } => {
            let priority = Priority::parse(&priority).ok_or_else(|| {
                format!("--priority {priority:?} is not one of low, normal, high, critical")
            })?;
            let spec = pb::TaskSpec {
                prompt,
                name: name.unwrap_or_default(),
                priority: convert::priority_to_pb(priority) as i32,
                timeout: timeout.unwrap_or(0.0),
                depends_on,
                working_directory: working_directory.unwrap_or_default(),
                model: model.unwrap_or_default(),
                ..Default::default()
            };
            let reply = tasks
                .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
                .await?
                .into_inner();
            let mut task = reply.task.unwrap_or_default();
            if wait {
                let request = pb::StreamEventsRequest {
                    after_sequence: Some(0),
                    task_id: task.id.clone(),
                    kinds: [
                        K::TaskCompleted,
                        K::TaskFailed,
                        K::TaskCancelled,
                        K::TaskSkipped,
                    ]
                    .map(|k| k as i32)
                    .to_vec(),
                    ..Default::default()
                };
                use pb::EventKind as K;
                let mut stream = EventServiceClient::new(channel)
                    .stream_events(request)
                    .await?
                    .into_inner();
                stream.message().await?;
                task = tasks
                    .get_task(pb::GetTaskRequest { task_id: task.id })
                    .await?
                    .into_inner();
                print(json, &task, print_task)?;
                return Ok(if task.status == pb::TaskStatus::Completed as i32 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            print(json, &task, |t| println!("{}", t.id))?;
        }
        Command::Task(TaskCommand::List {
            status,
            workflow,
            limit,
        }) => {
            let status = status
                .iter()
                .map(|s| {
                    parse_status(s).ok_or_else(|| format!("--status {s:?} is not a task state"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let request = pb::ListTasksRequest {
                status,
                workflow_id: workflow.unwrap_or_default(),
                limit,
                ..Default::default()
            };
            let page = tasks.list_tasks(request).await?.into_inner();
            print(json, &page, |p| print_tasks(&p.tasks))?;
        }
        Command::Task(TaskCommand::Get { id }) => {
            let task = tasks
                .get_task(pb::GetTaskRequest { task_id: id })
                .await?
                .into_inner();
            print(json, &task, print_task)?;
        }
        Command::Task(TaskCommand::Cancel { id }) => {
            let task = tasks
                .cancel_task(pb::CancelTaskRequest { task_id: id })
                .await?
                .into_inner();
            print(json, &task, print_task)?;
        }
        Command::Instance(InstanceCommand::List) => {
            let list = instances
                .list_instances(pb::ListInstancesRequest {})
                .await?
                .into_inner();
            print(json, &list, |l| print_instances(&l.instances))?;
        }
        Command::Instance(InstanceCommand::Spawn {
            count,
            working_directory,
        }) => {
            let request = pb::SpawnInstancesRequest {
                count,
                working_directory: working_directory.unwrap_or_default(),
            };
            let list = instances.spawn_instances(request).await?.into_inner();
            print(json, &list, |l| print_instances(&l.instances))?;
        }
        Command::Instance(InstanceCommand::Scale { target }) => {
            let list = instances
                .scale_instances(pb::ScaleInstancesRequest { target })
                .await?
                .into_inner();
            print(json, &list, |l| print_instances(&l.instances))?;
        }
        Command::Instance(InstanceCommand::Terminate { id }) => {
            let instance = instances
                .terminate_instance(pb::TerminateInstanceRequest { instance_id: id })
                .await?
                .into_inner();
            print(json, &instance, |i| {
                print_instances(std::slice::from_ref(i))
            })?;
        }
        Command::Workflow(WorkflowCommand::Run { file, vars }) => {
            let yaml = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let variables = vars.into_iter().collect();
            let reply = workflows
                .execute_workflow(pb::ExecuteWorkflowRequest { yaml, variables })
                .await?
                .into_inner();
            let request = pb::StreamEventsRequest {
                after_sequence: Some(0),
                workflow_id: reply.workflow_id.clone(),
                ..Default::default()
            };
            let mut stream = EventServiceClient::new(channel)
                .stream_events(request)
                .await?
                .into_inner();
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(async move {
                while let Ok(Some(event)) = stream.message().await {
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            });
            let finished = follow_workflow(rx, &reply.workflow_id, json).await?;
            let request = pb::ListTasksRequest {
                workflow_id: finished.id.clone(),
                limit: 1000,
                ..Default::default()
            };
            let mut all = Vec::new();
            let mut page = tasks.list_tasks(request.clone()).await?.into_inner();
            loop {
                all.append(&mut page.tasks);
                if page.next_page_token.is_empty() {
                    break;
                }
                let next = pb::ListTasksRequest {
                    page_token: page.next_page_token.clone(),
                    ..request.clone()
                };
                page = tasks.list_tasks(next).await?.into_inner();
            }
            return report_workflow(finished, &all, json);
        }
        Command::Workflow(WorkflowCommand::Get { id }) => {
            let w = workflows
                .get_workflow(pb::GetWorkflowRequest { workflow_id: id })
                .await?
                .into_inner();
            print(json, &w, |w| print_workflows(std::slice::from_ref(w)))?;
        }
        Command::Workflow(WorkflowCommand::List) => {
            let list = workflows
                .list_workflows(pb::ListWorkflowsRequest {})
                .await?
                .into_inner();
            print(json, &list, |l| print_workflows(&l.workflows))?;
        }
        Command::Workflow(WorkflowCommand::Cancel { id }) => {
            let w = workflows
                .cancel_workflow(pb::CancelWorkflowRequest { workflow_id: id })
                .await?
                .into_inner();
            print(json, &w, |w| print_workflows(std::slice::from_ref(w)))?;
        }
        Command::Watch {
            task,
            workflow,
            instance,
            after,
        } => {
            let request = pb::StreamEventsRequest {
                after_sequence: after,
                task_id: task.unwrap_or_default(),
                workflow_id: workflow.unwrap_or_default(),
                instance_id: instance.unwrap_or_default(),
                kinds: Vec::new(),
            };
            let mut stream = EventServiceClient::new(channel)
                .stream_events(request)
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                print(json, &event, print_event)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// JSON (the protobuf JSON mapping, proto field names) or the human form.
fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T),
) -> Result<(), serde_json::Error> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        human(value);
    }
    Ok(())
}

fn parse_status(word: &str) -> Option<i32> {
    let word = word.to_ascii_uppercase();
    let word = word
        .strip_prefix("TASK_STATUS_")
        .unwrap_or(&word)
        .to_owned();
    pb::TaskStatus::from_str_name(&format!("TASK_STATUS_{word}")).map(|s| s as i32)
}

fn status_word(status: i32) -> String {
    pb::TaskStatus::try_from(status).map_or("?".into(), |s| {
        s.as_str_name()
            .trim_start_matches("TASK_STATUS_")
            .to_lowercase()
    })
}

fn workflow_word(status: i32) -> String {
    pb::WorkflowStatus::try_from(status).map_or("?".into(), |s| {
        s.as_str_name()
            .trim_start_matches("WORKFLOW_STATUS_")
            .to_lowercase()
    })
}

fn instance_word(status: i32) -> String {
    pb::InstanceStatus::try_from(status).map_or("?".into(), |s| {
        s.as_str_name()
            .trim_start_matches("INSTANCE_STATUS_")
            .to_lowercase()
    })
}

fn seconds_between(
    from: Option<&pbjson_types::Timestamp>,
    to: Option<&pbjson_types::Timestamp>,
) -> f64 {
    match (from, to) {
        (Some(a), Some(b)) => (b.seconds - a.seconds) as f64 + f64::from(b.nanos - a.nanos) / 1e9,
        _ => 0.0,
    }
}

fn duration(task: &pb::Task) -> String {
    match (&task.started_at, &task.completed_at) {
        (Some(_), Some(_)) => format!(
            "{:.1}s",
            seconds_between(task.started_at.as_ref(), task.completed_at.as_ref())
        ),
        _ => "-".into(),
    }
}

fn cost(task: &pb::Task) -> f64 {
    task.result.as_ref().map_or(0.0, |r| r.cost_usd)
}

/// The first line of `text`, cut to `max` characters.
fn head(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max - 1).collect::<String>())
    } else {
        line.to_owned()
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_tasks(tasks: &[pb::Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let outcome = t
                .result
                .as_ref()
                .filter(|_| t.error.is_empty())
                .map_or(t.error.as_str(), |r| r.text.as_str());
            vec![
                t.id.clone(),
                head(&t.name, 24),
                status_word(t.status),
                duration(t),
                format!("${:.4}", cost(t)),
                head(outcome, 60),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "STATUS", "DURATION", "COST", "RESULT"],
        &rows,
    );
}

fn print_task(t: &pb::Task) {
    println!("id:        {}", t.id);
    println!("name:      {}", t.name);
    println!("status:    {}", status_word(t.status));
    println!("instance:  {}", t.instance_id);
    if !t.workflow_id.is_empty() {
        println!("workflow:  {}", t.workflow_id);
    }
    println!("duration:  {}", duration(t));
    if let Some(r) = &t.result {
        println!("session:   {}", r.session_id);
        println!("cost:      ${:.6} over {} turn(s)", r.cost_usd, r.num_turns);
        println!("result:    {}", r.text);
    }
    if !t.error.is_empty() {
        println!("error:     {}", t.error);
    }
}

fn print_instances(instances: &[pb::Instance]) {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                instance_word(i.status),
                i.current_task_id.clone(),
                i.tasks_completed.to_string(),
                i.tasks_failed.to_string(),
                format!("${:.4}", i.total_cost_usd),
            ]
        })
        .collect();
    table(
        &["ID", "STATUS", "TASK", "COMPLETED", "FAILED", "COST"],
        &rows,
    );
}

fn print_workflows(workflows: &[pb::Workflow]) {
    let rows: Vec<Vec<String>> = workflows
        .iter()
        .map(|w| {
            let c = w.task_counts.unwrap_or_default();
            vec![
                w.id.clone(),
                head(&w.name, 30),
                workflow_word(w.status),
                format!("{}/{}", c.completed, w.task_ids.len()),
                format!("${:.4}", w.total_cost_usd),
            ]
        })
        .collect();
    table(&["ID", "NAME", "STATUS", "COMPLETED", "COST"], &rows);
}

fn print_event(e: &pb::Event) {
    use pb::event::Payload;
    let kind = pb::EventKind::try_from(e.kind).map_or("?".into(), |k| {
        k.as_str_name()
            .trim_start_matches("EVENT_KIND_")
            .to_lowercase()
    });
    let detail = match &e.payload {
        Some(Payload::Task(t)) => format!("{} {}", t.name, t.error),
        Some(Payload::Instance(i)) => instance_word(i.status),
        Some(Payload::Workflow(w)) => format!("{} {}", w.name, workflow_word(w.status)),
        Some(Payload::Output(o)) => format!("{} {}", o.message_type, head(&o.text, 80)),
        None => String::new(),
    };
    let subject = [&e.task_id, &e.instance_id, &e.workflow_id]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    println!(
        "{:>6} {:<24} {:<36} {}",
        e.sequence,
        kind,
        subject,
        detail.trim()
    );
}

//! The client subcommands: one gRPC call each (or a stream), printed as a table or JSON.

use std::{path::Path, process::ExitCode};

use tokio::sync::mpsc;
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, errors::InvalidMetadataValue},
    service::Interceptor,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{
    CliResult, Command, InstanceCommand, TaskCommand, WorkflowCommand,
    audit::{AuditArgs, audit},
    print::{
        print, print_accounts, print_event, print_instances, print_task, print_tasks,
        print_workflows,
    },
    workflow::{follow_workflow, report_workflow},
};
use crate::{
    api::convert,
    engine::{Priority, TaskStatus},
    pb::{
        self, approval_service_client::ApprovalServiceClient,
        audit_service_client::AuditServiceClient, event_service_client::EventServiceClient,
        instance_service_client::InstanceServiceClient, swarm_service_client::SwarmServiceClient,
        task_service_client::TaskServiceClient, workflow_service_client::WorkflowServiceClient,
    },
};

/// Sends `authorization: Bearer <key>` on every call, when there is a key.
#[derive(Clone)]
pub(super) struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    pub(super) fn new(key: Option<&str>) -> Result<Self, InvalidMetadataValue> {
        key.map(|key| format!("Bearer {}", key.trim()).parse())
            .transpose()
            .map(Self)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where the client subcommands go, and how.
pub(super) struct Server<'a> {
    /// `--server`: `http://` in the clear, `https://` over TLS.
    pub url: &'a str,
    pub api_key: Option<&'a str>,
    /// `--ca-cert`: trusted for `https://` besides the system's roots.
    pub ca_cert: Option<&'a Path>,
}

impl Server<'_> {
    /// The server's endpoint; over TLS for `https://`.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let url = self.url;
        let mut endpoint =
            Endpoint::from_shared(url.to_owned()).map_err(|e| format!("--server {url:?}: {e}"))?;
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = self.ca_cert {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("--server {url:?}: {e}"))?;
        } else if self.ca_cert.is_some() {
            return Err(format!(
                "--ca-cert is for an https:// server; --server {url:?} is not one"
            ));
        }
        Ok(endpoint)
    }

    /// A channel to the server, connected.
    async fn connect(&self) -> Result<Channel, String> {
        let url = self.url;
        self.endpoint()?.connect().await.map_err(|e| {
            // tonic's own words ("transport error") hide the cause: a certificate that is
            // not trusted, a server that does not speak TLS.
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                cause = format!("{cause}: {inner}");
                source = inner.source();
            }
            format!("cannot reach the server at {url}: {cause}")
        })
    }
}

pub(super) async fn client(
    command: Command,
    server: Server<'_>,
    json: bool,
    quiet: bool,
) -> CliResult {
    let bearer =
        Bearer::new(server.api_key).map_err(|_| "--api-key: not a key (printable ASCII)")?;
    let channel = server.connect().await?;
    // The server sends replies of any size (a page of 1000 tasks with their results can be
    // tens of MiB, past tonic's 4 MiB default), and the client takes what its server sends.
    let max = usize::MAX;
    let mut tasks = TaskServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .max_decoding_message_size(max);
    let mut instances = InstanceServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .max_decoding_message_size(max);
    let mut workflows = WorkflowServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .max_decoding_message_size(max);
    let mut events = EventServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .max_decoding_message_size(max);
    let mut approvals = ApprovalServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .max_decoding_message_size(max);
    match command {
        Command::Serve(_)
        | Command::Config(_)
        | Command::Run { .. }
        | Command::Key(_)
        | Command::Mcp { .. }
        | Command::Workflow(WorkflowCommand::Validate { .. }) => {
            unreachable!("handled by main")
        }
        Command::Schedule(command) => {
            return super::schedule::schedule(command, channel, bearer, json).await;
        }
        Command::Webhook(command) => {
            return super::webhook::webhook(command, channel, bearer, json).await;
        }
        Command::Status => {
            let status = SwarmServiceClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(max)
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
                if !s.dispatch_paused_reason.is_empty() {
                    println!("paused:    {}", s.dispatch_paused_reason);
                }
                print_accounts(&s.accounts);
            })?;
        }
        Command::ResumeAccount { name } => {
            let account = SwarmServiceClient::with_interceptor(channel, bearer)
                .resume_account(pb::ResumeAccountRequest { name })
                .await?
                .into_inner();
            print(json, &account, |a| print_accounts(std::slice::from_ref(a)))?;
        }
        Command::Submit {
            prompt,
            name,
            priority,
            timeout,
            depends_on,
            working_directory,
            model,
            output_schema,
            resume_session,
            account,
            wait,
        } => {
            let priority = Priority::from_word(&priority).ok_or_else(|| {
                format!("--priority {priority:?} is not one of low, normal, high, critical")
            })?;
            // The server checks that it is a schema; here only that it is JSON.
            let output_schema = output_schema
                .map(|text| serde_json::from_str::<pbjson_types::Value>(&text))
                .transpose()
                .map_err(|e| format!("--output-schema is not JSON: {e}"))?;
            let spec = pb::TaskSpec {
                prompt,
                name: name.unwrap_or_default(),
                priority: convert::to_pb(priority),
                timeout: timeout.unwrap_or(0.0),
                depends_on,
                working_directory: working_directory.unwrap_or_default(),
                model: model.unwrap_or_default(),
                output_schema,
                options: resume_session.map(|resume_session| pb::AgentOptions {
                    resume_session,
                    ..Default::default()
                }),
                account: account.unwrap_or_default(),
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
                let mut stream = events.stream_events(request).await?.into_inner();
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
            for w in &reply.warnings {
                let place = match (w.line, w.column) {
                    (0, _) => String::new(),
                    (line, column) => format!(" (line {line}, column {column})"),
                };
                eprintln!(
                    "warning: {}: {}: {}{place}",
                    file.display(),
                    w.field,
                    w.message
                );
            }
            let request = pb::StreamEventsRequest {
                after_sequence: Some(0),
                workflow_id: reply.workflow_id.clone(),
                ..Default::default()
            };
            let mut stream = events.stream_events(request).await?.into_inner();
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(async move {
                while let Ok(Some(event)) = stream.message().await {
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            });
            let finished = follow_workflow(rx, &reply.workflow_id, quiet).await?;
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
        Command::Audit {
            since,
            key,
            action,
            limit,
        } => {
            let client = AuditServiceClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(max);
            let args = AuditArgs {
                since,
                key,
                action,
                limit,
            };
            return audit(client, args, json).await;
        }
        Command::Approvals {
            state,
            task,
            workflow,
        } => super::approvals::list(&mut approvals, &state, task, workflow, json).await?,
        Command::Approve {
            id,
            always,
            message,
            input,
        } => {
            let verdict = super::approvals::Verdict {
                id,
                allow: true,
                message,
                always,
                input,
            };
            super::approvals::decide(&mut approvals, verdict, json).await?;
        }
        Command::Deny {
            id,
            message,
            always,
        } => {
            let verdict = super::approvals::Verdict {
                id,
                allow: false,
                message,
                always,
                input: None,
            };
            super::approvals::decide(&mut approvals, verdict, json).await?;
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
            let mut stream = events.stream_events(request).await?.into_inner();
            // On a terminal, the live display of `run` (tasks by state, the running ones);
            // elsewhere, and with --json, a line per event.
            let live = !json && !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut progress = live.then(|| super::progress::Progress::new(false));
            while let Some(event) = stream.message().await? {
                match (&mut progress, &event.payload) {
                    (Some(display), Some(pb::event::Payload::Task(task))) => {
                        let kind = pb::EventKind::try_from(event.kind)
                            .unwrap_or(pb::EventKind::Unspecified);
                        display.task(event.sequence, kind, task);
                    }
                    (Some(_), _) => {}
                    (None, _) => print(json, &event, print_event)?,
                }
            }
            if let Some(mut display) = progress {
                display.finish();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `completed`, `COMPLETED` or `TASK_STATUS_COMPLETED`, read from the engine's table.
fn parse_status(word: &str) -> Option<i32> {
    let word = word.to_ascii_lowercase();
    let word = word.strip_prefix("task_status_").unwrap_or(&word);
    TaskStatus::parse(word).map(convert::to_pb)
}

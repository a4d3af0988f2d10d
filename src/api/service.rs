//! The API as plain async methods: API messages in, API messages out, engine errors. The
//! gRPC services and the REST gateway are both thin wrappers around this, so a rule or a
//! conversion exists once.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;

use tokio::sync::watch;

use super::{
    audit::involve,
    auth::{Caller, Role},
    convert::{from_pb, json_of, non_empty},
    stream_limit::{DEFAULT_MAX_STREAMS_PER_KEY, StreamLimit, StreamSlot},
};
use crate::{
    engine::{
        ApprovalQuery, Decision, Engine, EngineError, Event, EventFilter, PolicyScope, TaskId,
        TaskQuery, TaskSpec, events::Subscription, workflow::WorkflowPlan,
    },
    pb, workflow,
};

mod schedules;
mod webhooks;

type Result<T> = std::result::Result<T, EngineError>;

/// Replayed, then live events, shared with the engine (each surface sends the event's
/// encoding made once, [`crate::engine::Encoded`]); ends on server shutdown or when the
/// client goes away (the feed is dropped).
pub type EventFeed = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Arc<Event>>> + Send>>;

#[derive(Clone)]
pub struct Service {
    engine: Engine,
    /// Flips to true when the server shuts down, ending event feeds.
    shutdown: watch::Receiver<bool>,
    /// `allow_commands`: whether tasks may run shell steps (`command`) at all.
    allow_commands: bool,
    /// Event feeds open now, for `/metrics`.
    subscribers: Gauge,
    /// `max_streams_per_key`: the feeds each caller holds open.
    streams: std::sync::Arc<StreamLimit>,
    /// The webhooks' workers (`WebhookService`); none on a router without them.
    notifier: Option<crate::notify::Notifier>,
    /// The node link, on the owner of a shared database (`GetStatus` lists the nodes).
    node_link: Option<crate::cluster::leader::NodeLink>,
}

/// `tasks[i].command` of the first of `tasks` that is a shell step.
fn first_command<'a>(commands: impl IntoIterator<Item = &'a str>) -> Option<String> {
    commands
        .into_iter()
        .position(|command| !command.is_empty())
        .map(|i| format!("tasks[{i}].command"))
}

/// `tasks[i].command` of a workflow's first shell step.
pub fn plan_commands(plan: &WorkflowPlan) -> Option<String> {
    first_command(
        plan.tasks
            .iter()
            .map(|t| t.command.as_deref().unwrap_or("")),
    )
}

/// With shell steps switched off (`allow_commands: false`), a request that has one (its
/// first at `field`) is refused. Every surface asks this, `run` in-process too.
pub fn commands_allowed(allow_commands: bool, field: Option<&str>) -> Result<()> {
    match field {
        Some(field) if !allow_commands => Err(EngineError::invalid(
            field,
            "shell steps are switched off on this server (allow_commands: false)",
        )),
        _ => Ok(()),
    }
}

impl Service {
    pub fn new(
        engine: Engine,
        shutdown: watch::Receiver<bool>,
        allow_commands: bool,
        subscribers: Gauge,
    ) -> Self {
        Self {
            engine,
            shutdown,
            allow_commands,
            subscribers,
            streams: StreamLimit::new(DEFAULT_MAX_STREAMS_PER_KEY, false),
            notifier: None,
            node_link: None,
        }
    }

    /// The service with `streams` counting its callers' event feeds.
    pub fn with_stream_limit(self, streams: std::sync::Arc<StreamLimit>) -> Self {
        Self { streams, ..self }
    }

    /// With the nodes of `link` in `GetStatus`.
    pub fn with_node_link(mut self, link: Option<crate::cluster::leader::NodeLink>) -> Self {
        self.node_link = link;
        self
    }

    /// With `WebhookService` served by `notifier`.
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// With shell steps switched off (`allow_commands: false`), a request that has one
    /// (its first at `field`) is refused.
    fn commands_allowed(&self, field: Option<&str>) -> Result<()> {
        commands_allowed(self.allow_commands, field)
    }

    /// Running a shell step, besides being allowed, needs an admin key.
    fn may_run_commands(&self, field: Option<String>) -> Result<()> {
        self.commands_allowed(field.as_deref())?;
        let Some(field) = field else { return Ok(()) };
        match Caller::current() {
            Some(caller) if caller.role >= Role::Admin => Ok(()),
            caller => Err(EngineError::PermissionDenied {
                field,
                reason: match caller {
                    Some(c) => format!(
                        "a shell step needs an admin key; the key {:?} has role {}",
                        c.name, c.role
                    ),
                    None => "a shell step needs an admin key".to_owned(),
                },
            }),
        }
    }

    pub async fn get_status(&self) -> Result<pb::GetStatusResponse> {
        let swarm = self.engine.status().await?;
        let mut status: pb::GetStatusResponse = (&swarm).into();
        if let Some(link) = &self.node_link {
            status.nodes = link.nodes(u32::try_from(swarm.instances_local).unwrap_or(u32::MAX));
        }
        Ok(status)
    }

    pub async fn resume_account(
        &self,
        request: pb::ResumeAccountRequest,
    ) -> Result<pb::AccountStatus> {
        if request.name.is_empty() {
            return Err(EngineError::invalid(
                "name",
                "an account's name is required",
            ));
        }
        involve(&request.name);
        Ok((&self.engine.resume_account(request.name).await?).into())
    }

    pub async fn submit_task(
        &self,
        request: pb::SubmitTaskRequest,
    ) -> Result<pb::SubmitTaskResponse> {
        let spec = request
            .task
            .ok_or_else(|| EngineError::invalid("task", "is required"))?;
        self.submit_spec(spec).await.map_err(|e| e.within("task"))
    }

    /// Submits one spec; errors name its fields bare (`prompt`), as a flat REST body has them.
    pub async fn submit_spec(&self, spec: pb::TaskSpec) -> Result<pb::SubmitTaskResponse> {
        let command = (!spec.command.is_empty()).then(|| "command".to_owned());
        self.may_run_commands(command)?;
        let task = self.engine.submit(TaskSpec::try_from(spec)?).await?;
        involve(&task.id);
        Ok(pb::SubmitTaskResponse {
            task_id: task.id.to_string(),
            task: Some((&task).into()),
        })
    }

    pub async fn submit_tasks(
        &self,
        request: pb::SubmitTasksRequest,
    ) -> Result<pb::SubmitTasksResponse> {
        let commands = request.tasks.iter().map(|t| t.command.as_str());
        self.may_run_commands(first_command(commands))?;
        let specs = request
            .tasks
            .into_iter()
            .enumerate()
            .map(|(i, spec)| TaskSpec::try_from(spec).map_err(|e| e.within(&format!("tasks[{i}]"))))
            .collect::<Result<Vec<_>>>()?;
        let tasks = self.engine.submit_batch(specs).await?;
        tasks.iter().for_each(|t| involve(&t.id));
        Ok(pb::SubmitTasksResponse {
            task_ids: tasks.iter().map(|t| t.id.to_string()).collect(),
            tasks: tasks.iter().map(Into::into).collect(),
        })
    }

    pub async fn list_tasks(&self, request: pb::ListTasksRequest) -> Result<pb::ListTasksResponse> {
        let query = TaskQuery {
            statuses: request
                .status
                .iter()
                .map(|s| from_pb("status", *s, None))
                .collect::<Result<_>>()?,
            priorities: request
                .priority
                .iter()
                .map(|p| from_pb("priority", *p, Some(crate::engine::Priority::Normal)))
                .collect::<Result<_>>()?,
            workflow_id: non_empty(request.workflow_id),
            limit: request.limit as usize,
            page_token: non_empty(request.page_token),
        };
        let page = self.engine.list_tasks(query).await?;
        Ok(pb::ListTasksResponse {
            tasks: page.tasks.iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub async fn get_task(&self, request: pb::GetTaskRequest) -> Result<pb::Task> {
        Ok((&self.engine.task(request.task_id.into()).await?).into())
    }

    pub async fn cancel_task(&self, request: pb::CancelTaskRequest) -> Result<pb::Task> {
        involve(&request.task_id);
        Ok((&self.engine.cancel_task(request.task_id.into()).await?).into())
    }

    pub async fn spawn_instances(
        &self,
        request: pb::SpawnInstancesRequest,
    ) -> Result<pb::SpawnInstancesResponse> {
        let dir = non_empty(request.working_directory).map(Into::into);
        let instances = self.engine.spawn_instances(request.count, dir).await?;
        instances.iter().for_each(|i| involve(&i.id));
        Ok(pb::SpawnInstancesResponse {
            instances: instances.iter().map(Into::into).collect(),
        })
    }

    pub async fn list_instances(&self) -> Result<pb::ListInstancesResponse> {
        let instances = self.engine.instances().await?;
        Ok(pb::ListInstancesResponse {
            instances: instances.iter().map(Into::into).collect(),
        })
    }

    pub async fn get_instance(&self, request: pb::GetInstanceRequest) -> Result<pb::Instance> {
        Ok((&self.engine.instance(request.instance_id).await?).into())
    }

    pub async fn terminate_instance(
        &self,
        request: pb::TerminateInstanceRequest,
    ) -> Result<pb::Instance> {
        involve(&request.instance_id);
        Ok((&self.engine.terminate_instance(request.instance_id).await?).into())
    }

    pub async fn scale_instances(
        &self,
        request: pb::ScaleInstancesRequest,
    ) -> Result<pb::ScaleInstancesResponse> {
        let instances = self.engine.scale(request.target.into()).await?;
        Ok(pb::ScaleInstancesResponse {
            instances: instances.iter().map(Into::into).collect(),
        })
    }

    pub async fn validate_workflow(
        &self,
        request: pb::ValidateWorkflowRequest,
    ) -> Result<pb::ValidateWorkflowResponse> {
        let checked = workflow::check(&request.yaml, &request.variables.into_iter().collect())?;
        self.commands_allowed(plan_commands(&checked.plan).as_deref())?;
        Ok(pb::ValidateWorkflowResponse {
            name: checked.plan.name,
            task_count: checked.plan.tasks.len() as u32,
            warnings: checked.warnings.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn execute_workflow(
        &self,
        request: pb::ExecuteWorkflowRequest,
    ) -> Result<pb::ExecuteWorkflowResponse> {
        let checked = workflow::check(&request.yaml, &request.variables.into_iter().collect())?;
        self.may_run_commands(plan_commands(&checked.plan))?;
        let info = self.engine.execute_workflow(checked.plan).await?;
        involve(&info.id);
        Ok(pb::ExecuteWorkflowResponse {
            workflow_id: info.id.clone(),
            workflow: Some((&info).into()),
            warnings: checked.warnings.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn get_workflow(&self, request: pb::GetWorkflowRequest) -> Result<pb::Workflow> {
        Ok((&self.engine.workflow(request.workflow_id).await?).into())
    }

    pub async fn list_workflows(&self) -> Result<pb::ListWorkflowsResponse> {
        let workflows = self.engine.workflows().await?;
        Ok(pb::ListWorkflowsResponse {
            workflows: workflows.iter().map(Into::into).collect(),
        })
    }

    pub async fn cancel_workflow(
        &self,
        request: pb::CancelWorkflowRequest,
    ) -> Result<pb::Workflow> {
        involve(&request.workflow_id);
        Ok((&self.engine.cancel_workflow(request.workflow_id).await?).into())
    }

    pub async fn list_approvals(
        &self,
        request: pb::ListApprovalsRequest,
    ) -> Result<pb::ListApprovalsResponse> {
        let query = ApprovalQuery {
            states: request
                .state
                .iter()
                .map(|s| from_pb("state", *s, None))
                .collect::<Result<_>>()?,
            task_id: non_empty(request.task_id).map(TaskId::from),
            workflow_id: non_empty(request.workflow_id),
        };
        let approvals = self.engine.approvals(query).await?;
        Ok(pb::ListApprovalsResponse {
            approvals: approvals.iter().map(Into::into).collect(),
        })
    }

    pub async fn get_approval(&self, request: pb::GetApprovalRequest) -> Result<pb::Approval> {
        Ok((&self.engine.approval(request.approval_id).await?).into())
    }

    /// Allows or denies; "always" for the whole swarm needs an admin key.
    pub async fn decide_approval(
        &self,
        request: pb::DecideApprovalRequest,
    ) -> Result<pb::Approval> {
        if request.approval_id.is_empty() {
            return Err(EngineError::invalid("approval_id", "is required"));
        }
        let always: Option<PolicyScope> = match request.always {
            0 => None,
            n => Some(from_pb("always", n, None)?),
        };
        let caller = Caller::current();
        if always == Some(PolicyScope::Swarm)
            && caller.as_ref().is_none_or(|c| c.role < Role::Admin)
        {
            return Err(EngineError::PermissionDenied {
                field: "always".into(),
                reason: match &caller {
                    Some(c) => format!(
                        "a swarm-wide rule needs an admin key; the key {:?} has role {}",
                        c.name, c.role
                    ),
                    None => "a swarm-wide rule needs an admin key".to_owned(),
                },
            });
        }
        let decision = Decision {
            allow: request.allow,
            message: request.message,
            updated_input: request
                .updated_input
                .as_ref()
                .map(|v| json_of("updated_input", v))
                .transpose()?,
            always,
            by: caller.map_or_else(|| "anonymous".to_owned(), |c| c.name.to_string()),
        };
        Ok((&self
            .engine
            .decide_approval(request.approval_id, decision)
            .await?)
            .into())
    }

    /// Replayed, then live events. A subscriber that falls behind gets one `DataLoss` and
    /// the feed ends. The feed reads the engine's shared window itself, a batch at a time
    /// (no task or queue of its own); its place under the stream limit is freed when it is
    /// dropped.
    pub async fn stream_events(&self, request: pb::StreamEventsRequest) -> Result<EventFeed> {
        let slot = self.streams.take()?;
        let filter = EventFilter {
            task_id: non_empty(request.task_id).map(TaskId::from),
            workflow_id: non_empty(request.workflow_id),
            instance_id: non_empty(request.instance_id),
            kinds: request
                .kinds
                .iter()
                .map(|k| from_pb("kinds", *k, None))
                .collect::<Result<_>>()?,
        };
        let subscription = self
            .engine
            .subscribe(request.after_sequence, filter)
            .await?;
        self.subscribers.inc();
        let feed = Feed {
            subscription,
            shutdown: self.shutdown.clone(),
            ended: false,
            _open: Open {
                _slot: slot,
                subscribers: self.subscribers.clone(),
            },
        };
        Ok(Box::pin(futures_util::stream::unfold(
            feed,
            |mut feed| async move {
                if feed.ended {
                    return None;
                }
                let item = tokio::select! {
                    biased;
                    item = feed.subscription.next() => item?,
                    _ = feed.shutdown.wait_for(|down| *down) => return None,
                };
                feed.ended = item.is_err();
                Some((item, feed))
            },
        )))
    }
}

/// What an open feed holds: its place under the stream limit and in the gauge.
struct Open {
    _slot: StreamSlot,
    subscribers: Gauge,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.subscribers.dec();
    }
}

/// An event feed's state between items.
struct Feed {
    subscription: Subscription,
    /// Flips to true when the server shuts down, ending the feed.
    shutdown: watch::Receiver<bool>,
    /// A `DataLoss` was sent: nothing follows it.
    ended: bool,
    _open: Open,
}

//! gRPC services: each method converts the request, calls the engine and maps the error.

use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::convert::{event_kind_from_pb, priority_from_pb, status_from_pb};
use crate::{
    engine::{
        Engine, EngineError, events::EventFilter, scheduler::TaskQuery, task::TaskSpec, workflow,
    },
    pb,
};

type Reply<T> = Result<Response<T>, Status>;

/// Implements every claude-swarm gRPC service over one engine handle.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
    /// Flips to true when the server shuts down, ending event streams.
    shutdown: watch::Receiver<bool>,
}

impl Api {
    pub fn new(engine: Engine, shutdown: watch::Receiver<bool>) -> Self {
        Self { engine, shutdown }
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl pb::swarm_service_server::SwarmService for Api {
    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Reply<pb::GetStatusResponse> {
        Ok(Response::new((&self.engine.status().await?).into()))
    }
}

#[tonic::async_trait]
impl pb::task_service_server::TaskService for Api {
    async fn submit_task(
        &self,
        request: Request<pb::SubmitTaskRequest>,
    ) -> Reply<pb::SubmitTaskResponse> {
        let spec = request
            .into_inner()
            .task
            .ok_or_else(|| EngineError::invalid("task", "is required"))?;
        let spec = TaskSpec::try_from(spec).map_err(|e| e.within("task"))?;
        let task = self
            .engine
            .submit(spec)
            .await
            .map_err(|e| e.within("task"))?;
        Ok(Response::new(pb::SubmitTaskResponse {
            task_id: task.id.clone(),
            task: Some((&task).into()),
        }))
    }

    async fn submit_tasks(
        &self,
        request: Request<pb::SubmitTasksRequest>,
    ) -> Reply<pb::SubmitTasksResponse> {
        let specs = request
            .into_inner()
            .tasks
            .into_iter()
            .enumerate()
            .map(|(i, spec)| TaskSpec::try_from(spec).map_err(|e| e.within(&format!("tasks[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let tasks = self.engine.submit_batch(specs).await?;
        Ok(Response::new(pb::SubmitTasksResponse {
            task_ids: tasks.iter().map(|t| t.id.clone()).collect(),
            tasks: tasks.iter().map(Into::into).collect(),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Reply<pb::ListTasksResponse> {
        let r = request.into_inner();
        let query = TaskQuery {
            statuses: r
                .status
                .iter()
                .map(|s| status_from_pb("status", *s))
                .collect::<Result<_, _>>()?,
            priorities: r
                .priority
                .iter()
                .map(|p| priority_from_pb("priority", *p))
                .collect::<Result<_, _>>()?,
            workflow_id: opt(r.workflow_id),
            limit: r.limit as usize,
            page_token: opt(r.page_token),
        };
        let page = self.engine.list_tasks(query).await?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: page.tasks.iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_task(&self, request: Request<pb::GetTaskRequest>) -> Reply<pb::Task> {
        let task = self.engine.task(request.into_inner().task_id).await?;
        Ok(Response::new((&task).into()))
    }

    async fn cancel_task(&self, request: Request<pb::CancelTaskRequest>) -> Reply<pb::Task> {
        let task = self
            .engine
            .cancel_task(request.into_inner().task_id)
            .await?;
        Ok(Response::new((&task).into()))
    }
}

#[tonic::async_trait]
impl pb::instance_service_server::InstanceService for Api {
    async fn spawn_instances(
        &self,
        request: Request<pb::SpawnInstancesRequest>,
    ) -> Reply<pb::SpawnInstancesResponse> {
        let r = request.into_inner();
        let instances = self
            .engine
            .spawn_instances(r.count, opt(r.working_directory).map(Into::into))
            .await?;
        Ok(Response::new(pb::SpawnInstancesResponse {
            instances: instances.iter().map(Into::into).collect(),
        }))
    }

    async fn list_instances(
        &self,
        _: Request<pb::ListInstancesRequest>,
    ) -> Reply<pb::ListInstancesResponse> {
        let instances = self.engine.instances().await?;
        Ok(Response::new(pb::ListInstancesResponse {
            instances: instances.iter().map(Into::into).collect(),
        }))
    }

    async fn get_instance(&self, request: Request<pb::GetInstanceRequest>) -> Reply<pb::Instance> {
        Ok(Response::new(
            (&self
                .engine
                .instance(request.into_inner().instance_id)
                .await?)
                .into(),
        ))
    }

    async fn terminate_instance(
        &self,
        request: Request<pb::TerminateInstanceRequest>,
    ) -> Reply<pb::Instance> {
        Ok(Response::new(
            (&self
                .engine
                .terminate_instance(request.into_inner().instance_id)
                .await?)
                .into(),
        ))
    }

    async fn scale_instances(
        &self,
        request: Request<pb::ScaleInstancesRequest>,
    ) -> Reply<pb::ScaleInstancesResponse> {
        let instances = self
            .engine
            .scale(request.into_inner().target.into())
            .await?;
        Ok(Response::new(pb::ScaleInstancesResponse {
            instances: instances.iter().map(Into::into).collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::workflow_service_server::WorkflowService for Api {
    async fn execute_workflow(
        &self,
        request: Request<pb::ExecuteWorkflowRequest>,
    ) -> Reply<pb::ExecuteWorkflowResponse> {
        let plan = workflow::parse(&request.into_inner().yaml)?;
        let info = self.engine.execute_workflow(plan).await?;
        Ok(Response::new(pb::ExecuteWorkflowResponse {
            workflow_id: info.id.clone(),
            workflow: Some((&info).into()),
        }))
    }

    async fn get_workflow(&self, request: Request<pb::GetWorkflowRequest>) -> Reply<pb::Workflow> {
        Ok(Response::new(
            (&self
                .engine
                .workflow(request.into_inner().workflow_id)
                .await?)
                .into(),
        ))
    }

    async fn list_workflows(
        &self,
        _: Request<pb::ListWorkflowsRequest>,
    ) -> Reply<pb::ListWorkflowsResponse> {
        let workflows = self.engine.workflows().await?;
        Ok(Response::new(pb::ListWorkflowsResponse {
            workflows: workflows.iter().map(Into::into).collect(),
        }))
    }

    async fn cancel_workflow(
        &self,
        request: Request<pb::CancelWorkflowRequest>,
    ) -> Reply<pb::Workflow> {
        Ok(Response::new(
            (&self
                .engine
                .cancel_workflow(request.into_inner().workflow_id)
                .await?)
                .into(),
        ))
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::event_service_server::EventService for Api {
    type StreamEventsStream = EventStream;

    async fn stream_events(&self, request: Request<pb::StreamEventsRequest>) -> Reply<EventStream> {
        let r = request.into_inner();
        let filter = EventFilter {
            task_id: opt(r.task_id),
            workflow_id: opt(r.workflow_id),
            instance_id: opt(r.instance_id),
            kinds: r
                .kinds
                .iter()
                .map(|k| event_kind_from_pb("kinds", *k))
                .collect::<Result<_, _>>()?,
        };
        let mut subscription = self.engine.subscribe(r.after_sequence, filter).await?;
        let mut shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let ended = async {
                tokio::select! {
                    () = tx.closed() => {},
                    _ = shutdown.wait_for(|down| *down) => {},
                }
            };
            tokio::pin!(ended);
            loop {
                let item = tokio::select! {
                    item = subscription.next() => item,
                    () = &mut ended => None,
                };
                let Some(item) = item else { break };
                let lost = item.is_err();
                let item = item
                    .map(|event| pb::Event::from(event.as_ref()))
                    .map_err(Status::from);
                if tx.send(item).await.is_err() || lost {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

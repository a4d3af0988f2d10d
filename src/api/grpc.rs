//! gRPC services: tonic glue around [`Service`]; nothing else.

use tonic::{Code, Request, Response, Status};

use super::{MAX_REQUEST_BYTES, error::INTERNAL_MESSAGE, service::Service};
use crate::pb;

mod caller;
mod events;
mod schedules;
mod webhooks;

pub use caller::Callers;
pub use events::EventServer;

type Reply<T> = Result<Response<T>, Status>;

/// tonic answers a request it cannot decode with INTERNAL (a message cut short, bytes
/// that are not protobuf, a string that is not UTF-8) and one over the size limit with
/// OUT_OF_RANGE; both are the caller's doing, so they become INVALID_ARGUMENT and
/// RESOURCE_EXHAUSTED. Those answers come before any handler runs, as a response with only
/// headers; an INTERNAL of ours (the only other kind) says [`INTERNAL_MESSAGE`]. Our own
/// errors never use OUT_OF_RANGE.
pub async fn request_errors(mut response: axum::response::Response) -> axum::response::Response {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let mapped = match status.code() {
        Code::OutOfRange => Status::resource_exhausted(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes, the most this server takes \
             ({})",
            status.message()
        )),
        Code::Internal if status.message() != INTERNAL_MESSAGE => Status::invalid_argument(
            format!("the request could not be decoded: {}", status.message()),
        ),
        _ => return response,
    };
    if mapped.add_header(response.headers_mut()).is_err() {
        tracing::warn!(code = ?mapped.code(), "could not rewrite a gRPC status");
    }
    response
}

fn reply<T>(result: Result<T, crate::engine::EngineError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::swarm_service_server::SwarmService for Service {
    async fn get_status(&self, _: Request<pb::GetStatusRequest>) -> Reply<pb::GetStatusResponse> {
        reply(Service::get_status(self).await)
    }

    async fn resume_account(
        &self,
        r: Request<pb::ResumeAccountRequest>,
    ) -> Reply<pb::AccountStatus> {
        reply(Service::resume_account(self, r.into_inner()).await)
    }
}

#[tonic::async_trait]
impl pb::task_service_server::TaskService for Service {
    async fn submit_task(
        &self,
        r: Request<pb::SubmitTaskRequest>,
    ) -> Reply<pb::SubmitTaskResponse> {
        reply(Service::submit_task(self, r.into_inner()).await)
    }

    async fn submit_tasks(
        &self,
        r: Request<pb::SubmitTasksRequest>,
    ) -> Reply<pb::SubmitTasksResponse> {
        reply(Service::submit_tasks(self, r.into_inner()).await)
    }

    async fn list_tasks(&self, r: Request<pb::ListTasksRequest>) -> Reply<pb::ListTasksResponse> {
        reply(Service::list_tasks(self, r.into_inner()).await)
    }

    async fn get_task(&self, r: Request<pb::GetTaskRequest>) -> Reply<pb::Task> {
        reply(Service::get_task(self, r.into_inner()).await)
    }

    async fn cancel_task(&self, r: Request<pb::CancelTaskRequest>) -> Reply<pb::Task> {
        reply(Service::cancel_task(self, r.into_inner()).await)
    }
}

#[tonic::async_trait]
impl pb::instance_service_server::InstanceService for Service {
    async fn spawn_instances(
        &self,
        r: Request<pb::SpawnInstancesRequest>,
    ) -> Reply<pb::SpawnInstancesResponse> {
        reply(Service::spawn_instances(self, r.into_inner()).await)
    }

    async fn list_instances(
        &self,
        _: Request<pb::ListInstancesRequest>,
    ) -> Reply<pb::ListInstancesResponse> {
        reply(Service::list_instances(self).await)
    }

    async fn get_instance(&self, r: Request<pb::GetInstanceRequest>) -> Reply<pb::Instance> {
        reply(Service::get_instance(self, r.into_inner()).await)
    }

    async fn terminate_instance(
        &self,
        r: Request<pb::TerminateInstanceRequest>,
    ) -> Reply<pb::Instance> {
        reply(Service::terminate_instance(self, r.into_inner()).await)
    }

    async fn scale_instances(
        &self,
        r: Request<pb::ScaleInstancesRequest>,
    ) -> Reply<pb::ScaleInstancesResponse> {
        reply(Service::scale_instances(self, r.into_inner()).await)
    }
}

#[tonic::async_trait]
impl pb::workflow_service_server::WorkflowService for Service {
    async fn execute_workflow(
        &self,
        r: Request<pb::ExecuteWorkflowRequest>,
    ) -> Reply<pb::ExecuteWorkflowResponse> {
        reply(Service::execute_workflow(self, r.into_inner()).await)
    }

    async fn validate_workflow(
        &self,
        r: Request<pb::ValidateWorkflowRequest>,
    ) -> Reply<pb::ValidateWorkflowResponse> {
        reply(Service::validate_workflow(self, r.into_inner()).await)
    }

    async fn get_workflow(&self, r: Request<pb::GetWorkflowRequest>) -> Reply<pb::Workflow> {
        reply(Service::get_workflow(self, r.into_inner()).await)
    }

    async fn list_workflows(
        &self,
        _: Request<pb::ListWorkflowsRequest>,
    ) -> Reply<pb::ListWorkflowsResponse> {
        reply(Service::list_workflows(self).await)
    }

    async fn cancel_workflow(&self, r: Request<pb::CancelWorkflowRequest>) -> Reply<pb::Workflow> {
        reply(Service::cancel_workflow(self, r.into_inner()).await)
    }
}

#[tonic::async_trait]
impl pb::approval_service_server::ApprovalService for Service {
    async fn list_approvals(
        &self,
        r: Request<pb::ListApprovalsRequest>,
    ) -> Reply<pb::ListApprovalsResponse> {
        reply(Service::list_approvals(self, r.into_inner()).await)
    }

    async fn get_approval(&self, r: Request<pb::GetApprovalRequest>) -> Reply<pb::Approval> {
        reply(Service::get_approval(self, r.into_inner()).await)
    }

    async fn decide_approval(&self, r: Request<pb::DecideApprovalRequest>) -> Reply<pb::Approval> {
        reply(Service::decide_approval(self, r.into_inner()).await)
    }
}

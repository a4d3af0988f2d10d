//! `ScheduleService`: tonic glue around [`Service`].

use tonic::Request;

use super::{Reply, reply};
use crate::{api::service::Service, pb};

#[tonic::async_trait]
impl pb::schedule_service_server::ScheduleService for Service {
    async fn create_schedule(&self, r: Request<pb::CreateScheduleRequest>) -> Reply<pb::Schedule> {
        reply(Service::create_schedule(self, r.into_inner()).await)
    }

    async fn list_schedules(
        &self,
        _: Request<pb::ListSchedulesRequest>,
    ) -> Reply<pb::ListSchedulesResponse> {
        reply(Service::list_schedules(self).await)
    }

    async fn get_schedule(&self, r: Request<pb::GetScheduleRequest>) -> Reply<pb::Schedule> {
        reply(Service::get_schedule(self, r.into_inner()).await)
    }

    async fn pause_schedule(&self, r: Request<pb::PauseScheduleRequest>) -> Reply<pb::Schedule> {
        reply(Service::pause_schedule(self, r.into_inner()).await)
    }

    async fn resume_schedule(&self, r: Request<pb::ResumeScheduleRequest>) -> Reply<pb::Schedule> {
        reply(Service::resume_schedule(self, r.into_inner()).await)
    }

    async fn delete_schedule(&self, r: Request<pb::DeleteScheduleRequest>) -> Reply<pb::Schedule> {
        reply(Service::delete_schedule(self, r.into_inner()).await)
    }

    async fn trigger_now(
        &self,
        r: Request<pb::TriggerScheduleRequest>,
    ) -> Reply<pb::TriggerScheduleResponse> {
        reply(Service::trigger_schedule(self, r.into_inner()).await)
    }
}

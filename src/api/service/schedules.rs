//! `ScheduleService`: the request's target (a workflow document or one task) checked as
//! ExecuteWorkflow and SubmitTask check theirs, then handed to the engine.

use super::{Result, Service, first_command, non_empty, plan_commands};
use crate::{
    api::convert::from_pb,
    engine::{
        EngineError, TaskSpec,
        schedule::{Cron, MissedPolicy, OverlapPolicy, ScheduleSpec, ScheduleTarget},
    },
    pb, workflow,
};

impl Service {
    pub async fn create_schedule(
        &self,
        request: pb::CreateScheduleRequest,
    ) -> Result<pb::Schedule> {
        let cron = Cron::parse(&request.cron, &request.time_zone)?;
        let target = match request.target {
            None => {
                return Err(EngineError::invalid(
                    "workflow_yaml",
                    "a schedule runs a workflow document (`workflow_yaml`) or one task (`task`)",
                ));
            }
            Some(pb::create_schedule_request::Target::WorkflowYaml(yaml)) => {
                let variables = request.variables.into_iter().collect();
                let plan = workflow::parse(&yaml, &variables)?;
                self.may_run_commands(plan_commands(&plan))?;
                ScheduleTarget::Workflow(Box::new(plan))
            }
            Some(pb::create_schedule_request::Target::Task(spec)) => {
                let command = first_command([spec.command.as_str()]).map(|_| "task.command".into());
                self.may_run_commands(command)?;
                ScheduleTarget::Task(Box::new(
                    TaskSpec::try_from(spec).map_err(|e| e.within("task"))?,
                ))
            }
        };
        let spec = ScheduleSpec {
            name: request.name,
            cron,
            target,
            missed: from_pb("missed", request.missed, Some(MissedPolicy::Skip))?,
            overlap: from_pb("overlap", request.overlap, Some(OverlapPolicy::Skip))?,
            paused: request.paused,
        };
        Ok((&self.engine.create_schedule(spec).await?).into())
    }

    pub async fn list_schedules(&self) -> Result<pb::ListSchedulesResponse> {
        let schedules = self.engine.schedules().await?;
        Ok(pb::ListSchedulesResponse {
            schedules: schedules.iter().map(Into::into).collect(),
        })
    }

    pub async fn get_schedule(&self, request: pb::GetScheduleRequest) -> Result<pb::Schedule> {
        Ok((&self.engine.schedule(id(request.schedule_id)?).await?).into())
    }

    pub async fn pause_schedule(&self, request: pb::PauseScheduleRequest) -> Result<pb::Schedule> {
        let schedule = self
            .engine
            .pause_schedule(id(request.schedule_id)?, true)
            .await?;
        Ok((&schedule).into())
    }

    pub async fn resume_schedule(
        &self,
        request: pb::ResumeScheduleRequest,
    ) -> Result<pb::Schedule> {
        let schedule = self
            .engine
            .pause_schedule(id(request.schedule_id)?, false)
            .await?;
        Ok((&schedule).into())
    }

    pub async fn delete_schedule(
        &self,
        request: pb::DeleteScheduleRequest,
    ) -> Result<pb::Schedule> {
        Ok((&self
            .engine
            .delete_schedule(id(request.schedule_id)?)
            .await?)
            .into())
    }

    pub async fn trigger_schedule(
        &self,
        request: pb::TriggerScheduleRequest,
    ) -> Result<pb::TriggerScheduleResponse> {
        let info = self
            .engine
            .trigger_schedule(id(request.schedule_id)?)
            .await?;
        Ok(pb::TriggerScheduleResponse {
            workflow_id: info.id.clone(),
            workflow: Some((&info).into()),
        })
    }
}

fn id(schedule_id: String) -> Result<String> {
    non_empty(schedule_id).ok_or_else(|| EngineError::invalid("schedule_id", "is required"))
}

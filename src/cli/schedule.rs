//! `claude-swarm schedule ...`: create, list, show, pause, resume, delete and trigger
//! schedules on a server.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use super::{
    CliResult,
    client::Bearer,
    parse_var,
    print::{head, print, print_workflows, table, word},
};
use crate::{
    api::convert,
    engine::schedule::{MissedPolicy, OverlapPolicy},
    pb::{self, schedule_service_client::ScheduleServiceClient},
};

#[derive(Subcommand, Debug)]
pub(super) enum ScheduleCommand {
    /// Run a workflow file (or one task) on a cron schedule.
    Create {
        /// Five fields (minute hour day-of-month month day-of-week), six with seconds
        /// first, or `@daily`, `@hourly`, ...
        #[arg(long)]
        cron: String,
        /// IANA time zone the expression is read in [default: UTC].
        #[arg(long)]
        time_zone: Option<String>,
        /// The workflow each run starts.
        #[arg(long, conflicts_with = "task", required_unless_present = "task")]
        workflow: Option<PathBuf>,
        /// Set a workflow variable (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Instead of a workflow: the prompt of the one task each run starts.
        #[arg(long)]
        task: Option<String>,
        /// Defaults to the workflow's name (or the task's).
        #[arg(long)]
        name: Option<String>,
        /// Runs missed while the server was down: skip, or run_once (one run at start).
        #[arg(long, default_value = "skip", value_parser = policy::<MissedPolicy>)]
        missed: MissedPolicy,
        /// A run due while the last one still goes: skip, or allow.
        #[arg(long, default_value = "skip", value_parser = policy::<OverlapPolicy>)]
        overlap: OverlapPolicy,
        /// Create it paused (it runs once resumed, or triggered).
        #[arg(long)]
        paused: bool,
    },
    List,
    Get {
        id: String,
    },
    /// No run until resumed.
    Pause {
        id: String,
    },
    /// From the next time after now.
    Resume {
        id: String,
    },
    /// Remove it; its runs stay.
    Delete {
        id: String,
    },
    /// One run now, paused or not.
    Trigger {
        id: String,
    },
}

/// A policy word (`run_once` or `run-once`), from the engine's table.
fn policy<E: crate::engine::model::words::Word>(text: &str) -> Result<E, String> {
    let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
    E::all()
        .iter()
        .copied()
        .find(|p| p.word() == wanted)
        .ok_or_else(|| {
            let words: Vec<&str> = E::all().iter().map(|p| p.word()).collect();
            format!("{text:?} is not one of {}", words.join(", "))
        })
}

type Client = ScheduleServiceClient<InterceptedService<Channel, Bearer>>;

pub(super) async fn schedule(
    command: ScheduleCommand,
    channel: Channel,
    bearer: Bearer,
    json: bool,
) -> CliResult {
    let mut schedules: Client = ScheduleServiceClient::with_interceptor(channel, bearer);
    let one = |s: &pb::Schedule| print_schedules(std::slice::from_ref(s));
    match command {
        ScheduleCommand::Create {
            cron,
            time_zone,
            workflow,
            vars,
            task,
            name,
            missed,
            overlap,
            paused,
        } => {
            let target = match (workflow, task) {
                (Some(file), _) => pb::create_schedule_request::Target::WorkflowYaml(
                    std::fs::read_to_string(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
                ),
                (None, Some(prompt)) => pb::create_schedule_request::Target::Task(pb::TaskSpec {
                    prompt,
                    ..Default::default()
                }),
                (None, None) => return Err("give --workflow FILE or --task PROMPT".into()),
            };
            let request = pb::CreateScheduleRequest {
                name: name.unwrap_or_default(),
                cron,
                time_zone: time_zone.unwrap_or_default(),
                target: Some(target),
                variables: vars.into_iter().collect(),
                missed: convert::to_pb(missed),
                overlap: convert::to_pb(overlap),
                paused,
            };
            let created = schedules.create_schedule(request).await?.into_inner();
            print(json, &created, one)?;
        }
        ScheduleCommand::List => {
            let list = schedules
                .list_schedules(pb::ListSchedulesRequest {})
                .await?
                .into_inner();
            print(json, &list, |l| print_schedules(&l.schedules))?;
        }
        ScheduleCommand::Get { id } => {
            let s = schedules
                .get_schedule(pb::GetScheduleRequest { schedule_id: id })
                .await?
                .into_inner();
            print(json, &s, one)?;
        }
        ScheduleCommand::Pause { id } => {
            let s = schedules
                .pause_schedule(pb::PauseScheduleRequest { schedule_id: id })
                .await?
                .into_inner();
            print(json, &s, one)?;
        }
        ScheduleCommand::Resume { id } => {
            let s = schedules
                .resume_schedule(pb::ResumeScheduleRequest { schedule_id: id })
                .await?
                .into_inner();
            print(json, &s, one)?;
        }
        ScheduleCommand::Delete { id } => {
            let s = schedules
                .delete_schedule(pb::DeleteScheduleRequest { schedule_id: id })
                .await?
                .into_inner();
            print(json, &s, one)?;
        }
        ScheduleCommand::Trigger { id } => {
            let run = schedules
                .trigger_now(pb::TriggerScheduleRequest { schedule_id: id })
                .await?
                .into_inner();
            print(json, &run, |r| {
                print_workflows(std::slice::from_ref(
                    &r.workflow.clone().unwrap_or_default(),
                ))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-01-15 03:00:00 UTC`, or `-`.
fn when(time: Option<&pbjson_types::Timestamp>) -> String {
    time.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

fn print_schedules(schedules: &[pb::Schedule]) {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                head(&s.name, 24),
                format!("{} ({})", s.cron, s.time_zone),
                if s.paused {
                    "paused".into()
                } else {
                    when(s.next_fire_at.as_ref())
                },
                format!(
                    "{}/{}",
                    word::<MissedPolicy>(s.missed),
                    word::<OverlapPolicy>(s.overlap)
                ),
                format!("{} ({} skipped)", s.runs, s.skipped_runs),
                head(&s.last_error, 40),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "CRON",
            "NEXT",
            "MISSED/OVERLAP",
            "RUNS",
            "LAST ERROR",
        ],
        &rows,
    );
}

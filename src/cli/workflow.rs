//! Workflow files: check one, run one in this process, and follow a run to its end.

use std::{path::PathBuf, process::ExitCode};

use tokio::sync::mpsc;

use super::{
    CliResult,
    print::{print_tasks, seconds_between, workflow_word},
    progress::Progress,
};
use crate::{
    api::service,
    config::{Config, Overrides},
    engine::{EngineError, EventFilter, TaskQuery},
    pb, workflow,
};

/// Reads and checks a workflow file; errors name the file, the field, the line and column.
/// Warnings (text between `{{ }}` left as written) go to stderr, naming their place.
fn load_workflow(
    file: &PathBuf,
    vars: &[(String, String)],
) -> Result<(String, workflow::WorkflowPlan), String> {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let vars = vars.iter().cloned().collect();
    let checked = workflow::check(&yaml, &vars).map_err(|e| format!("{}: {e}", file.display()))?;
    for warning in &checked.warnings {
        eprintln!("warning: {}: {warning}", file.display());
    }
    Ok((yaml, checked.plan))
}

pub(super) fn validate(file: &PathBuf, vars: &[(String, String)]) -> CliResult {
    let (_, plan) = load_workflow(file, vars)?;
    println!(
        "{}: workflow {:?} is valid, {} tasks",
        file.display(),
        plan.name,
        plan.tasks.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run_local(
    file: &PathBuf,
    vars: &[(String, String)],
    overrides: &Overrides,
    json: bool,
    quiet: bool,
) -> CliResult {
    let config = Config::load(overrides, None)?;
    let (_, plan) = load_workflow(file, vars)?;
    // The same rule as the server's: `allow_commands: false` runs no shell step here either.
    service::commands_allowed(
        config.allow_commands,
        service::plan_commands(&plan).as_deref(),
    )
    .map_err(|e| format!("{}: {e}", file.display()))?;
    let engine = crate::app::start(&config, None)?;
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
    let finished = follow_workflow(rx, &info.id, quiet).await;
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
pub(super) async fn follow_workflow(
    mut events: mpsc::Receiver<pb::Event>,
    workflow_id: &str,
    quiet: bool,
) -> Result<pb::Workflow, EngineError> {
    use pb::{EventKind as K, event::Payload};
    let mut progress = Progress::new(quiet);
    while let Some(event) = events.recv().await {
        let kind = K::try_from(event.kind).unwrap_or(K::Unspecified);
        match (kind, event.payload) {
            (K::WorkflowFinished, Some(Payload::Workflow(w))) if w.id == workflow_id => {
                progress.finish();
                return Ok(w);
            }
            (_, Some(Payload::Task(t))) => progress.task(event.sequence, kind, &t),
            _ => {}
        }
    }
    progress.finish();
    Err(EngineError::Unavailable(
        "the event stream ended before the workflow finished".into(),
    ))
}

pub(super) fn report_workflow(workflow: pb::Workflow, tasks: &[pb::Task], json: bool) -> CliResult {
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

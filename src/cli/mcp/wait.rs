//! `wait_for_task`: follows the server's event stream for one task until it ends, the wait
//! runs out, or the client cancels the call; never polls. Each event on the way is a progress
//! notification when the call carried a progress token.

use std::time::Duration;

use rmcp::{
    RoleServer,
    model::{ProgressNotificationParam, ProgressToken},
    service::RequestContext,
};
use serde_json::{Value, json};
use tokio::time::Instant;
use tonic::Code;

use super::{
    Outcome, Parsed, Swarm,
    args::{DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, WaitForTask},
    error::ToolError,
};
use crate::{api::rest::to_json, pb};

/// The events worth a progress notification, and those that end a task ([`TERMINAL`]).
const FOLLOWED: [pb::EventKind; 8] = [
    pb::EventKind::TaskQueued,
    pb::EventKind::TaskStarted,
    pb::EventKind::TaskOutput,
    pb::EventKind::TaskRetrying,
    pb::EventKind::TaskCompleted,
    pb::EventKind::TaskFailed,
    pb::EventKind::TaskCancelled,
    pb::EventKind::TaskSkipped,
];

/// Characters of an output line a progress message keeps.
const PROGRESS_CHARS: usize = 200;

impl Swarm {
    pub(super) async fn wait_for_task(
        &self,
        a: Parsed<WaitForTask>,
        context: &RequestContext<RoleServer>,
    ) -> Outcome {
        let a = a?;
        let seconds = a.timeout_seconds.unwrap_or(DEFAULT_WAIT_SECONDS);
        if !(0.0..=MAX_WAIT_SECONDS).contains(&seconds) {
            return Err(ToolError::invalid(
                "timeout_seconds",
                format!("{seconds} is not between 0 and {MAX_WAIT_SECONDS}"),
            ));
        }
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let progress = context.meta.get_progress_token();
        let mut sent = 0u32;
        let mut request = pb::StreamEventsRequest {
            // The task's retained events first, so the progress tells its story from the
            // start (it may have started before this call came in), then live ones.
            after_sequence: Some(0),
            task_id: a.task_id.clone(),
            // Without a progress token only the end matters.
            kinds: match progress {
                Some(_) => FOLLOWED.iter().map(|k| *k as i32).collect(),
                None => TERMINAL.to_vec(),
            },
            ..Default::default()
        };
        // Each turn of this loop opens the stream again: only after DATA_LOSS (events no
        // longer retained, or a feed that fell behind). The stream is then live only, and
        // the task is read once it is open, so whatever happens after that read arrives on
        // the stream and nothing before it is needed.
        loop {
            let mut stream = self
                .events
                .clone()
                .stream_events(request.clone())
                .await
                .map_err(self.status_error(""))?
                .into_inner();
            let task = self.task(a.task_id.clone()).await?;
            if is_terminal(&task) {
                return Ok(finished(&task, true));
            }
            loop {
                let message = tokio::select! {
                    () = context.ct.cancelled() => {
                        return Err(ToolError::cancelled("the client cancelled the wait"));
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        let task = self.task(a.task_id.clone()).await?;
                        return Ok(finished(&task, is_terminal(&task)));
                    }
                    message = stream.message() => message,
                };
                let event = match message {
                    Ok(Some(event)) => event,
                    Ok(None) => {
                        return Err(ToolError::cancelled(
                            "the server ended the event stream (it is shutting down)",
                        ));
                    }
                    Err(status) if status.code() == Code::DataLoss => {
                        request.after_sequence = None;
                        break;
                    }
                    Err(status) => return Err(self.status_error("")(status)),
                };
                if TERMINAL.contains(&event.kind) {
                    let task = self.task(a.task_id.clone()).await?;
                    return Ok(finished(&task, true));
                }
                if let Some(token) = &progress {
                    sent += 1;
                    notify(context, token, sent, &event).await;
                }
            }
        }
    }
}

/// The kinds (as numbers) of the events that end a task.
const TERMINAL: [i32; 4] = [
    pb::EventKind::TaskCompleted as i32,
    pb::EventKind::TaskFailed as i32,
    pb::EventKind::TaskCancelled as i32,
    pb::EventKind::TaskSkipped as i32,
];

fn is_terminal(task: &pb::Task) -> bool {
    [
        pb::TaskStatus::Completed,
        pb::TaskStatus::Failed,
        pb::TaskStatus::Cancelled,
        pb::TaskStatus::Skipped,
    ]
    .iter()
    .any(|s| *s as i32 == task.status)
}

/// `{finished, task}`, with a hint to wait again when the task is not done.
fn finished(task: &pb::Task, done: bool) -> Value {
    let mut answer = json!({"finished": done, "task": to_json(task)});
    if !done {
        answer["message"] = json!(
            "the wait ran out before the task finished; call wait_for_task again to wait longer"
        );
    }
    answer
}

/// One progress notification for `event`; a client that went away is not an error here
/// (the wait ends with the call).
async fn notify(
    context: &RequestContext<RoleServer>,
    token: &ProgressToken,
    count: u32,
    event: &pb::Event,
) {
    let kind = pb::EventKind::try_from(event.kind).unwrap_or(pb::EventKind::Unspecified);
    let message = match (&event.payload, kind) {
        (Some(pb::event::Payload::Output(output)), _) => {
            let text: String = output.text.chars().take(PROGRESS_CHARS).collect();
            format!("output ({}): {text}", output.message_type)
        }
        (Some(pb::event::Payload::Task(task)), pb::EventKind::TaskRetrying) => {
            format!("retrying: {}", task.error)
        }
        (_, pb::EventKind::TaskStarted) => format!("started on {}", event.instance_id),
        (_, pb::EventKind::TaskQueued) => "queued".to_owned(),
        (_, kind) => kind.as_str_name().to_owned(),
    };
    let param =
        ProgressNotificationParam::new(token.clone(), f64::from(count)).with_message(message);
    if let Err(e) = context.peer.notify_progress(param).await {
        tracing::debug!(error = %e, "a progress notification was not sent");
    }
}

//! An agent with no process: every task completes at once with the text `ok`. For
//! measuring the engine and the API without the cost of processes (the benchmark harness)
//! and for tests of the engine's own rules end to end.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::engine::{
    TaskResult,
    ports::{Agent, BoxFuture, OutputSink, RunOutcome, RunRequest, StopSignal},
};

/// When one run started and ended, for latency figures.
#[derive(Clone, Debug)]
pub struct Timing {
    pub task_id: String,
    pub started: Instant,
    pub ended: Instant,
}

/// Completes every task at once; optionally reports each run's [`Timing`].
#[derive(Clone, Default)]
pub struct InstantAgent {
    timings: Option<mpsc::UnboundedSender<Timing>>,
}

impl InstantAgent {
    /// An instant agent that sends each run's timing to `timings`.
    pub fn timed(timings: mpsc::UnboundedSender<Timing>) -> Self {
        Self {
            timings: Some(timings),
        }
    }
}

impl Agent for InstantAgent {
    fn run(
        &self,
        request: RunRequest,
        _sink: OutputSink,
        _stop: StopSignal,
    ) -> BoxFuture<RunOutcome> {
        let started = Instant::now();
        let timings = self.timings.clone();
        Box::pin(async move {
            let outcome = RunOutcome::completed(TaskResult {
                text: "ok".into(),
                session_id: "instant".into(),
                num_turns: 1,
                exit_code: Some(0),
                ..TaskResult::default()
            });
            if let Some(timings) = timings {
                let _ = timings.send(Timing {
                    task_id: request.task_id.into(),
                    started,
                    ended: Instant::now(),
                });
            }
            outcome
        })
    }

    fn describe(&self) -> String {
        "instant".into()
    }
}

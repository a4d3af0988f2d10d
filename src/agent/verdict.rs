//! How a run ended, judged: what the process did (its `result` line, exit code, signal,
//! the stop asked of it) becomes the task's new state and a failure class. Only this module
//! knows Claude Code's result subtypes and error texts. Success is decided by `is_error`
//! and the exit code, never by `subtype` alone.

use std::time::Duration;

use super::{child::MAX_LINE, protocol::ResultLine};
use crate::engine::{
    FailureClass, TaskResult, TaskStatus,
    model::task::seconds,
    ports::{RunOutcome, StopReason},
};

/// Everything the agent layer reports about one run.
#[derive(Clone, Debug, Default)]
pub struct ProcessExit {
    pub result: Option<ResultLine>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stopped: Option<StopReason>,
    /// The process could not be started or read.
    pub failure: Option<String>,
    /// The end of what the process wrote to stderr.
    pub stderr_tail: String,
    pub duration: Duration,
    /// The `error` of an assistant line (`authentication_failed`, `rate_limit`, ...).
    pub agent_error: Option<String>,
    /// Stdout lines that were stream-json messages, and lines that were not.
    pub messages: usize,
    pub unparsed: usize,
    /// The agent printed a line longer than [`MAX_LINE`]: the run was ended there.
    pub line_too_long: bool,
    /// A shell step, not the agent.
    pub shell: bool,
    /// With worktree isolation: the branch and what changed on it.
    pub branch: Option<String>,
    pub diff_stat: String,
    /// The task's `output_schema`: a run that completes must have given a structured
    /// output matching it.
    pub output_schema: Option<serde_json::Value>,
}

impl ProcessExit {
    /// Success is decided by `is_error` and the exit code, never by `subtype` alone.
    pub fn outcome(&self) -> RunOutcome {
        let result = self.result.as_ref().map(|r| TaskResult {
            text: r.text.clone(),
            session_id: r.session_id.clone(),
            cost_usd: r.cost_usd,
            usage: r.usage.clone(),
            num_turns: r.num_turns,
            duration: self.duration,
            exit_code: self.exit_code,
            is_error: r.is_error,
            api_error_status: r.api_error_status,
            branch: self.branch.clone(),
            diff_stat: self.diff_stat.clone(),
            structured_output: r.structured_output.clone(),
            permission_denials: r.permission_denials.clone(),
        });
        use FailureClass as C;
        let invalid = self.result.as_ref().and_then(|r| self.output_invalid(r));
        let (status, error, class) = match (self.stopped, &self.failure, &self.result) {
            (Some(StopReason::Cancelled), ..) => {
                (TaskStatus::Cancelled, "cancelled".to_string(), C::Cancelled)
            }
            // The engine keeps such a task as a crash would leave it (to run again after
            // the restart, if its policy allows); this is only what the run saw.
            (Some(StopReason::Shutdown), ..) => (
                TaskStatus::Failed,
                "interrupted: the server shut down".to_string(),
                C::Interrupted,
            ),
            (Some(StopReason::TimedOut(after)), ..) => (
                TaskStatus::Failed,
                format!("timed out after {}", seconds(after)),
                C::Timeout,
            ),
            (Some(StopReason::InstanceTerminated), ..) => (
                TaskStatus::Failed,
                "its instance was terminated".to_string(),
                C::Interrupted,
            ),
            (None, ..) if self.line_too_long => (
                TaskStatus::Failed,
                format!(
                    "the agent printed a line longer than {} MiB, the most claude-swarm reads \
                     (a result that large cannot be kept); the run was stopped",
                    MAX_LINE / (1024 * 1024)
                ),
                C::ProtocolError,
            ),
            (None, Some(failure), _) => (TaskStatus::Failed, failure.clone(), C::SpawnFailed),
            (None, None, Some(r)) if r.is_error => {
                let reason = if r.reason.is_empty() {
                    "error"
                } else {
                    &r.reason
                };
                let who = if self.shell { "command" } else { "agent" };
                (
                    TaskStatus::Failed,
                    format!("{who} reported an error ({reason}): {}", r.text),
                    self.error_class(r),
                )
            }
            (None, None, Some(r))
                if self.exit_code == Some(0) && !r.is_error && invalid.is_some() =>
            {
                (
                    TaskStatus::Failed,
                    invalid.unwrap_or_default(),
                    C::OutputInvalid,
                )
            }
            (None, None, Some(_)) if self.exit_code == Some(0) => {
                return RunOutcome {
                    status: TaskStatus::Completed,
                    result,
                    error: None,
                    class: None,
                };
            }
            (None, None, Some(_)) => (
                TaskStatus::Failed,
                format!("agent {} after its result", self.exit_text()),
                C::ProcessCrashed,
            ),
            (None, None, None) => {
                let class = if self.unparsed > 0 && self.messages == 0 {
                    C::ProtocolError
                } else {
                    C::ProcessCrashed
                };
                let what = if class == C::ProtocolError {
                    " and printed no stream-json"
                } else {
                    ""
                };
                let error = format!(
                    "agent {} without a result line{what}{}",
                    self.exit_text(),
                    self.stderr_note()
                );
                (TaskStatus::Failed, error, class)
            }
        };
        RunOutcome {
            status,
            result,
            error: Some(error),
            class: Some(class),
        }
    }

    /// Why a clean result does not do with the task's `output_schema`, if it does not: the
    /// CLI gave no structured output (the model never called its StructuredOutput tool),
    /// or one that does not match (the CLI checks, but another CLI may not).
    fn output_invalid(&self, r: &ResultLine) -> Option<String> {
        let schema = self.output_schema.as_ref()?;
        let Some(output) = &r.structured_output else {
            return Some(
                "the answer has no structured output, and the task has an output_schema".into(),
            );
        };
        crate::engine::model::schema::matches(schema, output)
            .err()
            .map(|why| format!("the structured output does not match the output_schema: {why}"))
    }

    /// The class of an error result: what the CLI said, not how it said it.
    fn error_class(&self, r: &ResultLine) -> FailureClass {
        let text = r.text.to_ascii_lowercase();
        let agent_error = self.agent_error.as_deref().unwrap_or_default();
        if self.shell {
            FailureClass::CommandFailed
        } else if r.subtype == "error_max_turns" {
            FailureClass::MaxTurns
        } else if r.subtype == "error_max_budget_usd" {
            FailureClass::BudgetExhausted
        } else if agent_error == "authentication_failed"
            || text.contains("not logged in")
            || text.contains("invalid api key")
        {
            FailureClass::Authentication
        } else if r.api_error_status == Some(429)
            || agent_error.contains("rate_limit")
            || text.contains("rate limit")
        {
            FailureClass::RateLimited
        } else {
            FailureClass::ApiError
        }
    }

    fn exit_text(&self) -> String {
        match (self.exit_code, self.signal) {
            (_, Some(sig)) => format!("was killed by signal {sig}"),
            (Some(code), _) => format!("exited with code {code}"),
            (None, None) => "ended".to_string(),
        }
    }

    fn stderr_note(&self) -> String {
        let tail = self.stderr_tail.trim();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {tail}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(is_error: bool) -> ResultLine {
        ResultLine {
            text: "hi".into(),
            is_error,
            reason: "api_error".into(),
            ..Default::default()
        }
    }

    #[test]
    fn is_error_decides_not_subtype() {
        let out = ProcessExit {
            result: Some(result(true)),
            exit_code: Some(0),
            ..Default::default()
        };
        let v = out.outcome();
        assert_eq!(v.status, TaskStatus::Failed);
        assert!(v.error.unwrap().contains("api_error"));
        assert!(v.result.unwrap().is_error);
    }

    #[test]
    fn clean_result_and_exit_zero_completes() {
        let out = ProcessExit {
            result: Some(result(false)),
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(out.outcome().status, TaskStatus::Completed);
        let out = ProcessExit {
            result: Some(result(false)),
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(out.outcome().status, TaskStatus::Failed);
    }

    #[test]
    fn missing_result_line_fails_with_stderr() {
        let out = ProcessExit {
            signal: Some(9),
            stderr_tail: "boom".into(),
            ..Default::default()
        };
        let v = out.outcome();
        assert_eq!(v.status, TaskStatus::Failed);
        assert_eq!(
            v.error.unwrap(),
            "agent was killed by signal 9 without a result line; stderr: boom"
        );
    }

    #[test]
    fn a_line_too_long_is_a_protocol_error_whatever_the_exit() {
        let out = ProcessExit {
            line_too_long: true,
            exit_code: Some(0),
            messages: 1,
            ..Default::default()
        };
        let v = out.outcome();
        assert_eq!(
            (v.status, v.class),
            (TaskStatus::Failed, Some(FailureClass::ProtocolError))
        );
        assert!(v.error.unwrap().contains("longer than 16 MiB"));
    }

    #[test]
    fn stop_reasons_win() {
        let out = ProcessExit {
            stopped: Some(StopReason::Cancelled),
            result: Some(result(false)),
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(out.outcome().status, TaskStatus::Cancelled);
        let out = ProcessExit {
            stopped: Some(StopReason::TimedOut(Duration::from_millis(1500))),
            ..Default::default()
        };
        assert_eq!(out.outcome().error.unwrap(), "timed out after 1.5s");
    }
}

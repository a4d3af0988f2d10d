//! `claude-swarm approvals`, `approve ID [--always [SCOPE]]`, `deny ID [--message M]`: the
//! tool calls waiting on a person, and the decisions.

use tonic::{service::interceptor::InterceptedService, transport::Channel};

use super::{
    client::Bearer,
    print::{head, print, word},
};
use crate::{
    api::convert::to_pb,
    engine::{ApprovalState, PolicyScope},
    pb::{self, approval_service_client::ApprovalServiceClient},
};

type Client = ApprovalServiceClient<InterceptedService<Channel, Bearer>>;

pub(super) fn state_word(state: i32) -> &'static str {
    word::<ApprovalState>(state)
}

/// `Bash(touch x && echo y)`, or the tool and its input, cut to `max` characters.
pub(super) fn call_text(tool: &str, input: Option<&pbjson_types::Struct>, max: usize) -> String {
    let input = input
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    let shown = ["command", "file_path", "url", "path"]
        .iter()
        .find_map(|key| input.get(*key).and_then(|v| v.as_str()).map(str::to_owned))
        .unwrap_or_else(|| match &input {
            serde_json::Value::Object(map) if map.is_empty() => String::new(),
            other => other.to_string(),
        });
    head(&format!("{tool}({shown})"), max)
}

/// A state word (`pending`, `APPROVAL_STATE_PENDING`) as its proto value.
fn parse_state(text: &str) -> Result<i32, String> {
    let word = text.to_ascii_lowercase();
    let word = word.strip_prefix("approval_state_").unwrap_or(&word);
    ApprovalState::parse(word).map(to_pb).ok_or_else(|| {
        let all: Vec<&str> = ApprovalState::ALL.iter().map(|s| s.as_str()).collect();
        format!("--state {text:?} is not one of {}", all.join(", "))
    })
}

/// `--always` alone means the task's policy.
fn parse_scope(text: Option<&str>) -> Result<i32, String> {
    match text {
        None => Ok(0),
        Some(text) => PolicyScope::parse(&text.to_ascii_lowercase())
            .map(to_pb)
            .ok_or_else(|| format!("--always {text:?} is not one of task, workflow, swarm")),
    }
}

pub(super) async fn list(
    client: &mut Client,
    states: &[String],
    task: Option<String>,
    workflow: Option<String>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let request = pb::ListApprovalsRequest {
        state: states
            .iter()
            .map(|s| parse_state(s))
            .collect::<Result<_, _>>()?,
        task_id: task.unwrap_or_default(),
        workflow_id: workflow.unwrap_or_default(),
    };
    let response = client.list_approvals(request).await?.into_inner();
    print(json, &response, |r| print_approvals(&r.approvals))?;
    Ok(())
}

/// What `approve` and `deny` send.
pub(super) struct Verdict {
    pub(super) id: String,
    pub(super) allow: bool,
    pub(super) message: Option<String>,
    /// `Some(None)`: `--always` with no scope (the task's).
    pub(super) always: Option<Option<String>>,
    /// The edited input, as JSON text.
    pub(super) input: Option<String>,
}

pub(super) async fn decide(
    client: &mut Client,
    verdict: Verdict,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let always = match &verdict.always {
        None => 0,
        Some(scope) => parse_scope(Some(scope.as_deref().unwrap_or("task")))?,
    };
    let updated_input = match &verdict.input {
        None => None,
        Some(text) => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("--input: not JSON: {e}"))?;
            Some(serde_json::from_value::<pbjson_types::Value>(value)?)
        }
    };
    let request = pb::DecideApprovalRequest {
        approval_id: verdict.id,
        allow: verdict.allow,
        message: verdict.message.unwrap_or_default(),
        updated_input,
        always,
    };
    let approval = client.decide_approval(request).await?.into_inner();
    print(json, &approval, |a| {
        let rule = if a.rule_added.is_empty() {
            String::new()
        } else {
            format!("; added {}", a.rule_added)
        };
        println!("{} {}{rule}", a.id, state_word(a.state));
    })?;
    Ok(())
}

fn print_approvals(approvals: &[pb::Approval]) {
    let rows: Vec<Vec<String>> = approvals
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.task_id.clone(),
                state_word(a.state).to_owned(),
                call_text(&a.tool_name, a.input.as_ref(), 60),
                a.decided_by.clone(),
                head(&a.message, 40),
            ]
        })
        .collect();
    super::print::table(&["ID", "TASK", "STATE", "CALL", "BY", "MESSAGE"], &rows);
}

//! Claude Code's control protocol for tool permissions. With
//! `--permission-prompt-tool stdio` the CLI asks its host before a tool call that would
//! prompt: a `control_request` of subtype `can_use_tool` on stdout, then it waits for the
//! `control_response` with the same `request_id` on stdin. Each question goes to the engine
//! (the task's policy, else an approval a person decides) while the run goes on reading;
//! the answers come back in the order they are decided. A `system` line of subtype
//! `permission_denied` (a call the CLI refused on its own) is reported as a denial.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::engine::{
    PermissionDenial,
    ports::{OutputSink, PermissionDecision, PermissionRequest},
};

/// The flags that make the CLI ask its host (it needs `--input-format stream-json`).
pub(super) const PERMISSION_FLAGS: [&str; 2] = ["--permission-prompt-tool", "stdio"];

/// Tool calls whose inputs are kept for a refusal that names only their id.
const RECENT_CALLS: usize = 32;

/// A run's open questions.
pub(super) struct Control {
    /// Each resolves to the `control_response` line to write.
    open: JoinSet<String>,
    /// The run's working directory, which relative paths of tool inputs start from.
    cwd: PathBuf,
    /// The inputs of the turn's tool calls by `tool_use_id`, for a refusal that names
    /// only the id.
    inputs: HashMap<String, Value>,
}

impl Control {
    pub(super) fn new(cwd: &Path) -> Self {
        Self {
            open: JoinSet::new(),
            cwd: cwd.to_owned(),
            inputs: HashMap::new(),
        }
    }

    /// Looks at one stdout line: a `can_use_tool` request is asked of the engine (its answer
    /// comes from [`Control::next_answer`]); a `permission_denied` line is reported.
    pub(super) async fn on_line(&mut self, sink: &OutputSink, line: &str) {
        let wanted = ["can_use_tool", "permission_denied", "\"tool_use\""];
        if !wanted.iter().any(|w| line.contains(w)) {
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return;
        };
        match (value["type"].as_str(), value["subtype"].as_str()) {
            (Some("assistant"), _) => {
                let blocks = value["message"]["content"].as_array().into_iter().flatten();
                for block in blocks.filter(|b| b["type"] == "tool_use") {
                    if let Some(id) = block["id"].as_str() {
                        // A refusal follows its call at once: the last few calls are
                        // enough, and a long run's inputs are not kept.
                        if self.inputs.len() >= RECENT_CALLS {
                            self.inputs.clear();
                        }
                        self.inputs.insert(id.to_owned(), block["input"].clone());
                    }
                }
            }
            (Some("control_request"), _) if value["request"]["subtype"] == "can_use_tool" => {
                let request_id = value["request_id"].as_str().unwrap_or_default().to_owned();
                let mut request = permission_request(&value["request"]);
                request.resolved = resolve(&self.cwd, &request.input);
                let input = request.input.clone();
                let sink = sink.clone();
                let asked = async move {
                    let decision = sink.ask(request).await;
                    response_line(&request_id, decision, input)
                };
                self.open.spawn(asked.in_current_span());
            }
            (Some("system"), Some("permission_denied")) => {
                let tool_use_id = text(&value["tool_use_id"]);
                let denial = PermissionDenial {
                    tool_name: text(&value["tool_name"]),
                    input: self.inputs.remove(&tool_use_id).unwrap_or_default(),
                    tool_use_id,
                    message: text(&value["message"]),
                };
                sink.denied(denial).await;
            }
            _ => {}
        }
    }

    /// The next answer to write to the CLI's stdin, as one line; waits forever while no
    /// question is open.
    pub(super) async fn next_answer(&mut self) -> String {
        loop {
            match self.open.join_next().await {
                Some(Ok(line)) => return line,
                // A question whose task panicked: the CLI's wait ends with the run.
                Some(Err(_)) => {}
                None => std::future::pending().await,
            }
        }
    }
}

/// The file a tool's input names and the working directory, both with symlinks followed:
/// the deepest part of the path that exists is resolved, the rest kept as written. `None`
/// when the input names no file or the directory cannot be resolved.
fn resolve(cwd: &Path, input: &Value) -> Option<(PathBuf, PathBuf)> {
    let named = ["file_path", "notebook_path", "path"]
        .iter()
        .find_map(|key| input[*key].as_str())?;
    let real_cwd = cwd.canonicalize().ok()?;
    let path = cwd.join(named);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut real) = existing.canonicalize() {
            real.extend(rest.iter().rev());
            return Some((real, real_cwd));
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn permission_request(request: &Value) -> PermissionRequest {
    PermissionRequest {
        tool_name: text(&request["tool_name"]),
        input: match &request["input"] {
            Value::Object(_) => request["input"].clone(),
            _ => json!({}),
        },
        suggestions: match &request["permission_suggestions"] {
            Value::Array(_) => request["permission_suggestions"].clone(),
            _ => json!([]),
        },
        description: text(&request["description"]),
        blocked_path: request["blocked_path"].as_str().map(str::to_owned),
        tool_use_id: text(&request["tool_use_id"]),
        resolved: None,
    }
}

/// The `control_response` line for a decision. An allow carries the input to run with (the
/// CLI wants it back, edited or not).
fn response_line(request_id: &str, decision: PermissionDecision, input: Value) -> String {
    let response = match decision {
        PermissionDecision::Allow { updated_input } => json!({
            "behavior": "allow",
            "updatedInput": updated_input.unwrap_or(input),
        }),
        PermissionDecision::Deny { message } => json!({ "behavior": "deny", "message": message }),
    };
    let line = json!({
        "type": "control_response",
        "response": { "subtype": "success", "request_id": request_id, "response": response },
    });
    format!("{line}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: &str =
        include_str!("../../tests/fixtures/claude-code-cli/can-use-tool-allow.jsonl");

    #[test]
    fn the_captured_request_is_read_whole() {
        let line = ALLOW
            .lines()
            .find(|l| l.contains("can_use_tool"))
            .expect("the capture asks");
        let value: Value = serde_json::from_str(line).unwrap();
        let request = permission_request(&value["request"]);
        assert_eq!(request.tool_name, "Bash");
        assert_eq!(
            request.input["command"],
            "touch /home/user/outside/marker && echo wrote-it"
        );
        assert_eq!(request.suggestions[0]["type"], "addRules");
        assert_eq!(
            request.blocked_path.as_deref(),
            Some("/home/user/outside/marker")
        );
        assert_eq!(request.tool_use_id, "toolu_fake1");
    }

    #[test]
    fn a_path_is_resolved_through_its_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("src/link")).unwrap();
        let input = json!({ "file_path": "src/link/new.txt" });
        let (path, cwd) = resolve(dir.path(), &input).unwrap();
        assert_eq!(cwd, dir.path().canonicalize().unwrap());
        assert_eq!(path, outside.path().canonicalize().unwrap().join("new.txt"));
        assert_eq!(resolve(dir.path(), &json!({ "command": "ls" })), None);
    }

    #[test]
    fn answers_have_the_shape_the_cli_reads() {
        let input = json!({ "command": "ls" });
        let allow = response_line(
            "r1",
            PermissionDecision::Allow {
                updated_input: None,
            },
            input.clone(),
        );
        let allow: Value = serde_json::from_str(&allow).unwrap();
        assert_eq!(allow["response"]["request_id"], "r1");
        assert_eq!(allow["response"]["response"]["behavior"], "allow");
        assert_eq!(allow["response"]["response"]["updatedInput"], input);
        let deny = response_line(
            "r2",
            PermissionDecision::Deny {
                message: "no".into(),
            },
            input,
        );
        let deny: Value = serde_json::from_str(&deny).unwrap();
        assert_eq!(
            deny["response"]["response"],
            json!({ "behavior": "deny", "message": "no" })
        );
    }
}

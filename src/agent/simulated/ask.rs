//! `sim:ask=PATH`: a tool call that needs permission, as Claude Code 2.1.332 makes it
//! (`can-use-tool-*.jsonl`, `permission-denied-print-mode.jsonl`): a Bash call writing
//! `PATH`, outside the working directory. With `--permission-prompt-tool stdio` the
//! simulation asks its host with a `can_use_tool` control request and waits for the answer;
//! allowed, it runs the command (edited or not) with `sh -c`, so the file appears; denied,
//! the tool result is the message. Without a handler it refuses on its own, as print mode
//! does (`system`/`permission_denied`). Every refusal is listed in the result's
//! `permission_denials`.

use std::{io, io::Write, path::Path};

use serde_json::{Value, json};

use super::{Pause, Session};

/// What the tool call came to: the tool's output and whether it was refused.
pub(super) struct Asked {
    pub(super) output: String,
    /// The result line's `permission_denials` entry, when it was refused.
    pub(super) denial: Option<Value>,
}

impl Session {
    pub(super) fn ask_tool(
        &self,
        path: &str,
        stdio: bool,
        out: &mut impl Write,
        clock: &mut dyn Pause,
    ) -> io::Result<Asked> {
        let tool_id = format!("toolu_sim_ask_{}", uuid::Uuid::new_v4().simple());
        let command = format!("touch {path} && echo wrote-it");
        let input = json!({ "command": command, "description": "print a marker" });
        self.emit(
            out,
            self.assistant(json!([{ "type": "text", "text": "running it" }])),
        )?;
        self.emit(
            out,
            self.assistant(
                json!([{ "type": "tool_use", "id": tool_id, "name": "Bash", "input": input }]),
            ),
        )?;
        let dir = Path::new(path)
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let refused = |message: &str| Asked {
            output: message.to_owned(),
            denial: Some(
                json!({ "tool_name": "Bash", "tool_use_id": tool_id, "tool_input": input }),
            ),
        };
        let asked = if stdio {
            let request_id = uuid::Uuid::new_v4().to_string();
            self.emit(out, json!({
                "type": "control_request",
                "request_id": request_id,
                "request": {
                    "subtype": "can_use_tool",
                    "tool_name": "Bash",
                    "display_name": "Bash",
                    "input": input,
                    "description": "print a marker",
                    "permission_suggestions": [
                        { "type": "addRules", "rules": [{ "toolName": "Bash", "ruleContent": command }], "behavior": "allow", "destination": "localSettings" },
                        { "type": "addDirectories", "directories": [dir], "destination": "session" },
                        { "type": "setMode", "mode": "acceptEdits", "destination": "session" },
                    ],
                    "blocked_path": path,
                    "tool_use_id": tool_id,
                },
            }))?;
            match clock.answer(&request_id) {
                Some(answer) if answer["behavior"] == "allow" => {
                    let run = answer["updatedInput"]["command"]
                        .as_str()
                        .unwrap_or(&command)
                        .to_owned();
                    let ran = std::process::Command::new("sh")
                        .arg("-c")
                        .arg(&run)
                        .output()?;
                    let text = String::from_utf8_lossy(&ran.stdout).trim().to_owned();
                    Asked {
                        output: text,
                        denial: None,
                    }
                }
                Some(answer) => refused(answer["message"].as_str().unwrap_or("denied")),
                None => refused("Tool permission stream closed before response received"),
            }
        } else {
            let message = format!(
                "touch in '{path}' needs approval. The path is outside the working directories \
                 for this session ('{}'). Allowing runs the command as written.",
                self.cwd
            );
            self.emit(
                out,
                json!({
                    "type": "system",
                    "subtype": "permission_denied",
                    "tool_name": "Bash",
                    "tool_use_id": tool_id,
                    "message": message,
                    "uuid": uuid::Uuid::new_v4().to_string(),
                    "session_id": self.id,
                }),
            )?;
            refused(&message)
        };
        let mut result = self.user_tool_result(&tool_id, &asked.output);
        if asked.denial.is_some() {
            result["message"]["content"][0]["is_error"] = json!(true);
            result["tool_use_result"] = json!(format!("Error: {}", asked.output));
        }
        self.emit(out, result)?;
        Ok(asked)
    }
}

//! Claude Code's `--output-format stream-json` lines as typed messages. Keys arrive in no
//! fixed order and new keys appear between releases, so every struct takes what it needs
//! and ignores the rest. Lines that are not JSON are reported, never fatal.

use serde::Deserialize;
use serde_json::Value;

use std::time::{Duration, UNIX_EPOCH};

use crate::engine::{
    AgentOutput, PermissionDenial, Usage,
    model::account::{LimitReport, LimitStatus},
};

/// The agent's `result` line, reduced to what the engine keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultLine {
    pub text: String,
    pub session_id: String,
    pub cost_usd: f64,
    pub usage: Usage,
    pub num_turns: u32,
    pub is_error: bool,
    /// `terminal_reason` / `subtype`, for error messages.
    pub reason: String,
    /// `subtype` (`success`, `error_max_turns`, `error_max_budget_usd`, ...).
    pub subtype: String,
    /// `api_error_status`, when the API answered with an error.
    pub api_error_status: Option<u16>,
    /// `structured_output`: with `--json-schema`, the answer the CLI checked against it.
    pub structured_output: Option<Value>,
    /// `permission_denials`: the tool calls refused during the turn.
    pub permission_denials: Vec<PermissionDenial>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamMessage {
    System {
        #[serde(default)]
        subtype: String,
        #[serde(default)]
        session_id: String,
        #[serde(default)]
        model: String,
    },
    Assistant {
        message: MessageBody,
        /// Set on synthetic error messages (`authentication_failed`, `server_error`).
        #[serde(default)]
        error: Option<String>,
    },
    User {
        message: MessageBody,
    },
    Result(ResultMessage),
    RateLimitEvent {
        #[serde(default)]
        rate_limit_info: Value,
    },
    StreamEvent {},
    ControlResponse {},
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
pub struct MessageBody {
    #[serde(default)]
    pub content: Content,
}

/// A message's content: a plain string or a list of blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl Default for Content {
    fn default() -> Self {
        Self::Blocks(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        content: Value,
        #[serde(default)]
        is_error: bool,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResultMessage {
    pub subtype: String,
    pub is_error: bool,
    pub result: Option<String>,
    pub session_id: String,
    pub num_turns: u32,
    pub duration_ms: u64,
    pub total_cost_usd: f64,
    pub usage: UsageJson,
    pub terminal_reason: Option<String>,
    pub api_error_status: Option<Value>,
    /// Messages on error subtypes.
    pub errors: Vec<Value>,
    pub structured_output: Option<Value>,
    pub permission_denials: Vec<DenialJson>,
}

/// One of a result line's `permission_denials`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DenialJson {
    pub tool_name: String,
    pub tool_use_id: String,
    pub tool_input: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsageJson {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

/// One stdout line, understood.
#[derive(Debug)]
pub struct ParsedLine {
    pub output: AgentOutput,
    /// Present on the turn's `result` line.
    pub result: Option<ResultLine>,
    /// A `rate_limit_event`: the account's usage limit.
    pub limit: Option<LimitReport>,
    /// A `system/api_retry` line: the CLI retries an API call.
    pub api_retry: bool,
}

/// Longest text shown for one tool input or tool result.
const SNIPPET: usize = 200;

pub fn parse_line(line: &str) -> ParsedLine {
    let truncated = line.len() > AgentOutput::MAX_RAW;
    let raw = cut(line, AgentOutput::MAX_RAW).to_owned();
    let mut output = AgentOutput {
        raw,
        truncated,
        ..AgentOutput::default()
    };
    let message = match serde_json::from_str::<StreamMessage>(line) {
        Ok(message) => message,
        Err(_) => {
            output.message_type = "unparsed".into();
            return ParsedLine {
                output,
                result: None,
                limit: None,
                api_retry: false,
            };
        }
    };
    let mut result = None;
    let mut limit = None;
    let mut api_retry = false;
    let (kind, subtype, text) = match message {
        StreamMessage::System {
            subtype,
            session_id,
            model,
        } => {
            let text = match subtype.as_str() {
                "init" => format!("session {session_id} on {model}"),
                _ => String::new(),
            };
            api_retry = subtype == "api_retry";
            ("system", subtype, text)
        }
        StreamMessage::Assistant { message, error } => (
            "assistant",
            error.unwrap_or_default(),
            content_text(&message.content),
        ),
        StreamMessage::User { message } => ("user", String::new(), content_text(&message.content)),
        StreamMessage::Result(r) => {
            let text = r.result.clone().unwrap_or_else(|| {
                r.errors
                    .iter()
                    .map(value_text)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            let reason = match (&r.terminal_reason, &r.api_error_status) {
                (Some(reason), Some(Value::Number(status))) => format!("{reason} {status}"),
                (Some(reason), _) => reason.clone(),
                (None, _) => r.subtype.clone(),
            };
            result = Some(ResultLine {
                text: text.clone(),
                session_id: r.session_id,
                cost_usd: r.total_cost_usd,
                usage: Usage {
                    input_tokens: r.usage.input_tokens,
                    output_tokens: r.usage.output_tokens,
                    cache_creation_input_tokens: r.usage.cache_creation_input_tokens,
                    cache_read_input_tokens: r.usage.cache_read_input_tokens,
                },
                num_turns: r.num_turns,
                is_error: r.is_error,
                reason,
                subtype: r.subtype.clone(),
                api_error_status: r
                    .api_error_status
                    .as_ref()
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok()),
                structured_output: r.structured_output.filter(|v| !v.is_null()),
                permission_denials: r
                    .permission_denials
                    .into_iter()
                    .map(|d| PermissionDenial {
                        tool_name: d.tool_name,
                        tool_use_id: d.tool_use_id,
                        input: d.tool_input,
                        message: String::new(),
                    })
                    .collect(),
            });
            ("result", r.subtype, text)
        }
        StreamMessage::RateLimitEvent { rate_limit_info } => {
            limit = limit_report(&rate_limit_info);
            (
                "rate_limit_event",
                String::new(),
                value_text(&rate_limit_info),
            )
        }
        StreamMessage::StreamEvent {} => ("stream_event", String::new(), String::new()),
        StreamMessage::ControlResponse {} => ("control_response", String::new(), String::new()),
        StreamMessage::Unknown => {
            let kind = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            output.message_type = kind;
            return ParsedLine {
                output,
                result: None,
                limit: None,
                api_retry: false,
            };
        }
    };
    output.message_type = kind.into();
    output.subtype = subtype;
    output.text = text;
    ParsedLine {
        output,
        result,
        limit,
        api_retry,
    }
}

/// A `rate_limit_event`'s `rate_limit_info`, as Claude Code 2.1.332 writes it from the
/// API's `anthropic-ratelimit-unified-*` response headers (only for a subscription login,
/// `CLAUDE_CODE_OAUTH_TOKEN` or a logged-in config directory: an API key's responses carry
/// none): `status` (`allowed`, `allowed_warning` once past a warning threshold, `rejected`
/// while requests are refused), `resetsAt` (unix seconds), `rateLimitType` (`five_hour`,
/// `seven_day`, ...), `utilization` (0 to 1, on warnings). A refused request's line comes
/// before the 429's error result. Unknown statuses are ignored.
fn limit_report(info: &Value) -> Option<LimitReport> {
    let status = LimitStatus::parse(info.get("status")?.as_str()?)?;
    let resets_at = info.get("resetsAt").and_then(Value::as_u64).map(|t| {
        // Seconds, or milliseconds from a future CLI: both are plausible there.
        let seconds = if t > 10_000_000_000 { t / 1000 } else { t };
        UNIX_EPOCH + Duration::from_secs(seconds)
    });
    Some(LimitReport {
        status,
        resets_at,
        window: info
            .get("rateLimitType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        utilization: info
            .get("utilization")
            .and_then(Value::as_f64)
            .filter(|u| u.is_finite()),
    })
}

fn content_text(content: &Content) -> String {
    let blocks = match content {
        Content::Text(text) => return text.clone(),
        Content::Blocks(blocks) => blocks,
    };
    let parts: Vec<String> = blocks
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(text.clone()),
            ContentBlock::Thinking { .. } | ContentBlock::Other => None,
            ContentBlock::ToolUse { name, input } => Some(format!(
                "[tool {name}] {}",
                cut(&input.to_string(), SNIPPET)
            )),
            ContentBlock::ToolResult { content, is_error } => {
                let label = if *is_error {
                    "tool error"
                } else {
                    "tool result"
                };
                Some(format!("[{label}] {}", cut(&value_text(content), SNIPPET)))
            }
        })
        .collect();
    parts.join("\n")
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.get("text")
                    .map_or_else(|| value_text(item), value_text)
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The longest prefix of at most `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/claude-code-cli/"
    );

    fn lines(name: &str) -> Vec<ParsedLine> {
        std::fs::read_to_string(format!("{FIXTURES}{name}"))
            .unwrap()
            .lines()
            .map(parse_line)
            .collect()
    }

    #[test]
    fn real_success_capture() {
        let parsed = lines("success-against-local-fake-api.jsonl");
        let kinds: Vec<_> = parsed
            .iter()
            .map(|p| p.output.message_type.as_str())
            .collect();
        assert_eq!(kinds, ["system", "assistant", "result"]);
        assert_eq!(parsed[1].output.text, "hi from mock");
        let result = parsed[2].result.as_ref().unwrap();
        assert!(!result.is_error);
        assert_eq!(result.text, "hi from mock");
        assert_eq!(result.session_id, "70aed274-db6d-469c-b7e2-4303817010da");
        assert_eq!(result.cost_usd, 0.00008);
        assert_eq!(result.usage.input_tokens, 5);
        assert_eq!(result.usage.output_tokens, 3);
    }

    #[test]
    fn real_not_logged_in_is_an_error_despite_subtype_success() {
        let parsed = lines("not-logged-in.jsonl");
        assert_eq!(parsed[1].output.subtype, "authentication_failed");
        let result = parsed[2].result.as_ref().unwrap();
        assert!(result.is_error);
        assert_eq!(result.reason, "api_error");
        assert_eq!(result.text, "Not logged in · Please run /login");
    }

    #[test]
    fn a_result_lists_the_calls_it_refused() {
        let parsed = lines("can-use-tool-deny.jsonl");
        let result = parsed.last().unwrap().result.as_ref().unwrap();
        assert!(!result.is_error);
        assert_eq!(result.permission_denials.len(), 1);
        let denial = &result.permission_denials[0];
        assert_eq!(denial.tool_name, "Bash");
        assert_eq!(denial.tool_use_id, "toolu_fake1");
        assert_eq!(
            denial.input["command"],
            "touch /home/user/outside/marker && echo wrote-it"
        );
        let allowed = lines("can-use-tool-allow.jsonl");
        let result = allowed.last().unwrap().result.as_ref().unwrap();
        assert!(result.permission_denials.is_empty());
    }

    #[test]
    fn garbage_and_unknown_lines_are_survivable() {
        assert_eq!(
            parse_line("not json at all").output.message_type,
            "unparsed"
        );
        assert_eq!(
            parse_line(r#"{"type":"brand_new","x":1}"#)
                .output
                .message_type,
            "brand_new"
        );
        let big = "x".repeat(AgentOutput::MAX_RAW + 10);
        let parsed = parse_line(&big);
        assert!(parsed.output.truncated);
        assert_eq!(parsed.output.raw.len(), AgentOutput::MAX_RAW);
    }

    #[test]
    fn real_rate_limit_lines_become_reports() {
        // Lines the real 2.1.332 printed against the fake API with a subscription login.
        let rejected = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1796169724,"rateLimitType":"five_hour","isUsingOverage":false,"unifiedWindows":{"five_hour":{"utilization":1,"resetsAt":1796169724,"status":"rejected"}}},"uuid":"29e08fcd-09ab-4b2a-93ca-9389a00f9da6","session_id":"6882602a-9e6d-453d-ac3f-5a9692bc82d3"}"#;
        let report = parse_line(rejected).limit.unwrap();
        assert_eq!(report.status, LimitStatus::Rejected);
        assert_eq!(
            report.resets_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_796_169_724))
        );
        assert_eq!(report.window.as_deref(), Some("five_hour"));
        let warning = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1796169729,"rateLimitType":"five_hour","utilization":0.92,"isUsingOverage":false,"surpassedThreshold":0.9},"uuid":"61d19ec9-03af-47bd-a7ef-719c0082f7be","session_id":"26d6e7ad-f75b-4cf6-93ef-a79668bbe039"}"#;
        let report = parse_line(warning).limit.unwrap();
        assert_eq!(report.status, LimitStatus::Warning);
        assert_eq!(report.utilization, Some(0.92));
        let odd = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"brand_new"}}"#;
        assert!(parse_line(odd).limit.is_none());
        let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":2,"retry_delay_ms":512,"error_status":529,"error":"overloaded","session_id":"a73132fc-009e-423e-891b-30e592281e0c","uuid":"d056078c-d795-4c67-bbef-415eedd1c2ca"}"#;
        assert!(parse_line(retry).api_retry);
        assert!(!parse_line(rejected).api_retry);
    }

    #[test]
    fn tool_use_and_results_show_as_text() {
        let line = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}"#;
        assert_eq!(
            parse_line(line).output.text,
            r#"[tool Bash] {"command":"ls"}"#
        );
        let line = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a\nb","is_error":false}]}}"#;
        assert_eq!(parse_line(line).output.text, "[tool result] a\nb");
    }
}

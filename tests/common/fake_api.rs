//! A fake Anthropic Messages API on 127.0.0.1:0, for driving the real Claude Code CLI
//! offline (`ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`, any `ANTHROPIC_API_KEY`).
//!
//! `POST /v1/messages` (the CLI adds `?beta=true`) answers with the Messages API's streaming
//! events (`message_start`, `content_block_start`, `content_block_delta`,
//! `content_block_stop`, `message_delta` with `usage` and `stop_reason`, `message_stop`), as
//! the current [`Reply`] says. `HEAD`/`GET /api/hello` answer 200; any other path a JSON 404.
//! Every request is recorded: [`FakeApi::hits`] (method and path), [`FakeApi::requests`]
//! (the bodies of the messages requests).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;

/// `input_tokens` reported by every answer (in `message_start`).
pub const INPUT_TOKENS: u64 = 17;
/// `output_tokens` reported by every answer (in `message_delta`).
pub const OUTPUT_TOKENS: u64 = 9;
/// The command of the Bash call [`Reply::ToolUse`] asks for, and what it prints.
pub const TOOL_COMMAND: &str = "echo tool-said-hi";
pub const TOOL_OUTPUT: &str = "tool-said-hi";
/// How [`Reply::ToolUse`]'s final answer starts; the tool result it received follows.
pub const TOOL_ANSWER_PREFIX: &str = "The tool said: ";

/// How the fake answers `POST /v1/messages`.
#[derive(Clone, Debug)]
pub enum Reply {
    /// One text block, streamed in two deltas, `end_turn`.
    Text(String),
    /// A request whose last message carries no `tool_result` gets a `tool_use` block for
    /// `Bash` with [`TOOL_COMMAND`] (`stop_reason: tool_use`); one that carries a
    /// `tool_result` gets the text [`TOOL_ANSWER_PREFIX`] followed by the result's text.
    ToolUse,
    /// HTTP 529 with the API's `overloaded_error` body.
    Overloaded,
    /// As [`Reply::ToolUse`], with a Bash call of this command (one that needs permission,
    /// such as a write outside the working directory).
    ToolUseOf(String),
    /// A text answer whose deltas come `every` apart, one per part.
    Slow { parts: Vec<String>, every: Duration },
    /// Like [`Reply::ToolUse`], with a tool of any name and input (an MCP server's tool,
    /// `mcp__SERVER__TOOL`): a `tool_use` block for it, then [`TOOL_ANSWER_PREFIX`] and the
    /// result's text once the request carries the `tool_result`.
    CallTool { name: String, input: Value },
    /// Structured output, as the CLI asks for it with `--json-schema`: a request that
    /// offers the `StructuredOutput` tool (whose `input_schema` is the schema) gets a
    /// `tool_use` of it with this input (`stop_reason: tool_use`; the CLI ends the turn
    /// there). Any other request gets this value as JSON text.
    Structured(Value),
    /// A subscription's usage limit that refuses requests until `resets_at` (unix seconds):
    /// before then HTTP 429 with `anthropic-ratelimit-unified-status: rejected` and the
    /// reset (Claude Code 2.1.332, logged in with `CLAUDE_CODE_OAUTH_TOKEN`, prints a
    /// `rate_limit_event` with `status: rejected` and `resetsAt`, then a 429 error result);
    /// from then on [`Reply::Text`] of `then`, with `status: allowed`.
    LimitedUntil { resets_at: u64, then: String },
}

/// The headers of Anthropic's unified (subscription) rate limiter, as the CLI reads them.
fn unified_headers(status: &str, resets_at: u64) -> [(String, String); 4] {
    [
        ("anthropic-ratelimit-unified-status", status.to_owned()),
        ("anthropic-ratelimit-unified-reset", resets_at.to_string()),
        (
            "anthropic-ratelimit-unified-representative-claim",
            "five_hour".to_owned(),
        ),
        (
            "anthropic-ratelimit-unified-5h-reset",
            resets_at.to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v))
}

/// The tool the CLI 2.1.332 offers the model for `--json-schema`.
pub const STRUCTURED_OUTPUT_TOOL: &str = "StructuredOutput";

struct Shared {
    reply: Mutex<Reply>,
    requests: Mutex<Vec<Value>>,
    hits: Mutex<Vec<String>>,
}

/// The running fake. Stops when dropped.
pub struct FakeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
}

impl FakeApi {
    /// Binds 127.0.0.1:0 and serves; the listener is bound when this returns, so the CLI
    /// can connect at once.
    pub async fn start(reply: Reply) -> Self {
        let shared = Arc::new(Shared {
            reply: Mutex::new(reply),
            requests: Mutex::new(Vec::new()),
            hits: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/api/hello", get(hello))
            .fallback(not_found)
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            shared,
            handle,
        }
    }

    /// For `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the answer to the next requests.
    pub fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// Bodies of the `POST /v1/messages` requests received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// `METHOD path?query` of every request received so far, in order.
    pub fn hits(&self) -> Vec<String> {
        self.shared.hits.lock().unwrap().clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn record_hit(shared: &Shared, method: &Method, uri: &Uri) {
    shared.hits.lock().unwrap().push(format!("{method} {uri}"));
}

async fn hello(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> StatusCode {
    record_hit(&shared, &method, &uri);
    StatusCode::OK
}

async fn not_found(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    record_hit(&shared, &method, &uri);
    error_response(StatusCode::NOT_FOUND, "not_found_error", "Not found")
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    record_hit(&shared, &method, &uri);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(request.clone());
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_owned();
    let reply = shared.reply.lock().unwrap().clone();
    match reply {
        Reply::Overloaded => error_response(
            StatusCode::from_u16(529).unwrap(),
            "overloaded_error",
            "Overloaded",
        ),
        Reply::Text(text) => {
            let (a, b) = text.split_at(text.len() / 2);
            stream(text_answer(&model, &[a, b]), Duration::ZERO)
        }
        Reply::ToolUse => match last_tool_result(&request) {
            Some(output) => {
                let text = format!("{TOOL_ANSWER_PREFIX}{output}");
                stream(text_answer(&model, &[&text]), Duration::ZERO)
            }
            None => stream(tool_use_answer(&model, TOOL_COMMAND), Duration::ZERO),
        },
        Reply::ToolUseOf(command) => match last_tool_result(&request) {
            Some(output) => {
                let text = format!("{TOOL_ANSWER_PREFIX}{output}");
                stream(text_answer(&model, &[&text]), Duration::ZERO)
            }
            None => stream(tool_use_answer(&model, &command), Duration::ZERO),
        },
        Reply::CallTool { name, input } => match last_tool_result(&request) {
            Some(output) => {
                let text = format!("{TOOL_ANSWER_PREFIX}{output}");
                stream(text_answer(&model, &[&text]), Duration::ZERO)
            }
            None => stream(tool_use(&model, &name, &input), Duration::ZERO),
        },
        Reply::Structured(value) => {
            let offered = request["tools"]
                .as_array()
                .is_some_and(|tools| tools.iter().any(|t| t["name"] == STRUCTURED_OUTPUT_TOOL));
            if offered && last_tool_result(&request).is_none() {
                let events = tool_use(&model, STRUCTURED_OUTPUT_TOOL, &value);
                stream(events, Duration::ZERO)
            } else {
                stream(text_answer(&model, &[&value.to_string()]), Duration::ZERO)
            }
        }
        Reply::Slow { parts, every } => {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            stream(text_answer(&model, &parts), every)
        }
        Reply::LimitedUntil { resets_at, then } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            if now < resets_at {
                let mut response =
                    error_response(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "limited");
                for (name, value) in unified_headers("rejected", resets_at) {
                    response.headers_mut().insert(
                        header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
                response
            } else {
                let (a, b) = then.split_at(then.len() / 2);
                let mut response = stream(text_answer(&model, &[a, b]), Duration::ZERO);
                for (name, value) in unified_headers("allowed", resets_at) {
                    response.headers_mut().insert(
                        header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
                response
            }
        }
    }
}

/// The text of the `tool_result` blocks of the request's last message, if it has any.
fn last_tool_result(request: &Value) -> Option<String> {
    let last = request.get("messages")?.as_array()?.last()?;
    let blocks = last.get("content")?.as_array()?;
    let texts: Vec<String> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| match b.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n").trim().to_owned())
}

/// One SSE event.
struct Event {
    name: &'static str,
    data: Value,
    /// Sent after a pause (the slow answer's deltas).
    paced: bool,
}

fn event(name: &'static str, data: Value) -> Event {
    Event {
        name,
        data,
        paced: false,
    }
}

fn message_start(model: &str) -> Event {
    event(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": format!("msg_fake_{}", uuid::Uuid::new_v4().simple()),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": INPUT_TOKENS,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1
                }
            }
        }),
    )
}

fn message_end(stop_reason: &str) -> [Event; 2] {
    [
        event(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": OUTPUT_TOKENS}
            }),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}

fn text_answer(model: &str, parts: &[&str]) -> Vec<Event> {
    let mut events = vec![
        message_start(model),
        event(
            "content_block_start",
            json!({
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""}
            }),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for part in parts {
        events.push(Event {
            paced: true,
            ..event(
                "content_block_delta",
                json!({
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": part}
                }),
            )
        });
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.extend(message_end("end_turn"));
    events
}

fn tool_use_answer(model: &str, command: &str) -> Vec<Event> {
    let input = json!({"command": command, "description": "write a marker"});
    tool_use(model, "Bash", &input)
}

/// A `tool_use` block asking for `name` with `input`, streamed in two deltas.
fn tool_use(model: &str, name: &str, input: &Value) -> Vec<Event> {
    let input = input.to_string();
    let (a, b) = input.split_at(input.len() / 2);
    let mut events = vec![
        message_start(model),
        event(
            "content_block_start",
            json!({
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "tool_use",
                    "id": format!("toolu_fake_{}", uuid::Uuid::new_v4().simple()),
                    "name": name,
                    "input": {}
                }
            }),
        ),
    ];
    for part in [a, b] {
        events.push(event(
            "content_block_delta",
            json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": part}
            }),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.extend(message_end("tool_use"));
    events
}

/// Streams `events` as `text/event-stream`; paced events wait `every` first.
fn stream(events: Vec<Event>, every: Duration) -> Response {
    let (tx, rx) = mpsc::channel::<Result<String, Infallible>>(16);
    tokio::spawn(async move {
        for e in events {
            if e.paced && !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            let frame = format!("event: {}\ndata: {}\n\n", e.name, e.data);
            if tx.send(Ok(frame)).await.is_err() {
                // The client went away (cancelled, interrupted).
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(
            "request-id",
            format!("req_fake_{}", uuid::Uuid::new_v4().simple()),
        )
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap()
}

//! The simulated Claude Code CLI: `claude-swarm simulate-agent -p --output-format
//! stream-json --verbose [--model M] ...` reads its prompt like the real one (argument or
//! stdin) and prints the same stream-json lines. Its lines are the real CLI's captured
//! lines with the variable fields replaced, so their shape cannot drift from the real thing.
//!
//! Behaviour is driven by `sim:` directives anywhere in the prompt (see the README):
//! `sim:delay=MS`, `sim:chunks=N`, `sim:error[=STATUS]`, `sim:auth`, `sim:crash`,
//! `sim:hang`, `sim:garbage`, `sim:large=BYTES`, `sim:cost=USD`, `sim:exit=CODE`,
//! `sim:tool`, `sim:stderr=WORD`, `sim:reply=WORD`, `sim:flaky=N`, `sim:max_turns`,
//! `sim:rate_limit=SECONDS`, `sim:rate_warn=UTILIZATION`, `sim:api_retry=N`, `sim:ask=PATH`
//! (a tool call that needs permission, see `ask`).
//!
//! `SWARM_SIM_RATE_LIMIT=SECONDS` in its environment (an account's `env`, say) makes every
//! prompt behave as if it carried `sim:rate_limit=SECONDS`: the account's API refuses.

mod ask;

use std::{
    io::{self, Read, Write},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

const SUCCESS: &str =
    include_str!("../../tests/fixtures/claude-code-cli/success-against-local-fake-api.jsonl");
const NOT_LOGGED_IN: &str =
    include_str!("../../tests/fixtures/claude-code-cli/not-logged-in.jsonl");

/// What the prompt asked the simulation to do.
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    pub delay: Duration,
    pub chunks: u32,
    /// Answer with an API error of this HTTP status.
    pub error: Option<u16>,
    /// Answer like a CLI that is not logged in.
    pub auth: bool,
    pub crash: bool,
    pub hang: bool,
    pub garbage: bool,
    pub large: usize,
    pub cost: Option<f64>,
    pub exit: Option<i32>,
    pub tool: bool,
    pub stderr: Option<String>,
    pub reply: Option<String>,
    /// Fail (as `sim:error`) while `SWARM_ATTEMPT` is at most this.
    pub flaky: Option<u32>,
    /// End with an `error_max_turns` result.
    pub max_turns: bool,
    /// Report a usage limit that refuses requests until this many seconds from now, then
    /// fail with a 429, as the CLI does; a run that resumes a session is not refused (the
    /// limit has lifted by the time the swarm resumes it).
    pub rate_limit: Option<u64>,
    /// Ask permission for a Bash call that writes this file.
    pub ask: Option<String>,
    /// Report an `allowed_warning` usage limit at this utilization (resetting in an hour).
    pub rate_warn: Option<f64>,
    /// Print this many `system/api_retry` lines first.
    pub api_retry: u32,
}

impl Directives {
    pub fn parse(prompt: &str) -> Result<Self, String> {
        let mut d = Directives {
            chunks: 1,
            ..Self::default()
        };
        for word in prompt.split_whitespace() {
            let Some(directive) = word.strip_prefix("sim:") else {
                continue;
            };
            let (key, value) = directive
                .split_once('=')
                .map_or((directive, None), |(k, v)| (k, Some(v)));
            let number = |v: Option<&str>| -> Result<f64, String> {
                v.ok_or(format!("sim:{key} needs a value"))?
                    .parse::<f64>()
                    .map_err(|_| format!("sim:{key} needs a number"))
            };
            match key {
                "delay" => d.delay = Duration::from_secs_f64(number(value)?.max(0.0) / 1000.0),
                "chunks" => d.chunks = number(value)?.max(1.0) as u32,
                "error" => d.error = Some(value.map_or(Ok(529.0), |v| number(Some(v)))? as u16),
                "auth" => d.auth = true,
                "crash" => d.crash = true,
                "hang" => d.hang = true,
                "garbage" => d.garbage = true,
                "large" => d.large = number(value)? as usize,
                "cost" => d.cost = Some(number(value)?),
                "exit" => d.exit = Some(number(value)? as i32),
                "tool" => d.tool = true,
                "stderr" => d.stderr = value.map(str::to_owned),
                "reply" => d.reply = value.map(str::to_owned),
                "flaky" => d.flaky = Some(number(value)? as u32),
                "max_turns" => d.max_turns = true,
                "rate_limit" => d.rate_limit = Some(number(value)? as u64),
                "ask" => {
                    d.ask = Some(
                        value
                            .filter(|v| !v.is_empty())
                            .ok_or("sim:ask needs a path")?
                            .to_owned(),
                    )
                }
                "rate_warn" => d.rate_warn = Some(number(value)?),
                "api_retry" => d.api_retry = number(value)? as u32,
                other => return Err(format!("unknown directive sim:{other}")),
            }
        }
        Ok(d)
    }
}

/// The prompt with the directives taken out.
fn plain_prompt(prompt: &str) -> String {
    prompt
        .split_whitespace()
        .filter(|w| !w.starts_with("sim:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Command-line options the simulation understands, as the real CLI spells them.
#[derive(Debug, Default)]
struct Options {
    print: bool,
    output_format: Option<String>,
    verbose: bool,
    model: Option<String>,
    session_id: Option<String>,
    /// `--fork-session`: continue in a new session.
    fork: bool,
    /// `--resume`: an earlier session goes on.
    resumed: bool,
    /// `--input-format stream-json`: a long-lived process, one user message per line.
    stream_input: bool,
    /// `--json-schema`: a successful answer that is JSON is also the structured output.
    json_schema: bool,
    /// `--permission-prompt-tool stdio`: tool calls that need permission are asked of the
    /// host.
    ask_host: bool,
    prompt: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "-p" | "--print" => o.print = true,
            "--verbose" => o.verbose = true,
            "--output-format" => o.output_format = Some(value()?),
            "--model" => o.model = Some(value()?),
            "--session-id" => o.session_id = Some(value()?),
            "--resume" => {
                o.session_id = Some(value()?);
                o.resumed = true;
            }
            "--fork-session" => o.fork = true,
            "--input-format" => o.stream_input = value()? == "stream-json",
            "--permission-prompt-tool" => o.ask_host = value()? == "stdio",
            "--strict-mcp-config" => {}
            "--json-schema" => {
                value()?;
                o.json_schema = true;
            }
            "--mcp-config" | "--max-budget-usd" => {
                value()?;
            }
            "--allowedTools"
            | "--allowed-tools"
            | "--disallowedTools"
            | "--max-turns"
            | "--permission-mode"
            | "--append-system-prompt"
            | "--fallback-model"
            | "--add-dir" => {
                value()?;
            }
            f if f.starts_with('-') => return Err(format!("error: unknown option '{f}'")),
            prompt => o.prompt = Some(prompt.to_owned()),
        }
    }
    Ok(o)
}

/// Runs the simulation with the process's arguments (after `simulate-agent`); returns the
/// exit code.
pub fn main(args: &[String]) -> i32 {
    let options = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if !options.print || options.output_format.as_deref() != Some("stream-json") || !options.verbose
    {
        eprintln!("the simulated agent speaks only -p --output-format stream-json --verbose");
        return 1;
    }
    if options.stream_input {
        return serve_stream(&options);
    }
    let prompt = match options.prompt.clone() {
        Some(p) => p,
        None => {
            let mut p = String::new();
            if io::stdin().read_to_string(&mut p).is_err() || p.trim().is_empty() {
                eprintln!(
                    "Error: Input must be provided either through stdin or as a prompt argument when using --print"
                );
                return 1;
            }
            p
        }
    };
    let directives = match directives_for(&prompt) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let session = Session::new(&options);
    let mut out = io::stdout().lock();
    // An error means stdout closed under us: the reader went away.
    session
        .play(&plain_prompt(&prompt), &directives, &mut out, &mut Sleep)
        .unwrap_or(1)
}

/// A prompt's directives, with `sim:flaky` applied for this attempt.
fn directives_for(prompt: &str) -> Result<Directives, String> {
    match Directives::parse(prompt) {
        Ok(mut d) => {
            let attempt: u32 = std::env::var("SWARM_ATTEMPT")
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or(1);
            if d.flaky.is_some_and(|n| attempt <= n) {
                d.error = Some(529);
            }
            if let Some(seconds) = std::env::var("SWARM_SIM_RATE_LIMIT")
                .ok()
                .and_then(|s| s.parse().ok())
            {
                d.rate_limit.get_or_insert(seconds);
            }
            Ok(d)
        }
        Err(e) => Err(e),
    }
}

/// Waits inside a turn; `true` when an interrupt arrived instead.
trait Pause {
    fn pause(&mut self, duration: Duration) -> bool;

    /// The host's answer (`response.response`) to the control request `request_id`;
    /// `None` once stdin is closed (or in print mode, where there is no host to ask).
    fn answer(&mut self, _request_id: &str) -> Option<Value> {
        None
    }
}

/// Print mode: nothing can interrupt.
struct Sleep;

impl Pause for Sleep {
    fn pause(&mut self, duration: Duration) -> bool {
        thread::sleep(duration);
        false
    }
}

/// Stream mode: stdin lines arrive on a channel; an interrupt ends the wait.
struct Inbox {
    lines: std::sync::mpsc::Receiver<Value>,
    /// Messages that arrived during a turn, for after it.
    later: std::collections::VecDeque<Value>,
    /// The `request_id` of the interrupt being answered.
    interrupt: Option<String>,
}

impl Pause for Inbox {
    fn pause(&mut self, duration: Duration) -> bool {
        // An interrupt that arrived right behind this turn's message.
        if self.later.front().is_some_and(is_interrupt) {
            let line = self.later.pop_front().expect("checked");
            self.interrupt = Some(line["request_id"].as_str().unwrap_or_default().to_owned());
            return true;
        }
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // An interrupt queued behind a later message belongs to that message's turn.
                Ok(line) if is_interrupt(&line) && self.later.is_empty() => {
                    self.interrupt =
                        Some(line["request_id"].as_str().unwrap_or_default().to_owned());
                    return true;
                }
                Ok(line) => self.later.push_back(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return false,
                // Stdin closed: nothing can interrupt any more.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(left);
                    return false;
                }
            }
        }
    }

    fn answer(&mut self, request_id: &str) -> Option<Value> {
        if let Some(i) = self
            .later
            .iter()
            .position(|l| Self::answer_of(l, request_id).is_some())
        {
            return self
                .later
                .remove(i)
                .and_then(|l| Self::answer_of(&l, request_id));
        }
        loop {
            let line = self.lines.recv().ok()?;
            match Self::answer_of(&line, request_id) {
                Some(answer) => return Some(answer),
                None => self.later.push_back(line),
            }
        }
    }
}

impl Inbox {
    fn answer_of(line: &Value, request_id: &str) -> Option<Value> {
        (line["type"] == "control_response" && line["response"]["request_id"] == request_id)
            .then(|| line["response"]["response"].clone())
    }
}

fn is_interrupt(line: &Value) -> bool {
    line["type"] == "control_request" && line["request"]["subtype"] == "interrupt"
}

/// `--input-format stream-json`: answers each user line with a turn, stays alive between
/// turns, answers interrupts, and ends when stdin closes.
fn serve_stream(options: &Options) -> i32 {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in io::stdin().lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && tx.send(value).is_err()
            {
                return;
            }
        }
    });
    let mut inbox = Inbox {
        lines: rx,
        later: Default::default(),
        interrupt: None,
    };
    let session = Session::new(options);
    let mut out = io::stdout().lock();
    loop {
        let line = match inbox.later.pop_front() {
            Some(line) => line,
            None => match inbox.lines.recv() {
                Ok(line) => line,
                Err(_) => return 0,
            },
        };
        if is_interrupt(&line) {
            let request_id = line["request_id"].as_str().unwrap_or_default();
            if session.control_response(&mut out, request_id).is_err() {
                return 1;
            }
            continue;
        }
        if line["type"] != "user" {
            continue;
        }
        let content = &line["message"]["content"];
        let prompt = match content {
            Value::String(text) => text.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        let directives = match directives_for(&prompt) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        match session.play(&plain_prompt(&prompt), &directives, &mut out, &mut inbox) {
            Err(_) => return 1,
            Ok(code) if directives.exit.is_some() => return code,
            Ok(_) => {}
        }
        if let Some(request_id) = inbox.interrupt.take()
            && session
                .control_response(&mut out, &request_id)
                .and_then(|()| session.aborted(&mut out))
                .is_err()
        {
            return 1;
        }
    }
}

struct Session {
    id: String,
    /// It resumes an earlier session.
    resumed: bool,
    model: String,
    cwd: String,
    started: Instant,
    /// With `--json-schema`: the answer, if it is JSON, is the structured output.
    structured: bool,
    /// Asks its host about tool calls (`--permission-prompt-tool stdio`).
    ask_host: bool,
}

impl Session {
    fn new(options: &Options) -> Self {
        Self {
            id: options
                .session_id
                .clone()
                .filter(|_| !options.fork)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            resumed: options.resumed,
            model: options
                .model
                .clone()
                .unwrap_or_else(|| "claude-simulated".into()),
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            started: Instant::now(),
            structured: options.json_schema,
            ask_host: options.ask_host,
        }
    }

    /// One turn. When `clock` reports an interrupt the turn stops where it is (the caller
    /// answers the interrupt).
    fn play(
        &self,
        prompt: &str,
        d: &Directives,
        out: &mut impl Write,
        clock: &mut dyn Pause,
    ) -> io::Result<i32> {
        if let Some(word) = &d.stderr {
            eprintln!("{word}");
        }
        if d.garbage {
            writeln!(out, "simulated garbage: this line is not JSON {{")?;
        }
        self.emit(out, self.init())?;
        if d.garbage {
            writeln!(out, "[1/3] more noise that is not a message")?;
        }
        if d.hang {
            out.flush()?;
            while !clock.pause(Duration::from_secs(3600)) {}
            return Ok(0);
        }
        if d.auth {
            self.emit(
                out,
                self.api_error_message(
                    "Not logged in · Please run /login",
                    "authentication_failed",
                ),
            )?;
            self.emit(
                out,
                self.result("Not logged in · Please run /login", true, 1, 0.0, None),
            )?;
            return Ok(d.exit.unwrap_or(1));
        }
        if let Some(status) = d.error {
            let (kind, error) = match status {
                429 => ("rate_limit_error", "rate_limit"),
                _ => ("overloaded_error", "server_error"),
            };
            let text = format!(
                "API Error: {status} {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"Overloaded\"}}}}"
            );
            self.emit(out, self.api_error_message(&text, error))?;
            self.emit(out, self.result(&text, true, 1, 0.0, Some(status)))?;
            return Ok(d.exit.unwrap_or(1));
        }
        for attempt in 1..=d.api_retry {
            self.emit(
                out,
                json!({
                    "type": "system", "subtype": "api_retry", "attempt": attempt,
                    "max_retries": d.api_retry, "retry_delay_ms": 0, "error_status": 529,
                    "error": "overloaded", "session_id": self.id,
                    "uuid": uuid::Uuid::new_v4().to_string(),
                }),
            )?;
        }
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if let Some(utilization) = d.rate_warn {
            self.emit(out, json!({
                "type": "rate_limit_event",
                "rate_limit_info": { "status": "allowed_warning", "resetsAt": unix_now + 3600, "rateLimitType": "five_hour", "utilization": utilization, "isUsingOverage": false },
                "uuid": uuid::Uuid::new_v4().to_string(),
                "session_id": self.id,
            }))?;
        }
        if let Some(seconds) = d.rate_limit.filter(|_| !self.resumed) {
            // Rounded up, as the API's reset header is whole seconds: never before `seconds`.
            let resets = unix_now + seconds + 1;
            self.emit(out, json!({
                "type": "rate_limit_event",
                "rate_limit_info": { "status": "rejected", "resetsAt": resets, "rateLimitType": "five_hour", "isUsingOverage": false },
                "uuid": uuid::Uuid::new_v4().to_string(),
                "session_id": self.id,
            }))?;
            let text = "API Error: 429 rate limited";
            self.emit(out, self.api_error_message(text, "rate_limit"))?;
            self.emit(out, self.result(text, true, 1, 0.0, Some(429)))?;
            return Ok(d.exit.unwrap_or(1));
        }
        if d.max_turns {
            let mut line = self.result("", true, 2, 0.0, None);
            line["subtype"] = json!("error_max_turns");
            line["terminal_reason"] = json!("max_turns");
            line["result"] = json!("Reached the maximum number of turns");
            self.emit(out, line)?;
            return Ok(d.exit.unwrap_or(1));
        }
        let mut turns = 1;
        let mut denials = Vec::new();
        let mut asked_reply = None;
        if let Some(path) = &d.ask {
            let asked = self.ask_tool(path, self.ask_host, out, clock)?;
            denials.extend(asked.denial);
            asked_reply = Some(format!("tool said: {}", asked.output));
            turns += 1;
        }
        if d.tool {
            let tool_id = format!("toolu_sim_{}", &self.id[..8]);
            self.emit(out, self.assistant(json!([{ "type": "tool_use", "id": tool_id, "name": "Bash", "input": { "command": "echo simulated", "description": "Say something" } }])))?;
            self.emit(out, self.user_tool_result(&tool_id, "simulated"))?;
            turns += 1;
        }
        let reply = match (&d.reply, d.large) {
            (_, n) if n > 0 => "x".repeat(n),
            (Some(word), _) => word.clone(),
            (None, _) if asked_reply.is_some() => asked_reply.clone().unwrap_or_default(),
            (None, _) => format!(
                "Simulated answer to: {}",
                crate::agent::protocol::cut(prompt, 200)
            ),
        };
        let chunk_delay = d.delay / d.chunks;
        for i in 0..d.chunks {
            if clock.pause(chunk_delay) {
                return Ok(0);
            }
            let text = if i + 1 == d.chunks {
                reply.clone()
            } else {
                format!("Working ({}/{})...", i + 1, d.chunks)
            };
            self.emit(
                out,
                self.assistant(json!([{ "type": "text", "text": text }])),
            )?;
            if d.crash {
                out.flush()?;
                // Die the way a crashed process does: by a signal, with no result line.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
        }
        let cost = d
            .cost
            .unwrap_or(0.00001 * (prompt.len() + reply.len()) as f64 / 4.0);
        let mut result = self.result(&reply, false, turns, cost, None);
        result["permission_denials"] = json!(denials);
        self.emit(out, result)?;
        Ok(d.exit.unwrap_or(0))
    }

    fn control_response(&self, out: &mut impl Write, request_id: &str) -> io::Result<()> {
        self.emit(
            out,
            json!({ "type": "control_response", "response": { "subtype": "success", "request_id": request_id } }),
        )
    }

    /// The result of a turn cut short by an interrupt, as the CLI prints it.
    fn aborted(&self, out: &mut impl Write) -> io::Result<()> {
        let mut line = self.result("", true, 1, 0.0, None);
        line["subtype"] = json!("error_during_execution");
        line["terminal_reason"] = json!("aborted_streaming");
        self.emit(out, line)
    }

    fn emit(&self, out: &mut impl Write, line: Value) -> io::Result<()> {
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    fn init(&self) -> Value {
        let mut line = template(SUCCESS, 0);
        line["session_id"] = json!(self.id);
        line["uuid"] = json!(uuid::Uuid::new_v4().to_string());
        line["cwd"] = json!(self.cwd);
        line["original_cwd"] = json!(self.cwd);
        line["model"] = json!(self.model);
        line["apiKeySource"] = json!("none");
        line
    }

    fn assistant(&self, content: Value) -> Value {
        let mut line = template(SUCCESS, 1);
        line["message"]["content"] = content;
        line["message"]["model"] = json!(self.model);
        line["message"]["id"] = json!(format!("msg_sim_{}", uuid::Uuid::new_v4().simple()));
        // The real CLI copies the API's `request-id` header here.
        line["request_id"] = json!(format!("req_sim_{}", uuid::Uuid::new_v4().simple()));
        self.stamp(&mut line);
        line
    }

    fn api_error_message(&self, text: &str, error: &str) -> Value {
        let mut line = template(NOT_LOGGED_IN, 1);
        line["message"]["content"] = json!([{ "type": "text", "text": text }]);
        line["message"]["id"] = json!(uuid::Uuid::new_v4().to_string());
        line["error"] = json!(error);
        self.stamp(&mut line);
        line
    }

    fn user_tool_result(&self, tool_use_id: &str, output: &str) -> Value {
        let mut line = template(SUCCESS, 1);
        line["type"] = json!("user");
        line["message"] = json!({
            "role": "user",
            "content": [{ "type": "tool_result", "tool_use_id": tool_use_id, "content": output, "is_error": false }],
        });
        // As the real CLI 2.1.332 prints after a Bash call.
        line["tool_use_result"] = json!({
            "stdout": output, "stderr": "", "interrupted": false, "isImage": false, "noOutputExpected": false,
        });
        line["tool_result_meta"] = json!([{
            "id": tool_use_id,
            "permission_decision": { "decision": "accept", "source": "config", "reason_type": "rule" },
        }]);
        self.stamp(&mut line);
        line
    }

    fn result(
        &self,
        text: &str,
        is_error: bool,
        turns: u32,
        cost: f64,
        status: Option<u16>,
    ) -> Value {
        let mut line = template(if is_error { NOT_LOGGED_IN } else { SUCCESS }, 2);
        let elapsed = self.started.elapsed().as_millis() as u64;
        let input_tokens = if is_error {
            0
        } else {
            10 + text.len() as u64 / 8
        };
        let output_tokens = if is_error {
            0
        } else {
            1 + text.len() as u64 / 4
        };
        line["result"] = json!(text);
        if self.structured && !is_error {
            line["structured_output"] = serde_json::from_str(text).unwrap_or(Value::Null);
        }
        line["is_error"] = json!(is_error);
        line["num_turns"] = json!(turns);
        line["session_id"] = json!(self.id);
        line["uuid"] = json!(uuid::Uuid::new_v4().to_string());
        line["total_cost_usd"] = json!(cost);
        line["duration_ms"] = json!(elapsed);
        line["duration_api_ms"] = json!(elapsed);
        line["api_error_status"] = json!(status);
        line["usage"]["input_tokens"] = json!(input_tokens);
        line["usage"]["output_tokens"] = json!(output_tokens);
        if !is_error {
            let usage = line["modelUsage"]
                .as_object_mut()
                .and_then(|m| m.values().next().cloned());
            if let Some(mut usage) = usage {
                usage["inputTokens"] = json!(input_tokens);
                usage["outputTokens"] = json!(output_tokens);
                usage["costUSD"] = json!(cost);
                line["modelUsage"] = json!({ self.model.clone(): usage });
            }
        }
        line
    }

    fn stamp(&self, line: &mut Value) {
        line["session_id"] = json!(self.id);
        line["uuid"] = json!(uuid::Uuid::new_v4().to_string());
        line["timestamp"] = json!(timestamp());
    }
}

fn template(capture: &str, index: usize) -> Value {
    let line = capture.lines().nth(index).expect("capture has the line");
    serde_json::from_str(line).expect("capture line is JSON")
}

/// `2026-11-25T19:36:38.878Z`, as the CLI prints it.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (now.as_secs() as i64, now.subsec_millis());
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        let d =
            Directives::parse("do it sim:delay=250 sim:error sim:chunks=3 sim:cost=0.5").unwrap();
        assert_eq!(d.delay, Duration::from_millis(250));
        assert_eq!(d.error, Some(529));
        assert_eq!(d.chunks, 3);
        assert_eq!(d.cost, Some(0.5));
        assert!(
            Directives::parse("sim:bogus")
                .unwrap_err()
                .contains("sim:bogus")
        );
        assert!(Directives::parse("sim:delay=soon").is_err());
        assert_eq!(plain_prompt("do it sim:hang  now"), "do it now");
    }

    #[test]
    fn timestamp_has_the_cli_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}

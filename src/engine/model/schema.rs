//! A task's `output_schema`: a JSON Schema its answer must match. It is checked against the
//! JSON Schema meta-schemas when the task is submitted (draft 2020-12 unless `$schema`
//! names another), and an answer is checked against it when the run ends. A schema is data
//! from a caller: it may refer to nothing outside itself (no file, no URL is ever read).

use boon::{Compiler, SchemaIndex, Schemas, UrlLoader};
use serde_json::Value;

/// Where the schema is filed while it is compiled; `$id`s and `$ref`s resolve against it.
const LOCATION: &str = "urn:claude-swarm:output-schema";

/// Refuses every document the schema refers to: only its own parts and the meta-schemas
/// (built into `boon`) are known.
struct NothingOutside;

impl UrlLoader for NothingOutside {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(
            format!("{url} is outside the schema: an output schema may refer only to itself")
                .into(),
        )
    }
}

fn compile(schema: &Value) -> Result<(Schemas, SchemaIndex), String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON Schema: an object (or true or false)".into());
    }
    let mut compiler = Compiler::new();
    compiler.use_loader(Box::new(NothingOutside));
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler
        .add_resource(LOCATION, schema.clone())
        .map_err(|e| e.to_string())?;
    let mut schemas = Schemas::new();
    let index = compiler
        .compile(LOCATION, &mut schemas)
        .map_err(|e| format!("is not a valid JSON Schema: {}", alternate(&e)))?;
    Ok((schemas, index))
}

/// An error with its causes, on one line.
fn alternate(error: &dyn std::fmt::Display) -> String {
    format!("{error:#}")
        .replace(LOCATION, "the schema")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Largest schema, as compact JSON: it is one argument of the CLI's command line, and
/// Linux takes at most 128 KiB in one (`MAX_ARG_STRLEN`).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// Whether `schema` is a JSON Schema small enough to pass; the error says why not.
pub fn check(schema: &Value) -> Result<(), String> {
    let size = schema.to_string().len();
    if size > MAX_SCHEMA_BYTES {
        return Err(format!(
            "is {size} bytes of JSON; at most {MAX_SCHEMA_BYTES} (it goes on the agent's command line)"
        ));
    }
    compile(schema).map(drop)
}

/// Whether `answer` matches `schema` (a schema that passed [`check`]); the error names
/// where it does not.
pub fn matches(schema: &Value, answer: &Value) -> Result<(), String> {
    let (schemas, index) = compile(schema)?;
    schemas.validate(answer, index).map_err(|e| alternate(&e))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schemas_are_checked_against_the_meta_schema() {
        let files = json!({
            "type": "object",
            "properties": {"files": {"type": "array", "items": {"type": "string"}}},
            "required": ["files"]
        });
        check(&files).unwrap();
        check(&json!(true)).unwrap();
        assert!(check(&json!({"type": "nope"})).is_err());
        assert!(check(&json!({"required": "files"})).is_err());
        assert!(
            check(&json!("object"))
                .unwrap_err()
                .contains("must be a JSON Schema")
        );
        assert!(check(&json!([1])).is_err());
        let huge = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(check(&huge).unwrap_err().contains("at most 65536"));
        matches(&files, &json!({"files": ["a.rs"]})).unwrap();
        let missing = matches(&files, &json!({"nope": 1})).unwrap_err();
        assert!(missing.contains("files"), "{missing}");
    }

    #[test]
    fn a_schema_cannot_read_files_or_urls() {
        for reference in [
            "file:///etc/passwd",
            "http://127.0.0.1:1/x.json",
            "/etc/hosts",
        ] {
            let error = check(&json!({"$ref": reference})).unwrap_err();
            assert!(
                error.contains("not a valid JSON Schema"),
                "{reference}: {error}"
            );
        }
        // Its own parts resolve.
        check(&json!({
            "$defs": {"name": {"type": "string"}},
            "properties": {"a": {"$ref": "#/$defs/name"}}
        }))
        .unwrap();
    }
}

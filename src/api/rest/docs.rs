//! The OpenAPI document and a plain page listing its operations.

use std::sync::LazyLock;

use axum::{
    http::header,
    response::{Html, IntoResponse, Response},
};
use serde_json::Value;

/// The OpenAPI 3.1 document of every route [`router`] serves, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(super) async fn docs() -> Html<&'static str> {
    static PAGE: LazyLock<String> = LazyLock::new(|| docs_page(OPENAPI));
    Html(PAGE.as_str())
}

/// The keys of an OpenAPI path item that are operations.
pub const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A plain page listing the document's operations by tag: no script, nothing fetched.
pub(super) fn docs_page(document: &str) -> String {
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let doc: Value = serde_json::from_str(document).expect("openapi.json is JSON");
    let text = |v: &Value| escape(v.as_str().unwrap_or_default());
    let operations: Vec<(&str, &String, &Value)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter(|(method, _)| OPENAPI_METHODS.contains(&method.as_str()))
                .map(move |(method, op)| (method.as_str(), path, op))
        })
        .collect();
    let mut sections = String::new();
    for tag in doc["tags"].as_array().into_iter().flatten() {
        sections.push_str(&format!(
            "<h2>{}</h2>\n<p>{}</p>\n<table>\n",
            text(&tag["name"]),
            text(&tag["description"])
        ));
        for (method, path, op) in &operations {
            if op["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&tag["name"]))
            {
                sections.push_str(&format!(
                    "<tr><td class=\"method\">{}</td><td><code>{}</code></td>\
                     <td>{}<div class=\"more\">{}</div></td></tr>\n",
                    method.to_ascii_uppercase(),
                    escape(path),
                    text(&op["summary"]),
                    text(&op["description"]),
                ));
            }
        }
        sections.push_str("</table>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}\
         table{{border-collapse:collapse;width:100%}}\
         td{{padding:.3em .8em;vertical-align:top;border-bottom:1px solid #ddd}}\
         .method{{font-weight:bold;font-family:monospace;width:5em}}\
         .more{{color:#555;font-size:90%}}</style>\n\
         </head><body><h1>{title} <small>{version}</small></h1>\n<p>{summary}</p>\n\
         <p>The OpenAPI 3.1 document: <a href=\"/openapi.json\">/openapi.json</a>. \
         gRPC and grpc-web are served on this port too \
         (<code>proto/claude_swarm/v1/swarm.proto</code>, or reflection).</p>\n\
         {sections}</body></html>\n",
        title = text(&doc["info"]["title"]),
        version = text(&doc["info"]["version"]),
        summary = text(&doc["info"]["summary"]),
    )
}

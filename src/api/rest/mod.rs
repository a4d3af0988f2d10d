//! The REST gateway: the documented HTTP routes over the same [`Service`] as gRPC.
//!
//! Bodies and responses are the API messages in the protobuf JSON mapping with the proto
//! field names; enum values print as the original service's lowercase words
//! (`"status": "completed"`) and are accepted as words or as proto enum names. Requests of
//! the original Python service are accepted as they are.

mod approvals;
mod audit;
mod docs;
mod error;
mod instances;
mod json;
mod schedules;
mod streams;
mod tasks;
mod webhooks;
mod workflows;

use std::path::PathBuf;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    handler::Handler,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
};
use serde_json::json;

pub use docs::{OPENAPI, OPENAPI_METHODS};
pub use error::ApiError;
pub use json::to_json;

use super::{MAX_REQUEST_BYTES, auth::tokens, dashboard, metrics, service::Service};
use crate::pb;
use approvals::{decide_approval, get_approval, list_approvals};
use docs::{docs, openapi};
use error::ApiResult;
use instances::{
    get_instance, list_instances, scale_instances, spawn_instances, terminate_instance,
};
use json::{Id, JSON, respond};
use streams::{sse_events, ws_events};
use tasks::{cancel_task, get_task, list_tasks, submit_task, submit_tasks};
use workflows::{
    cancel_workflow, execute_workflow, get_workflow, list_workflows, validate_workflow,
};

/// What the REST routes need besides the service.
#[derive(Clone)]
struct Gateway {
    service: Service,
    /// `workflow_path` must point inside this directory.
    workspace_root: PathBuf,
}

/// What the guard in front of the router must know of a REST operation.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    /// `{id}` is a path parameter (one segment), in axum and in OpenAPI alike.
    pub path: &'static str,
    /// The `Content-Type`s (without parameters) of the body it reads; empty when it reads
    /// none. Every one of them needs a CORS preflight from a browser.
    pub body_types: &'static [&'static str],
    /// A live event stream (SSE, WebSocket): a caller's `Origin` is checked even on `GET`.
    pub stream: bool,
}

/// One REST operation and the handler serving it.
struct Endpoint {
    route: Route,
    handler: MethodRouter<Gateway>,
}

/// An operation; one that may change state (`POST`, `PUT`, `PATCH`) reads a JSON body.
fn endpoint<H, T>(method: Method, path: &'static str, handler: H) -> Endpoint
where
    H: Handler<T, Gateway>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes on");
    let body_types: &[&str] = match method {
        Method::POST | Method::PUT | Method::PATCH => &[JSON],
        _ => &[],
    };
    Endpoint {
        route: Route {
            method,
            path,
            body_types,
            stream: false,
        },
        handler: on(filter, handler),
    }
}

impl Endpoint {
    fn body_types(mut self, types: &'static [&'static str]) -> Self {
        self.route.body_types = types;
        self
    }

    fn stream(mut self) -> Self {
        self.route.stream = true;
        self
    }
}

/// Every REST operation, once. [`router`] serves exactly these and [`route_table`] lists
/// exactly these; a test holds `openapi.json` to the same list.
fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        endpoint(M::GET, "/health", health),
        endpoint(M::GET, "/status", status),
        endpoint(M::GET, "/openapi.json", openapi),
        endpoint(M::GET, "/docs", docs),
        endpoint(M::GET, "/instances", list_instances),
        endpoint(M::POST, "/instances/spawn", spawn_instances),
        endpoint(M::POST, "/instances/scale", scale_instances),
        endpoint(M::GET, "/instances/{id}", get_instance),
        endpoint(M::DELETE, "/instances/{id}", terminate_instance),
        endpoint(M::POST, "/tasks", submit_task),
        endpoint(M::GET, "/tasks", list_tasks),
        endpoint(M::POST, "/tasks/batch", submit_tasks),
        endpoint(M::GET, "/tasks/{id}", get_task),
        endpoint(M::DELETE, "/tasks/{id}", cancel_task),
        endpoint(M::GET, "/workflows", list_workflows),
        endpoint(M::POST, "/workflows/execute", execute_workflow).body_types(workflows::BODY_TYPES),
        endpoint(M::POST, "/workflows/validate", validate_workflow)
            .body_types(workflows::BODY_TYPES),
        endpoint(M::GET, "/workflows/{id}", get_workflow),
        endpoint(M::DELETE, "/workflows/{id}", cancel_workflow),
        endpoint(M::GET, "/approvals", list_approvals),
        endpoint(M::GET, "/approvals/{id}", get_approval),
        endpoint(M::POST, "/approvals/{id}/decision", decide_approval),
        endpoint(M::POST, "/accounts/{name}/resume", resume_account).body_types(&[]),
        endpoint(M::GET, "/events", sse_events).stream(),
        endpoint(M::GET, "/ws/stream", ws_events).stream(),
        // Served outside the gateway (its state comes as an extension), documented with it.
        endpoint(M::POST, "/auth/stream-token", tokens::stream_token).body_types(&[]),
        endpoint(M::GET, "/metrics", metrics::metrics),
        // Served outside the gateway too (the audit comes as an extension).
        endpoint(M::GET, "/audit", audit::list_audit),
        endpoint(M::POST, "/schedules", schedules::create_schedule),
        endpoint(M::GET, "/schedules", schedules::list_schedules),
        endpoint(M::GET, "/schedules/{id}", schedules::get_schedule),
        endpoint(M::DELETE, "/schedules/{id}", schedules::delete_schedule),
        endpoint(M::POST, "/schedules/{id}/pause", schedules::pause_schedule).body_types(&[]),
        endpoint(
            M::POST,
            "/schedules/{id}/resume",
            schedules::resume_schedule,
        )
        .body_types(&[]),
        endpoint(
            M::POST,
            "/schedules/{id}/trigger",
            schedules::trigger_schedule,
        )
        .body_types(&[]),
        endpoint(M::POST, "/webhooks", webhooks::create_webhook),
        endpoint(M::GET, "/webhooks", webhooks::list_webhooks),
        endpoint(M::DELETE, "/webhooks/{id}", webhooks::delete_webhook),
        endpoint(
            M::GET,
            "/webhooks/{id}/deliveries",
            webhooks::list_deliveries,
        ),
        // The dashboard's files (served outside the gateway's state, documented with it).
        endpoint(M::GET, "/", dashboard::index),
        endpoint(M::GET, "/assets/app.js", dashboard::script),
        endpoint(M::GET, "/assets/app.css", dashboard::style),
    ]
}

/// Every operation [`router`] serves. A `GET` route answers `HEAD` too, and browsers' CORS
/// preflights (`OPTIONS`) are answered in front of every route.
pub fn route_table() -> Vec<Route> {
    endpoints().into_iter().map(|e| e.route).collect()
}

pub fn router(service: Service, workspace_root: PathBuf) -> Router {
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, e| {
            router.route(e.route.path, e.handler)
        })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(Gateway {
            service,
            workspace_root,
        })
}

/// A body decoded as the routes decode theirs: a JSON object, enum words to names, free-form
/// maps to strings, and errors naming the field. What the `rest_json` fuzz target drives.
pub fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = json::json_body(Ok(axum::body::Bytes::copy_from_slice(body)))?;
    json::from_json(value, "")
}

/// A JSON 404 for any path no route serves.
pub async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route".into(),
        None,
    )
    .into_response()
}

/// A JSON 405 for a method a path does not serve (axum adds the `Allow` header).
async fn method_not_allowed(method: Method) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served here"),
        None,
    )
    .into_response()
}

async fn health() -> Response {
    Json(json!({ "status": "healthy", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

async fn status(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.get_status().await?)
}

async fn resume_account(State(g): State<Gateway>, Id(name): Id) -> ApiResult {
    respond(
        &g.service
            .resume_account(pb::ResumeAccountRequest { name })
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use docs::docs_page;

    #[test]
    fn the_document_lists_exactly_the_routes_served() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if OPENAPI_METHODS.contains(&method.as_str()) {
                    documented.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let mut served: Vec<(String, String)> = route_table()
            .into_iter()
            .map(|route| (route.method.to_string(), route.path.to_owned()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
        let page = docs_page(OPENAPI);
        for (method, path) in &served {
            assert!(page.contains(&format!(
                "<td class=\"method\">{method}</td><td><code>{path}</code>"
            )));
        }
    }
}

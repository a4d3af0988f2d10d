//! The live event streams over HTTP: Server-Sent Events and a WebSocket.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::{
    Gateway,
    error::{ApiError, ApiResult},
    json::{Params, enum_name, to_json},
};
use crate::{engine::Event, pb};

/// `?task_id=&workflow_id=&instance_id=&kinds=task_completed,task_failed&after=N`.
fn stream_request(
    params: Vec<(String, String)>,
    last_event_id: Option<&str>,
) -> Result<pb::StreamEventsRequest, ApiError> {
    let mut request = pb::StreamEventsRequest::default();
    let sequence = |field: &str, value: &str| -> Result<u64, ApiError> {
        value
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid(field, "must be a sequence number"))
    };
    if let Some(id) = last_event_id {
        request.after_sequence = Some(sequence("Last-Event-ID", id)?);
    }
    for (key, value) in params {
        match key.as_str() {
            "task_id" => request.task_id = value,
            "workflow_id" => request.workflow_id = value,
            "instance_id" => request.instance_id = value,
            "after" | "after_sequence" => request.after_sequence = Some(sequence(&key, &value)?),
            "kinds" | "kind" => {
                for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let name = enum_name("kinds", &Value::String(word.to_owned()))?;
                    let kind = pb::EventKind::from_str_name(name.as_str().unwrap_or_default())
                        .ok_or_else(|| {
                            ApiError::invalid("kinds", format!("{word:?} is not a known value"))
                        })?;
                    request.kinds.push(kind as i32);
                }
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "is not a query parameter of the event stream",
                ));
            }
        }
    }
    Ok(request)
}

/// The event's REST JSON: made on first use, then shared by every HTTP stream.
fn event_json(event: &Event) -> Arc<str> {
    event
        .encoded
        .json(|| to_json(&pb::Event::from(event)).to_string().into())
}

/// Server-Sent Events: `id` is the sequence number, `event` the kind, `data` the event.
pub(super) async fn sse_events(
    State(g): State<Gateway>,
    headers: HeaderMap,
    Params(params): Params,
) -> ApiResult {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let feed = g
        .service
        .stream_events(stream_request(params, last)?)
        .await?;
    let events = feed.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(event) => SseEvent::default()
                .id(event.sequence.to_string())
                .event(event.kind.as_str())
                .data(&*event_json(&event)),
            Err(error) => {
                let error = ApiError::from(error);
                SseEvent::default()
                    .event("error")
                    .data(json!({ "code": error.code, "message": error.message }).to_string())
            }
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A WebSocket carrying one JSON event per text message.
pub(super) async fn ws_events(
    State(g): State<Gateway>,
    Params(params): Params,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult {
    let request = stream_request(params, None)?;
    let ws = ws.map_err(|r| {
        let code = match r.status() {
            StatusCode::UPGRADE_REQUIRED => "upgrade_required",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            _ => "bad_request",
        };
        ApiError::new(r.status(), code, r.body_text(), None)
    })?;
    let mut feed = g.service.stream_events(request).await?;
    Ok(ws.on_upgrade(|mut socket: WebSocket| async move {
        loop {
            tokio::select! {
                item = feed.next() => {
                    let Some(item) = item else { break };
                    let text = match item {
                        Ok(event) => event_json(&event),
                        Err(error) => {
                            let error = ApiError::from(error);
                            let text = json!({ "error": { "code": error.code, "message": error.message } }).to_string();
                            let _ = socket.send(Message::Text(text.into())).await;
                            break;
                        }
                    };
                    if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                        break;
                    }
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    }))
}

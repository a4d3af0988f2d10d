//! The audit on the API side: the layer that records every state-changing call, and
//! `AuditService.ListAudit` (`GET /audit`, role `admin`) that reads it back.
//!
//! A call changes state when the role table asks more than `read` of it
//! ([`access`]); those are recorded whatever their outcome, once the guard has let them
//! through (a refusal of the guard is logged and counted in `/metrics` instead): the time,
//! the key's name (`anonymous` without keys), the client's address, the operation, the ids
//! the call named or made (the service says which, through [`involve`]) and the outcome (the
//! gRPC status name, or the HTTP status).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};
use tonic::Status;

use super::{
    auth::{Caller, Role, access},
    metrics::code_name,
};
use crate::{
    engine::EngineError,
    pb,
    store::audit::{AuditLog, AuditQuery, AuditRecord},
};

/// The most ids one record keeps (a batch of 100,000 tasks is recorded by its first ones),
/// and the most characters of each: a caller may name any id, and the audit must not grow
/// by what a caller chooses to send.
const MAX_IDS: usize = 1000;
const MAX_ID_CHARS: usize = 128;

tokio::task_local! {
    /// The ids the call being recorded has named or made so far.
    static IDS: Arc<Mutex<Vec<String>>>;
}

/// Notes that the call being served names or made `id` (a task, instance or workflow);
/// nothing outside a recorded call.
pub fn involve(id: &str) {
    if id.is_empty() {
        return;
    }
    let id = match id.char_indices().nth(MAX_ID_CHARS) {
        Some((end, _)) => format!("{}…", &id[..end]),
        None => id.to_owned(),
    };
    let _ = IDS.try_with(|ids| {
        let mut ids = ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() < MAX_IDS && !ids.contains(&id) {
            ids.push(id);
        }
    });
}

/// The layer's work: serve the request, then hand its record to the log before the answer
/// leaves.
pub async fn record(State(log): State<AuditLog>, request: Request, next: Next) -> Response {
    let operation = access::operation(request.method(), request.uri().path());
    let changes_state = matches!(operation.access, access::Access::Key(role) if role > Role::Read);
    if !changes_state {
        return next.run(request).await;
    }
    let client_address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    let key = Caller::current().map_or_else(|| "anonymous".to_owned(), |c| c.name.to_string());
    let ids = Arc::new(Mutex::new(Vec::new()));
    let response = IDS.scope(ids.clone(), next.run(request)).await;
    let ids = std::mem::take(&mut *ids.lock().unwrap_or_else(|e| e.into_inner()));
    log.record(AuditRecord {
        sequence: 0,
        time_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        key,
        client_address,
        action: operation.name.to_owned(),
        ids,
        outcome: outcome(&response),
    })
    .await;
    response
}

/// The gRPC status of an answer (a unary answer that is not an error has its status, OK,
/// in its trailers), or its HTTP status.
fn outcome(response: &Response) -> String {
    let grpc = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    match response.headers().get("grpc-status") {
        Some(code) => code_name(code.as_bytes()),
        None if grpc => "OK".to_owned(),
        None => response.status().as_str().to_owned(),
    }
}

/// `AuditService` over the log.
#[derive(Clone)]
pub struct Audit {
    log: AuditLog,
}

impl Audit {
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }

    /// A page of records, newest first. Errors name the field at fault.
    pub async fn list(
        &self,
        request: pb::ListAuditRequest,
    ) -> Result<pb::ListAuditResponse, EngineError> {
        let before = match request.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<u64>().map_err(|_| {
                EngineError::invalid("page_token", "is not one this server gave out")
            })?),
        };
        let since_ms = match request.since {
            None => None,
            Some(t) if t.seconds < 0 || !(0..1_000_000_000).contains(&t.nanos) => {
                return Err(EngineError::invalid("since", "must be a time after 1970"));
            }
            Some(t) => Some(
                t.seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(t.nanos / 1_000_000)),
            ),
        };
        let text = |s: String| (!s.is_empty()).then_some(s);
        let page = self
            .log
            .list(AuditQuery {
                since_ms,
                key: text(request.key),
                action: text(request.action),
                limit: request.limit as usize,
                before,
            })
            .await
            .map_err(|e| EngineError::Internal(format!("the audit could not be read: {e}")))?;
        Ok(pb::ListAuditResponse {
            records: page.records.iter().map(Into::into).collect(),
            next_page_token: page.next_before.map(|b| b.to_string()).unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Audit {
    async fn list_audit(
        &self,
        request: tonic::Request<pb::ListAuditRequest>,
    ) -> Result<tonic::Response<pb::ListAuditResponse>, Status> {
        Ok(tonic::Response::new(self.list(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_kept_once_each_and_bounded_in_number_and_length() {
        let ids = Arc::new(Mutex::new(Vec::new()));
        IDS.scope(ids.clone(), async {
            involve("a");
            involve("a");
            involve("");
            involve(&"x".repeat(10_000));
            for i in 0..2 * MAX_IDS {
                involve(&i.to_string());
            }
        })
        .await;
        let ids = ids.lock().unwrap();
        assert_eq!(ids.len(), MAX_IDS);
        assert_eq!(ids[0], "a");
        assert_eq!(ids[1].chars().count(), MAX_ID_CHARS + 1);
        assert!(ids[1].ends_with('…'));
        // Outside a recorded call, nothing happens.
        involve("nowhere");
    }
}

//! `claude-swarm audit`: the server's record of state-changing calls, newest first.

use tonic::{codegen::InterceptedService, transport::Channel};

use super::{CliResult, client::Bearer, print::print};
use crate::pb::{self, audit_service_client::AuditServiceClient};

/// What `audit` asks for.
pub(super) struct AuditArgs {
    pub since: Option<String>,
    pub key: Option<String>,
    pub action: Option<String>,
    pub limit: u32,
}

pub(super) async fn audit(
    mut client: AuditServiceClient<InterceptedService<Channel, Bearer>>,
    args: AuditArgs,
    json: bool,
) -> CliResult {
    let since = args
        .since
        .map(|since| {
            serde_json::from_value::<pbjson_types::Timestamp>(serde_json::Value::String(
                since.clone(),
            ))
            .map_err(|_| format!("--since {since:?}: not an RFC 3339 time (2026-01-31T12:00:00Z)"))
        })
        .transpose()?;
    let request = pb::ListAuditRequest {
        since,
        key: args.key.unwrap_or_default(),
        action: args.action.unwrap_or_default(),
        limit: args.limit,
        page_token: String::new(),
    };
    let page = client.list_audit(request).await?.into_inner();
    print(json, &page, |page| {
        println!(
            "{:<24} {:<12} {:<15} {:<44} {:<16} IDS",
            "TIME", "KEY", "ADDRESS", "ACTION", "OUTCOME"
        );
        for r in &page.records {
            let time = r
                .time
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            println!(
                "{time:<24} {:<12} {:<15} {:<44} {:<16} {}",
                r.key,
                r.client_address,
                r.action,
                r.outcome,
                r.ids.join(",")
            );
        }
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

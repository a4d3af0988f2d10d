//! Approvals and the swarm-wide rules added at run time ("always"), as SQLite keeps them:
//! tables of their own, created when the store opens (additive: no layout version bump).

use rusqlite::{Connection, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rows::{Row, TimeRow, Variant, mirror};
use crate::engine::{
    Approval, ApprovalId, ApprovalState, PermissionDenial, PermissionPolicy, TaskId,
};

mirror! {
    #[derive(Default)]
    #[serde(default)]
    sparse PolicyRow <=> PermissionPolicy {
        allow: Vec<String>,
        deny: Vec<String>,
        ask: Option<bool>,
    }
}

mirror! {
    #[derive(Default)]
    #[serde(default)]
    DenialRow <=> PermissionDenial {
        tool_name: String,
        tool_use_id: String,
        input: Value,
        message: String,
    }
}

mirror! {
    ApprovalRow <=> Approval {
        id: String,
        task_id: TaskId,
        workflow_id: Option<String>,
        attempt: u32,
        tool_name: String,
        input: Value,
        suggestions: Value,
        description: String,
        blocked_path: Option<String>,
        tool_use_id: String,
        requested_at: TimeRow,
        expires_at: TimeRow,
        state: Variant<ApprovalState>,
        decided_by: Option<String>,
        decided_at: Option<TimeRow>,
        message: String,
        updated_input: Option<Value>,
        rule_added: Option<String>,
        delivered: bool,
    }
}

/// The tables, if they are not there yet.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS approvals (id TEXT PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS policies (scope TEXT PRIMARY KEY, body TEXT NOT NULL);",
    )
}

/// Every approval in the order it was asked (rowids only grow; an update keeps its own),
/// and the swarm-wide rules added at run time.
pub(super) fn load(conn: &Connection) -> Result<(Vec<Approval>, PermissionPolicy), String> {
    let mut query = conn
        .prepare("SELECT body FROM approvals ORDER BY rowid")
        .map_err(|e| e.to_string())?;
    let bodies = query
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    let mut approvals = Vec::new();
    for body in bodies {
        let body = body.map_err(|e| e.to_string())?;
        let row: ApprovalRow = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        approvals.push(row.into_domain());
    }
    let swarm: Option<String> = conn
        .query_row("SELECT body FROM policies WHERE scope = 'swarm'", [], |r| {
            r.get(0)
        })
        .ok();
    let swarm = match swarm {
        Some(body) => serde_json::from_str::<PolicyRow>(&body)
            .map_err(|e| e.to_string())?
            .into_domain(),
        None => PermissionPolicy::default(),
    };
    Ok((approvals, swarm))
}

/// Writes the approvals and swarm rules of a batch inside `tx`, and deletes the approvals
/// gone with their task.
pub(super) fn write(
    tx: &Transaction<'_>,
    approvals: &[Approval],
    deleted: &[ApprovalId],
    swarm: Option<&PermissionPolicy>,
) -> Result<(), String> {
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO approvals (id, body) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET body = excluded.body",
        )
        .map_err(|e| format!("prepare: {e}"))?;
    for approval in approvals {
        let body = serde_json::to_string(&ApprovalRow::from_domain(approval))
            .map_err(|e| format!("encode approval: {e}"))?;
        upsert
            .execute(params![approval.id, body])
            .map_err(|e| format!("write approval: {e}"))?;
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM approvals WHERE id = ?1")
        .map_err(|e| format!("prepare: {e}"))?;
    for id in deleted {
        delete
            .execute(params![id])
            .map_err(|e| format!("delete approval: {e}"))?;
    }
    if let Some(policy) = swarm {
        let body = serde_json::to_string(&PolicyRow::from_domain(policy))
            .map_err(|e| format!("encode policy: {e}"))?;
        tx.execute(
            "INSERT OR REPLACE INTO policies (scope, body) VALUES ('swarm', ?1)",
            params![body],
        )
        .map_err(|e| format!("write policy: {e}"))?;
    }
    Ok(())
}

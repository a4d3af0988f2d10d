//! The one conversion between engine types and API messages, used by every surface
//! (gRPC, REST, the command line).

use std::{collections::BTreeMap, time::Duration, time::SystemTime};

use crate::{
    engine::{
        AgentOptions, AgentOutput, Approval, DenialPolicy, EngineError, Event, FailurePolicy,
        Instance, Isolation, Payload, PermissionDenial, PermissionPolicy, Priority, SwarmStatus,
        Task, TaskId, TaskResult, TaskSpec, TaskStatus, Usage, WorkflowInfo,
        model::{
            account::{AccountStatus, AccountSummary},
            task::positive_seconds,
            words::Word,
        },
        schedule::{Schedule, ScheduleTarget},
    },
    notify::webhook::{Delivery, Format, Topic, Webhook, WebhookSpec},
    pb,
};

type Result<T> = std::result::Result<T, EngineError>;

pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

// ---- enums ------------------------------------------------------------------------------

/// A domain enum's proto value: its place in the enum's table plus one (0 is UNSPECIFIED).
/// The proto enums are declared in the same order; the test below checks every name.
pub fn to_pb<E: Word>(value: E) -> i32 {
    value.index() as i32 + 1
}

/// The domain value of a proto enum value. UNSPECIFIED means `unspecified` where the API
/// gives it a default, and is refused where it has none, like values outside the enum.
pub fn from_pb<E: Word>(field: &str, value: i32, unspecified: Option<E>) -> Result<E> {
    match value {
        0 => unspecified.ok_or_else(|| unknown_enum(field, value)),
        n => usize::try_from(n - 1)
            .ok()
            .and_then(|i| E::all().get(i).copied())
            .ok_or_else(|| unknown_enum(field, value)),
    }
}

fn optional_to_pb<E: Word>(value: Option<E>) -> i32 {
    value.map_or(0, to_pb)
}

fn unknown_enum(field: &str, value: i32) -> EngineError {
    EngineError::invalid(field, format!("{value} is not a known value"))
}

// ---- tasks ------------------------------------------------------------------------------

impl TryFrom<pb::TaskSpec> for TaskSpec {
    type Error = EngineError;

    /// Wire-level checks (enum values, numbers); the engine checks the rest.
    fn try_from(spec: pb::TaskSpec) -> Result<Self> {
        let timeout = seconds("timeout", spec.timeout)?;
        Ok(TaskSpec {
            id: non_empty(spec.id).map(TaskId::from),
            name: spec.name,
            prompt: spec.prompt,
            working_directory: non_empty(spec.working_directory).map(Into::into),
            priority: from_pb("priority", spec.priority, Some(Priority::Normal))?,
            timeout,
            instance_id: non_empty(spec.instance_id),
            depends_on: spec.depends_on.into_iter().map(TaskId::from).collect(),
            metadata: spec.metadata.into_iter().collect(),
            model: non_empty(spec.model),
            allowed_tools: spec.allowed_tools,
            max_turns: (spec.max_turns > 0).then_some(spec.max_turns),
            labels: spec.labels.into_iter().collect(),
            command: non_empty(spec.command),
            retries: spec.retries,
            retry_backoff: seconds("retry_backoff", spec.retry_backoff)?,
            permission_mode: non_empty(spec.permission_mode),
            on_failure: from_pb("on_failure", spec.on_failure, Some(FailurePolicy::Continue))?,
            template: None,
            fan_out: None,
            idempotency_key: non_empty(spec.idempotency_key),
            options: spec
                .options
                .map(AgentOptions::from)
                .unwrap_or_default()
                .into(),
            isolation: from_pb("isolation", spec.isolation, Some(Isolation::None))?,
            // Workflows name sessions (`session:` in their YAML); a lone task resumes one
            // by id (`options.resume_session`).
            session: None,
            output_schema: spec
                .output_schema
                .map(|v| json_of("output_schema", &v))
                .transpose()?
                .filter(|v| !v.is_null()),
            permissions: spec
                .permissions
                .map(PermissionPolicy::from)
                .unwrap_or_default()
                .into(),
            on_permission_denied: from_pb(
                "on_permission_denied",
                spec.on_permission_denied,
                Some(DenialPolicy::Continue),
            )?,
            account: non_empty(spec.account),
        })
    }
}

/// A `google.protobuf.Value` as the JSON value it stands for.
pub fn json_of(field: &str, value: &pbjson_types::Value) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| EngineError::invalid(field, e.to_string()))
}

/// A JSON value as a `google.protobuf.Value` (every JSON value is one).
fn value_of(value: &serde_json::Value) -> Option<pbjson_types::Value> {
    serde_json::from_value(value.clone()).ok()
}

// ---- permissions ------------------------------------------------------------------------

impl From<pb::PermissionPolicy> for PermissionPolicy {
    fn from(p: pb::PermissionPolicy) -> Self {
        PermissionPolicy {
            allow: p.allow,
            deny: p.deny,
            ask: p.ask,
        }
    }
}

impl From<&PermissionPolicy> for pb::PermissionPolicy {
    fn from(p: &PermissionPolicy) -> Self {
        pb::PermissionPolicy {
            allow: p.allow.clone(),
            deny: p.deny.clone(),
            ask: p.ask,
        }
    }
}

/// A JSON object as a protobuf `Struct` (anything else as an empty one).
pub fn json_struct(value: &serde_json::Value) -> pbjson_types::Struct {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

impl From<&PermissionDenial> for pb::PermissionDenial {
    fn from(d: &PermissionDenial) -> Self {
        pb::PermissionDenial {
            tool_name: d.tool_name.clone(),
            tool_use_id: d.tool_use_id.clone(),
            input: Some(json_struct(&d.input)),
            message: d.message.clone(),
        }
    }
}

impl From<&Approval> for pb::Approval {
    fn from(a: &Approval) -> Self {
        pb::Approval {
            id: a.id.clone(),
            task_id: a.task_id.to_string(),
            workflow_id: a.workflow_id.clone().unwrap_or_default(),
            attempt: a.attempt,
            tool_name: a.tool_name.clone(),
            input: Some(json_struct(&a.input)),
            permission_suggestions: Some(
                serde_json::from_value(a.suggestions.clone()).unwrap_or_default(),
            ),
            description: a.description.clone(),
            blocked_path: a.blocked_path.clone().unwrap_or_default(),
            tool_use_id: a.tool_use_id.clone(),
            requested_at: Some(timestamp(a.requested_at)),
            expires_at: Some(timestamp(a.expires_at)),
            state: to_pb(a.state),
            decided_by: a.decided_by.clone().unwrap_or_default(),
            decided_at: a.decided_at.map(timestamp),
            message: a.message.clone(),
            updated_input: a.updated_input.as_ref().map(json_struct),
            rule_added: a.rule_added.clone().unwrap_or_default(),
        }
    }
}

/// A number of seconds on the wire: 0 means unset; negative, NaN, infinite and too large
/// for a `Duration` are refused (a finite number can still overflow one).
fn seconds(field: &str, value: f64) -> Result<Option<Duration>> {
    if value == 0.0 {
        return Ok(None);
    }
    positive_seconds(value).map(Some).ok_or_else(|| {
        EngineError::invalid(
            field,
            format!("must be a positive number of seconds, not {value}"),
        )
    })
}

impl From<pb::AgentOptions> for AgentOptions {
    fn from(o: pb::AgentOptions) -> Self {
        AgentOptions {
            fallback_model: non_empty(o.fallback_model),
            disallowed_tools: o.disallowed_tools,
            append_system_prompt: non_empty(o.append_system_prompt),
            mcp_config: non_empty(o.mcp_config),
            strict_mcp_config: o.strict_mcp_config,
            add_dirs: o.add_dirs,
            // Checked by the engine (positive and finite) when not 0.
            max_budget_usd: (o.max_budget_usd != 0.0).then_some(o.max_budget_usd),
            env: o.env.into_iter().collect(),
            resume_session: non_empty(o.resume_session),
            fork_session: o.fork_session,
        }
    }
}

impl From<&AgentOptions> for pb::AgentOptions {
    fn from(o: &AgentOptions) -> Self {
        pb::AgentOptions {
            fallback_model: o.fallback_model.clone().unwrap_or_default(),
            disallowed_tools: o.disallowed_tools.clone(),
            append_system_prompt: o.append_system_prompt.clone().unwrap_or_default(),
            mcp_config: o.mcp_config.clone().unwrap_or_default(),
            strict_mcp_config: o.strict_mcp_config,
            add_dirs: o.add_dirs.clone(),
            max_budget_usd: o.max_budget_usd.unwrap_or(0.0),
            env: map(&o.env),
            resume_session: o.resume_session.clone().unwrap_or_default(),
            fork_session: o.fork_session,
        }
    }
}

/// Task ids as the wire spells them.
fn task_ids(ids: &[TaskId]) -> Vec<String> {
    ids.iter().map(String::from).collect()
}

/// A proto string field, where empty means unset.
pub fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn map(m: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl From<&Usage> for pb::Usage {
    fn from(u: &Usage) -> Self {
        pb::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
        }
    }
}

impl From<&TaskResult> for pb::TaskResult {
    fn from(r: &TaskResult) -> Self {
        pb::TaskResult {
            text: r.text.clone(),
            session_id: r.session_id.clone(),
            cost_usd: r.cost_usd,
            usage: Some((&r.usage).into()),
            num_turns: r.num_turns,
            duration_ms: r.duration.as_millis() as u64,
            exit_code: r.exit_code,
            is_error: r.is_error,
            api_error_status: r.api_error_status.map_or(0, u32::from),
            branch: r.branch.clone().unwrap_or_default(),
            diff_stat: r.diff_stat.clone(),
            structured_output: r.structured_output.as_ref().and_then(value_of),
            permission_denials: r.permission_denials.iter().map(Into::into).collect(),
        }
    }
}

impl From<&Task> for pb::Task {
    fn from(t: &Task) -> Self {
        let s = &t.spec;
        pb::Task {
            id: t.id.to_string(),
            name: t.name().to_owned(),
            prompt: s.prompt.clone(),
            working_directory: s
                .working_directory
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            priority: to_pb(s.priority),
            timeout: s.timeout.map_or(0.0, |d| d.as_secs_f64()),
            instance_id: t
                .instance_id
                .clone()
                .or_else(|| s.instance_id.clone())
                .unwrap_or_default(),
            depends_on: task_ids(&s.depends_on),
            metadata: map(&s.metadata),
            model: s.model.clone().unwrap_or_default(),
            allowed_tools: s.allowed_tools.clone(),
            max_turns: s.max_turns.unwrap_or(0),
            labels: map(&s.labels),
            status: to_pb(t.status),
            workflow_id: t.workflow_id.clone().unwrap_or_default(),
            created_at: Some(timestamp(t.created_at)),
            started_at: t.started_at.map(timestamp),
            completed_at: t.completed_at.map(timestamp),
            result: t.result.as_deref().map(Into::into),
            error: t.error.clone().unwrap_or_default(),
            command: s.command.clone().unwrap_or_default(),
            retries: s.retries,
            attempts: t.attempts,
            permission_mode: s.permission_mode.clone().unwrap_or_default(),
            on_failure: to_pb(s.on_failure),
            idempotency_key: s.idempotency_key.clone().unwrap_or_default(),
            options: Some((&*s.options).into()),
            failure_class: optional_to_pb(t.failure_class),
            isolation: to_pb(s.isolation),
            account: s.account.clone().unwrap_or_default(),
            history: t
                .history
                .iter()
                .map(|a| pb::Attempt {
                    attempt: a.attempt,
                    started_at: a.started_at.map(timestamp),
                    ended_at: Some(timestamp(a.ended_at)),
                    result: a.result.as_ref().map(Into::into),
                    error: a.error.clone(),
                    failure_class: optional_to_pb(a.failure_class),
                    instance_id: a.instance_id.clone().unwrap_or_default(),
                })
                .collect(),
            session: s.session.clone().unwrap_or_default(),
            output_schema: s.output_schema.as_ref().and_then(value_of),
            permissions: Some((&*s.permissions).into()),
            on_permission_denied: to_pb(s.on_permission_denied),
        }
    }
}

// ---- instances, workflows, status ---------------------------------------------------------

impl From<&Instance> for pb::Instance {
    fn from(i: &Instance) -> Self {
        pb::Instance {
            id: i.id.clone(),
            status: to_pb(i.status),
            current_task_id: i
                .current_task
                .as_ref()
                .map(String::from)
                .unwrap_or_default(),
            working_directory: i
                .working_directory
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            created_at: Some(timestamp(i.created_at)),
            tasks_completed: i.tasks_completed,
            tasks_failed: i.tasks_failed,
            pid: i.pid.unwrap_or(0),
            total_cost_usd: i.total_cost_usd,
            memory_bytes: i.resources.map_or(0, |u| u.rss_bytes),
            cpu_seconds: i.resources.map_or(0.0, |u| u.cpu_seconds),
            processes: i.resources.map_or(0, |u| u.processes),
            usage: Some((&i.usage).into()),
            turns: i.turns,
            account: i.account.clone(),
            node: i.node.clone(),
        }
    }
}

impl From<&AccountSummary> for pb::AccountStatus {
    fn from(s: &AccountSummary) -> Self {
        let a = &s.account;
        pb::AccountStatus {
            name: a.name.clone(),
            state: to_pb(s.status),
            instances: a.instances as u64,
            instances_live: s.instances_live,
            window: a.window.clone().unwrap_or_default(),
            utilization: a.utilization,
            resets_at: a.resets_at.map(timestamp),
            paused_until: a
                .paused_until
                .filter(|_| s.status == AccountStatus::Paused)
                .map(timestamp),
            api_retries: a.api_retries,
            refusals: a.refusals,
        }
    }
}

pub fn task_counts(counts: &[u64; TaskStatus::COUNT]) -> pb::TaskCounts {
    let n = |s: TaskStatus| counts[s.index()];
    pb::TaskCounts {
        pending: n(TaskStatus::Pending),
        queued: n(TaskStatus::Queued),
        running: n(TaskStatus::Running),
        completed: n(TaskStatus::Completed),
        failed: n(TaskStatus::Failed),
        cancelled: n(TaskStatus::Cancelled),
        skipped: n(TaskStatus::Skipped),
    }
}

impl From<&WorkflowInfo> for pb::Workflow {
    fn from(w: &WorkflowInfo) -> Self {
        pb::Workflow {
            id: w.id.clone(),
            name: w.name.clone(),
            description: w.description.clone(),
            status: to_pb(w.status),
            task_ids: task_ids(&w.task_ids),
            created_at: Some(timestamp(w.created_at)),
            completed_at: w.completed_at.map(timestamp),
            total_cost_usd: w.total_cost_usd,
            task_counts: Some(task_counts(&w.task_counts)),
            outputs: w.outputs.clone().into_iter().collect(),
            budget_usd: w.budget_usd.unwrap_or(0.0),
            usage: Some((&w.usage).into()),
            turns: w.turns,
            permissions: Some((&w.permissions).into()),
            schedule_id: w.schedule_id.clone().unwrap_or_default(),
        }
    }
}

impl From<&Webhook> for pb::Webhook {
    fn from(w: &Webhook) -> Self {
        pb::Webhook {
            id: w.id.clone(),
            name: w.name.clone(),
            url: w.url.clone(),
            events: w.topics.iter().map(|t| to_pb(*t)).collect(),
            format: to_pb(w.format),
            signed: w.secret.is_some(),
            from_config: w.from_config,
            timeout: w.timeout.as_secs_f64(),
            retry_backoff: w.retry_backoff.as_secs_f64(),
            max_attempts: w.max_attempts,
            created_at: Some(timestamp(w.created_at)),
        }
    }
}

impl From<&Delivery> for pb::Delivery {
    fn from(d: &Delivery) -> Self {
        pb::Delivery {
            webhook_id: d.webhook_id.clone(),
            sequence: d.sequence,
            topic: optional_to_pb(d.topic),
            status: to_pb(d.status),
            attempts: d.attempts,
            last_status_code: d.last_status_code.map_or(0, u32::from),
            last_error: d.last_error.clone().unwrap_or_default(),
            created_at: Some(timestamp(d.created_at)),
            updated_at: Some(timestamp(d.updated_at)),
        }
    }
}

/// A webhook request as the checks of [`Webhook::new`] take it.
pub fn webhook_spec(r: pb::CreateWebhookRequest) -> Result<WebhookSpec> {
    let events = r
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            from_pb::<Topic>(&format!("events[{i}]"), *e, None).map(|t| t.as_str().to_owned())
        })
        .collect::<Result<_>>()?;
    let set = |v: f64| (v != 0.0).then_some(v);
    Ok(WebhookSpec {
        name: r.name,
        url: r.url,
        events,
        secret: non_empty(r.secret),
        format: from_pb("format", r.format, Some(Format::Json))?,
        timeout: set(r.timeout),
        retry_backoff: set(r.retry_backoff),
        max_attempts: (r.max_attempts != 0).then_some(r.max_attempts),
    })
}

impl From<&Schedule> for pb::Schedule {
    fn from(s: &Schedule) -> Self {
        let (workflow_name, task_count) = match &s.spec.target {
            ScheduleTarget::Workflow(plan) => (plan.name.clone(), plan.tasks.len() as u32),
            ScheduleTarget::Task(task) => (task.name.clone(), 1),
        };
        pb::Schedule {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            cron: s.spec.cron.expression().to_owned(),
            time_zone: s.spec.cron.time_zone().to_owned(),
            missed: to_pb(s.spec.missed),
            overlap: to_pb(s.spec.overlap),
            paused: s.spec.paused,
            created_at: Some(timestamp(s.created_at)),
            next_fire_at: s.next_fire_at.map(timestamp),
            last_fired_at: s.last_fired_at.map(timestamp),
            last_workflow_id: s.last_workflow_id.clone().unwrap_or_default(),
            runs: s.runs,
            skipped_runs: s.skipped_runs,
            last_error: s.last_error.clone().unwrap_or_default(),
            workflow_name,
            task_count,
        }
    }
}

impl From<&SwarmStatus> for pb::GetStatusResponse {
    fn from(s: &SwarmStatus) -> Self {
        let q = |p: Priority| s.queued[p.index()];
        pb::GetStatusResponse {
            version: s.version.to_string(),
            uptime_seconds: s.uptime.as_secs_f64(),
            instances: Some(pb::InstanceCounts {
                idle: s.instances_idle,
                busy: s.instances_busy,
                stopping: s.instances_stopping,
                total: s.instances_idle + s.instances_busy + s.instances_stopping,
                max: s.max_instances,
            }),
            tasks: Some(task_counts(&s.tasks)),
            queue: Some(pb::QueueDepth {
                low: q(Priority::Low),
                normal: q(Priority::Normal),
                high: q(Priority::High),
                critical: q(Priority::Critical),
            }),
            workflows_running: s.workflows_running,
            total_cost_usd: s.total_cost_usd,
            agent: s.agent.clone(),
            dispatch_paused_until: s.paused.as_ref().map(|(until, _)| timestamp(*until)),
            dispatch_paused_reason: s
                .budget_spent
                .clone()
                .or_else(|| s.paused.as_ref().map(|(_, why)| why.clone()))
                .unwrap_or_default(),
            budget_usd: s.budget_usd.unwrap_or(0.0),
            usage: Some((&s.usage).into()),
            turns: s.turns,
            accounts: s.accounts.iter().map(Into::into).collect(),
            approvals_pending: s.approvals_pending,
            // Filled in by the service on the owner of a shared database.
            nodes: Vec::new(),
        }
    }
}

// ---- events -----------------------------------------------------------------------------

impl From<&AgentOutput> for pb::AgentOutput {
    fn from(o: &AgentOutput) -> Self {
        pb::AgentOutput {
            message_type: o.message_type.clone(),
            subtype: o.subtype.clone(),
            text: o.text.clone(),
            raw: o.raw.clone(),
            truncated: o.truncated,
        }
    }
}

impl From<&Event> for pb::Event {
    fn from(e: &Event) -> Self {
        use pb::event::Payload as P;
        pb::Event {
            sequence: e.sequence,
            time: Some(timestamp(e.time)),
            kind: to_pb(e.kind),
            task_id: e.task_id.as_ref().map(String::from).unwrap_or_default(),
            instance_id: e.instance_id.clone().unwrap_or_default(),
            workflow_id: e.workflow_id.clone().unwrap_or_default(),
            payload: Some(match &e.payload {
                Payload::Task(t) => P::Task(t.as_ref().into()),
                Payload::Instance(i) => P::Instance(i.as_ref().into()),
                Payload::Workflow(w) => P::Workflow(w.as_ref().into()),
                Payload::Output(o) => P::Output(o.as_ref().into()),
                Payload::Approval(a) => P::Approval(a.as_ref().into()),
                Payload::Denial(d) => P::Denial(d.as_ref().into()),
                Payload::Account(a) => P::Account(a.as_ref().into()),
                Payload::Budget(b) => P::Budget(pb::Budget {
                    budget_usd: b.budget_usd,
                    total_cost_usd: b.total_cost_usd,
                }),
            }),
        }
    }
}

/// The event as gRPC sends it: converted and encoded on first use, then the same shared
/// bytes for every subscriber (a `pb::Event` message, as the clients decode it).
pub fn event_bytes(e: &Event) -> std::sync::Arc<[u8]> {
    e.encoded
        .proto(|| prost::Message::encode_to_vec(&pb::Event::from(e)).into())
}

impl From<crate::workflow::Warning> for pb::ValidationWarning {
    fn from(w: crate::workflow::Warning) -> Self {
        let (line, column) = w.place.map_or((0, 0), |p| (p.line, p.column));
        pb::ValidationWarning {
            message: w.message,
            field: w.field,
            line: line as u32,
            column: column as u32,
        }
    }
}

// ---- the audit ----------------------------------------------------------------------------

impl From<&crate::store::audit::AuditRecord> for pb::AuditRecord {
    fn from(r: &crate::store::audit::AuditRecord) -> Self {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(r.time_ms.max(0) as u64);
        Self {
            sequence: r.sequence,
            time: Some(timestamp(time)),
            key: r.key.clone(),
            client_address: r.client_address.clone().unwrap_or_default(),
            action: r.action.clone(),
            ids: r.ids.clone(),
            outcome: r.outcome.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        EventKind, FailureClass, InstanceStatus,
        schedule::{MissedPolicy, OverlapPolicy},
        workflow::WorkflowStatus,
    };

    #[test]
    fn bad_wire_values_name_their_field() {
        let spec = pb::TaskSpec {
            prompt: "x".into(),
            priority: 42,
            ..Default::default()
        };
        assert_eq!(
            TaskSpec::try_from(spec).unwrap_err().field(),
            Some("priority")
        );
        let spec = pb::TaskSpec {
            prompt: "x".into(),
            timeout: -1.0,
            ..Default::default()
        };
        assert_eq!(
            TaskSpec::try_from(spec).unwrap_err().field(),
            Some("timeout")
        );
        let spec = pb::TaskSpec {
            prompt: "x".into(),
            timeout: f64::NAN,
            ..Default::default()
        };
        assert_eq!(
            TaskSpec::try_from(spec).unwrap_err().field(),
            Some("timeout")
        );
        for seconds in [f64::INFINITY, 1e300, -0.5] {
            let spec = pb::TaskSpec {
                prompt: "x".into(),
                timeout: seconds,
                ..Default::default()
            };
            assert_eq!(
                TaskSpec::try_from(spec).unwrap_err().field(),
                Some("timeout"),
                "{seconds}"
            );
            let spec = pb::TaskSpec {
                prompt: "x".into(),
                retry_backoff: seconds,
                ..Default::default()
            };
            assert_eq!(
                TaskSpec::try_from(spec).unwrap_err().field(),
                Some("retry_backoff"),
                "{seconds}"
            );
        }
    }

    /// Every domain enum's words, in order, are its proto enum's names: one table each.
    #[test]
    fn every_enum_matches_its_proto_enum() {
        fn check<E: Word>(prefix: &str, name: impl Fn(i32) -> Option<&'static str>) {
            for value in E::all() {
                let pb_name = name(to_pb(*value)).unwrap_or("missing");
                assert_eq!(pb_name, format!("{prefix}{}", value.word().to_uppercase()));
                assert_eq!(
                    from_pb::<E>("f", to_pb(*value), None).unwrap().word(),
                    value.word()
                );
            }
            assert!(
                name(E::all().len() as i32 + 1).is_none(),
                "{prefix}: proto has more values"
            );
        }
        macro_rules! names {
            ($pb:ty) => {
                |v| <$pb>::try_from(v).ok().map(|e| e.as_str_name())
            };
        }
        check::<TaskStatus>("TASK_STATUS_", names!(pb::TaskStatus));
        check::<Priority>("PRIORITY_", names!(pb::Priority));
        check::<InstanceStatus>("INSTANCE_STATUS_", names!(pb::InstanceStatus));
        check::<WorkflowStatus>("WORKFLOW_STATUS_", names!(pb::WorkflowStatus));
        check::<EventKind>("EVENT_KIND_", names!(pb::EventKind));
        check::<Isolation>("ISOLATION_", names!(pb::Isolation));
        check::<FailureClass>("FAILURE_CLASS_", names!(pb::FailureClass));
        check::<FailurePolicy>("FAILURE_POLICY_", names!(pb::FailurePolicy));
        check::<crate::engine::ApprovalState>("APPROVAL_STATE_", names!(pb::ApprovalState));
        check::<crate::engine::PolicyScope>("POLICY_SCOPE_", names!(pb::PolicyScope));
        check::<DenialPolicy>("DENIAL_POLICY_", names!(pb::DenialPolicy));
        check::<MissedPolicy>("MISSED_RUN_POLICY_", names!(pb::MissedRunPolicy));
        check::<OverlapPolicy>("OVERLAP_POLICY_", names!(pb::OverlapPolicy));
        check::<Topic>("WEBHOOK_TOPIC_", names!(pb::WebhookTopic));
        check::<Format>("WEBHOOK_FORMAT_", names!(pb::WebhookFormat));
        check::<crate::notify::webhook::DeliveryStatus>(
            "DELIVERY_STATUS_",
            names!(pb::DeliveryStatus),
        );
        check::<AccountStatus>("ACCOUNT_STATE_", names!(pb::AccountState));
        assert!(from_pb::<TaskStatus>("status", 0, None).is_err());
        assert_eq!(
            from_pb("priority", 0, Some(Priority::Normal)).unwrap(),
            Priority::Normal
        );
    }
}

//! Stored shapes, separate from the engine's types: renaming a domain field changes no
//! byte on disk; changing a row is a new layout version with a migration.
//!
//! Task and workflow rows keep layout 1's field names and `"Pending"`-style variant
//! names, frozen here (event rows are in [`super::event_rows`]); layout 4 writes a time as
//! one number of nanoseconds and still reads layout 1's `{secs_since_epoch,
//! nanos_since_epoch}`. How a value is stored, whatever row it is in, is in `form` (the
//! [`Row`] conversion, [`mirror!`], and [`Unset`]: what a `sparse` row leaves out and reads
//! back as it was, so a task's row is its few set fields, not the thirty its spec could
//! have).

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::approvals::{DenialRow, PolicyRow};
use crate::engine::{
    AgentOptions, AgentOutput, Attempt, DenialPolicy, FailureClass, FailurePolicy, Instance,
    InstanceStatus, Isolation, Priority, Task, TaskId, TaskResult, TaskSpec, TaskStatus, Usage,
    model::{
        account::{Account, AccountSpec, AccountStatus, AccountSummary},
        event::Budget,
    },
    ports::{StoreError, TaskRecord, WorkflowRecord},
    workflow::{FanOut, FanOutSource, Segment, Template, WorkflowInfo, WorkflowStatus},
};

mod form;

pub(crate) use form::mirror;
pub use form::{DurationRow, RareRow, Row, Shared, TimeRow, Unset, Variant};

/// A row as the JSON text every store keeps.
pub fn encode(row: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(row).map_err(|e| StoreError::Row {
        path: String::new(),
        kind: "row to encode",
        cause: e.to_string(),
    })
}

mirror! {
    #[derive(Default)]
    #[serde(default)]
    sparse UsageRow <=> Usage {
        input_tokens: u64,
        output_tokens: u64,
        cache_creation_input_tokens: u64,
        cache_read_input_tokens: u64,
    }
}

mirror! {
    #[derive(Default)]
    #[serde(default)]
    sparse ResultRow <=> TaskResult {
        text: String,
        session_id: String,
        cost_usd: f64,
        usage: UsageRow,
        num_turns: u32,
        duration: DurationRow,
        exit_code: Option<i32>,
        is_error: bool,
        api_error_status: Option<u16>,
        branch: Option<String>,
        diff_stat: String,
        structured_output: Option<serde_json::Value>,
        permission_denials: Vec<DenialRow>,
    }
}

mirror! {
    #[derive(Default)]
    #[serde(default)]
    sparse OptionsRow <=> AgentOptions {
        fallback_model: Option<String>,
        disallowed_tools: Vec<String>,
        append_system_prompt: Option<String>,
        mcp_config: Option<String>,
        strict_mcp_config: bool,
        add_dirs: Vec<String>,
        max_budget_usd: Option<f64>,
        env: BTreeMap<String, String>,
        resume_session: Option<String>,
        fork_session: bool,
    }
}

/// A piece of a template, as layout 1 wrote it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SegmentRow {
    Text(String),
    Result(TaskId),
    Item,
    Index,
    Output(TaskId, Vec<String>),
}

impl Row for SegmentRow {
    type Domain = Segment;
    fn from_domain(value: &Segment) -> Self {
        match value {
            Segment::Text(t) => Self::Text(t.clone()),
            Segment::Result(id) => Self::Result(id.clone()),
            Segment::Item => Self::Item,
            Segment::Index => Self::Index,
            Segment::Output(id, path) => Self::Output(id.clone(), path.clone()),
        }
    }
    fn into_domain(self) -> Segment {
        match self {
            Self::Text(t) => Segment::Text(t),
            Self::Result(id) => Segment::Result(id),
            Self::Item => Segment::Item,
            Self::Index => Segment::Index,
            Self::Output(id, path) => Segment::Output(id, path),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TemplateRow(Vec<SegmentRow>);

impl Row for TemplateRow {
    type Domain = Template;
    fn from_domain(value: &Template) -> Self {
        Self(Row::from_domain(&value.0))
    }
    fn into_domain(self) -> Template {
        Template(self.0.into_domain())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FanOutSourceRow {
    Items(Vec<String>),
    Result(TaskId),
    Output(TaskId, Vec<String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FanOutRow {
    source: FanOutSourceRow,
    max_parallel: usize,
}

impl Row for FanOutRow {
    type Domain = FanOut;
    fn from_domain(value: &FanOut) -> Self {
        Self {
            source: match &value.source {
                FanOutSource::Items(items) => FanOutSourceRow::Items(items.clone()),
                FanOutSource::Result(id) => FanOutSourceRow::Result(id.clone()),
                FanOutSource::Output(id, path) => FanOutSourceRow::Output(id.clone(), path.clone()),
            },
            max_parallel: value.max_parallel,
        }
    }
    fn into_domain(self) -> FanOut {
        FanOut {
            source: match self.source {
                FanOutSourceRow::Items(items) => FanOutSource::Items(items),
                FanOutSourceRow::Result(id) => FanOutSource::Result(id),
                FanOutSourceRow::Output(id, path) => FanOutSource::Output(id, path),
            },
            max_parallel: self.max_parallel,
        }
    }
}

mirror! {
    #[serde(default)]
    sparse SpecRow <=> TaskSpec {
        id: Option<TaskId>,
        name: String,
        prompt: String,
        working_directory: Option<PathBuf>,
        priority: Variant<Priority>,
        timeout: Option<DurationRow>,
        instance_id: Option<String>,
        depends_on: Vec<TaskId>,
        metadata: BTreeMap<String, String>,
        model: Option<String>,
        allowed_tools: Vec<String>,
        max_turns: Option<u32>,
        labels: BTreeMap<String, String>,
        command: Option<String>,
        retries: u32,
        retry_backoff: Option<DurationRow>,
        permission_mode: Option<String>,
        on_failure: Variant<FailurePolicy>,
        template: Option<TemplateRow>,
        fan_out: Option<Box<FanOutRow>>,
        idempotency_key: Option<String>,
        options: RareRow<OptionsRow>,
        isolation: Variant<Isolation>,
        session: Option<String>,
        output_schema: Option<serde_json::Value>,
        permissions: RareRow<PolicyRow>,
        on_permission_denied: Variant<DenialPolicy>,
        account: Option<String>,
    }
}

impl Default for SpecRow {
    fn default() -> Self {
        Self::from_domain(&TaskSpec::default())
    }
}

mirror! {
    AttemptRow <=> Attempt {
        attempt: u32,
        started_at: Option<TimeRow>,
        ended_at: TimeRow,
        result: Option<ResultRow>,
        error: String,
        failure_class: Option<Variant<FailureClass>>,
        instance_id: Option<String>,
    }
}

mirror! {
    TaskRow <=> Task {
        id: TaskId,
        spec: Shared<SpecRow>,
        status: Variant<TaskStatus>,
                workflow_id: Option<String>,
                instance_id: Option<String>,
        created_at: TimeRow,
                started_at: Option<TimeRow>,
                completed_at: Option<TimeRow>,
                result: Option<Box<ResultRow>>,
                error: Option<String>,
        #[serde(default)]
        attempts: u32,
        #[serde(default)]
        failure_class: Option<Variant<FailureClass>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        history: Vec<AttemptRow>,
        // Rows written before it was recorded have none: nothing to end.
        #[serde(default)]
        process_group: Option<u32>,
    }
}

mirror! {
    TaskRecordRow <=> TaskRecord {
        task: Shared<TaskRow>,
                parent: Option<TaskId>,
    }
}

mirror! {
    WorkflowInfoRow <=> WorkflowInfo {
        id: String,
        name: String,
        description: String,
        status: Variant<WorkflowStatus>,
        task_ids: Vec<TaskId>,
        created_at: TimeRow,
        completed_at: Option<TimeRow>,
        total_cost_usd: f64,
        task_counts: [u64; TaskStatus::COUNT],
        #[serde(default)]
        outputs: BTreeMap<String, String>,
        #[serde(default)]
        budget_usd: Option<f64>,
        #[serde(default)]
        usage: UsageRow,
        #[serde(default)]
        turns: u64,
        #[serde(default)]
        permissions: PolicyRow,
        schedule_id: Option<String>,
    }
}

mirror! {
    WorkflowRecordRow <=> WorkflowRecord {
        info: WorkflowInfoRow,
        cancelling: bool,
        user_cancelled: bool,
        leaves: Vec<TaskId>,
    }
}

/// An instance as an event shows it (what it uses now is not stored); its counters and
/// its name parts are left out while they are nothing (layout 4).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceRow {
    id: String,
    status: Variant<InstanceStatus>,
    current_task: Option<TaskId>,
    working_directory: Option<PathBuf>,
    created_at: TimeRow,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    tasks_completed: u64,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    tasks_failed: u64,
    pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    total_cost_usd: f64,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    usage: UsageRow,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    turns: u64,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    account: String,
    #[serde(default, skip_serializing_if = "Unset::unset")]
    node: String,
}

impl Row for InstanceRow {
    type Domain = Instance;
    fn from_domain(i: &Instance) -> Self {
        Self {
            id: i.id.clone(),
            status: Row::from_domain(&i.status),
            current_task: i.current_task.clone(),
            working_directory: i.working_directory.clone(),
            created_at: Row::from_domain(&i.created_at),
            tasks_completed: i.tasks_completed,
            tasks_failed: i.tasks_failed,
            pid: i.pid,
            total_cost_usd: i.total_cost_usd,
            usage: Row::from_domain(&i.usage),
            turns: i.turns,
            account: i.account.clone(),
            node: i.node.clone(),
        }
    }
    fn into_domain(self) -> Instance {
        Instance {
            id: self.id,
            status: self.status.into_domain(),
            current_task: self.current_task,
            working_directory: self.working_directory,
            created_at: self.created_at.into_domain(),
            tasks_completed: self.tasks_completed,
            tasks_failed: self.tasks_failed,
            pid: self.pid,
            total_cost_usd: self.total_cost_usd,
            usage: self.usage.into_domain(),
            turns: self.turns,
            resources: None,
            account: self.account,
            node: self.node,
        }
    }
}

mirror! {
    /// An account's usage-limit state (table `accounts`, by name; added beside layout 2,
    /// so an older file simply has none).
    #[serde(default)]
    AccountRow <=> Account {
        name: String,
        instances: usize,
        window: Option<String>,
        utilization: Option<f64>,
        resets_at: Option<TimeRow>,
        paused_until: Option<TimeRow>,
        limited_until: Option<TimeRow>,
        api_retries: u64,
        refusals: u64,
    }
}

mirror! {
    AccountSummaryRow <=> AccountSummary {
        account: AccountRow,
        status: Variant<AccountStatus>,
        instances_live: u64,
    }
}

mirror! {
    BudgetRow <=> Budget {
        budget_usd: f64,
        total_cost_usd: f64,
    }
}

impl Default for AccountRow {
    fn default() -> Self {
        Self::from_domain(&Account::new(&AccountSpec {
            name: String::new(),
            instances: 1,
        }))
    }
}

mirror! {
    OutputRow <=> AgentOutput {
        message_type: String,
        subtype: String,
        text: String,
        raw: String,
        truncated: bool,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, UNIX_EPOCH},
    };

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::engine::model::approval::PermissionPolicy;

    fn keys(row: &impl Serialize) -> Vec<String> {
        match serde_json::to_value(row).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    /// `{}` read back and written again is `{}`: every field read back as missing is one
    /// a sparse row leaves out.
    fn reads_empty_as_unset<T: Serialize + DeserializeOwned>() {
        let read: T = serde_json::from_str("{}").unwrap();
        assert_eq!(
            encode(&read).unwrap(),
            "{}",
            "{}",
            std::any::type_name::<T>()
        );
    }

    #[test]
    fn a_sparse_row_reads_a_missing_field_as_the_unset_one() {
        // The rows' defaults, which a reader gives a missing field, are all unset...
        assert_eq!(encode(&UsageRow::default()).unwrap(), "{}");
        assert_eq!(encode(&ResultRow::default()).unwrap(), "{}");
        assert_eq!(encode(&OptionsRow::default()).unwrap(), "{}");
        assert_eq!(encode(&PolicyRow::default()).unwrap(), "{}");
        // ... but for the words, which are always written.
        let mut words = keys(&SpecRow::default());
        words.sort();
        assert_eq!(
            words,
            [
                "isolation",
                "on_failure",
                "on_permission_denied",
                "priority"
            ]
        );
        // And a row with nothing in it reads as one with nothing set.
        reads_empty_as_unset::<UsageRow>();
        reads_empty_as_unset::<ResultRow>();
        reads_empty_as_unset::<OptionsRow>();
        reads_empty_as_unset::<PolicyRow>();
    }

    fn round_trip(record: &TaskRecord) -> (String, TaskRecord) {
        let body = encode(&TaskRecordRow::from_domain(record)).unwrap();
        let row: TaskRecordRow = serde_json::from_str(&body).unwrap();
        (body, row.into_domain())
    }

    #[test]
    fn a_task_row_holds_only_what_is_set_and_reads_back_whole() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let bare = TaskRecord {
            task: Arc::new(Task::new("t1".into(), TaskSpec::new("say hi"), None, at)),
            parent: None,
        };
        let (body, back) = round_trip(&bare);
        assert_eq!(back, bare);
        let row: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(keys(&row), ["task"]);
        assert_eq!(
            keys(&row["task"]),
            ["attempts", "created_at", "id", "spec", "status"]
        );
        // A spec's prompt, and its words; the rest is unset.
        assert_eq!(
            keys(&row["task"]["spec"]),
            [
                "isolation",
                "on_failure",
                "on_permission_denied",
                "priority",
                "prompt"
            ]
        );

        // Every part set, to values that are not the defaults, comes back as it was.
        let mut spec = TaskSpec {
            id: Some("t2".into()),
            working_directory: Some("/tmp/w".into()),
            priority: Priority::Critical,
            timeout: Some(Duration::from_millis(1500)),
            depends_on: vec!["t1".into()],
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            model: Some("m".into()),
            allowed_tools: vec!["Read".into()],
            max_turns: Some(3),
            retries: 2,
            output_schema: Some(serde_json::json!({"type": "object"})),
            account: Some("a".into()),
            ..TaskSpec::new("do it")
        };
        spec.options = AgentOptions {
            fork_session: true,
            strict_mcp_config: true,
            max_budget_usd: Some(0.5),
            ..AgentOptions::default()
        }
        .into();
        spec.permissions = PermissionPolicy {
            allow: vec!["Bash(ls)".into()],
            deny: Vec::new(),
            ask: Some(false),
        }
        .into();
        let mut task = Task::new("t2".into(), spec, Some("w1".into()), at);
        task.status = TaskStatus::Completed;
        task.started_at = Some(at);
        task.completed_at = Some(at + Duration::from_secs(2));
        task.attempts = 1;
        task.result = Some(Box::new(TaskResult {
            text: "hi".into(),
            cost_usd: 0.25,
            usage: Usage {
                output_tokens: 7,
                ..Usage::default()
            },
            exit_code: Some(0),
            duration: Duration::from_millis(20),
            ..TaskResult::default()
        }));
        let full = TaskRecord {
            task: Arc::new(task),
            parent: Some("w1".into()),
        };
        assert_eq!(round_trip(&full).1, full);
    }
}

//! Stored shapes, separate from the engine's types: renaming a domain field changes no
//! byte on disk; changing a row is a new layout version with a migration.
//!
//! Task and workflow rows keep layout 1's field names and `"Pending"`-style variant
//! names, frozen here (event rows are in [`super::event_rows`]); layout 4 writes a time as
//! one number of nanoseconds and still reads layout 1's `{secs_since_epoch,
//! nanos_since_epoch}`. [`Row`] converts a row to and from its domain value; [`mirror!`]
//! declares a row struct with the same fields as its domain struct, and a `sparse` one
//! leaves out the fields that hold nothing ([`Unset`]), read back as they were: a task's
//! row is its few set fields, not the thirty its spec could have.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

use super::approvals::{DenialRow, PolicyRow};
use crate::engine::{
    AgentOptions, AgentOutput, Attempt, DenialPolicy, FailureClass, FailurePolicy, Instance,
    InstanceStatus, Isolation, Priority, Task, TaskResult, TaskSpec, TaskStatus, Usage,
    model::{
        account::{Account, AccountSpec},
        rare::{Empty, Rare},
        words::Word,
    },
    ports::{StoreError, TaskRecord, WorkflowRecord},
    workflow::{FanOut, FanOutSource, Segment, Template, WorkflowInfo, WorkflowStatus},
};

/// A row as the JSON text every store keeps.
pub fn encode(row: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(row).map_err(|e| StoreError::Row {
        path: String::new(),
        kind: "row to encode",
        cause: e.to_string(),
    })
}

/// A value a sparse row may leave out: `unset` holds exactly for the value the field reads
/// back as when it is missing (its `Default`, or the row's). A value with no such form (a
/// word, a time, a shared part) is never unset, so always written.
pub trait Unset {
    fn unset(&self) -> bool;
}

impl<T> Unset for Option<T> {
    fn unset(&self) -> bool {
        self.is_none()
    }
}

impl<T> Unset for Vec<T> {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> Unset for BTreeMap<K, V> {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl Unset for String {
    fn unset(&self) -> bool {
        self.is_empty()
    }
}

impl Unset for bool {
    fn unset(&self) -> bool {
        !*self
    }
}

macro_rules! unset_when_zero {
    ($($ty:ty),+) => {$(
        impl Unset for $ty {
            fn unset(&self) -> bool {
                *self == 0 as $ty
            }
        }
    )+};
}

unset_when_zero!(u32, u64, f64);

impl<T: Unset> Unset for Box<T> {
    fn unset(&self) -> bool {
        (**self).unset()
    }
}

macro_rules! always_written {
    ($($ty:ident $(<$param:ident>)?),+) => {$(
        impl$(<$param>)? Unset for $ty$(<$param>)? {
            fn unset(&self) -> bool {
                false
            }
        }
    )+};
}

always_written!(TimeRow, Variant<E>, Shared<T>);

/// A stored value and the domain value it stands for.
pub trait Row: Sized {
    type Domain;
    fn from_domain(value: &Self::Domain) -> Self;
    fn into_domain(self) -> Self::Domain;
}

macro_rules! same {
    ($($ty:ty),+) => {$(
        impl Row for $ty {
            type Domain = $ty;
            fn from_domain(value: &$ty) -> Self {
                value.clone()
            }
            fn into_domain(self) -> $ty {
                self
            }
        }
    )+};
}

same!(
    String,
    bool,
    u16,
    u32,
    u64,
    usize,
    i32,
    f64,
    PathBuf,
    BTreeMap<String, String>,
    serde_json::Value
);

impl<T: Row> Row for Option<T> {
    type Domain = Option<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        value.as_ref().map(T::from_domain)
    }
    fn into_domain(self) -> Self::Domain {
        self.map(T::into_domain)
    }
}

/// The row of a value the engine shares (`Arc`): the value's own row, stored the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shared<T>(pub T);

impl<T: Row> Row for Shared<T> {
    type Domain = std::sync::Arc<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        Self(T::from_domain(value))
    }
    fn into_domain(self) -> Self::Domain {
        std::sync::Arc::new(self.0.into_domain())
    }
}

/// The row of a part most values leave empty ([`Rare`]): the part's own row, stored the same
/// way.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RareRow<T>(pub T);

impl<T: Unset> Unset for RareRow<T> {
    fn unset(&self) -> bool {
        self.0.unset()
    }
}

impl<T: Row> Row for RareRow<T>
where
    T::Domain: Empty,
{
    type Domain = Rare<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        Self(T::from_domain(value))
    }
    fn into_domain(self) -> Self::Domain {
        self.0.into_domain().into()
    }
}

impl<T: Row> Row for Box<T> {
    type Domain = Box<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        Box::new(T::from_domain(value))
    }
    fn into_domain(self) -> Self::Domain {
        Box::new((*self).into_domain())
    }
}

impl<T: Row> Row for Vec<T> {
    type Domain = Vec<T::Domain>;
    fn from_domain(value: &Self::Domain) -> Self {
        value.iter().map(T::from_domain).collect()
    }
    fn into_domain(self) -> Self::Domain {
        self.into_iter().map(T::into_domain).collect()
    }
}

impl Row for [u64; TaskStatus::COUNT] {
    type Domain = [u64; TaskStatus::COUNT];
    fn from_domain(value: &Self::Domain) -> Self {
        *value
    }
    fn into_domain(self) -> Self::Domain {
        self
    }
}

/// A time: nanoseconds since the epoch, one number (layout 4). Layouts 1 to 3 wrote
/// serde's own `{secs_since_epoch, nanos_since_epoch}` for it, which is still read.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(from = "TimeForm")]
pub struct TimeRow(u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeForm {
    Nanos(u64),
    Parts {
        secs_since_epoch: u64,
        nanos_since_epoch: u32,
    },
}

impl From<TimeForm> for TimeRow {
    fn from(form: TimeForm) -> Self {
        match form {
            TimeForm::Nanos(nanos) => Self(nanos),
            TimeForm::Parts {
                secs_since_epoch,
                nanos_since_epoch,
            } => Self(
                secs_since_epoch
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(nanos_since_epoch)),
            ),
        }
    }
}

impl Row for TimeRow {
    type Domain = SystemTime;
    fn from_domain(value: &SystemTime) -> Self {
        let since = value.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
    fn into_domain(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

/// A duration as layout 1 wrote it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct DurationRow {
    secs: u64,
    nanos: u32,
}

impl Unset for DurationRow {
    fn unset(&self) -> bool {
        self.secs == 0 && self.nanos == 0
    }
}

impl Row for DurationRow {
    type Domain = Duration;
    fn from_domain(value: &Duration) -> Self {
        Self {
            secs: value.as_secs(),
            nanos: value.subsec_nanos(),
        }
    }
    fn into_domain(self) -> Duration {
        Duration::new(self.secs, self.nanos)
    }
}

/// An enum value stored by its variant's name (`"ApiError"` for the word `api_error`).
#[derive(Clone, Copy, Debug)]
pub struct Variant<E>(E);

fn variant_name(word: &str) -> String {
    word.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

impl<E: Word> Serialize for Variant<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&variant_name(self.0.word()))
    }
}

impl<'de, E: Word> Deserialize<'de> for Variant<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        E::all()
            .iter()
            .find(|v| variant_name(v.word()) == name)
            .map(|v| Variant(*v))
            .ok_or_else(|| D::Error::custom(format!("unknown value {name:?}")))
    }
}

impl<E: Word> Row for Variant<E> {
    type Domain = E;
    fn from_domain(value: &E) -> Self {
        Variant(*value)
    }
    fn into_domain(self) -> E {
        self.0
    }
}

/// `Row <=> Domain { field: RowType, ... }`: a row struct with the domain struct's fields
/// (each stored as its row type), and both conversions. `sparse Row <=> Domain { ... }`
/// also leaves out each field that is [`Unset`]; the row must read a missing field back
/// as that unset value (a row default that is unset, or the field's own `Default`), which
/// `tests::a_sparse_row_reads_a_missing_field_as_the_unset_one` checks.
macro_rules! mirror {
    (
        $(#[$meta:meta])*
        sparse $row:ident <=> $domain:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty ),+ $(,)?
        }
    ) => {
        $crate::store::rows::mirror! {
            $(#[$meta])*
            $row <=> $domain {
                $(
                    $(#[$fmeta])*
                    #[serde(skip_serializing_if = "crate::store::rows::Unset::unset")]
                    $field: $ty
                ),+
            }
        }

        impl $crate::store::rows::Unset for $row {
            fn unset(&self) -> bool {
                $( $crate::store::rows::Unset::unset(&self.$field) )&&+
            }
        }
    };
    (
        $(#[$meta:meta])*
        $row:ident <=> $domain:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty ),+ $(,)?
        }
    ) => {
        // A missing option reads as `None`, so none is written.
        #[serde_with::skip_serializing_none]
        #[derive(Clone, Debug, Serialize, Deserialize)]
        $(#[$meta])*
        pub struct $row {
            $( $(#[$fmeta])* pub $field: $ty ),+
        }

        impl Row for $row {
            type Domain = $domain;
            fn from_domain(value: &$domain) -> Self {
                Self { $($field: Row::from_domain(&value.$field)),+ }
            }
            fn into_domain(self) -> $domain {
                $domain { $($field: self.$field.into_domain()),+ }
            }
        }
    };
}

pub(crate) use mirror;

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
    Result(String),
    Item,
    Index,
    Output(String, Vec<String>),
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
    Result(String),
    Output(String, Vec<String>),
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
        id: Option<String>,
        name: String,
        prompt: String,
        working_directory: Option<PathBuf>,
        priority: Variant<Priority>,
        timeout: Option<DurationRow>,
        instance_id: Option<String>,
        depends_on: Vec<String>,
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
        id: String,
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
                parent: Option<String>,
    }
}

mirror! {
    WorkflowInfoRow <=> WorkflowInfo {
        id: String,
        name: String,
        description: String,
        status: Variant<WorkflowStatus>,
        task_ids: Vec<String>,
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
        leaves: Vec<String>,
    }
}

/// An instance as an event shows it (what it uses now is not stored); its counters and
/// its name parts are left out while they are nothing (layout 4).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceRow {
    id: String,
    status: Variant<InstanceStatus>,
    current_task: Option<String>,
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
    use std::{sync::Arc, time::Duration};

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

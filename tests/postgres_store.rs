//! The PostgreSQL store against a real server (a throwaway cluster, see
//! `common::postgres`): what SQLite keeps it keeps (and deletes what it deletes), its layout is migrated once, a write
//! about an old attempt is refused whole, and one node owns a database at a time: the
//! next waits for the owner's lease to end and fences it out when it takes over.

mod common;

use std::{
    sync::{Arc, mpsc},
    time::{Duration, SystemTime},
};

use claude_swarm::{
    engine::{
        Approval, ApprovalState, Event, EventKind, Payload, Task, TaskSpec, TaskStatus,
        ports::{Batch, Store, TaskRecord},
    },
    store::{
        postgres::{PostgresStore, SCHEMA_VERSION, Target},
        sqlite::SqliteStore,
    },
};
use common::postgres::database;

fn target(url: &str, node: &str) -> Target {
    Target {
        url: url.to_owned(),
        node: node.to_owned(),
        lease: Duration::from_secs(2),
    }
}

fn record(id: &str, attempts: u32, status: TaskStatus) -> TaskRecord {
    let mut task = Task::new(id.into(), TaskSpec::new("p"), None, SystemTime::UNIX_EPOCH);
    task.attempts = attempts;
    task.status = status;
    TaskRecord {
        task: task.into(),
        parent: None,
    }
}

fn event(sequence: u64, task: &TaskRecord) -> Arc<Event> {
    Arc::new(Event {
        sequence,
        time: SystemTime::UNIX_EPOCH,
        kind: EventKind::TaskSubmitted,
        task_id: Some(task.task.id.clone()),
        instance_id: None,
        workflow_id: None,
        payload: Payload::Task(task.task.clone()),
        encoded: Default::default(),
    })
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn what_is_committed_is_loaded_in_order_and_compaction_deletes() {
    let url = database();
    let mut store = PostgresStore::open(&target(&url, "a"), 3).unwrap();
    assert!(store.load().unwrap().tasks.is_empty());
    let (one, two) = (
        record("t1", 0, TaskStatus::Queued),
        record("t2", 0, TaskStatus::Pending),
    );
    let events: Vec<_> = (1..=5).map(|s| event(s, &one)).collect();
    store
        .commit(&Batch {
            tasks: vec![one.clone(), two.clone()],
            events,
            total_cost_usd: Some(1.25),
            ..Batch::default()
        })
        .unwrap();
    // An update keeps the row's place in submission order.
    let started = record("t1", 1, TaskStatus::Running);
    store
        .commit(&Batch {
            tasks: vec![started.clone()],
            ..Batch::default()
        })
        .unwrap();
    drop(store);
    let mut store = PostgresStore::open(&target(&url, "a"), 3).unwrap();
    let snapshot = store.load().unwrap();
    assert_eq!(snapshot.tasks, vec![started, two]);
    assert_eq!(snapshot.total_cost_usd, 1.25);
    let kept: Vec<u64> = snapshot.events.iter().map(|e| e.sequence).collect();
    assert_eq!(kept, [3, 4, 5], "the last event_retention events are kept");
    store
        .commit(&Batch {
            deleted_tasks: vec!["t1".into()],
            ..Batch::default()
        })
        .unwrap();
    let ids: Vec<String> = store
        .load()
        .unwrap()
        .tasks
        .into_iter()
        .map(|r| r.task.id.to_string())
        .collect();
    assert_eq!(ids, ["t2"]);
}

#[test]
fn both_stores_delete_the_approvals_gone_with_their_task() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    let stores: [(&str, Box<dyn Store>); 2] = [
        (
            "sqlite",
            Box::new(SqliteStore::open(dir.path(), 10).unwrap()),
        ),
        (
            "postgres",
            Box::new(PostgresStore::open(&target(&url, "a"), 10).unwrap()),
        ),
    ];
    for (name, mut store) in stores {
        store
            .commit(&Batch {
                approvals: vec![approval("ap1", "t1"), approval("ap2", "t2")],
                ..Batch::default()
            })
            .unwrap();
        store
            .commit(&Batch {
                deleted_tasks: vec!["t1".into()],
                deleted_approvals: vec!["ap1".into()],
                ..Batch::default()
            })
            .unwrap();
        let kept: Vec<String> = store
            .load()
            .unwrap()
            .approvals
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(kept, ["ap2"], "{name}");
    }
}

/// An approval `id` of `task`, decided.
fn approval(id: &str, task: &str) -> Approval {
    Approval {
        id: id.into(),
        task_id: task.into(),
        workflow_id: None,
        attempt: 1,
        tool_name: "Bash".into(),
        input: serde_json::json!({ "command": "touch /outside/marker" }),
        suggestions: serde_json::Value::Null,
        description: String::new(),
        blocked_path: None,
        tool_use_id: "toolu_1".into(),
        requested_at: SystemTime::UNIX_EPOCH,
        expires_at: SystemTime::UNIX_EPOCH,
        state: ApprovalState::Allowed,
        decided_by: Some("ci".into()),
        decided_at: None,
        message: String::new(),
        updated_input: None,
        rule_added: None,
        delivered: true,
    }
}

#[test]
fn a_write_about_an_older_attempt_is_refused_whole() {
    let url = database();
    let mut store = PostgresStore::open(&target(&url, "a"), 10).unwrap();
    let claimed = record("t1", 2, TaskStatus::Running);
    store
        .commit(&Batch {
            tasks: vec![claimed.clone()],
            ..Batch::default()
        })
        .unwrap();
    // Attempt 1's late result, with another task's change in the same batch.
    let late = record("t1", 1, TaskStatus::Completed);
    let other = record("t9", 0, TaskStatus::Queued);
    let err = store
        .commit(&Batch {
            tasks: vec![other, late],
            total_cost_usd: Some(9.0),
            ..Batch::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("older than the one stored"), "{err}");
    let snapshot = store.load().unwrap();
    assert_eq!(
        snapshot.tasks,
        vec![claimed],
        "nothing of the refused batch is stored"
    );
    assert_eq!(snapshot.total_cost_usd, 0.0);
}

#[test]
fn the_layout_is_migrated_once_and_a_newer_one_is_refused() {
    let url = database();
    drop(PostgresStore::open(&target(&url, "a"), 10).unwrap());
    drop(PostgresStore::open(&target(&url, "a"), 10).unwrap());
    let mut client = admin(&url);
    let versions: Vec<i64> = client
        .query("SELECT version FROM schema_version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [SCHEMA_VERSION]);
    client
        .execute("UPDATE schema_version SET version = 99", &[])
        .unwrap();
    let err = PostgresStore::open(&target(&url, "a"), 10)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("layout version 99"), "{err}");
}

#[test]
fn a_bad_server_is_a_clear_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there any more.
    let url = format!("postgres://swarm:hunter2@127.0.0.1:{port}/nowhere");
    let err = PostgresStore::open(&target(&url, "a"), 10)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
}

/// Waits (with a deadline) until a session of `application_name` waits on a lock.
fn waits_on_a_lock(url: &str, application: &str) {
    let mut client = admin(url);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&application],
            )
            .unwrap()
            .get(0);
        if waiting == 1 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{application} never waited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_node_stands_by_then_takes_over_and_fences_the_first_out() {
    let url = database();
    let mut first = PostgresStore::open(&target(&url, "a"), 10).unwrap();
    let lost = first.lost();
    first
        .commit(&Batch {
            tasks: vec![record("t1", 1, TaskStatus::Running)],
            ..Batch::default()
        })
        .unwrap();
    let (opened_tx, opened) = mpsc::channel();
    let standby_url = url.clone();
    let standby = std::thread::spawn(move || {
        let store = PostgresStore::open(&target(&standby_url, "b"), 10);
        opened_tx.send(()).unwrap();
        store
    });
    waits_on_a_lock(&url, "claude-swarm lease b");
    assert!(
        opened.try_recv().is_err(),
        "the standby waits while the owner lives"
    );
    // The owner's lease session ends (as the server ends it for a silent node). On a
    // loaded machine it may have ended already, its 2 s lease missed: the same for the
    // standby.
    admin(&url)
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'claude-swarm lease a'",
            &[],
        )
        .unwrap();
    let mut second = standby.join().unwrap().unwrap();
    let snapshot = second.load().unwrap();
    assert_eq!(
        snapshot.tasks.len(),
        1,
        "the successor sees what the owner stored"
    );
    // The old owner learns it lost the lease, and whatever it still writes is refused.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), lost)
            .await
            .expect("the old owner hears it lost the lease");
    });
    let err = first
        .commit(&Batch {
            tasks: vec![record("t1", 1, TaskStatus::Completed)],
            ..Batch::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another node has taken this database over"),
        "{err}"
    );
    second
        .commit(&Batch {
            tasks: vec![record("t1", 2, TaskStatus::Running)],
            ..Batch::default()
        })
        .unwrap();
    let nodes: Vec<String> = admin(&url)
        .query("SELECT name FROM nodes ORDER BY epoch", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(nodes, ["a", "b"]);
}

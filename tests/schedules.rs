//! Schedules against a real server: a run fires at its time (a cron with seconds, awaited
//! on the event stream) as an ordinary workflow that names its schedule; bad input names
//! its field on gRPC and REST; the overlap policy refuses a trigger while the last run
//! goes; the command line drives it; and schedules survive a restart, with the runs that
//! fell due while the server was down settled by their missed-run policy.

mod common;

use std::time::{Duration, SystemTime};

use claude_swarm::{
    engine::ports::{Batch, Store},
    pb::{self, schedule_service_client::ScheduleServiceClient},
    store::sqlite::SqliteStore,
};
use common::{BIN, TestServer, config, serve::Served, spec};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::{Code, transport::Channel};

fn schedules(channel: &Channel) -> ScheduleServiceClient<Channel> {
    ScheduleServiceClient::new(channel.clone())
}

fn task(prompt: &str) -> Option<pb::create_schedule_request::Target> {
    Some(pb::create_schedule_request::Target::Task(spec(prompt)))
}

/// The first `workflow_started` event of a run of `schedule`, replayed or live.
async fn first_run(channel: &Channel, schedule: &str) -> pb::Workflow {
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        kinds: vec![pb::EventKind::WorkflowStarted as i32],
        ..Default::default()
    };
    let mut stream = pb::event_service_client::EventServiceClient::new(channel.clone())
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let wait = async {
        while let Some(event) = stream.next().await {
            if let Some(pb::event::Payload::Workflow(w)) = event.unwrap().payload
                && w.schedule_id == schedule
            {
                return w;
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("a run within 30s")
}

fn seconds(t: &Option<pbjson_types::Timestamp>) -> i64 {
    t.as_ref().expect("a time").seconds
}

#[tokio::test]
async fn a_schedule_fires_at_its_time_as_a_workflow_that_names_it() {
    let server = TestServer::start(config(1)).await;
    let mut client = schedules(&server.channel);
    let created = client
        .create_schedule(pb::CreateScheduleRequest {
            name: "every second".into(),
            cron: "* * * * * *".into(),
            time_zone: "Europe/Paris".into(),
            target: task("tick sim:reply=tock"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.time_zone, "Europe/Paris");
    assert_eq!(created.task_count, 1);
    let due = seconds(&created.next_fire_at);
    let run = first_run(&server.channel, &created.id).await;
    assert_eq!(run.name, "every second");
    assert_eq!(run.task_ids.len(), 1);
    // It fired at its time, not before: the time it was due, or the next ones.
    let after = client
        .get_schedule(pb::GetScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(after.runs >= 1);
    assert!(seconds(&after.last_fired_at) >= due);
    assert!(seconds(&run.created_at) >= due);
    let done = server.wait(&run.task_ids[0]).await;
    assert_eq!(done.result.unwrap().text, "tock");
    // The run is listed among the workflows with its schedule.
    let workflow = server
        .workflows()
        .get_workflow(pb::GetWorkflowRequest {
            workflow_id: run.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(workflow.schedule_id, created.id);
    // Paused, it has no next time; deleted, it is gone and its runs stay.
    let paused = client
        .pause_schedule(pb::PauseScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused && paused.next_fire_at.is_none());
    client
        .delete_schedule(pb::DeleteScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap();
    let gone = client
        .get_schedule(pb::GetScheduleRequest {
            schedule_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field() {
    let server = TestServer::start(config(1)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/schedules", server.addr);
    let cases = [
        (
            json!({"cron": "every day", "task": {"prompt": "x"}}),
            "cron",
        ),
        (
            json!({"cron": "61 * * * *", "task": {"prompt": "x"}}),
            "cron",
        ),
        (
            json!({"cron": "0 3 * * *", "time_zone": "Mars/Olympus", "task": {"prompt": "x"}}),
            "time_zone",
        ),
        (json!({"cron": "0 3 * * *"}), "workflow_yaml"),
        (
            json!({"cron": "0 3 * * *", "task": {"prompt": ""}}),
            "task.prompt",
        ),
        (
            json!({"cron": "0 3 * * *", "workflow_yaml": "name: x\ntasks: []\n"}),
            "tasks",
        ),
        (
            json!({"cron": "0 3 * * *", "task": {"prompt": "x"}, "missed": "sometimes"}),
            "missed",
        ),
        (
            json!({"cron": "0 3 * * *", "workflow_path": "../../etc/passwd"}),
            "workflow_path",
        ),
    ];
    for (body, field) in cases {
        let response = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    // Nothing was created.
    let list: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(
        list["schedules"].as_array().is_none_or(Vec::is_empty),
        "{list}"
    );
    // gRPC names the same field.
    let status = schedules(&server.channel)
        .create_schedule(pb::CreateScheduleRequest {
            cron: "0 3 * * *".into(),
            time_zone: "Nowhere/Atlantis".into(),
            target: task("x"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("time_zone"), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_trigger_while_the_last_run_goes_follows_the_overlap_policy() {
    let server = TestServer::start(config(2)).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let create = |overlap: &str| {
        json!({
            "cron": "0 3 1 1 *",
            "workflow_yaml": "name: held\ntasks:\n  - id: a\n    prompt: hold sim:hang\n",
            "overlap": overlap,
            "paused": true,
        })
    };
    for (overlap, second) in [("skip", StatusCode::CONFLICT), ("allow", StatusCode::OK)] {
        let created: Value = http
            .post(format!("{base}/schedules"))
            .json(&create(overlap))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created["overlap"], overlap, "{created}");
        assert_eq!(created["paused"], true);
        let trigger = format!(
            "{base}/schedules/{}/trigger",
            created["id"].as_str().unwrap()
        );
        let first = http.post(&trigger).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let run: Value = first.json().await.unwrap();
        assert_eq!(run["workflow"]["schedule_id"], created["id"]);
        let again = http.post(&trigger).send().await.unwrap();
        assert_eq!(again.status(), second, "overlap {overlap}");
        if second == StatusCode::CONFLICT {
            let error: Value = again.json().await.unwrap();
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains("still running"), "{message}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_command_line_creates_lists_and_triggers_schedules() {
    let server = TestServer::start(config(1)).await;
    let url = format!("http://{}", server.addr);
    // The server runs on this test's runtime: the client is awaited, not waited for.
    let cli = async |args: &[&str]| {
        let output = tokio::process::Command::new(BIN)
            .arg("--server")
            .arg(&url)
            .args(args)
            .output()
            .await
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&[
        "--json",
        "schedule",
        "create",
        "--cron",
        "30 2 * * 1-5",
        "--time-zone",
        "America/New_York",
        "--workflow",
        "workflows/demo.yaml",
        "--missed",
        "run-once",
        "--paused",
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["missed"], "MISSED_RUN_POLICY_RUN_ONCE");
    let id = created["id"].as_str().unwrap().to_owned();
    let (code, out, _) = cli(&["schedule", "list"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&id) && out.contains("30 2 * * 1-5 (America/New_York)"),
        "{out}"
    );
    assert!(
        out.contains("paused") && out.contains("run_once/skip"),
        "{out}"
    );
    let (code, out, err) = cli(&["schedule", "trigger", &id]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("running") || out.contains("completed"),
        "{out}"
    );
    let (code, _, err) = cli(&[
        "schedule",
        "create",
        "--cron",
        "0 3 * * *",
        "--task",
        "x",
        "--time-zone",
        "Mars/Olympus",
    ])
    .await;
    assert_eq!(code, Some(2));
    assert!(err.contains("time_zone"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_survive_a_restart_and_runs_missed_while_down_follow_their_policy() {
    let data = tempfile::tempdir().unwrap();
    let served = Served::start(data.path(), &["--instances", "1"]).await;
    let mut ids = Vec::new();
    for (name, missed, paused) in [
        ("once", pb::MissedRunPolicy::RunOnce, false),
        ("skip", pb::MissedRunPolicy::Skip, false),
        ("asleep", pb::MissedRunPolicy::RunOnce, true),
    ] {
        let created = schedules(&served.channel)
            .create_schedule(pb::CreateScheduleRequest {
                name: name.into(),
                // Once a year: nothing falls due while the test runs.
                cron: "0 4 1 1 *".into(),
                time_zone: "Asia/Tokyo".into(),
                target: task(&format!("{name} sim:reply={name}")),
                missed: missed as i32,
                paused,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    served.terminate();
    // The server was down when they fell due: their stored time is an hour ago.
    {
        let mut store = SqliteStore::open(data.path(), 1000).unwrap();
        let mut kept = store.load().unwrap().schedules;
        assert_eq!(kept.len(), 3);
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for schedule in &mut kept {
            if !schedule.spec.paused {
                schedule.next_fire_at = Some(an_hour_ago);
            }
        }
        store
            .commit(&Batch {
                schedules: kept,
                ..Batch::default()
            })
            .unwrap();
    }
    let served = Served::start(data.path(), &["--instances", "1"]).await;
    let list = schedules(&served.channel)
        .list_schedules(pb::ListSchedulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .schedules;
    let listed: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let (once, skip, asleep) = (&list[0], &list[1], &list[2]);
    assert!(
        list.iter()
            .all(|s| s.cron == "0 4 1 1 *" && s.time_zone == "Asia/Tokyo")
    );
    // run_once: one run at start, however many were missed.
    assert_eq!((once.runs, once.skipped_runs), (1, 0));
    let run = first_run(&served.channel, &once.id).await;
    assert_eq!(run.id, once.last_workflow_id);
    assert_eq!(
        served.wait(&run.task_ids[0]).await.result.unwrap().text,
        "once"
    );
    // skip: none, counted; both go on from their next time, a year ahead.
    assert_eq!((skip.runs, skip.skipped_runs), (0, 1));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for s in [once, skip] {
        assert!(seconds(&s.next_fire_at) > now, "{s:?}");
    }
    // Paused stays paused, and runs nothing.
    assert!(asleep.paused && asleep.runs == 0 && asleep.next_fire_at.is_none());
    let workflows = served_workflows(&served.channel).await;
    let runs: Vec<&str> = workflows
        .iter()
        .filter(|w| !w.schedule_id.is_empty())
        .map(|w| w.schedule_id.as_str())
        .collect();
    assert_eq!(runs, [once.id.as_str()]);
    served.terminate();
}

async fn served_workflows(channel: &Channel) -> Vec<pb::Workflow> {
    pb::workflow_service_client::WorkflowServiceClient::new(channel.clone())
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap()
        .into_inner()
        .workflows
}

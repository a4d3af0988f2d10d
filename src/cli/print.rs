//! How the client subcommands print: JSON for scripts, tables and words for people.

use crate::{
    api::convert::from_pb,
    engine::{
        EventKind, InstanceStatus, TaskStatus,
        model::{account::AccountStatus, words::Word},
        workflow::WorkflowStatus,
    },
    pb,
};

/// JSON (the protobuf JSON mapping, proto field names) or the human form.
pub(super) fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T),
) -> Result<(), serde_json::Error> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        human(value);
    }
    Ok(())
}

/// The word of a proto enum value, from the engine's table of that enum (`?` for a value
/// this client does not know).
pub(super) fn word<E: Word>(value: i32) -> &'static str {
    from_pb::<E>("", value, None).map_or("?", Word::word)
}

pub(super) fn status_word(status: i32) -> &'static str {
    word::<TaskStatus>(status)
}

pub(super) fn workflow_word(status: i32) -> &'static str {
    word::<WorkflowStatus>(status)
}

pub(super) fn seconds_between(
    from: Option<&pbjson_types::Timestamp>,
    to: Option<&pbjson_types::Timestamp>,
) -> f64 {
    match (from, to) {
        (Some(a), Some(b)) => (b.seconds - a.seconds) as f64 + f64::from(b.nanos - a.nanos) / 1e9,
        _ => 0.0,
    }
}

pub(super) fn duration(task: &pb::Task) -> String {
    match (&task.started_at, &task.completed_at) {
        (Some(_), Some(_)) => format!(
            "{:.1}s",
            seconds_between(task.started_at.as_ref(), task.completed_at.as_ref())
        ),
        _ => "-".into(),
    }
}

pub(super) fn cost(task: &pb::Task) -> f64 {
    task.result.as_ref().map_or(0.0, |r| r.cost_usd)
}

/// The first line of `text`, cut to `max` characters.
pub(super) fn head(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max - 1).collect::<String>())
    } else {
        line.to_owned()
    }
}

pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// How many tool calls a task's agent was refused.
fn denials(task: &pb::Task) -> usize {
    task.result
        .as_ref()
        .map_or(0, |r| r.permission_denials.len())
}

/// Each account's usage limit: state, instances, window, utilization, reset, pause.
pub(super) fn print_accounts(accounts: &[pb::AccountStatus]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Unix seconds, and how far off they are.
    let time = |t: &Option<pbjson_types::Timestamp>| match t {
        Some(t) if t.seconds >= now => format!("{} (in {}s)", t.seconds, t.seconds - now),
        Some(t) => format!("{} ({}s ago)", t.seconds, now - t.seconds),
        None => "-".into(),
    };
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                word::<AccountStatus>(a.state).to_owned(),
                a.instances_live.to_string(),
                a.instances.to_string(),
                if a.window.is_empty() {
                    "-".into()
                } else {
                    a.window.clone()
                },
                a.utilization
                    .map_or_else(|| "-".into(), |u| format!("{:.0}%", u * 100.0)),
                time(&a.resets_at),
                time(&a.paused_until),
                a.api_retries.to_string(),
                a.refusals.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ACCOUNT",
            "STATE",
            "LIVE",
            "SHARE",
            "WINDOW",
            "USED",
            "RESETS",
            "PAUSED UNTIL",
            "API RETRIES",
            "REFUSED",
        ],
        &rows,
    );
}

pub(super) fn print_tasks(tasks: &[pb::Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let outcome = t
                .result
                .as_ref()
                .filter(|_| t.error.is_empty())
                .map_or(t.error.as_str(), |r| r.text.as_str());
            vec![
                t.id.clone(),
                head(&t.name, 24),
                status_word(t.status).to_owned(),
                duration(t),
                format!("${:.4}", cost(t)),
                denials(t).to_string(),
                head(outcome, 60),
            ]
        })
        .collect();
    table(
        &[
            "ID", "NAME", "STATUS", "DURATION", "COST", "DENIED", "RESULT",
        ],
        &rows,
    );
}

pub(super) fn print_task(t: &pb::Task) {
    println!("id:        {}", t.id);
    println!("name:      {}", t.name);
    println!("status:    {}", status_word(t.status));
    println!("instance:  {}", t.instance_id);
    if !t.workflow_id.is_empty() {
        println!("workflow:  {}", t.workflow_id);
    }
    println!("duration:  {}", duration(t));
    if let Some(r) = &t.result {
        println!("session:   {}", r.session_id);
        println!("cost:      ${:.6} over {} turn(s)", r.cost_usd, r.num_turns);
        println!("result:    {}", r.text);
        for d in &r.permission_denials {
            let call = super::approvals::call_text(&d.tool_name, d.input.as_ref(), 100);
            match d.message.as_str() {
                "" => println!("denied:    {call}"),
                why => println!("denied:    {call}: {}", head(why, 80)),
            }
        }
    }
    if !t.error.is_empty() {
        println!("error:     {}", t.error);
    }
}

pub(super) fn print_instances(instances: &[pb::Instance]) {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                word::<InstanceStatus>(i.status).to_owned(),
                i.current_task_id.clone(),
                i.tasks_completed.to_string(),
                i.tasks_failed.to_string(),
                format!("${:.4}", i.total_cost_usd),
            ]
        })
        .collect();
    table(
        &["ID", "STATUS", "TASK", "COMPLETED", "FAILED", "COST"],
        &rows,
    );
}

pub(super) fn print_workflows(workflows: &[pb::Workflow]) {
    let rows: Vec<Vec<String>> = workflows
        .iter()
        .map(|w| {
            let c = w.task_counts.unwrap_or_default();
            vec![
                w.id.clone(),
                head(&w.name, 30),
                workflow_word(w.status).to_owned(),
                format!("{}/{}", c.completed, w.task_ids.len()),
                format!("${:.4}", w.total_cost_usd),
            ]
        })
        .collect();
    table(&["ID", "NAME", "STATUS", "COMPLETED", "COST"], &rows);
}

pub(super) fn print_event(e: &pb::Event) {
    use pb::event::Payload;
    let kind = word::<EventKind>(e.kind);
    let detail = match &e.payload {
        Some(Payload::Task(t)) => format!("{} {}", t.name, t.error),
        Some(Payload::Instance(i)) => word::<InstanceStatus>(i.status).to_owned(),
        Some(Payload::Workflow(w)) => format!("{} {}", w.name, workflow_word(w.status)),
        Some(Payload::Output(o)) => format!("{} {}", o.message_type, head(&o.text, 80)),
        Some(Payload::Approval(a)) => format!(
            "{} {} {}",
            a.id,
            super::approvals::state_word(a.state),
            super::approvals::call_text(&a.tool_name, a.input.as_ref(), 60)
        ),
        Some(Payload::Denial(d)) => format!(
            "{} {}",
            super::approvals::call_text(&d.tool_name, d.input.as_ref(), 60),
            head(&d.message, 60)
        ),
        Some(Payload::Account(a)) => format!("{} {}", a.name, word::<AccountStatus>(a.state)),
        Some(Payload::Budget(b)) => format!("${:.2} of ${:.2}", b.total_cost_usd, b.budget_usd),
        None => String::new(),
    };
    let subject = [&e.task_id, &e.instance_id, &e.workflow_id]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    println!(
        "{:>6} {:<24} {:<36} {}",
        e.sequence,
        kind,
        subject,
        detail.trim()
    );
}

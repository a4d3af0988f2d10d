//! The progress of a workflow run, as people can read it. On a terminal a display redrawn
//! in place (indicatif): a bar of tasks done, the counts by state and the cost so far, and a
//! line per running task with its elapsed time. Elsewhere (CI, pipes, files) one plain line
//! per event, as scripts and logs want.

use std::{collections::HashMap, io::IsTerminal, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::print::{cost, duration, status_word};
use crate::{
    api::convert::from_pb,
    engine::TaskStatus,
    pb::{self, EventKind as K},
};

/// Where a workflow's task events are shown.
pub(super) enum Progress {
    /// Nothing (`--json`: stdout is for the document; `--log-format json`: stderr is for
    /// log lines).
    Quiet,
    /// One line per event on stderr.
    Lines,
    /// A display redrawn in place.
    Live(Live),
}

impl Progress {
    /// Live on a terminal, lines elsewhere, nothing when `quiet`.
    pub(super) fn new(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Live(Live::new(ProgressDrawTarget::stderr(), true))
        } else {
            Self::Lines
        }
    }

    /// A task of the workflow changed (its state after `kind`).
    pub(super) fn task(&mut self, sequence: u64, kind: K, task: &pb::Task) {
        match self {
            Self::Quiet => {}
            Self::Lines => {
                if let Some(detail) = line_detail(kind, task) {
                    eprintln!(
                        "[{sequence:>5}] {:<10} {}  {detail}",
                        status_word(task.status),
                        task.name,
                    );
                }
            }
            Self::Live(live) => live.task(kind, task),
        }
    }

    /// The run is over: the display is cleared (the summary table follows).
    pub(super) fn finish(&mut self) {
        if let Self::Live(live) = self {
            live.finish();
        }
    }
}

/// What a line says about an event, for the kinds worth a line.
fn line_detail(kind: K, t: &pb::Task) -> Option<String> {
    Some(match kind {
        K::TaskStarted if t.instance_id.is_empty() => "one task per item".to_string(),
        K::TaskStarted => format!("on {}", t.instance_id),
        K::TaskCompleted => format!("in {} for ${:.4}", duration(t), cost(t)),
        K::TaskFailed | K::TaskCancelled | K::TaskRetrying | K::TaskSkipped => t.error.clone(),
        _ => return None,
    })
}

/// The live display: one bar for the workflow, one spinner per running task.
pub(super) struct Live {
    multi: MultiProgress,
    bar: ProgressBar,
    running: HashMap<String, ProgressBar>,
    /// Each task's state as last seen, by id.
    states: HashMap<String, TaskStatus>,
    cost_usd: f64,
    tick: bool,
}

impl Live {
    /// A display on `target`; `tick` redraws running tasks' elapsed time by itself.
    fn new(target: ProgressDrawTarget, tick: bool) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let bar = multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} tasks  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            multi,
            bar,
            running: HashMap::new(),
            states: HashMap::new(),
            cost_usd: 0.0,
            tick,
        }
    }

    fn task(&mut self, kind: K, task: &pb::Task) {
        let Ok(status) = from_pb::<TaskStatus>("status", task.status, None) else {
            return;
        };
        self.states.insert(task.id.clone(), status);
        if status.is_terminal() {
            self.cost_usd += cost(task);
            if let Some(line) = self.running.remove(&task.id) {
                line.finish_and_clear();
                self.multi.remove(&line);
            }
        } else if kind == K::TaskStarted && !self.running.contains_key(&task.id) {
            let line = self.multi.add(ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let place = if task.instance_id.is_empty() {
                "items".to_owned()
            } else {
                task.instance_id.clone()
            };
            line.set_message(format!("{} ({place})", task.name));
            if self.tick {
                line.enable_steady_tick(Duration::from_millis(250));
            }
            self.running.insert(task.id.clone(), line);
        }
        let mut counts = [0u64; TaskStatus::COUNT];
        for state in self.states.values() {
            counts[state.index()] += 1;
        }
        let done: u64 = TaskStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| counts[s.index()])
            .sum();
        let summary: Vec<String> = TaskStatus::ALL
            .iter()
            .filter(|s| counts[s.index()] > 0)
            .map(|s| format!("{} {s}", counts[s.index()]))
            .collect();
        self.bar.set_length(self.states.len() as u64);
        self.bar.set_position(done);
        self.bar
            .set_message(format!("{} · ${:.4}", summary.join(" · "), self.cost_usd));
    }

    fn finish(&mut self) {
        for (_, line) in self.running.drain() {
            line.finish_and_clear();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use indicatif::{InMemoryTerm, TermLike};

    use super::*;

    fn task(id: &str, status: pb::TaskStatus, instance: &str) -> pb::Task {
        pb::Task {
            id: id.into(),
            name: format!("step-{id}"),
            status: status as i32,
            instance_id: instance.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_live_display_shows_counts_and_the_running_tasks() {
        use pb::TaskStatus as S;
        let term = InMemoryTerm::new(10, 100);
        let mut live = Live::new(ProgressDrawTarget::term_like(Box::new(term.clone())), false);
        for id in ["a", "b", "c"] {
            live.task(K::TaskSubmitted, &task(id, S::Pending, ""));
        }
        live.task(K::TaskStarted, &task("a", S::Running, "inst-0001"));
        live.task(K::TaskStarted, &task("b", S::Running, "inst-0002"));
        let mut done = task("a", S::Completed, "inst-0001");
        done.result = Some(pb::TaskResult {
            cost_usd: 0.25,
            ..Default::default()
        });
        live.task(K::TaskCompleted, &done);
        live.multi.clear().ok();
        live.bar.tick();
        live.running.values().for_each(ProgressBar::tick);
        let screen = term.contents();
        assert!(screen.contains("1/3 tasks"), "{screen}");
        assert!(
            screen.contains("1 pending · 1 running · 1 completed · $0.2500"),
            "{screen}"
        );
        assert!(screen.contains("step-b (inst-0002)"), "{screen}");
        assert!(
            !screen.contains("step-a ("),
            "a finished task leaves: {screen}"
        );
        assert!(term.width() >= 30);
    }
}

//! Events: every state change of tasks, instances and workflows, and the agent's output,
//! numbered by a sequence that only grows. A bounded window of recent events is retained
//! for replay; a subscriber gets the replay and then the live feed with no gap and no
//! duplicate, because both are taken in one step by the scheduler that publishes.

use std::{collections::VecDeque, sync::Arc, time::SystemTime};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{
    error::EngineError,
    pool::Instance,
    task::{InstanceId, Task, TaskId, WorkflowId},
    workflow::WorkflowInfo,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    TaskSubmitted,
    TaskQueued,
    TaskStarted,
    TaskOutput,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
    TaskSkipped,
    InstanceSpawned,
    InstanceStatusChanged,
    InstanceTerminated,
    WorkflowStarted,
    WorkflowFinished,
    TaskRetrying,
}

/// One line of the agent's stream-json output, ready to show.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentOutput {
    /// The line's `type`, or `unparsed` for a line that was not JSON.
    pub message_type: String,
    pub subtype: String,
    /// Text for display: assistant text, tool names, the result.
    pub text: String,
    /// The line itself, cut at [`AgentOutput::MAX_RAW`].
    pub raw: String,
    pub truncated: bool,
}

impl AgentOutput {
    /// Longest raw line kept in an event.
    pub const MAX_RAW: usize = 64 * 1024;
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Payload {
    Task(Box<Task>),
    Instance(Instance),
    Workflow(WorkflowInfo),
    Output(AgentOutput),
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub sequence: u64,
    pub time: SystemTime,
    pub kind: EventKind,
    pub task_id: Option<TaskId>,
    pub instance_id: Option<InstanceId>,
    pub workflow_id: Option<WorkflowId>,
    pub payload: Payload,
}

/// Which events a subscriber wants; empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub task_id: Option<TaskId>,
    pub workflow_id: Option<WorkflowId>,
    pub instance_id: Option<InstanceId>,
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        fn field(want: &Option<String>, have: &Option<String>) -> bool {
            want.is_none() || want == have
        }
        field(&self.task_id, &event.task_id)
            && field(&self.workflow_id, &event.workflow_id)
            && field(&self.instance_id, &event.instance_id)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
    }
}

/// The retained window and the live feed. Owned by the scheduler.
pub struct EventLog {
    next_sequence: u64,
    retained: VecDeque<Arc<Event>>,
    capacity: usize,
    live: broadcast::Sender<Arc<Event>>,
    /// Published but not yet sent live: they go out once stored.
    unsent: Vec<Arc<Event>>,
}

impl EventLog {
    /// `capacity` events are kept for replay; a live subscriber may fall `live_capacity`
    /// events behind before it is told it lost some.
    pub fn new(capacity: usize, live_capacity: usize) -> Self {
        let (live, _) = broadcast::channel(live_capacity.max(1));
        Self {
            next_sequence: 1,
            retained: VecDeque::new(),
            capacity: capacity.max(1),
            live,
            unsent: Vec::new(),
        }
    }

    /// Takes back the stored events after a restart; numbering goes on from the last.
    pub fn restore(&mut self, events: Vec<Event>) {
        for event in events {
            self.next_sequence = self.next_sequence.max(event.sequence + 1);
            if self.retained.len() == self.capacity {
                self.retained.pop_front();
            }
            self.retained.push_back(Arc::new(event));
        }
    }

    /// Events published since the last call, to store before they are sent.
    pub fn take_unsent(&mut self) -> Vec<Arc<Event>> {
        std::mem::take(&mut self.unsent)
    }

    /// Sends stored events to live subscribers.
    pub fn broadcast(&self, events: Vec<Arc<Event>>) {
        for event in events {
            // No receivers is fine: nobody is watching.
            let _ = self.live.send(event);
        }
    }

    pub fn publish(
        &mut self,
        kind: EventKind,
        task_id: Option<&str>,
        instance_id: Option<&str>,
        workflow_id: Option<&str>,
        payload: Payload,
    ) {
        let event = Arc::new(Event {
            sequence: self.next_sequence,
            time: SystemTime::now(),
            kind,
            task_id: task_id.map(str::to_owned),
            instance_id: instance_id.map(str::to_owned),
            workflow_id: workflow_id.map(str::to_owned),
            payload,
        });
        self.next_sequence += 1;
        if self.retained.len() == self.capacity {
            self.retained.pop_front();
        }
        self.retained.push_back(event.clone());
        self.unsent.push(event);
    }

    /// The last sequence number handed out (0 before the first event).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Events after `after` (all retained ones for `Some(0)`, none for `None`), then live.
    pub fn subscribe(
        &self,
        after: Option<u64>,
        filter: EventFilter,
    ) -> Result<Subscription, EngineError> {
        let live = self.live.subscribe();
        let last = after.unwrap_or(self.last_sequence());
        let oldest = self
            .retained
            .front()
            .map_or(self.next_sequence, |e| e.sequence);
        if last.saturating_add(1) < oldest {
            return Err(EngineError::DataLoss(format!(
                "events after sequence {last} are no longer retained; the oldest retained is {oldest}"
            )));
        }
        let backlog = self
            .retained
            .iter()
            .filter(|e| e.sequence > last && filter.matches(e))
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            live,
            last,
            filter,
        })
    }
}

/// Replay, then live events, in sequence order.
pub struct Subscription {
    backlog: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The last sequence delivered (or skipped by the filter).
    last: u64,
    filter: EventFilter,
}

impl Subscription {
    /// The next matching event; `None` once the engine has stopped. A subscriber that fell
    /// too far behind gets `DataLoss` naming the sequence to resume after.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, EngineError>> {
        if let Some(event) = self.backlog.pop_front() {
            self.last = event.sequence;
            return Some(Ok(event));
        }
        loop {
            match self.live.recv().await {
                Ok(event) if event.sequence <= self.last => continue,
                Ok(event) => {
                    self.last = event.sequence;
                    if self.filter.matches(&event) {
                        return Some(Ok(event));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    return Some(Err(EngineError::DataLoss(format!(
                        "subscriber fell behind after sequence {0}; resume with after_sequence={0}",
                        self.last
                    ))));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

//! The event hub: a bounded window of recent events for replay and the live feed. The core
//! numbers events; the actor hands them here once they are stored. A subscriber gets the
//! replay and then the live feed with no gap and no duplicate, because both are taken in
//! one step by the actor, between turns.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{
    error::EngineError,
    model::event::{Event, EventFilter},
};

/// The retained window and the live feed. Owned by the actor.
pub struct EventHub {
    /// The sequence after the newest event handed in (1 before the first).
    next_sequence: u64,
    retained: VecDeque<Arc<Event>>,
    capacity: usize,
    live: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    /// `capacity` events are kept for replay; a live subscriber may fall `live_capacity`
    /// events behind before it is told it lost some.
    pub fn new(capacity: usize, live_capacity: usize) -> Self {
        let (live, _) = broadcast::channel(live_capacity.max(1));
        Self {
            next_sequence: 1,
            retained: VecDeque::new(),
            capacity: capacity.max(1),
            live,
        }
    }

    /// Takes back the stored events after a restart, without sending them live.
    pub fn restore(&mut self, events: impl IntoIterator<Item = Arc<Event>>) {
        for event in events {
            self.retain(event);
        }
    }

    fn retain(&mut self, event: Arc<Event>) {
        self.next_sequence = self.next_sequence.max(event.sequence + 1);
        if self.retained.len() == self.capacity {
            self.retained.pop_front();
        }
        self.retained.push_back(event);
    }

    /// Keeps stored events for replay and sends them to live subscribers.
    pub fn broadcast(&mut self, events: Vec<Arc<Event>>) {
        for event in events {
            self.retain(event.clone());
            // No receivers is fine: nobody is watching.
            let _ = self.live.send(event);
        }
    }

    /// Events after `after` (all retained ones for `Some(0)`, none for `None`), then live.
    pub fn subscribe(
        &self,
        after: Option<u64>,
        filter: EventFilter,
    ) -> Result<Subscription, EngineError> {
        let live = self.live.subscribe();
        let last = after.unwrap_or(self.next_sequence - 1);
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
    /// The last sequence delivered or passed over: where a reconnect resumes after.
    pub fn position(&self) -> u64 {
        self.last
    }

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

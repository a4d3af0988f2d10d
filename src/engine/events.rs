//! The event hub: one shared window of recent events, for replay and the live feed alike.
//! The core numbers events; the actor appends each turn's, once they are stored, to the
//! window and wakes subscribers once per turn. Every subscriber reads the same `Arc`s from
//! the window at its own pace, a batch at a time, so a subscriber costs the engine nothing
//! however far behind it is: no copy per subscriber, no queue per subscriber, no wake-up
//! per event. One that falls so far behind that its next event has left the window is
//! told so (`DataLoss`, with the sequence to resume after).
//!
//! Delivery yields to the engine. Waking every subscriber on every turn would let them
//! take the engine's CPU (with 1,000 subscribers, delivering an event costs a hundred
//! times what making it did), so subscribers are woken once the engine has been quiet for
//! [`QUIET`], at the latest [`max_delay`] after an event was published (longer the more
//! subscribers there are), and at once when one of them risks losing events it has not
//! read (its next event is in the oldest quarter of the window).

use std::{
    collections::VecDeque,
    sync::{
        Arc, PoisonError, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use super::{
    error::EngineError,
    model::event::{Event, EventFilter},
};

/// Events a subscriber takes from the window at once: short enough that the actor never
/// waits long for the window, long enough that a subscriber behind wakes once per batch.
const BATCH: usize = 512;

/// How long the engine must have published nothing for subscribers to be woken.
pub const QUIET: Duration = Duration::from_millis(1);

/// The longest a published event waits before subscribers are woken even though the
/// engine is busy: 1 ms per subscriber, from 5 ms to 1 s, so that waking them all costs
/// the engine a bounded share of the machine however many there are.
pub fn max_delay(subscribers: usize) -> Duration {
    Duration::from_millis(subscribers as u64)
        .clamp(Duration::from_millis(5), Duration::from_secs(1))
}

/// Published events between two looks at whether a subscriber risks losing some.
const RISK_CHECK: u64 = 1_024;

/// The events every subscriber reads, oldest first.
type Window = RwLock<VecDeque<Arc<Event>>>;

/// The retained window and the live feed. Owned by the actor.
pub struct EventHub {
    /// The sequence after the newest event handed in (1 before the first).
    next_sequence: u64,
    window: Arc<Window>,
    /// Events offered for replay (`event_retention`).
    retention: usize,
    /// Events the window holds: the retention, and at least the live buffer, so a live
    /// subscriber may fall that far behind even with a small retention.
    capacity: usize,
    /// The newest sequence announced to subscribers; they wait on it.
    newest: watch::Sender<u64>,
    /// Since when events are in the window that subscribers were not woken for.
    unsent_since: Option<Instant>,
    /// When the last events were published.
    last_publish: Instant,
    /// Events published since the last look at subscribers' positions.
    since_risk_check: u64,
    /// Each subscriber's last sequence taken from the window.
    positions: Vec<Weak<AtomicU64>>,
}

impl EventHub {
    /// `capacity` events are kept for replay; a live subscriber may fall at least
    /// `live_capacity` events (and as many as are retained) behind before it is told it
    /// lost some.
    pub fn new(capacity: usize, live_capacity: usize) -> Self {
        let retention = capacity.max(1);
        Self {
            next_sequence: 1,
            window: Arc::default(),
            retention,
            capacity: retention.max(live_capacity),
            newest: watch::Sender::new(0),
            unsent_since: None,
            last_publish: Instant::now(),
            since_risk_check: 0,
            positions: Vec::new(),
        }
    }

    /// Takes back the stored events after a restart, without waking anyone.
    pub fn restore(&mut self, events: impl IntoIterator<Item = Arc<Event>>) {
        self.append(events);
    }

    fn append(&mut self, events: impl IntoIterator<Item = Arc<Event>>) {
        let mut window = self.window.write().unwrap_or_else(PoisonError::into_inner);
        for event in events {
            self.next_sequence = self.next_sequence.max(event.sequence + 1);
            if window.len() == self.capacity {
                window.pop_front();
            }
            window.push_back(event);
        }
    }

    /// Keeps stored events for replay; subscribers are woken when [`EventHub::wake_at`]
    /// says, or at once if one of them risks losing events.
    pub fn broadcast(&mut self, events: Vec<Arc<Event>>) {
        if events.is_empty() {
            return;
        }
        self.since_risk_check += events.len() as u64;
        self.append(events);
        let now = Instant::now();
        self.last_publish = now;
        self.unsent_since.get_or_insert(now);
        if self.since_risk_check >= RISK_CHECK {
            self.since_risk_check = 0;
            if self.a_subscriber_is_at_risk() {
                self.wake();
            }
        }
    }

    /// When subscribers are to be woken for events they were not woken for yet: once the
    /// engine has been quiet for [`QUIET`], or [`max_delay`] after the first of them.
    pub fn wake_at(&mut self) -> Option<Instant> {
        let since = self.unsent_since?;
        let subscribers = self.newest.receiver_count();
        if subscribers == 0 {
            // Nobody to wake: a later subscriber reads the window itself.
            self.unsent_since = None;
            return None;
        }
        let busy = since + max_delay(subscribers);
        Some(busy.min(self.last_publish + QUIET))
    }

    /// Wakes subscribers for every event in the window.
    pub fn wake(&mut self) {
        self.unsent_since = None;
        self.newest.send_replace(self.next_sequence - 1);
    }

    /// Whether a subscriber's next event is in the oldest quarter of the window.
    fn a_subscriber_is_at_risk(&mut self) -> bool {
        self.positions.retain(|p| p.strong_count() > 0);
        let slowest = self
            .positions
            .iter()
            .filter_map(Weak::upgrade)
            .map(|p| p.load(Ordering::Relaxed))
            .min();
        let newest = self.next_sequence - 1;
        slowest.is_some_and(|taken| newest - taken.min(newest) >= (self.capacity as u64 * 3) / 4)
    }

    /// Events after `after` (all retained ones for `Some(0)`, none for `None`), then live.
    pub fn subscribe(
        &mut self,
        after: Option<u64>,
        filter: EventFilter,
    ) -> Result<Subscription, EngineError> {
        let newest = self.next_sequence - 1;
        let last = after.unwrap_or(newest);
        let oldest = {
            let window = self.window.read().unwrap_or_else(PoisonError::into_inner);
            let replayable = window.len().min(self.retention);
            window
                .get(window.len() - replayable)
                .map_or(self.next_sequence, |e| e.sequence)
        };
        if last.saturating_add(1) < oldest {
            return Err(EngineError::DataLoss(format!(
                "events after sequence {last} are no longer retained; the oldest retained is {oldest}"
            )));
        }
        let position = Arc::new(AtomicU64::new(last));
        self.positions.push(Arc::downgrade(&position));
        Ok(Subscription {
            position,
            window: self.window.clone(),
            newest: self.newest.subscribe(),
            taken: last,
            last,
            ready: VecDeque::new(),
            filter,
        })
    }
}

/// Replay, then live events, in sequence order.
pub struct Subscription {
    /// `taken`, for the hub's look at who risks losing events.
    position: Arc<AtomicU64>,
    window: Arc<Window>,
    /// Changes once per turn that added events; closed once the engine has stopped.
    newest: watch::Receiver<u64>,
    /// The last sequence taken from the window (into `ready`, or passed over).
    taken: u64,
    /// The last sequence delivered (or skipped by the filter).
    last: u64,
    /// Matching events taken from the window, not yet delivered.
    ready: VecDeque<Arc<Event>>,
    filter: EventFilter,
}

/// What one look at the window found.
enum Took {
    Some,
    Nothing,
    /// The next event has left the window.
    Lost,
}

impl Subscription {
    /// The last sequence delivered or passed over: where a reconnect resumes after.
    pub fn position(&self) -> u64 {
        self.last
    }

    /// The next matching event; `None` once the engine has stopped and every event it
    /// sent is delivered. A subscriber that fell too far behind gets `DataLoss` naming the
    /// sequence to resume after.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, EngineError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.last = if self.ready.is_empty() {
                    self.taken
                } else {
                    event.sequence
                };
                return Some(Ok(event));
            }
            match self.take() {
                Took::Some => {}
                Took::Lost => {
                    return Some(Err(EngineError::DataLoss(format!(
                        "subscriber fell behind after sequence {0}; resume with after_sequence={0}",
                        self.last
                    ))));
                }
                Took::Nothing => {
                    if self.newest.changed().await.is_err() {
                        // The engine stopped: what it sent last is still delivered.
                        return match self.take() {
                            Took::Nothing => None,
                            Took::Some | Took::Lost => continue,
                        };
                    }
                }
            }
        }
    }

    /// Takes up to [`BATCH`] events after `taken` from the window.
    fn take(&mut self) -> Took {
        let window = self.window.read().unwrap_or_else(PoisonError::into_inner);
        let (Some(oldest), Some(newest)) = (window.front(), window.back()) else {
            return Took::Nothing;
        };
        if newest.sequence <= self.taken {
            return Took::Nothing;
        }
        if self.taken.saturating_add(1) < oldest.sequence {
            return Took::Lost;
        }
        let start = window.partition_point(|e| e.sequence <= self.taken);
        for event in window.range(start..).take(BATCH) {
            self.taken = event.sequence;
            if self.filter.matches(event) {
                self.ready.push_back(event.clone());
            }
        }
        if self.ready.is_empty() {
            // Only events the filter passes over: they count as delivered.
            self.last = self.taken;
        }
        self.position.store(self.taken, Ordering::Relaxed);
        Took::Some
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::engine::model::event::{EventKind, Payload};

    fn event(sequence: u64, task: &str) -> Arc<Event> {
        Arc::new(Event {
            sequence,
            time: SystemTime::UNIX_EPOCH,
            kind: EventKind::TaskOutput,
            task_id: Some(task.into()),
            instance_id: None,
            workflow_id: None,
            payload: Payload::Output(Box::default()),
            encoded: Default::default(),
        })
    }

    fn publish(hub: &mut EventHub, events: Vec<Arc<Event>>) {
        hub.broadcast(events);
        hub.wake();
    }

    fn sequences(n: std::ops::RangeInclusive<u64>) -> Vec<Arc<Event>> {
        n.map(|s| event(s, "t")).collect()
    }

    async fn drain(sub: &mut Subscription, n: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        for _ in 0..n {
            seen.push(sub.next().await.unwrap().unwrap().sequence);
        }
        seen
    }

    #[tokio::test]
    async fn a_subscriber_behind_by_more_than_a_batch_gets_every_event_in_order() {
        let mut hub = EventHub::new(10_000, 16);
        let mut sub = hub.subscribe(Some(0), EventFilter::default()).unwrap();
        publish(&mut hub, sequences(1..=3_000));
        publish(&mut hub, sequences(3_001..=5_000));
        assert_eq!(
            drain(&mut sub, 5_000).await,
            (1..=5_000).collect::<Vec<_>>()
        );
        assert_eq!(sub.position(), 5_000);
    }

    #[tokio::test]
    async fn replay_then_live_with_no_gap_and_no_duplicate() {
        let mut hub = EventHub::new(100, 100);
        publish(&mut hub, sequences(1..=10));
        let mut sub = hub.subscribe(Some(4), EventFilter::default()).unwrap();
        publish(&mut hub, sequences(11..=12));
        assert_eq!(drain(&mut sub, 8).await, (5..=12).collect::<Vec<_>>());
        let mut live = hub.subscribe(None, EventFilter::default()).unwrap();
        publish(&mut hub, sequences(13..=13));
        assert_eq!(drain(&mut live, 1).await, vec![13]);
    }

    #[tokio::test]
    async fn the_filter_passes_over_events_and_the_position_follows() {
        let mut hub = EventHub::new(100, 100);
        let filter = EventFilter {
            task_id: Some("b".into()),
            ..EventFilter::default()
        };
        let mut sub = hub.subscribe(Some(0), filter).unwrap();
        publish(&mut hub, vec![event(1, "a"), event(2, "b"), event(3, "a")]);
        assert_eq!(drain(&mut sub, 1).await, vec![2]);
        assert_eq!(sub.position(), 3);
    }

    #[tokio::test]
    async fn one_whose_next_event_left_the_window_is_told_where_to_resume() {
        let mut hub = EventHub::new(10, 4);
        let mut sub = hub.subscribe(Some(0), EventFilter::default()).unwrap();
        publish(&mut hub, sequences(1..=5));
        assert_eq!(drain(&mut sub, 5).await, vec![1, 2, 3, 4, 5]);
        publish(&mut hub, sequences(6..=25));
        let lost = sub.next().await.unwrap().unwrap_err();
        assert!(
            lost.to_string().contains("resume with after_sequence=5"),
            "{lost}"
        );
        let gone = hub
            .subscribe(Some(5), EventFilter::default())
            .err()
            .unwrap();
        assert!(gone.to_string().contains("no longer retained"), "{gone}");
    }

    #[tokio::test]
    async fn replay_offers_the_retention_even_when_the_window_holds_more() {
        let mut hub = EventHub::new(2, 8);
        publish(&mut hub, sequences(1..=6));
        assert!(hub.subscribe(Some(3), EventFilter::default()).is_err());
        let mut sub = hub.subscribe(Some(4), EventFilter::default()).unwrap();
        assert_eq!(drain(&mut sub, 2).await, vec![5, 6]);
    }

    #[tokio::test]
    async fn the_feed_ends_after_the_last_event_once_the_engine_stops() {
        let mut hub = EventHub::new(100, 100);
        let mut sub = hub.subscribe(Some(0), EventFilter::default()).unwrap();
        publish(&mut hub, sequences(1..=2));
        drop(hub);
        assert_eq!(drain(&mut sub, 2).await, vec![1, 2]);
        assert!(sub.next().await.is_none());
    }

    #[tokio::test]
    async fn subscribers_are_woken_when_the_engine_is_quiet_or_one_is_at_risk() {
        let mut hub = EventHub::new(4_096, 16);
        let mut sub = hub.subscribe(Some(0), EventFilter::default()).unwrap();
        assert_eq!(hub.wake_at(), None, "nothing to announce");
        hub.broadcast(sequences(1..=10));
        let due = hub.wake_at().unwrap();
        assert!(due <= Instant::now() + QUIET, "at the latest once quiet");
        // Not announced yet, but a subscriber that looks gets what is there.
        assert_eq!(drain(&mut sub, 10).await, (1..=10).collect::<Vec<_>>());
        hub.wake();
        assert_eq!(hub.wake_at(), None);

        // 3,072 events (three quarters of the window) behind: woken at once.
        let mut behind = hub.subscribe(None, EventFilter::default()).unwrap();
        let waiting = hub.newest.subscribe();
        hub.broadcast(sequences(11..=2_058));
        assert!(!waiting.has_changed().unwrap(), "not yet at risk");
        hub.broadcast(sequences(2_059..=3_100));
        assert!(waiting.has_changed().unwrap(), "at risk: woken");
        assert_eq!(drain(&mut behind, 1).await, vec![11]);
    }

    #[test]
    fn the_longest_delay_grows_with_the_subscribers_within_bounds() {
        assert_eq!(max_delay(1), Duration::from_millis(5));
        assert_eq!(max_delay(200), Duration::from_millis(200));
        assert_eq!(max_delay(100_000), Duration::from_secs(1));
    }
}

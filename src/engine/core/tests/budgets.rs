//! What holds dispatching back: the swarm's budget and rate-limit pauses.

use super::*;

#[test]
fn a_spent_swarm_budget_stops_dispatching() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        budget_usd: Some(0.5),
        ..EngineConfig::default()
    });
    h.submit(vec![spec("a"), spec("b")]);
    let turn = h.finish("a", costing("spent", 0.6));
    assert!(started(&turn).is_empty(), "b waits: the budget is spent");
    assert_eq!(turn.batch.total_cost_usd, Some(0.6), "spending is stored");
    assert_eq!(h.status("b"), TaskStatus::Queued);
    let (call, turn) = h.call(|call| Input::Status { call });
    let Some(Answer::Status(status)) = reply(&turn, call) else {
        panic!("no status")
    };
    let status = status.as_ref().as_ref().unwrap();
    assert!(status.budget_spent.as_ref().unwrap().contains("$0.50"));
}

#[test]
fn a_rate_limit_pauses_dispatching_until_it_lifts() {
    let mut h = Harness::new(1);
    h.submit(vec![spec("a"), spec("b")]);
    let until = h.now + Duration::from_secs(60);
    let turn = h.input(Input::RateLimited { until });
    assert!(timers(&turn).contains(&(Timer::Resume, Duration::from_secs(60))));
    assert!(started(&h.complete("a")).is_empty(), "paused");
    // A resume timer that fires early changes nothing.
    h.advance(Duration::from_secs(30));
    assert!(started(&h.fire(Timer::Resume)).is_empty());
    h.advance(Duration::from_secs(30));
    assert_eq!(started(&h.fire(Timer::Resume)), ["b"]);
}

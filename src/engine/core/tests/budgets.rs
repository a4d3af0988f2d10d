//! What holds dispatching back: the swarm's budget (accounts' pauses: `accounts.rs`).

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

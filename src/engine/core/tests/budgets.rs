//! What holds dispatching back: the swarm's budget (accounts' pauses: `accounts.rs`).

use super::*;
use crate::engine::model::event::{Budget, EventKind, Payload};

#[test]
fn a_spent_swarm_budget_stops_dispatching() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 2,
        budget_usd: Some(0.5),
        ..EngineConfig::default()
    });
    h.submit(vec![spec("a"), spec("b"), spec("c")]);
    let turn = h.finish("a", costing("spent", 0.6));
    assert!(started(&turn).is_empty(), "c waits: the budget is spent");
    assert_eq!(turn.batch.total_cost_usd, Some(0.6), "spending is stored");
    assert_eq!(h.status("c"), TaskStatus::Queued);
    // Subscribers (and webhooks) are told once, when the spending reaches the budget.
    assert_eq!(
        budget_events(&turn),
        [Payload::Budget(Box::new(Budget {
            budget_usd: 0.5,
            total_cost_usd: 0.6
        }))]
    );
    let turn = h.finish("b", costing("more", 0.1));
    assert!(started(&turn).is_empty() && budget_events(&turn).is_empty());
    let (call, turn) = h.call(|call| Input::Status { call });
    let Some(Answer::Status(status)) = reply(&turn, call) else {
        panic!("no status")
    };
    let status = status.as_ref().as_ref().unwrap();
    assert!(status.budget_spent.as_ref().unwrap().contains("$0.50"));
}

fn budget_events(turn: &Turn) -> Vec<Payload> {
    turn.batch
        .events
        .iter()
        .filter(|e| e.kind == EventKind::BudgetSpent)
        .map(|e| e.payload.clone())
        .collect()
}

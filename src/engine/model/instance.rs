//! Instances: worker slots that run one task at a time on an agent process of their own.

use std::{path::PathBuf, time::SystemTime};

use super::{
    task::{InstanceId, TaskId, Usage},
    words::words,
};
use crate::engine::ports::ResourceUse;

words! {
    /// Where an instance is in its life.
    pub enum InstanceStatus {
        Idle = "idle",
        Busy = "busy",
        /// Finishing its task, then it stops (scaled down while busy).
        Stopping = "stopping",
        Terminated = "terminated",
    }
}

impl InstanceStatus {
    pub fn is_live(self) -> bool {
        self != Self::Terminated
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: InstanceId,
    pub status: InstanceStatus,
    pub current_task: Option<TaskId>,
    /// Default directory for tasks that name none.
    pub working_directory: Option<PathBuf>,
    pub created_at: SystemTime,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// The agent process running its task.
    pub pid: Option<u32>,
    pub total_cost_usd: f64,
    /// Tokens and turns of the runs it did.
    pub usage: Usage,
    pub turns: u64,
    /// What its running agent uses, filled in by the engine handle when it is looked at.
    pub resources: Option<ResourceUse>,
    /// The account its processes run under.
    pub account: String,
    /// The node whose machine runs its processes (several nodes on one database); empty
    /// on a server of its own.
    pub node: String,
}

/// The id of instance `number`: `inst-NNNN` on this node, `<node>/inst-NNNN` when another
/// node (attached over the node link) runs it.
pub fn instance_id(number: u64, remote_node: Option<&str>) -> String {
    match remote_node {
        Some(node) => format!("{node}/inst-{number:04}"),
        None => format!("inst-{number:04}"),
    }
}

/// The node that runs instance `id`, when it is another node's.
pub fn remote_node(id: &str) -> Option<&str> {
    id.split_once('/').map(|(node, _)| node)
}

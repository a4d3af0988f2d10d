//! The instance pool: which instances exist, which are idle, and what each has done.
//! An instance is a worker slot that runs one task at a time on its own agent process.

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    time::SystemTime,
};

use crate::engine::model::{
    instance::{Instance, InstanceStatus, instance_id},
    task::{InstanceId, TaskId, Usage},
};

/// Instances by id, in creation order (ids are `inst-<n>` with a growing `n`, zero-padded;
/// `<node>/inst-<n>` for the instances of another node, which run on its machine).
#[derive(Debug, Default)]
pub struct Pool {
    instances: BTreeMap<InstanceId, Instance>,
    /// Idle instances, longest idle first.
    idle: VecDeque<InstanceId>,
    next_number: u64,
}

impl Pool {
    pub fn spawn(
        &mut self,
        working_directory: Option<PathBuf>,
        account: String,
        node: (&str, bool),
        now: SystemTime,
    ) -> &Instance {
        self.next_number += 1;
        let (node, remote) = node;
        let id = instance_id(self.next_number, remote.then_some(node));
        self.idle.push_back(id.clone());
        self.instances.entry(id.clone()).or_insert(Instance {
            id,
            status: InstanceStatus::Idle,
            current_task: None,
            working_directory,
            created_at: now,
            tasks_completed: 0,
            tasks_failed: 0,
            pid: None,
            total_cost_usd: 0.0,
            usage: Usage::default(),
            turns: 0,
            resources: None,
            account,
            node: node.to_owned(),
        })
    }

    pub fn get(&self, id: &str) -> Option<&Instance> {
        self.instances.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Instance> {
        self.instances.get_mut(id)
    }

    /// Live instances in creation order.
    pub fn live(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().filter(|i| i.status.is_live())
    }

    pub fn is_idle(&self, id: &str) -> bool {
        self.get(id)
            .is_some_and(|i| i.status == InstanceStatus::Idle)
    }

    /// Idle instances, longest idle first.
    pub fn idle(&self) -> impl Iterator<Item = &InstanceId> {
        self.idle.iter()
    }

    /// Marks an idle instance busy with `task`.
    pub fn assign(&mut self, id: &str, task: &TaskId) {
        self.idle.retain(|i| i != id);
        if let Some(instance) = self.instances.get_mut(id) {
            instance.status = InstanceStatus::Busy;
            instance.current_task = Some(task.clone());
        }
    }

    /// Its task is over: back to idle, or terminated if it was stopping.
    pub fn release(&mut self, id: &str) -> Option<&Instance> {
        let instance = self.instances.get_mut(id)?;
        instance.current_task = None;
        instance.pid = None;
        match instance.status {
            InstanceStatus::Busy => {
                instance.status = InstanceStatus::Idle;
                self.idle.push_back(id.to_owned());
            }
            InstanceStatus::Stopping => instance.status = InstanceStatus::Terminated,
            InstanceStatus::Idle | InstanceStatus::Terminated => {}
        }
        Some(instance)
    }

    pub fn set_status(&mut self, id: &str, status: InstanceStatus) {
        if status != InstanceStatus::Idle {
            self.idle.retain(|i| i != id);
        }
        if let Some(instance) = self.instances.get_mut(id) {
            instance.status = status;
        }
    }

    /// Instances to stop to come down to `target` live ones: idle ones first (newest
    /// first), then busy ones (newest first), which will finish their task.
    pub fn scale_down_candidates(&self, target: usize) -> Vec<InstanceId> {
        let live: Vec<&Instance> = self
            .live()
            .filter(|i| i.status != InstanceStatus::Stopping)
            .collect();
        let excess = live.len().saturating_sub(target);
        let idle = live
            .iter()
            .rev()
            .filter(|i| i.status == InstanceStatus::Idle);
        let busy = live
            .iter()
            .rev()
            .filter(|i| i.status == InstanceStatus::Busy);
        idle.chain(busy)
            .take(excess)
            .map(|i| i.id.clone())
            .collect()
    }

    /// Live instances not already on their way out.
    pub fn active_count(&self) -> usize {
        self.live()
            .filter(|i| i.status != InstanceStatus::Stopping)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_busy_release_and_scale_down_order() {
        let mut pool = Pool::default();
        let a = pool
            .spawn(None, String::new(), ("", false), SystemTime::UNIX_EPOCH)
            .id
            .clone();
        let b = pool
            .spawn(None, String::new(), ("", false), SystemTime::UNIX_EPOCH)
            .id
            .clone();
        let c = pool
            .spawn(None, String::new(), ("", false), SystemTime::UNIX_EPOCH)
            .id
            .clone();
        assert_eq!(pool.idle().next(), Some(&a));
        pool.assign(&a, &"t1".into());
        assert_eq!(pool.idle().next(), Some(&b));
        // Idle ones go first, newest first; then busy ones.
        assert_eq!(pool.scale_down_candidates(1), vec![c.clone(), b.clone()]);
        assert_eq!(pool.scale_down_candidates(0), vec![c, b, a.clone()]);
        pool.set_status(&a, InstanceStatus::Stopping);
        assert_eq!(pool.release(&a).unwrap().status, InstanceStatus::Terminated);
        assert_eq!(pool.live().count(), 2);
    }
}

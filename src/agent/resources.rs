//! What an agent's process group holds and uses, through `sysinfo`: its processes and
//! their environment, resident memory, CPU time. The agent leads its own group, so the
//! group is its process tree (tools it started included). `sysinfo` knows no process
//! groups, so each process's group is asked of the kernel (`getpgid`).

use std::os::unix::ffi::OsStrExt;

use sysinfo::{
    Pid, Process, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind,
};

use crate::engine::ports::ResourceUse;

/// Sums the processes whose process group is `pgid`. `None` when none is alive.
pub fn group_usage(pgid: u32) -> Option<ResourceUse> {
    let mut usage = ResourceUse::default();
    let what = ProcessRefreshKind::nothing().with_memory().with_cpu();
    for_each_member(pgid, what, |_, process| {
        usage.processes += 1;
        usage.cpu_seconds += process.accumulated_cpu_time() as f64 / 1000.0;
        usage.rss_bytes += process.memory();
    });
    (usage.processes > 0).then_some(usage)
}

/// The processes of group `pgid` that have not ended (zombies are left out).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for_each_member(pgid, ProcessRefreshKind::nothing(), |pid, _| {
        members.push(pid)
    });
    members
}

/// The environment process `pid` started with, one `NAME=value` per entry; empty when it
/// cannot be read (gone, or another user's).
pub fn environ(pid: u32) -> Vec<Vec<u8>> {
    let mut system = System::new();
    let pid = Pid::from_u32(pid);
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing()
            .without_tasks()
            .with_environ(UpdateKind::Always),
    );
    system.process(pid).map_or_else(Vec::new, |process| {
        process
            .environ()
            .iter()
            .map(|entry| entry.as_bytes().to_vec())
            .collect()
    })
}

/// Calls `each` with the pid of every live process of group `pgid`, refreshed with `what`
/// (threads are not processes here).
fn for_each_member(pgid: u32, what: ProcessRefreshKind, mut each: impl FnMut(u32, &Process)) {
    let mut system = System::new();
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, what.without_tasks());
    for (pid, process) in system.processes() {
        let pid = pid.as_u32();
        // SAFETY: getpgid has no memory effects; -1 (gone since) matches no group.
        let group = unsafe { libc::getpgid(pid as libc::pid_t) };
        if i64::from(group) != i64::from(pgid) || process.status() == ProcessStatus::Zombie {
            continue;
        }
        each(pid, process);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_group_is_measured() {
        // SAFETY: getpgrp has no memory effects.
        let group = unsafe { libc::getpgrp() } as u32;
        let usage = group_usage(group).expect("this process is alive");
        assert!(usage.processes >= 1 && usage.rss_bytes > 0, "{usage:?}");
        assert!(group_usage(u32::MAX - 7).is_none());
        assert!(group_members(group).contains(&std::process::id()));
        let ours = environ(std::process::id());
        assert!(ours.iter().any(|e| e.starts_with(b"PATH=")), "{ours:?}");
    }

    #[test]
    fn a_group_of_children_counts_each_process_once_and_its_cpu_time() {
        use std::os::unix::process::CommandExt;
        // A shell in a group of its own that starts a second process and burns CPU.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "sleep 30 & i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; wait",
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let usage = loop {
            let usage = group_usage(pgid).expect("the group is alive");
            if usage.processes == 2 && usage.cpu_seconds > 0.0 {
                break usage;
            }
            assert!(std::time::Instant::now() < deadline, "{usage:?}");
            std::thread::yield_now();
        };
        assert!(usage.rss_bytes > 0, "{usage:?}");
        assert_eq!(group_members(pgid).len(), 2);
        // SAFETY: kills the group this test made.
        unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
        child.wait().unwrap();
    }
}

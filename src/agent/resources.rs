//! What an agent's process group holds and uses, read from /proc: its processes and their
//! environment, resident memory, CPU time. The agent leads its own group, so the group is
//! its process tree (tools it started included).

use std::fs;

use crate::engine::ports::ResourceUse;

/// Sums the processes whose process group is `pgid`. `None` when none is alive or /proc
/// cannot be read.
pub fn group_usage(pgid: u32) -> Option<ResourceUse> {
    // SAFETY: sysconf has no memory effects.
    let (page, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    let (page, ticks) = (
        u64::try_from(page).ok()?,
        u64::try_from(ticks).ok().filter(|t| *t > 0)?,
    );
    let mut usage = ResourceUse::default();
    for_each_member(pgid, |_, number| {
        usage.processes += 1;
        usage.cpu_seconds +=
            (number(11).unwrap_or(0) + number(12).unwrap_or(0)) as f64 / ticks as f64;
        usage.rss_bytes += number(21).unwrap_or(0) * page;
    });
    (usage.processes > 0).then_some(usage)
}

/// The processes of group `pgid` that have not ended (zombies are left out).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for_each_member(pgid, |pid, _| members.push(pid));
    members
}

/// The environment process `pid` started with, one `NAME=value` per entry; empty when it
/// cannot be read (gone, or another user's).
pub fn environ(pid: u32) -> Vec<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Calls `each` with the pid of every live process of group `pgid` and a reader of its
/// `stat` fields, counted from `state` = 0.
fn for_each_member(pgid: u32, mut each: impl FnMut(u32, &dyn Fn(usize) -> Option<u64>)) {
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state ppid pgrp ... utime(12) stime(13) ... rss(22), counted from `state` = 0.
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if number(2) != Some(u64::from(pgid)) || fields.first() == Some(&"Z") {
            continue;
        }
        each(pid, &number);
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
}

//! What an agent's process group uses, read from /proc: resident memory, CPU time and the
//! number of processes. The agent leads its own group, so the group is its process tree
//! (tools it started included).

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
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
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
        if number(2) != Some(u64::from(pgid)) {
            continue;
        }
        usage.processes += 1;
        usage.cpu_seconds +=
            (number(11).unwrap_or(0) + number(12).unwrap_or(0)) as f64 / ticks as f64;
        usage.rss_bytes += number(21).unwrap_or(0) * page;
    }
    (usage.processes > 0).then_some(usage)
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
    }
}

//! How an agent process is started so that it dies with the server: the kernel sends it
//! SIGKILL when the server dies, even by SIGKILL itself, which runs no code of ours
//! (`PR_SET_PDEATHSIG`).
//!
//! Where util-linux's `setpriv` is installed, the server starts `setpriv --pdeathsig KILL`,
//! which sets the signal and runs `/bin/sh`, which checks that the server is still its
//! parent and `exec`s the program (same process, same group, same environment). So the
//! server spawns with `posix_spawn` (a `vfork`: its memory is not copied), and a server that
//! died before the signal was set starts nothing: the shell exits 125. Without `setpriv`,
//! the signal is set between fork and exec (`pre_exec`), which makes std fork the whole
//! server: about half a millisecond more of the server's CPU per process (BENCHMARKS.md,
//! figure 1).
//!
//! The signal comes when the *thread* that spawned the child ends, not the process. Tokio
//! spawns on the calling thread (`Command::spawn` runs there, synchronously); agents are
//! spawned from async tasks, so on a runtime worker thread, and those live as long as the
//! runtime. A child must never be spawned from `spawn_blocking` or `block_in_place`: those
//! threads end when idle and would take the agent with them.
//!
//! Only the process started here gets the signal, not what it starts (a shell step's
//! commands, the tools of an agent): those are ended by the next start, which kills what is
//! left of the recorded process group before the task runs again ([`super::child::reap`]).

use std::{ffi::OsStr, path::PathBuf, sync::OnceLock};

use tokio::process::Command;

/// Exit status of the guard when the server was gone before the signal was set.
const ORPHANED: i32 = 125;

/// `program` as a command that dies with the server; arguments, environment and the rest
/// are added to it as to any command.
pub(super) fn command(program: impl AsRef<OsStr>) -> Command {
    match setpriv() {
        Some(setpriv) => through_setpriv(setpriv.as_os_str(), std::process::id(), program),
        None => forked(program),
    }
}

/// `setpriv`, if it is on the server's `PATH` and takes `--pdeathsig` (util-linux 2.33 and
/// later); looked for once.
fn setpriv() -> Option<&'static PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if !cfg!(target_os = "linux") {
                return None;
            }
            let path = std::env::var_os("PATH")?;
            let found = std::env::split_paths(&path)
                .map(|dir| dir.join("setpriv"))
                .find(|candidate| candidate.is_file())?;
            let works = std::process::Command::new(&found)
                .args(["--pdeathsig", "KILL", "--", "true"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !works {
                tracing::info!(path = %found.display(), "setpriv cannot set a parent-death signal: agents are started by forking the server");
            }
            works.then_some(found)
        })
        .as_ref()
}

fn through_setpriv(setpriv: &OsStr, server: u32, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(setpriv);
    // `$0` is the program and `$@` its arguments, passed through unexpanded.
    cmd.args(["--pdeathsig", "KILL", "--", "/bin/sh", "-c"])
        .arg(format!(
            r#"[ "$PPID" = {server} ] || exit {ORPHANED}; exec "$0" "$@""#
        ))
        .arg(program);
    cmd
}

#[cfg(not(target_os = "linux"))]
fn forked(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

/// The death signal set between fork and exec.
#[cfg(target_os = "linux")]
fn forked(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    {
        let server = std::process::id();
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls
        // (prctl, getppid) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The server died between the fork and the prctl: nothing would signal.
                if u32::try_from(libc::getppid()).ok() != Some(server) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    cmd
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::{os::fd::FromRawFd, process::Stdio, time::Duration};

    use super::*;

    /// Both ways of starting, each tested.
    #[derive(Clone, Copy, Debug)]
    enum Way {
        Setpriv,
        Forked,
    }

    impl Way {
        fn command(self, program: &str) -> Command {
            match self {
                Way::Setpriv => {
                    let setpriv = setpriv().expect("setpriv (util-linux) is installed here");
                    through_setpriv(setpriv.as_os_str(), std::process::id(), program)
                }
                Way::Forked => forked(program),
            }
        }
    }

    const WAYS: [Way; 2] = [Way::Setpriv, Way::Forked];

    #[tokio::test]
    async fn the_program_gets_its_arguments_as_they_are() {
        let args = ["a b", r#"'q" \"#, "$HOME", "", "-c"];
        for way in WAYS {
            let out = way
                .command("printf")
                .arg("%s|")
                .args(args)
                .stdout(Stdio::piped())
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{way:?}: {:?}", out.status);
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                r#"a b|'q" \|$HOME||-c|"#,
                "{way:?}"
            );
            let status = way
                .command("sh")
                .args(["-c", "exit 7"])
                .status()
                .await
                .unwrap();
            assert_eq!(status.code(), Some(7), "{way:?}");
        }
    }

    /// A server that died before the signal was set (its child's parent is then someone
    /// else) must not leave a program running that nothing would end.
    #[tokio::test]
    async fn a_start_whose_server_is_gone_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let setpriv = setpriv().unwrap();
        let not_the_parent = std::process::id() + 1;
        let status = through_setpriv(setpriv.as_os_str(), not_the_parent, "touch")
            .arg(&marker)
            .status()
            .await
            .unwrap();
        assert_eq!(status.code(), Some(ORPHANED));
        assert!(!marker.exists());
    }

    /// The process the command starts is SIGKILLed when the thread that started it ends.
    #[test]
    fn the_program_dies_with_the_thread_that_started_it() {
        for way in WAYS {
            // The thread ends once the program runs (the signal is set by then).
            let pid = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        runtime.block_on(async {
                            let mut child = way
                                .command("sh")
                                .args(["-c", "echo running; exec sleep 60"])
                                .stdout(Stdio::piped())
                                .spawn()
                                .unwrap();
                            let mut line = String::new();
                            let stdout = child.stdout.take().unwrap();
                            tokio::io::AsyncBufReadExt::read_line(
                                &mut tokio::io::BufReader::new(stdout),
                                &mut line,
                            )
                            .await
                            .unwrap();
                            assert_eq!(line, "running\n");
                            child.id().unwrap()
                        })
                    })
                    .join()
                    .unwrap()
            });
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            assert!(
                fd >= 0,
                "{way:?}: pidfd_open: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: the descriptor was just opened and is owned here only.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            let mut poll = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                events: libc::POLLIN,
                revents: 0,
            };
            let limit = Duration::from_secs(20).as_millis() as i32;
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, limit) };
            assert_eq!(ready, 1, "{way:?}: process {pid} still running");
        }
    }
}

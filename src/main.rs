use std::process::ExitCode;

/// mimalloc: the engine allocates and frees tasks and events across threads at a high
/// rate, where glibc's arenas contend (BENCHMARKS.md has the figures with both).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use claude_swarm::{
    agent::simulated,
    cli::{self, LogFormat},
    config::SIMULATE_AGENT,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The simulated CLI takes Claude Code's own flags, so it bypasses clap.
    if args.get(1).map(String::as_str) == Some(SIMULATE_AGENT) {
        return ExitCode::from(simulated::main(&args[2..]).clamp(0, 255) as u8);
    }
    let cli = cli::Cli::parse();
    // Tracing is set up once, here, for every subcommand that logs.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG")
                .unwrap_or_else(|_| "claude_swarm=info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format() {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    if cli.is_client() {
        // A client piped into `head` should end quietly, as command-line tools do. The
        // server keeps ignoring SIGPIPE: a child closing its stdin must not kill it.
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::main(cli))
}

//! Claude Code's stream-json lines: whatever the agent prints is parsed into a line the
//! engine knows or an unknown one, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = claude_swarm::agent::protocol::parse_line(line);
    }
});

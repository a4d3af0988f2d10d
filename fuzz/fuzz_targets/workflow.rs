//! The workflow file format: any text is checked into a plan or refused with an error that
//! names its place, never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let vars = BTreeMap::from([("repo".to_owned(), "r".to_owned())]);
    if let Ok(checked) = claude_swarm::workflow::check(yaml, &vars) {
        // What is accepted has the shape the engine relies on.
        assert!(!checked.plan.tasks.is_empty());
    }
});

//! The benchmark harness runs end to end on a tiny size. No timing is asserted here:
//! figures are measurements, read in BENCHMARKS.md, never pass/fail conditions of a test.

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn run(args: &[&str]) -> String {
    let output = Command::new(BENCH)
        .args(args)
        .output()
        .expect("the bench binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Table rows (not the header or its separator).
fn rows(table: &str) -> Vec<&str> {
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure |"))
        .collect()
}

#[test]
fn tiny_suite_prints_a_row_per_figure() {
    let out = run(&["--tiny"]);
    let rows = rows(&out);
    for figure in [
        "1 dispatch",
        "2 latency",
        "3 engine",
        "4 api",
        "5 fan-out",
        "6 memory",
        "6b durable",
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| {figure}"))),
            "no row for {figure}:\n{out}"
        );
    }
    for row in &rows {
        // figure, value, baseline, ratio, goal, met?
        assert_eq!(row.matches(" | ").count(), 5, "malformed row: {row}");
        assert!(!row.contains("error:"), "a figure failed: {row}");
    }
}

#[test]
fn only_runs_one_figure() {
    let out = run(&["--tiny", "--only", "latency"]);
    let rows = rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r.starts_with("| 2 latency")), "{out}");
}

//! What a `node --test` run reports, checked by count: a suite that skips its tests or finds
//! none exits 0 with `# fail 0`, so "no failure" alone proves nothing.

use std::collections::HashMap;

/// The summary lines of a `node --test --test-reporter=tap` run.
#[derive(Debug, PartialEq, Eq)]
pub struct TapSummary {
    /// `# tests`: tests that ran (suites not included).
    pub tests: u64,
    /// `# pass`.
    pub pass: u64,
    /// `# fail`.
    pub fail: u64,
    /// `# cancelled`: tests stopped by a timeout or a failed hook.
    pub cancelled: u64,
    /// `# skipped`.
    pub skipped: u64,
    /// `# todo`.
    pub todo: u64,
}

impl TapSummary {
    /// Reads the summary of `report`; `None` when a line is missing (the run did not finish).
    pub fn parse(report: &str) -> Option<Self> {
        let counts: HashMap<&str, u64> = report
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter_map(|line| line.split_once(' '))
            .filter_map(|(name, n)| Some((name, n.trim().parse().ok()?)))
            .collect();
        Some(Self {
            tests: *counts.get("tests")?,
            pass: *counts.get("pass")?,
            fail: *counts.get("fail")?,
            cancelled: *counts.get("cancelled")?,
            skipped: *counts.get("skipped")?,
            todo: *counts.get("todo")?,
        })
    }
}

/// Tests declared in `suite` (a path under `tests/js`): its `it(` and `test(` calls, one per
/// line. Counting the file keeps the expectation exact without a number to update by hand.
pub fn declared_tests(suite: &str) -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/").to_owned() + suite;
    let source =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    source
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with("it(") || line.starts_with("test("))
        .count() as u64
}

/// Panics unless `report` shows every test declared in `suite` ran and passed, none skipped,
/// cancelled or left as todo.
pub fn assert_every_test_passed(report: &str, suite: &str) {
    let declared = declared_tests(suite);
    assert!(declared > 0, "{suite} declares no tests");
    let expected = TapSummary {
        tests: declared,
        pass: declared,
        fail: 0,
        cancelled: 0,
        skipped: 0,
        todo: 0,
    };
    match TapSummary::parse(report) {
        Some(got) => assert_eq!(
            got, expected,
            "{suite}: expected all {declared} declared tests to pass and none to be skipped; \
             the run reported otherwise:\n{report}"
        ),
        None => panic!("{suite}: expected a TAP summary (# tests, # pass, …), got:\n{report}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKIPPED_RUN: &str = "TAP version 13\n# Subtest: roomcast cluster\nok 1 - roomcast cluster # SKIP\n\
        1..1\n# tests 0\n# suites 1\n# pass 0\n# fail 0\n# cancelled 0\n# skipped 0\n# todo 0\n\
        # duration_ms 41.2\n";

    #[test]
    fn a_summary_is_read_from_the_tap_report() {
        assert_eq!(
            TapSummary::parse(SKIPPED_RUN),
            Some(TapSummary {
                tests: 0,
                pass: 0,
                fail: 0,
                cancelled: 0,
                skipped: 0,
                todo: 0,
            })
        );
        assert_eq!(TapSummary::parse("# pass 3\n# fail 0\n"), None);
    }

    #[test]
    #[should_panic(expected = "expected all")]
    fn a_skipped_suite_with_no_failure_does_not_pass() {
        assert_every_test_passed(SKIPPED_RUN, "cluster/cluster.test.mjs");
    }
}

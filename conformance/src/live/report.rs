//! The outcome of live checks (probe and serve): one line per check, `N passed, M failed`,
//! or JSON with each check's RFC section, expectation and what was seen.

use serde::Serialize;

/// The outcome of one live check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// A stable name, e.g. `mode/open/fetch-partial`.
    pub name: String,
    /// The section the check tests: of RFC 4656 when only a number (`3.9`), else with its
    /// RFC (`RFC 5357 3.5`).
    pub section: String,
    /// Whether the peer did what was expected.
    pub passed: bool,
    /// What was expected of the peer.
    pub expected: String,
    /// What the peer did.
    pub seen: String,
    /// The trace file that holds the exchange, when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The outcomes of a probe or of a serve run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveReport {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Every check, in the order run.
    pub checks: Vec<CheckOutcome>,
    /// What could not be checked, and why (not counted as passed or failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<String>,
}

impl LiveReport {
    /// Adds an outcome.
    pub fn push(&mut self, o: CheckOutcome) {
        if o.passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.checks.push(o);
    }

    /// Whether every check passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// The first failed check whose name starts with `prefix`, if any.
    pub fn failure(&self, prefix: &str) -> Option<&CheckOutcome> {
        self.checks
            .iter()
            .find(|c| !c.passed && c.name.starts_with(prefix))
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// `PASS name [RFC 4656 S]: seen` or `FAIL name [RFC 4656 S]: expected E; saw S (trace:
    /// F)`, one line per check, a `not run:` line per check left out, then
    /// `N passed, M failed`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            let section = if c.section.starts_with("RFC") {
                c.section.clone()
            } else {
                format!("RFC 4656 {}", c.section)
            };
            let trace = c
                .trace
                .as_ref()
                .map(|t| format!(" (trace: {t})"))
                .unwrap_or_default();
            if c.passed {
                s.push_str(&format!("PASS {} [{section}]: {}\n", c.name, c.seen));
            } else {
                s.push_str(&format!(
                    "FAIL {} [{section}]: expected {}; saw {}{trace}\n",
                    c.name, c.expected, c.seen
                ));
            }
        }
        for n in &self.not_run {
            s.push_str(&format!("not run: {n}\n"));
        }
        s.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        s
    }

    /// The report as JSON: `{"passed": N, "failed": M, "checks": [{"name", "section",
    /// "passed", "expected", "seen", "trace"?}], "not_run"?: [...]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

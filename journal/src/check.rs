//! A troubleshooting test's outcome ([`CheckResult`]) and its one line of text, the same for
//! every daemon's `check` command: `PASS <name>: <detail>` or `FAIL <name>: <detail>`.
//!
//! The name is the daemon's own type (an enum of its tests, or a string) shown with `Display`;
//! the type serializes as `{"name": …, "ok": …, "detail": …}`.

use std::fmt::Display;

use serde::{Deserialize, Serialize};

/// Which test (`name`), whether it passed, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult<N> {
    pub name: N,
    pub ok: bool,
    pub detail: String,
}

impl<N> CheckResult<N> {
    pub fn pass(name: N, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn fail(name: N, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
        }
    }

    /// Passed with the detail of `Ok`, failed with that of `Err`.
    pub fn of(name: N, outcome: Result<String, String>) -> Self {
        match outcome {
            Ok(detail) => Self::pass(name, detail),
            Err(detail) => Self::fail(name, detail),
        }
    }
}

impl<N: Display> CheckResult<N> {
    /// `PASS reachable: <detail>` or `FAIL …`: one line of a `check` command's output.
    pub fn line(&self) -> String {
        let verdict = if self.ok { "PASS" } else { "FAIL" };
        format!("{verdict} {}: {}", self.name, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_pass_or_fail() {
        let pass = CheckResult::of("reachable", Ok("TCP connection to db:5432".into()));
        let fail = CheckResult::of(
            "schema verified".to_owned(),
            Err("the table does not exist".into()),
        );
        assert_eq!(pass.line(), "PASS reachable: TCP connection to db:5432");
        assert_eq!(
            fail.line(),
            "FAIL schema verified: the table does not exist"
        );
        assert!(pass.ok && !fail.ok);
    }

    #[test]
    fn a_result_serializes_with_its_name() {
        let result = CheckResult::fail("mounted".to_owned(), "nothing is mounted");
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "mounted", "ok": false, "detail": "nothing is mounted"})
        );
        assert_eq!(
            serde_json::from_value::<CheckResult<String>>(json).unwrap(),
            result
        );
    }
}

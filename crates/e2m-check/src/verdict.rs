//! Verdicts, the description every check carries, and the plumbing a check body uses to stop
//! with a failure or a skip.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a check is, for a person and for a report: its name, where its rule comes from,
/// what it sends and what it expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckInfo {
    /// The check's name, `group.name` (what `--only` and `--skip` match).
    pub name: &'static str,
    /// The seed clause, RFC section or e2m binding rule it checks.
    pub clause: &'static str,
    /// What the checker sends.
    pub sends: &'static str,
    /// What a conforming peer answers.
    pub expects: &'static str,
}

impl CheckInfo {
    /// The group: the part of the name before the first dot.
    pub fn group(&self) -> &'static str {
        self.name.split('.').next().unwrap_or(self.name)
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The peer did what the rule asks; one line of what was seen.
    Pass(String),
    /// The peer did not; one line of evidence (what was sent, what came back, what was due).
    Fail(String),
    /// Not run, and why (a feature the peer does not offer, a setting not given).
    Skipped(String),
}

impl Verdict {
    /// `pass`, `FAIL` or `skip`, as the table prints it.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass(_) => "pass",
            Verdict::Fail(_) => "FAIL",
            Verdict::Skipped(_) => "skip",
        }
    }

    /// The evidence or the reason.
    pub fn text(&self) -> &str {
        match self {
            Verdict::Pass(t) | Verdict::Fail(t) | Verdict::Skipped(t) => t,
        }
    }

    /// Whether this is a failure.
    pub fn is_fail(&self) -> bool {
        matches!(self, Verdict::Fail(_))
    }

    /// Whether this is a pass.
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass(_))
    }
}

/// One check's result in a report.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CheckResult {
    /// The check.
    pub info: CheckInfo,
    /// Its verdict.
    pub verdict: Verdict,
    /// How long it took (cleanup included).
    pub duration: Duration,
}

/// How a check body ends early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A failure, with its evidence.
    Fail(String),
    /// A skip, with its reason.
    Skip(String),
}

/// What a check body returns: the pass evidence, or how it stopped.
pub(crate) type Outcome = Result<String, Stop>;

/// A boxed check future.
pub(crate) type BoxFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A check: what it is and how to run it against a context `C`.
pub(crate) struct CheckDef<C: 'static> {
    pub(crate) info: CheckInfo,
    pub(crate) run: for<'a> fn(&'a C) -> BoxFuture<'a>,
}

/// Ends the check with a failure: `fail!("… {}", x)`.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::verdict::Stop::Fail(format!($($arg)*)))
    };
}

/// Ends the check with a skip: `skip!("… {}", x)`.
macro_rules! skip {
    ($($arg:tt)*) => {
        return Err($crate::verdict::Stop::Skip(format!($($arg)*)))
    };
}

/// Fails the check unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            fail!($($arg)*);
        }
    };
}

/// Builds the table of checks of a context type: each entry names an `async fn(&C) ->
/// Outcome` and its description.
macro_rules! check_table {
    ($cx:ty; $( $f:path => { name: $name:expr, clause: $clause:expr, sends: $sends:expr, expects: $expects:expr $(,)? } ),* $(,)?) => {
        &[ $(
            $crate::verdict::CheckDef::<$cx> {
                info: $crate::verdict::CheckInfo {
                    name: $name,
                    clause: $clause,
                    sends: $sends,
                    expects: $expects,
                },
                run: {
                    fn run<'a>(cx: &'a $cx) -> $crate::verdict::BoxFuture<'a> {
                        Box::pin($f(cx))
                    }
                    run
                },
            },
        )* ]
    };
}

pub(crate) use {check_table, ensure, fail, skip};

/// Shortens `text` to at most `limit` characters (evidence stays one short line).
pub(crate) fn clip(text: &str, limit: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_one_line() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("é", 1), "é");
    }
}

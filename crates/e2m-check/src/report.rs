//! Reports a person and a CI both read: a table for the terminal, JUnit XML and JSON.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::verdict::{CheckResult, Verdict, clip};

/// The results of one run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// Which suite ran: `emks` or `emse`.
    pub suite: &'static str,
    /// What was checked (an address; never a credential).
    pub target: String,
    /// One result per check that was selected, in the order they ran.
    pub results: Vec<CheckResult>,
    /// Run-level remarks (e.g. "xmllint not installed: XSD validation off").
    pub notes: Vec<String>,
    /// When the run started.
    pub started: SystemTime,
    /// How long the whole run took.
    pub duration: Duration,
}

/// Counts of each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks skipped.
    pub skipped: usize,
}

impl Report {
    /// A report with no results yet.
    pub fn new(suite: &'static str, target: String) -> Report {
        Report {
            suite,
            target,
            results: Vec::new(),
            notes: Vec::new(),
            started: SystemTime::now(),
            duration: Duration::ZERO,
        }
    }

    /// How many passed, failed and were skipped.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.results {
            match r.verdict {
                Verdict::Pass(_) => s.passed += 1,
                Verdict::Fail(_) => s.failed += 1,
                Verdict::Skipped(_) => s.skipped += 1,
            }
        }
        s
    }

    /// Whether no check failed (the exit status of the runnable example follows this).
    pub fn is_success(&self) -> bool {
        !self.results.iter().any(|r| r.verdict.is_fail())
    }

    /// The result of the check named `name`, if it ran.
    pub fn result(&self, name: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.info.name == name)
    }

    /// The names of the checks that failed.
    pub fn failures(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|r| r.verdict.is_fail())
            .map(|r| r.info.name)
            .collect()
    }

    /// The terminal table: check, clause, verdict, one line of evidence; then the notes and
    /// a summary line. Plain text, no colour (it goes to logs as often as to terminals).
    pub fn table(&self) -> String {
        const CLAUSE: usize = 30;
        const EVIDENCE: usize = 110;
        let name_w = self
            .results
            .iter()
            .map(|r| r.info.name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<CLAUSE$}  {:<7}  evidence",
            "check", "clause", "verdict"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<name_w$}  {:<CLAUSE$}  {:<7}  {}",
                r.info.name,
                clip(r.info.clause, CLAUSE - 1),
                r.verdict.label(),
                clip(r.verdict.text(), EVIDENCE)
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "{}: {} passed, {} failed, {} skipped in {:.1} s ({})",
            self.suite,
            s.passed,
            s.failed,
            s.skipped,
            self.duration.as_secs_f64(),
            self.target
        );
        out
    }

    /// JUnit XML (the dialect Jenkins, GitLab and GitHub reporters read): one `testsuite`,
    /// one `testcase` per check (`classname` is the suite and the check's group), with
    /// `failure` or `skipped`, and the evidence in `system-out`.
    pub fn junit_xml(&self) -> String {
        let s = self.summary();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"e2m-check\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            self.results.len(),
            s.failed,
            s.skipped,
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"e2m-check {}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
            self.suite,
            self.results.len(),
            s.failed,
            s.skipped,
            self.duration.as_secs_f64(),
            rfc3339(self.started)
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"target\" value=\"{}\"/></properties>",
            xml_escape(&self.target)
        );
        for r in &self.results {
            let _ = write!(
                out,
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\">",
                self.suite,
                xml_escape(r.info.group()),
                xml_escape(r.info.name),
                r.duration.as_secs_f64()
            );
            match &r.verdict {
                Verdict::Pass(_) => {}
                Verdict::Fail(evidence) => {
                    let _ = write!(
                        out,
                        "<failure type=\"nonconformance\" message=\"{}\">{}: expected {}</failure>",
                        xml_escape(evidence),
                        xml_escape(r.info.clause),
                        xml_escape(r.info.expects)
                    );
                }
                Verdict::Skipped(reason) => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", xml_escape(reason));
                }
            }
            let _ = writeln!(
                out,
                "<system-out>{}</system-out></testcase>",
                xml_escape(r.verdict.text())
            );
        }
        if !self.notes.is_empty() {
            let notes = self.notes.join("\n");
            let _ = writeln!(out, "    <system-err>{}</system-err>", xml_escape(&notes));
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }

    /// The report as JSON: suite, target, summary, duration, notes and one object per check
    /// (name, clause, sends, expects, verdict `pass`/`fail`/`skip`, evidence, duration).
    pub fn json(&self) -> String {
        let s = self.summary();
        let checks: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.info.name,
                    "clause": r.info.clause,
                    "sends": r.info.sends,
                    "expects": r.info.expects,
                    "verdict": match r.verdict {
                        Verdict::Pass(_) => "pass",
                        Verdict::Fail(_) => "fail",
                        Verdict::Skipped(_) => "skip",
                    },
                    "evidence": r.verdict.text(),
                    "duration_ms": duration_ms(r.duration),
                })
            })
            .collect();
        let value = serde_json::json!({
            "suite": self.suite,
            "target": self.target,
            "started": rfc3339(self.started),
            "duration_ms": duration_ms(self.duration),
            "summary": { "pass": s.passed, "fail": s.failed, "skip": s.skipped },
            "notes": self.notes,
            "checks": checks,
        });
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn duration_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `YYYY-MM-DDThh:mm:ssZ` (UTC), from the e2m timestamp type.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    e2m_msg::Timestamp::from_unix_secs(secs).to_string()
}

/// Escapes text for XML attribute values and content; characters XML 1.0 forbids are
/// replaced by U+FFFD.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::CheckInfo;

    fn sample() -> Report {
        let info = |name| CheckInfo {
            name,
            clause: "6.x.2.2.2.1",
            sends: "POST",
            expects: "201",
        };
        let mut report = Report::new("emks", "https://127.0.0.1:1".into());
        report.results = vec![
            CheckResult {
                info: info("register.created"),
                verdict: Verdict::Pass("201 <ok> & \"fine\"".into()),
                duration: Duration::from_millis(3),
            },
            CheckResult {
                info: info("fetch.no-store"),
                verdict: Verdict::Fail("no Cache-Control\u{1}".into()),
                duration: Duration::from_millis(4),
            },
            CheckResult {
                info: info("fetch.by-imsi"),
                verdict: Verdict::Skipped("no --imsi-emse".into()),
                duration: Duration::ZERO,
            },
        ];
        report
    }

    #[test]
    fn summary_and_success() {
        let r = sample();
        assert_eq!(
            r.summary(),
            Summary {
                passed: 1,
                failed: 1,
                skipped: 1
            }
        );
        assert!(!r.is_success());
        assert_eq!(r.failures(), ["fetch.no-store"]);
    }

    #[test]
    fn table_has_one_line_per_check() {
        let t = sample().table();
        assert_eq!(t.lines().count(), 5, "{t}");
        assert!(t.contains("fetch.no-store") && t.contains("FAIL"));
        assert!(t.contains("1 passed, 1 failed, 1 skipped"));
    }

    #[test]
    fn json_is_json() {
        let v: serde_json::Value = serde_json::from_str(&sample().json()).unwrap_or_default();
        assert_eq!(v["summary"]["fail"], 1);
        assert_eq!(v["checks"][1]["verdict"], "fail");
        assert_eq!(v["checks"][2]["evidence"], "no --imsi-emse");
    }

    #[test]
    fn junit_escapes() {
        let x = sample().junit_xml();
        assert!(x.contains("&lt;ok&gt; &amp; &quot;fine&quot;"));
        assert!(x.contains("\u{FFFD}"));
        assert!(x.contains("<skipped message=\"no --imsi-emse\"/>"));
        assert!(x.contains("failures=\"1\""));
    }
}

//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::PathBuf;
use std::process::Command;

pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden document `golden/{name}.xml`.
pub(crate) fn golden(name: &str) -> String {
    std::fs::read_to_string(crate_dir().join("golden").join(format!("{name}.xml")))
        .unwrap_or_else(|e| panic!("golden/{name}.xml: {e}"))
}

/// Names of every golden document, sorted.
pub(crate) fn golden_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate_dir().join("golden"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".xml").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Runs xmllint on each document against the e2m message schema and returns, per document,
/// whether it validated.
pub(crate) fn xmllint_verdicts(docs: &[String]) -> Vec<bool> {
    let dir = std::env::temp_dir().join(format!("e2m-msg-xsd-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let path = dir.join(format!("{i:05}.xml"));
            std::fs::write(&path, doc).unwrap();
            path
        })
        .collect();
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(crate_dir().join("schema").join("e2m-msg-v1.xsd"))
        .args(paths.iter())
        .output()
        .unwrap_or_else(|e| {
            panic!("xmllint is required for the XSD tests (apt-get install libxml2-utils): {e}")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verdicts = paths
        .iter()
        .map(|p| stderr.contains(&format!("{} validates", p.display())))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    verdicts
}

/// Validates documents with `xmllint --noout --schema` (the problem schema for problem
/// documents, the message schema otherwise). xmllint is required: CI installs libxml2-utils,
/// so a missing xmllint fails the test rather than skipping it.
pub(crate) fn xmllint_validate(docs: &[(String, String)]) {
    let dir = std::env::temp_dir().join(format!(
        "e2m-msg-xsd-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut messages = Vec::new();
    let mut problems = Vec::new();
    for (i, (name, doc)) in docs.iter().enumerate() {
        let path = dir.join(format!("{i:05}-{name}.xml"));
        std::fs::write(&path, doc).unwrap();
        if doc.contains("urn:ietf:rfc:7807") {
            problems.push(path);
        } else {
            messages.push(path);
        }
    }
    for (schema, files) in [
        ("e2m-msg-v1.xsd", &messages),
        ("e2m-problem-v1.xsd", &problems),
    ] {
        if files.is_empty() {
            continue;
        }
        let output = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(crate_dir().join("schema").join(schema))
            .args(files.iter())
            .output()
            .unwrap_or_else(|e| {
                panic!("xmllint is required for the XSD tests (apt-get install libxml2-utils): {e}")
            });
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "xmllint failed against {schema}:\n{stderr}"
        );
        let validated = stderr.lines().filter(|l| l.ends_with(" validates")).count();
        assert_eq!(validated, files.len(), "xmllint output:\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks with `xmllint --noout` (no schema) that each document is well-formed XML with
/// well-formed namespaces: for what the decoder accepts but no schema describes (problem
/// details with extension members). A namespace name that is not a URI is only a warning
/// of libxml2's (Namespaces in XML 1.0 asks for URI references but does not make them a
/// well-formedness constraint), so it is let through.
pub(crate) fn xmllint_well_formed(docs: &[String]) {
    if docs.is_empty() {
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "e2m-msg-wf-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let path = dir.join(format!("{i:05}.xml"));
            std::fs::write(&path, doc).unwrap();
            path
        })
        .collect();
    let output = Command::new("xmllint")
        .arg("--noout")
        .args(paths.iter())
        .output()
        .unwrap_or_else(|e| {
            panic!("xmllint is required for the XML tests (apt-get install libxml2-utils): {e}")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" error : ") && !l.contains("is not a valid URI"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        errors.is_empty(),
        "accepted but not well-formed according to xmllint:\n{stderr}"
    );
}

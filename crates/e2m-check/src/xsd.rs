//! Every XML answer is checked twice: against e2m's XSD with `xmllint` (libxml2, an
//! implementation independent of e2m's decoder) where it is installed, and always with
//! e2m-msg's strict decoder (which is stricter than XSD 1.0 can say).

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// Whether answers are validated with `xmllint --schema`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum XmlLint {
    /// When `xmllint` is installed (a run-level note says when it is not).
    #[default]
    Auto,
    /// Always: the run does not start without `xmllint`.
    Required,
    /// Never (the strict decoder still checks every answer).
    Off,
}

/// Which schema a document is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schema {
    /// `e2m-msg-v1.xsd` (the messages).
    Messages,
    /// `e2m-problem-v1.xsd` (RFC 9457 problem details).
    Problem,
}

/// The schema files in a temporary directory, and whether to use them.
#[derive(Debug)]
pub(crate) struct Xsd {
    dir: Option<PathBuf>,
}

impl Drop for Xsd {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn xmllint_installed() -> bool {
    std::process::Command::new("xmllint")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Xsd {
    /// Prepares validation as `mode` asks. Returns a note for the report when `xmllint` is
    /// not used.
    pub(crate) fn new(mode: XmlLint) -> Result<(Xsd, Option<String>), String> {
        let installed = mode != XmlLint::Off && xmllint_installed();
        match (mode, installed) {
            (XmlLint::Off, _) => {
                return Ok((
                    Xsd { dir: None },
                    Some("XSD validation off (--xmllint off); strict decoding only".into()),
                ));
            }
            (XmlLint::Required, false) => {
                return Err(
                    "xmllint (libxml2-utils) is required for XSD validation and not installed"
                        .into(),
                );
            }
            (XmlLint::Auto, false) => {
                return Ok((
                    Xsd { dir: None },
                    Some("xmllint not installed: XSD validation off, strict decoding only".into()),
                ));
            }
            _ => {}
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("e2m-check-xsd-{}-{nanos}", std::process::id()));
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);
        std::fs::create_dir_all(&dir)
            .and_then(|()| write("e2m-msg-v1.xsd", e2m_msg::XSD))
            .and_then(|()| write("e2m-problem-v1.xsd", e2m_msg::PROBLEM_XSD))
            .map_err(|e| format!("writing the XSD files: {e}"))?;
        Ok((Xsd { dir: Some(dir) }, None))
    }

    /// Validates `document` against `schema`; `Err` carries xmllint's first complaint.
    pub(crate) async fn validate(&self, document: &[u8], schema: Schema) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let file = match schema {
            Schema::Messages => dir.join("e2m-msg-v1.xsd"),
            Schema::Problem => dir.join("e2m-problem-v1.xsd"),
        };
        let mut child = tokio::process::Command::new("xmllint")
            .arg("--noout")
            .arg("--nonet")
            .arg("--schema")
            .arg(&file)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("xmllint: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means xmllint quit early; its exit status says why.
            let _ = stdin.write_all(document).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("xmllint: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty() && !l.contains("fails to validate"))
            .unwrap_or("fails to validate");
        // Strip xmllint's "-:LINE: " prefix noise down to the message.
        Err(format!("XSD: {}", first.trim_start_matches("-:").trim()))
    }
}

//! Operator provisioning: the identity map from a CSV file (issue 8, "Operator
//! provisioning"), parsed without I/O. The caller reads the file; [`parse_identity_csv`]
//! validates every row; [`IdentityMap::provision_all`](crate::IdentityMap::provision_all)
//! stores them all or none.
//!
//! # The format
//!
//! - One mapping per line: `emse_id,app_identity,imsi`, three fields separated by commas.
//!   Lines end in LF or CRLF; the last line may lack one; empty lines are skipped. A UTF-8
//!   byte order mark at the very start is skipped (spreadsheets write one).
//! - **Header optional.** A first line that is exactly `emse_id,app_identity,imsi` is a
//!   header and skipped. It can never be a row ("imsi" is not 6 to 15 digits), so a file
//!   with or without it means the same.
//! - **No quoting.** Fields are taken as they are, octet for octet: no RFC 4180 quotes, no
//!   escapes, no trimming. None of the three identities may contain a comma, a quote or
//!   white space in practice (the e2m-keyid types refuse white space and controls; an
//!   IMSI is digits), so quoting would only add a way to write the same thing twice. A
//!   field containing `"` is refused (the file was probably written with quoting, and
//!   silently keeping the quotes would provision identities that never match). A field
//!   with leading or trailing spaces is refused by the identity types.
//! - Each field is validated with its e2m-keyid type: [`EmseId::new`] (the strict wire
//!   form: already NFKC), [`AppIdentity::new`], [`Imsi::new`].
//! - A file may repeat a mapping (same EMSE_Id, identity and IMSI): the repeat changes
//!   nothing. The same EMSE_Id and identity with two different IMSIs is an error on the
//!   later line.
//! - Lines are at most [`MAX_LINE_LEN`] octets.
//!
//! Every bad row is reported by its line number (1-based, counting the header and empty
//! lines), up to [`ImportErrors::MAX_REPORTED`] of them, with the total count. An error
//! never repeats more than [`VALUE_PREFIX_CHARS`] characters of a bad value (the file may
//! hold personal data such as IMSIs), with control characters replaced.

use std::collections::HashMap;

use e2m_keyid::{AppIdentity, EmseId, IdentityError, Imsi};

/// The header line a file may start with.
pub const HEADER: &str = "emse_id,app_identity,imsi";

/// The longest line accepted, in octets (without its line ending): the three identities at
/// their maximum lengths (255 + 114 + 15) and two commas fit with room to spare.
pub const MAX_LINE_LEN: usize = 1024;

/// How many characters of a bad value an error repeats, at most.
pub const VALUE_PREFIX_CHARS: usize = 12;

/// One validated mapping of a provisioning file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRow {
    /// The line it came from (1-based), to name it in errors.
    pub line: usize,
    /// The EMSE the mapping is scoped to.
    pub emse: EmseId,
    /// The UE's application identity, as that EMSE names it.
    pub app: AppIdentity,
    /// The UE.
    pub imsi: Imsi,
}

/// Which field of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The first field, `emse_id`.
    EmseId,
    /// The second field, `app_identity`.
    AppIdentity,
    /// The third field, `imsi`.
    Imsi,
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Field::EmseId => "emse_id",
            Field::AppIdentity => "app_identity",
            Field::Imsi => "imsi",
        })
    }
}

/// What is wrong with a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowProblem {
    /// Not three comma-separated fields.
    #[error("expected 3 comma-separated fields, found {0}")]
    FieldCount(usize),
    /// Longer than [`MAX_LINE_LEN`].
    #[error("line longer than {MAX_LINE_LEN} octets")]
    LineTooLong,
    /// Not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// A field holds a double quote (quoting is not supported).
    #[error("field {0} holds a double quote; the format has no quoting")]
    Quoted(Field),
    /// A field is not a valid identity of its kind.
    #[error("field {field}: {error}")]
    Invalid {
        /// Which field.
        field: Field,
        /// Why its type refused it.
        error: IdentityError,
    },
    /// The same EMSE_Id and application identity were mapped to another IMSI on an
    /// earlier line of the file.
    #[error("maps the same emse_id and app_identity as line {0} to another imsi")]
    ConflictsWithLine(usize),
}

/// One bad row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// Its line (1-based).
    pub line: usize,
    /// What is wrong.
    pub problem: RowProblem,
    /// At most [`VALUE_PREFIX_CHARS`] characters of the offending value (control
    /// characters replaced by `?`), when there is one.
    pub value_prefix: Option<String>,
}

impl core::fmt::Display for RowError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)?;
        if let Some(prefix) = &self.value_prefix {
            write!(f, " (value starts {prefix:?})")?;
        }
        Ok(())
    }
}

/// Every bad row of a file (the first [`MAX_REPORTED`](Self::MAX_REPORTED) of them, in
/// line order) and how many there were.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ImportErrors {
    /// The bad rows reported, in line order.
    pub errors: Vec<RowError>,
    /// How many rows were bad in all (`errors` stops at the cap).
    pub total: usize,
}

impl ImportErrors {
    /// The most row errors kept.
    pub const MAX_REPORTED: usize = 100;

    fn push(&mut self, error: RowError) {
        self.total += 1;
        if self.errors.len() < Self::MAX_REPORTED {
            self.errors.push(error);
        }
    }
}

impl core::fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "{} bad row(s); nothing was imported", self.total)?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        if self.total > self.errors.len() {
            writeln!(f, "  ... and {} more", self.total - self.errors.len())?;
        }
        Ok(())
    }
}

/// What [`IdentityMap::provision_all`](crate::IdentityMap::provision_all) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportSummary {
    /// Mappings added.
    pub added: usize,
    /// Rows whose mapping was already there, identical (re-importing a file gives only
    /// these), including repeats within the call.
    pub unchanged: usize,
}

impl ImportSummary {
    /// A summary with these counts (for backends outside this crate).
    pub const fn new(added: usize, unchanged: usize) -> Self {
        ImportSummary { added, unchanged }
    }

    /// Whether the call changed nothing.
    pub const fn changed_nothing(&self) -> bool {
        self.added == 0
    }
}

/// Parses and validates a provisioning file (see the [module docs](self) for the format).
///
/// ```
/// use e2m_keystore::import::parse_identity_csv;
///
/// let file = b"emse_id,app_identity,imsi\r\nemse-a.example.com,sensor-1@iot.example,001010000000001\r\n";
/// let rows = parse_identity_csv(file).unwrap();
/// assert_eq!((rows.len(), rows[0].line, rows[0].imsi.as_str()), (1, 2, "001010000000001"));
///
/// let bad = parse_identity_csv(b"emse-a,ue 1,001010000000001\nemse-a,ue-2,12ab\n").unwrap_err();
/// assert_eq!(bad.total, 2);
/// assert_eq!(bad.errors[1].line, 2);
/// ```
///
/// # Errors
/// [`ImportErrors`] with every bad row, if any row is bad: then no row is returned.
pub fn parse_identity_csv(bytes: &[u8]) -> Result<Vec<IdentityRow>, ImportErrors> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rows = Vec::new();
    let mut errors = ImportErrors {
        errors: Vec::new(),
        total: 0,
    };
    // (EMSE_Id, identity) → (row index, line): to find a conflicting repeat in the file.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() || (line == 1 && raw == HEADER.as_bytes()) {
            continue;
        }
        match parse_row(raw, line) {
            Err(e) => errors.push(e),
            Ok((emse, app, imsi)) => match seen.get(&(emse, app)) {
                Some(&first) => {
                    let earlier: &IdentityRow = &rows[first];
                    if earlier.imsi.as_str() != imsi {
                        errors.push(RowError {
                            line,
                            problem: RowProblem::ConflictsWithLine(earlier.line),
                            value_prefix: None,
                        });
                    }
                }
                None => match validate(emse, app, imsi, line) {
                    Ok(row) => {
                        seen.insert((emse, app), rows.len());
                        rows.push(row);
                    }
                    Err(e) => errors.push(e),
                },
            },
        }
    }
    if errors.total > 0 {
        return Err(errors);
    }
    Ok(rows)
}

/// Splits a line into its three fields (no validation of their contents yet).
fn parse_row(raw: &[u8], line: usize) -> Result<(&str, &str, &str), RowError> {
    let error = |problem, value: Option<&[u8]>| RowError {
        line,
        problem,
        value_prefix: value.map(prefix),
    };
    if raw.len() > MAX_LINE_LEN {
        return Err(error(RowProblem::LineTooLong, None));
    }
    let text = core::str::from_utf8(raw).map_err(|_| error(RowProblem::NotUtf8, None))?;
    let fields: Vec<&str> = text.split(',').collect();
    let [emse, app, imsi] = fields[..] else {
        return Err(error(RowProblem::FieldCount(fields.len()), None));
    };
    for (field, value) in [
        (Field::EmseId, emse),
        (Field::AppIdentity, app),
        (Field::Imsi, imsi),
    ] {
        if value.contains('"') {
            return Err(error(RowProblem::Quoted(field), Some(value.as_bytes())));
        }
    }
    Ok((emse, app, imsi))
}

fn validate(emse: &str, app: &str, imsi: &str, line: usize) -> Result<IdentityRow, RowError> {
    let invalid = |field, error, value: &str| RowError {
        line,
        problem: RowProblem::Invalid { field, error },
        value_prefix: Some(prefix(value.as_bytes())),
    };
    Ok(IdentityRow {
        line,
        emse: EmseId::new(emse).map_err(|e| invalid(Field::EmseId, e, emse))?,
        app: AppIdentity::new(app).map_err(|e| invalid(Field::AppIdentity, e, app))?,
        imsi: Imsi::new(imsi).map_err(|e| invalid(Field::Imsi, e, imsi))?,
    })
}

/// The first [`VALUE_PREFIX_CHARS`] characters of a value, controls replaced.
fn prefix(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .take(VALUE_PREFIX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]
mod tests {
    use super::*;

    #[test]
    fn header_is_optional_and_both_line_endings_work() {
        let with = parse_identity_csv(b"emse_id,app_identity,imsi\nemse-a,ue-1,001010000000001\n");
        let without = parse_identity_csv(b"emse-a,ue-1,001010000000001\r\n\r\n");
        assert_eq!(with.as_ref().map(Vec::len), Ok(1));
        assert_eq!(without.as_ref().map(Vec::len), Ok(1));
        assert_eq!(with.unwrap()[0].line, 2);
        assert_eq!(without.unwrap()[0].line, 1);
        // The header anywhere but the first line is a bad row.
        let late = parse_identity_csv(b"emse-a,ue-1,001010000000001\nemse_id,app_identity,imsi\n");
        assert_eq!(late.unwrap_err().errors[0].line, 2);
    }

    #[test]
    fn every_bad_row_is_reported_by_line_with_a_short_prefix() {
        let file = "emse-a,ue-1,001010000000001\n\
                    emse-a,ue-2\n\
                    emse-a,\"ue-3\",001010000000003\n\
                    emse-a,ue 4,001010000000004\n\
                    emse-a,ue-5,0010100000000051234567890\n\
                    emse-a,ue-1,001010000000009\n\
                    emse-a,ue-1,001010000000001\n\
                    ,ue-8,001010000000008\n";
        let e = parse_identity_csv(file.as_bytes()).unwrap_err();
        let lines: Vec<usize> = e.errors.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 8], "{e}");
        assert_eq!(e.total, 6);
        assert_eq!(e.errors[0].problem, RowProblem::FieldCount(2));
        assert_eq!(e.errors[1].problem, RowProblem::Quoted(Field::AppIdentity));
        assert!(matches!(
            e.errors[2].problem,
            RowProblem::Invalid {
                field: Field::AppIdentity,
                error: IdentityError::Whitespace
            }
        ));
        assert_eq!(e.errors[4].problem, RowProblem::ConflictsWithLine(1));
        // The over-long IMSI is echoed only up to the prefix length.
        assert_eq!(e.errors[3].value_prefix.as_deref(), Some("001010000000"));
        assert!(!e.to_string().contains("0010100000000051"));
    }

    #[test]
    fn errors_are_capped_but_counted() {
        let file = "x\n".repeat(250);
        let e = parse_identity_csv(file.as_bytes()).unwrap_err();
        assert_eq!((e.errors.len(), e.total), (ImportErrors::MAX_REPORTED, 250));
        assert!(e.to_string().contains("and 150 more"));
    }

    #[test]
    fn controls_and_long_lines_are_not_echoed() {
        let mut file = b"emse-a,ue\x1b[31m,001010000000001\n".to_vec();
        file.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 1));
        file.extend_from_slice(b",b,123456\n\xff,ue,123456\n");
        let e = parse_identity_csv(&file).unwrap_err();
        assert_eq!(e.errors[0].value_prefix.as_deref(), Some("ue?[31m"));
        assert_eq!(e.errors[1].problem, RowProblem::LineTooLong);
        assert_eq!(e.errors[1].value_prefix, None);
        assert_eq!(e.errors[2].problem, RowProblem::NotUtf8);
    }

    #[test]
    fn a_repeated_identical_row_is_kept_once_and_a_bom_is_skipped() {
        let rows = parse_identity_csv(
            b"\xEF\xBB\xBFemse-a,ue-1,123456\nemse-a,ue-1,123456\nemse-b,ue-1,123456",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 3);
    }
}

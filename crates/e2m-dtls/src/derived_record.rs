//! A durable, file-backed record of the OSCORE contexts an EMSE has derived (the
//! [`DerivedContextRecord`] of `e2m-oscore`; why it exists: `e2m_oscore::derived`).
//!
//! With it, [`crate::oscore_server::OscoreServer::bind_with_record`] answers the first
//! request of a context it never derived before at once (one round trip on first contact),
//! and still challenges with Echo a context it derived before (a request replayed after a
//! restart is never answered under a reused nonce).
//!
//! # File format and durability
//!
//! An append-only text file: a header line `e2m-oscore-derived v1`, then one line per
//! derived context, `<unix seconds> <key id, 8 hex> <application identity, hex> <check>`,
//! where `<check>` is the first 8 octets of SHA-256 over the rest of the line, in hex. A
//! new entry is appended and the file is synced (`fdatasync`) **before**
//! [`DerivedContextRecord::record`] returns [`Derivation::First`]; only then does the EMSE
//! answer.
//!
//! * **A torn last line** (the process or machine stopped mid-append, so no newline ends the
//!   file) is cut off at open: its entry was never synced, so no answer was sent under it.
//! * **Any other damage** (a line that does not parse, a wrong check, an unknown header) is
//!   [`DerivedRecordError::Corrupt`] at [`FileDerivedRecord::open`], naming the line: the
//!   file is not rewritten, and the operator decides (an EMSE that starts with an empty
//!   record instead would answer replays).
//! * **Bounded size:** entries older than [`FileDerivedRecordConfig::max_age`] are dropped
//!   (set it at least to the EMKS's key retention `max_age`, 24 h by default: a context whose
//!   key the EMKS no longer hands out cannot be derived again). When the file holds more
//!   than twice the live entries plus [`FileDerivedRecordConfig::compact_slack`] lines, it
//!   is compacted: the live
//!   entries are written to `<path>.tmp`, synced, renamed over the file, and the directory
//!   synced. At most [`FileDerivedRecordConfig::max_entries`] live entries are held; past
//!   that, [`DerivedRecordError::Full`] (the EMSE then challenges with Echo, which is safe).
//!
//! One process at a time: the file is not locked (one EMSE owns its record; several
//! instances sharing one EMSE_Id need one shared record, see `e2m_oscore::derived`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2m_keyid::{AppIdentity, KeyId};
use e2m_oscore::derived::{Derivation, DerivedContextRecord};
use sha2::{Digest, Sha256};

const HEADER: &str = "e2m-oscore-derived v1\n";
/// Appends between two passes that drop expired entries.
const EXPIRE_EVERY: usize = 64;

/// Why the record could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DerivedRecordError {
    /// Reading, writing or syncing the file failed.
    #[error("derived-context record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is damaged (not just a torn last line); it is left as it is.
    #[error("derived-context record {path} is corrupt at line {line}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The record holds `max_entries` live entries: a new context is not recorded (and gets
    /// the Echo challenge).
    #[error("derived-context record is full ({max_entries} live entries)")]
    Full {
        /// The configured bound.
        max_entries: usize,
    },
}

/// Bounds of a [`FileDerivedRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDerivedRecordConfig {
    /// How long an entry is kept after its context was first derived: at least the EMKS's
    /// key retention `max_age` (`RetentionPolicy`, 24 h by default).
    pub max_age: Duration,
    /// Live entries held at most.
    pub max_entries: usize,
    /// Lines the file may hold beyond twice its live entries before it is compacted.
    pub compact_slack: usize,
}

impl Default for FileDerivedRecordConfig {
    fn default() -> Self {
        FileDerivedRecordConfig {
            max_age: Duration::from_secs(48 * 60 * 60),
            max_entries: 1_000_000,
            compact_slack: 1024,
        }
    }
}

/// The durable [`DerivedContextRecord`] (module docs).
#[derive(Debug)]
pub struct FileDerivedRecord {
    path: PathBuf,
    file: File,
    config: FileDerivedRecordConfig,
    /// (identity octets, key id) → unix seconds of the first derivation.
    entries: HashMap<(Vec<u8>, KeyId), u64>,
    /// Entry lines in the file (live or not).
    lines: usize,
}

fn check(body: &str) -> String {
    hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

fn entry_body(identity: &[u8], key_id: KeyId, at: u64) -> String {
    format!("{at} {:08x} {}", key_id.as_u32(), hex::encode(identity))
}

fn parse_line(line: &str) -> Result<(Vec<u8>, KeyId, u64), &'static str> {
    let (body, sum) = line.rsplit_once(' ').ok_or("too few fields")?;
    if check(body) != sum {
        return Err("check does not match");
    }
    let mut fields = body.split(' ');
    let (Some(at), Some(key_id), Some(identity), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("wrong number of fields");
    };
    let at = at.parse().map_err(|_| "bad time")?;
    if key_id.len() != 8 {
        return Err("bad key id");
    }
    let key_id = u32::from_str_radix(key_id, 16).map_err(|_| "bad key id")?;
    let identity = hex::decode(identity).map_err(|_| "bad identity")?;
    AppIdentity::from_utf8(&identity).map_err(|_| "bad identity")?;
    Ok((identity, KeyId::from_u32(key_id), at))
}

impl FileDerivedRecord {
    /// Opens (or creates) the record at `path`; `now_unix_s` drops expired entries.
    ///
    /// # Errors
    /// [`DerivedRecordError::Corrupt`] for a damaged file (a torn last line is repaired,
    /// module docs), [`DerivedRecordError::Io`] if it cannot be read, created or synced.
    pub fn open(
        path: impl AsRef<Path>,
        config: FileDerivedRecordConfig,
        now_unix_s: u64,
    ) -> Result<FileDerivedRecord, DerivedRecordError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| DerivedRecordError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if bytes.is_empty() {
            file.write_all(HEADER.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_dir(&path).map_err(io)?;
            bytes.extend_from_slice(HEADER.as_bytes());
        }
        // A torn last line was never synced: cut it off.
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if end < bytes.len() {
            file.set_len(end as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
            bytes.truncate(end);
        }
        let corrupt = |line, reason| DerivedRecordError::Corrupt {
            path: path.clone(),
            line,
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt(1, "not UTF-8"))?;
        let mut lines = text.split_terminator('\n');
        if lines.next() != Some(HEADER.trim_end()) {
            return Err(corrupt(1, "not an e2m-oscore-derived v1 file"));
        }
        let mut entries = HashMap::new();
        let mut count = 0;
        for (n, line) in lines.enumerate() {
            let (identity, key_id, at) =
                parse_line(line).map_err(|reason| corrupt(n + 2, reason))?;
            count += 1;
            // A key re-recorded after its entry expired has two lines: the later counts.
            let first = entries.entry((identity, key_id)).or_insert(at);
            *first = (*first).max(at);
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let mut record = FileDerivedRecord {
            path,
            file,
            config,
            entries,
            lines: count,
        };
        record.expire(now_unix_s);
        if record.needs_compaction() {
            record.compact()?;
        }
        Ok(record)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> DerivedRecordError {
        DerivedRecordError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn expire(&mut self, now_unix_s: u64) {
        let max_age = self.config.max_age.as_secs();
        self.entries
            .retain(|_, at| now_unix_s.saturating_sub(*at) <= max_age);
    }

    fn needs_compaction(&self) -> bool {
        self.lines > 2 * self.entries.len() + self.config.compact_slack
    }

    /// Rewrites the file with the live entries only (write, sync, rename, sync directory).
    fn compact(&mut self) -> Result<(), DerivedRecordError> {
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".tmp");
        let tmp_path = PathBuf::from(tmp_path);
        let mut text = String::from(HEADER);
        for ((identity, key_id), at) in &self.entries {
            let body = entry_body(identity, *key_id, *at);
            let sum = check(&body);
            text.push_str(&body);
            text.push(' ');
            text.push_str(&sum);
            text.push('\n');
        }
        let written = (|| {
            let mut tmp = File::create(&tmp_path)?;
            tmp.write_all(text.as_bytes())?;
            tmp.sync_all()?;
            std::fs::rename(&tmp_path, &self.path)?;
            sync_dir(&self.path)?;
            OpenOptions::new().read(true).append(true).open(&self.path)
        })();
        self.file = written.map_err(|e| self.io(e))?;
        self.lines = self.entries.len();
        Ok(())
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

impl DerivedContextRecord for FileDerivedRecord {
    type Error = DerivedRecordError;

    fn record(
        &mut self,
        identity: &AppIdentity,
        key_id: KeyId,
        now_unix_s: u64,
    ) -> Result<Derivation, DerivedRecordError> {
        let key = (identity.as_bytes().to_vec(), key_id);
        let max_age = self.config.max_age.as_secs();
        match self.entries.get(&key) {
            Some(at) if now_unix_s.saturating_sub(*at) <= max_age => {
                return Ok(Derivation::Again);
            }
            _ => {}
        }
        if self.entries.len() >= self.config.max_entries {
            self.expire(now_unix_s);
            if self.entries.len() >= self.config.max_entries {
                return Err(DerivedRecordError::Full {
                    max_entries: self.config.max_entries,
                });
            }
        }
        let body = entry_body(identity.as_bytes(), key_id, now_unix_s);
        let line = format!("{body} {}\n", check(&body));
        let before = self.file.metadata().map_err(|e| self.io(e))?.len();
        let appended = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = appended {
            // Take a partial line back, so that the next append does not follow it.
            let _ = self.file.set_len(before);
            return Err(self.io(e));
        }
        self.entries.insert(key, now_unix_s);
        self.lines += 1;
        // Expired entries are dropped every EXPIRE_EVERY appends (amortized: a pass is
        // linear in the entries), then the file is compacted if it has grown enough.
        if self.lines.is_multiple_of(EXPIRE_EVERY) {
            self.expire(now_unix_s);
        }
        if self.needs_compaction() {
            // The entry is durable already; a failed compaction leaves the old file whole.
            let _ = self.compact();
        }
        Ok(Derivation::First)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_checks_catch_changes() {
        let body = entry_body(b"ue@x", KeyId::from_u32(0xae47_bf35), 1_800_000_000);
        let line = format!("{body} {}", check(&body));
        assert_eq!(
            parse_line(&line),
            Ok((
                b"ue@x".to_vec(),
                KeyId::from_u32(0xae47_bf35),
                1_800_000_000
            ))
        );
        assert_eq!(
            parse_line(&line.replace("ae47", "ae48")),
            Err("check does not match")
        );
        assert_eq!(parse_line("nonsense"), Err("too few fields"));
    }
}

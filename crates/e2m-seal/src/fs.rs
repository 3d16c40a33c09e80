//! The file helpers (feature `fs`): reading KEK files into a keyring, and writing a new
//! one. The only I/O in the crate, kept here so that the core parses bytes and never
//! touches the file system (the sans-IO rule).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Kek, KekFileError, Keyring, KeyringError};

/// A KEK file's size is fixed (`e2m-kek v1 ` + at most 10 digits + space + 64 digits +
/// CRLF = 88 octets): reading stops beyond this, so a wrong path to a large file is
/// refused without reading it whole.
const MAX_KEK_FILE: u64 = 128;

/// Why KEK files did not give a keyring. Names the file (a path is not secret), never its
/// contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub enum KekFileIoError {
    /// The file could not be read or written.
    #[error("KEK file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file is readable or writable by other users (Unix mode bits `0o077` set):
    /// like ssh with a private key, refuse rather than use a key others may have read.
    #[error("KEK file {path} is accessible by other users (mode {mode:o}); chmod 600 it")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a KEK file.
    #[error("KEK file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Which rule the contents break.
        source: KekFileError,
    },
    /// The files do not make a keyring (none given, or two of one version).
    #[error("KEK files: {0}")]
    Keyring(#[from] KeyringError),
    /// The operating system's random generator failed (writing a new file).
    #[error("KEK file {path}: the operating system's random generator failed")]
    RandomUnavailable {
        /// The file.
        path: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KekFileIoError + '_ {
    move |source| KekFileIoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads and parses one KEK file. The bytes read are zeroized.
///
/// # Errors
/// [`KekFileIoError::Io`], [`KekFileIoError::TooOpen`] (Unix: group or other permission
/// bits set) or [`KekFileIoError::Parse`].
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub fn read_kek_file(path: &Path) -> Result<Kek, KekFileIoError> {
    let file = File::open(path).map_err(io_error(path))?;
    refuse_open_permissions(path, &file)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(96));
    file.take(MAX_KEK_FILE)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    Kek::parse(&bytes).map_err(|source| KekFileIoError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(unix)]
fn refuse_open_permissions(path: &Path, file: &File) -> Result<(), KekFileIoError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KekFileIoError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_open_permissions(_path: &Path, _file: &File) -> Result<(), KekFileIoError> {
    Ok(())
}

impl Keyring {
    /// The keyring of the KEK files at `paths` (the operator's `--kek-file` flags, any
    /// order).
    ///
    /// # Errors
    /// The first file's [`KekFileIoError`], or [`KekFileIoError::Keyring`].
    #[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
    pub fn from_kek_files<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Keyring, KekFileIoError> {
        let keks = paths
            .into_iter()
            .map(|p| read_kek_file(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring::new(keks)?)
    }
}

/// Writes a new KEK file for `version` with a random key (what the demo does at its first
/// start, like its certificates). Creates the file (it must not exist: an existing KEK is
/// never overwritten), with mode `0600` on Unix, and syncs it to disk.
///
/// # Errors
/// [`KekFileIoError::Io`] (including "already exists") or
/// [`KekFileIoError::RandomUnavailable`].
#[cfg(feature = "getrandom")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "fs", feature = "getrandom"))))]
pub fn write_new_kek_file(path: &Path, version: crate::KekVersion) -> Result<(), KekFileIoError> {
    let text =
        crate::generate_kek_file(version).map_err(|_| KekFileIoError::RandomUnavailable {
            path: path.to_owned(),
        })?;
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(text.as_bytes()).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

//! The `fs` helpers against real files in a fresh temporary directory.
#![cfg(all(feature = "fs", feature = "getrandom"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure should stop the test"
)]

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use e2m_seal::{
    KekFileError, KekFileIoError, KekVersion, Keyring, KeyringError, read_kek_file,
    write_new_kek_file,
};

/// A new, empty directory of its own for each test (removed at the end of the test).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("e2m-seal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn v(n: u32) -> KekVersion {
    KekVersion::new(n).unwrap()
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn written_files_read_back_into_a_keyring() {
    let dir = TempDir::new("roundtrip");
    write_new_kek_file(&dir.path("kek-1"), v(1)).unwrap();
    write_new_kek_file(&dir.path("kek-2"), v(2)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path("kek-1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(read_kek_file(&dir.path("kek-2")).unwrap().version(), v(2));
    let ring = Keyring::from_kek_files([dir.path("kek-2"), dir.path("kek-1")]).unwrap();
    assert_eq!(ring.versions().collect::<Vec<_>>(), [v(1), v(2)]);
    // The two files hold different random keys: a check record of one is refused by the
    // other under the same version number.
    let check = ring
        .make_check_record(v(2), e2m_seal::SealNonce::random().unwrap())
        .unwrap();
    assert_eq!(ring.verify_check_record(&check), Ok(v(2)));
    fs::remove_file(dir.path("kek-2")).unwrap();
    write_new_kek_file(&dir.path("kek-2"), v(2)).unwrap();
    let other = Keyring::from_kek_files([dir.path("kek-1"), dir.path("kek-2")]).unwrap();
    assert_eq!(
        other.verify_check_record(&check),
        Err(e2m_seal::CheckError::WrongKek(v(2)))
    );
}

#[test]
fn an_existing_kek_file_is_never_overwritten() {
    let dir = TempDir::new("exists");
    let path = dir.path("kek-1");
    write_new_kek_file(&path, v(1)).unwrap();
    let before = fs::read(&path).unwrap();
    match write_new_kek_file(&path, v(1)) {
        Err(KekFileIoError::Io { source, .. }) => {
            assert_eq!(source.kind(), ErrorKind::AlreadyExists);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[cfg(unix)]
#[test]
fn a_file_others_can_read_is_refused() {
    let dir = TempDir::new("mode");
    let path = dir.path("kek-1");
    write_new_kek_file(&path, v(1)).unwrap();
    set_mode(&path, 0o644);
    match read_kek_file(&path) {
        Err(KekFileIoError::TooOpen { mode, .. }) => assert_eq!(mode, 0o644),
        other => panic!("expected TooOpen, got {other:?}"),
    }
    set_mode(&path, 0o400);
    assert!(read_kek_file(&path).is_ok());
}

#[test]
fn bad_contents_are_named_by_path_never_echoed() {
    let dir = TempDir::new("contents");
    let path = dir.path("kek-bad");
    let secret = "c0ffee00".repeat(8);
    fs::write(&path, format!("e2m-kek v1 1 {secret} trailing\n")).unwrap();
    #[cfg(unix)]
    set_mode(&path, 0o600);
    let err = read_kek_file(&path).unwrap_err();
    assert!(matches!(
        err,
        KekFileIoError::Parse {
            source: KekFileError::Layout,
            ..
        }
    ));
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(text.contains("kek-bad"), "{text}");
        assert!(!text.contains("c0ffee"), "{text}");
    }

    // A large file given by mistake: refused after reading at most a few octets.
    let big = dir.path("big");
    fs::write(&big, vec![b'a'; 1 << 20]).unwrap();
    #[cfg(unix)]
    set_mode(&big, 0o600);
    assert!(matches!(
        read_kek_file(&big),
        Err(KekFileIoError::Parse {
            source: KekFileError::NotKekFile,
            ..
        })
    ));
}

#[test]
fn missing_files_and_duplicate_versions_are_typed_errors() {
    let dir = TempDir::new("missing");
    match Keyring::from_kek_files([dir.path("absent")]) {
        Err(KekFileIoError::Io { path, source }) => {
            assert_eq!(path, dir.path("absent"));
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    write_new_kek_file(&dir.path("a"), v(5)).unwrap();
    write_new_kek_file(&dir.path("b"), v(5)).unwrap();
    assert!(matches!(
        Keyring::from_kek_files([dir.path("a"), dir.path("b")]),
        Err(KekFileIoError::Keyring(KeyringError::DuplicateVersion(x))) if x == v(5)
    ));
    assert!(matches!(
        Keyring::from_kek_files(Vec::<PathBuf>::new()),
        Err(KekFileIoError::Keyring(KeyringError::Empty))
    ));
}

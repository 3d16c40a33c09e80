//! A small tmpfs for tests that fill a disk: mounted on a fresh directory, unmounted and
//! removed when dropped. Mounting needs root (or CAP_SYS_ADMIN); where it fails, [`Tmpfs::mount`]
//! prints why the test is skipped and returns `None`.
//!
//! Shared by the redb crate's tests and the workspace's process tests (`#[path]`).
#![allow(dead_code, reason = "each test uses a part")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs.
pub(crate) struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `megabytes` MiB on a new directory named after `tag`, or prints
    /// `SKIPPED: …` (what the test needs and why it could not have it) and returns `None`.
    pub(crate) fn mount(tag: &str, megabytes: u32) -> Option<Tmpfs> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("e2m-tmpfs-{tag}-{}-{nanos}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("SKIPPED: cannot create {}: {e}", dir.display());
            return None;
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0755")])
            .arg("tmpfs")
            .arg(&dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                let _ = std::fs::remove_dir(&dir);
                eprintln!(
                    "SKIPPED: this test fills a disk and needs to mount a small tmpfs \
                     (root or CAP_SYS_ADMIN, and the mount(8) command): {why}"
                );
                None
            }
        }
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills the free space with a file named `name` (until the file system says it is
    /// full); returns the octets written.
    pub(crate) fn fill(&self, name: &str) -> u64 {
        let mut file = std::fs::File::create(self.dir.join(name)).expect("create the filler");
        let chunk = vec![0x55u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Also the last partial pages.
        let small = [0x55u8; 512];
        while let Ok(n) = file.write(&small) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        written
    }

    /// Removes the file `name` (frees what [`fill`](Self::fill) took).
    pub(crate) fn free(&self, name: &str) {
        std::fs::remove_file(self.dir.join(name)).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process of the test that still has a file open there does not keep it
        // mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

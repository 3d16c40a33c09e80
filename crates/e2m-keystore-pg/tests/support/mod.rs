//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a temp dir, a
//! server on 127.0.0.1 at a free port (and a unix socket in the temp dir), run as an
//! unprivileged user when the test runs as root (PostgreSQL refuses to run as root), torn
//! down (immediate stop, directory removed) when dropped.
//!
//! The binaries are found in `$E2M_PG_BIN`, else in the newest `/usr/lib/postgresql/*/bin`
//! (Debian's layout). `.ci/postgres install` installs them on a fresh machine.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this shared module"
)]
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a broken fixture fails the test loudly"
)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster's superuser and database.
pub(crate) const USER: &str = "e2m";
pub(crate) const DATABASE: &str = "postgres";

/// Where the PostgreSQL server binaries are, if installed.
pub(crate) fn pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("E2M_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid/gid to run the server as: ourselves, unless we are root, then `nobody`
/// (or `$E2M_PG_USER`), read from /etc/passwd.
fn server_identity() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if me != 0 {
        return None;
    }
    let name = std::env::var("E2M_PG_USER").unwrap_or_else(|_| "nobody".to_owned());
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == name {
            let uid = fields[2].parse().expect("uid");
            let gid = fields[3].parse().expect("gid");
            return Some((uid, gid));
        }
    }
    panic!("running as root and user {name} does not exist (set E2M_PG_USER)");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running throwaway cluster.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    identity: Option<(u32, u32)>,
    extra_conf: String,
}

impl Cluster {
    /// Starts a fresh cluster, or returns `None` (after printing why) if the PostgreSQL
    /// binaries are not installed.
    pub(crate) fn start() -> Option<Cluster> {
        Self::start_with("")
    }

    /// As [`start`](Self::start), with extra `postgresql.conf` lines.
    pub(crate) fn start_with(extra_conf: &str) -> Option<Cluster> {
        let Some(bin) = pg_bin() else {
            eprintln!(
                "SKIPPED: PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, \
                 no $E2M_PG_BIN); run `bash .ci/postgres install`"
            );
            return None;
        };
        let cluster = Self::init(bin, extra_conf, None);
        cluster.pg_ctl_start();
        Some(cluster)
    }

    /// A new, empty directory owned by the server's user.
    fn new_dir(identity: Option<(u32, u32)>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "e2m-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        if let Some((uid, gid)) = identity {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown temp dir");
        }
        dir
    }

    fn init(bin: PathBuf, extra_conf: &str, basebackup_of: Option<&Cluster>) -> Cluster {
        let identity = server_identity();
        let dir = Self::new_dir(identity);
        let data = dir.join("data");
        let port = free_port();
        let cluster = Cluster {
            bin,
            dir,
            data,
            port,
            identity,
            extra_conf: extra_conf.to_owned(),
        };
        match basebackup_of {
            None => cluster.run_ok(
                "initdb",
                &[
                    "-D",
                    path_str(&cluster.data),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            ),
            Some(primary) => cluster.run_ok(
                "pg_basebackup",
                &[
                    "-D",
                    path_str(&cluster.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    USER,
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                    "-d",
                    &format!("application_name=standby{}", cluster.port),
                ],
            ),
        };
        cluster
    }

    /// A streaming standby of this cluster made with `pg_basebackup -R` (which copies the
    /// primary's settings; `extra_conf` lines are appended after them), started.
    pub(crate) fn start_standby(&self, extra_conf: &str) -> Cluster {
        let standby = Self::init(self.bin.clone(), extra_conf, Some(self));
        standby.pg_ctl_start();
        standby
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.dir).env("HOME", &self.dir);
        if let Some((uid, gid)) = self.identity {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts (or restarts) the server on its port and waits until it accepts connections.
    pub(crate) fn pg_ctl_start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c max_connections=300 -c fsync=on -c synchronous_commit=on \
             -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on",
            self.port,
            path_str(&self.dir)
        );
        if !self.extra_conf.is_empty() {
            let conf = self.data.join("postgresql.auto.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
            if !text.contains(&self.extra_conf) {
                text.push('\n');
                text.push_str(&self.extra_conf);
                text.push('\n');
                std::fs::write(&conf, text).expect("write postgresql.auto.conf");
            }
        }
        let log = self.dir.join("server.log");
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server at once (`-m immediate`: no checkpoint, like a crash).
    pub(crate) fn stop_immediate(&self) {
        self.run_ok(
            "pg_ctl",
            &["-D", path_str(&self.data), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Kills the server with SIGKILL, the postmaster and every process it started (a
    /// machine loss: no process gets to finish anything), and waits until they are gone.
    pub(crate) fn kill(&self) {
        let pid_file = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid = text.lines().next().expect("pid line").trim().to_owned();
        let mut pids = vec![pid.clone()];
        // Its children, by parent pid from /proc (taken before the kill reparents them).
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces, so split after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if rest.split_whitespace().nth(1) == Some(pid.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pids:?}");
        for p in &pids {
            let stat = PathBuf::from(format!("/proc/{p}/stat"));
            for _ in 0..200 {
                let gone_or_zombie = std::fs::read_to_string(&stat)
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true);
                if gone_or_zombie {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        }
    }

    /// Promotes a standby and waits until it accepts writes.
    pub(crate) fn promote(&self) {
        self.run_ok("pg_ctl", &["-D", path_str(&self.data), "-w", "promote"]);
    }

    /// The connection string for the cluster's database over TCP.
    pub(crate) fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname={DATABASE}",
            self.port
        )
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `pg_dump` of the whole database (plain SQL text, data included).
    pub(crate) fn pg_dump(&self) -> Vec<u8> {
        let out = self.run(
            "pg_dump",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                DATABASE,
            ],
        );
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs SQL through psql and returns its unaligned output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                DATABASE,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Feeds `script` (e.g. a `pg_dump`) to psql on the cluster's database, stopping at
    /// the first error.
    pub(crate) fn psql_script(&self, script: &[u8]) {
        use std::io::Write as _;
        let mut child = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                DATABASE,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("psql stdin")
            .write_all(script)
            .expect("write to psql");
        let out = child.wait_with_output().expect("psql");
        assert!(
            out.status.success(),
            "psql script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate stop; a cluster already stopped or killed just fails this quietly.
        let _ = self
            .command("pg_ctl")
            .args(["-D", path_str(&self.data), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A keyring of one KEK, `version`, whose 32 octets are all `fill`.
pub(crate) fn keyring(version: u32, fill: u8) -> e2m_seal::Keyring {
    let v = e2m_seal::KekVersion::new(version).expect("version");
    e2m_seal::Keyring::new([e2m_seal::Kek::from_array(v, [fill; 32])]).expect("keyring")
}

//! Test harness for the real components: a throwaway OpenSSH `sshd` serving SFTP on loopback, a
//! throwaway PostgreSQL server, and the node's own daemons run as child processes.
//!
//! Each is started in a temporary directory on 127.0.0.1 and stopped by PID when dropped, so a
//! failing test leaves nothing running. Nothing here knows the daemons' internals: they are
//! driven only through their binaries, their config file, their socket and their HTTP port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod file_share;
pub mod netem;
mod node;
pub mod prosody;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
pub use node::{curl, AuditRow, Database, Node, NodeToml, Response};

/// A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Polls `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// Runs a command to completion and fails with its output if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process stopped (SIGTERM, then SIGKILL after 10 s) when dropped; its stdout and
/// stderr go to `log`, which `log_text` returns for failure messages.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Process {
    /// Spawns `cmd` in a process group of its own, with its output appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the log if the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited early ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
        }
        Ok(())
    }

    /// Waits for the process to exit on its own and returns whether it succeeded.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("process already stopped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still running after {timeout:?}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the exit (SIGKILL after 10 s).
    pub fn stop_with(&mut self, signal: Signal) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }

    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_with(Signal::SIGTERM)
    }

    /// SIGKILLs the process, all its descendants and its process group, like a crash, and
    /// reaps it. Descendants are found through /proc because some leave the group (sshd's
    /// per-connection children call setsid).
    pub fn kill_tree(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(child.id() as i32);
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGKILLs process `root`, its process group and every descendant, all stopped first so that
/// none can react: as a unit's cgroup-wide kill does (fsd's `fusermount3` dies with it).
pub fn kill_tree(root: i32) {
    let _ = kill(Pid::from_raw(root), Signal::SIGSTOP);
    for pid in descendants(root) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(-root), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(root), Signal::SIGKILL);
}

/// Every process and its parent, `(pid, ppid)`, from /proc.
pub fn parent_pids() -> Vec<(i32, i32)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Raises this process's soft limit of open files to `n`, or to the hard limit if that is lower
/// (the default soft limit is often 1,024); processes started after inherit it. Returns the new
/// soft limit.
pub fn allow_open_files(n: u64) -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let wanted = soft.max(n.min(hard));
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard)?;
    Ok(wanted)
}

/// Every regular file under `dir`, hidden ones (partial uploads) included.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Every descendant of `root` (children, their children, ...), from /proc.
fn descendants(root: i32) -> Vec<i32> {
    let parents = parent_pids();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A throwaway OpenSSH server on 127.0.0.1 with the SFTP subsystem, accepting one client key for
/// root. It runs in its own mount namespace (`unshare -m --propagation private`), so it can never
/// reach into a FUSE mount of this machine (that would deadlock the mount); with
/// [`Sshd::start_behind`], also in a network namespace of its own, at the end of a slow link.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    /// The address it is reached at: 127.0.0.1, or the far end of its [`netem::Link`].
    pub host: String,
    pub port: u16,
    /// The file server's storage root (a node's directory is made under it).
    pub root: PathBuf,
    /// The client (node) private key, OpenSSH format, mode 0600.
    pub client_key: PathBuf,
    /// `[host]:port <type> <key>`: what `ssh-keyscan -p port host` prints.
    pub host_key_line: String,
    process: Option<Process>,
    /// The link to its network namespace; dropped after the process.
    link: Option<netem::Link>,
}

/// The throwaway sshd's configuration, with placeholders: the one scripts/run-node and
/// scripts/fs-suites fill too.
const THROWAWAY_SSHD_CONFIG: &str = include_str!("../../scripts/lib/throwaway-sshd.conf");

impl Sshd {
    /// Serves root, authorizing [`Sshd::client_key`] from a file of the test's own.
    pub fn start() -> Result<Self> {
        Self::start_serving(None, None)
    }

    /// Serves root as [`Sshd::start`] does, from a network namespace of its own reached over a
    /// [`netem::Link`] with `impairment` each way: a file server on another host.
    pub fn start_behind(impairment: netem::Impairment) -> Result<Self> {
        Self::start_serving(None, Some(netem::Link::start(impairment)?))
    }

    /// Serves the system user `user` the way a production file server does: keys from
    /// `~user/.ssh/authorized_keys`, `StrictModes yes`. The client key is generated but not
    /// authorized: authorizing it is the caller's job.
    pub fn start_for_user(user: &str) -> Result<Self> {
        Self::start_serving(Some(user), None)
    }

    fn start_serving(user: Option<&str>, link: Option<netem::Link>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mft-sshd-").tempdir()?;
        let root = dir.path().join("srv");
        std::fs::create_dir_all(&root)?;
        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("node_key");
        for key in [&host_key, &client_key] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "mft-test", "-f"])
                .arg(key))?;
        }
        let public = std::fs::read_to_string(host_key.with_extension("pub"))?;
        let mut fields = public.split_whitespace();
        let (kind, key) = (
            fields.next().context("host key type")?,
            fields.next().context("host key")?,
        );
        let port = free_port();
        // Root with a key file of the test's own, or a system user's own keys, checked as a
        // production file server checks them.
        let (authorized_keys, strict_modes, permit_root_login, allow_users) = match user {
            None => {
                std::fs::copy(
                    client_key.with_extension("pub"),
                    dir.path().join("authorized_keys"),
                )?;
                let keys = dir.path().join("authorized_keys").display().to_string();
                (keys, "no", "prohibit-password", "root")
            }
            Some(user) => (".ssh/authorized_keys".to_owned(), "yes", "no", user),
        };
        let mut config: String = THROWAWAY_SSHD_CONFIG
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect();
        for (placeholder, value) in [
            ("@PORT@", port.to_string()),
            ("@HOST_KEY@", host_key.display().to_string()),
            (
                "@PID_FILE@",
                dir.path().join("sshd.pid").display().to_string(),
            ),
            ("@AUTHORIZED_KEYS@", authorized_keys),
            ("@STRICT_MODES@", strict_modes.to_owned()),
            ("@PERMIT_ROOT_LOGIN@", permit_root_login.to_owned()),
            ("@ALLOW_USERS@", allow_users.to_owned()),
        ] {
            config = config.replace(placeholder, &value);
        }
        // Tests run in parallel and open many connections at once; the log shows each login.
        config.push_str("MaxStartups 100\nMaxSessions 100\nLogLevel VERBOSE\n");
        let host = link.as_ref().map_or("127.0.0.1", |l| &l.remote).to_owned();
        if link.is_some() {
            config.push_str(&format!("ListenAddress {host}\n"));
        }
        std::fs::write(dir.path().join("sshd_config"), config)?;
        // sshd's privilege-separation directory; the Debian package makes it only at boot.
        std::fs::create_dir_all("/run/sshd")?;
        let mut sshd = Self {
            host_key_line: format!("[{host}]:{port} {kind} {key}"),
            host,
            port,
            root,
            client_key,
            dir,
            process: None,
            link,
        };
        sshd.resume()?;
        Ok(sshd)
    }

    /// The server's own public host key file (what `ssh-keyscan` must match).
    pub fn host_key_file(&self) -> PathBuf {
        self.dir.path().join("host_ed25519.pub")
    }

    /// Runs an `sftp` batch as `user` with the client key, pinning the host key; returns stdout.
    pub fn sftp(&self, user: &str, batch: &str) -> Result<String> {
        let known = self.dir.path().join("known_hosts");
        std::fs::write(&known, format!("{}\n", self.host_key_line))?;
        let batch_file = self.dir.path().join("sftp-batch");
        std::fs::write(&batch_file, batch)?;
        run(Command::new("sftp")
            .arg("-b")
            .arg(&batch_file)
            .args(["-P", &self.port.to_string(), "-i"])
            .arg(&self.client_key)
            .arg(format!("-oUserKnownHostsFile={}", known.display()))
            .args(["-oStrictHostKeyChecking=yes", "-oBatchMode=yes"])
            .arg(format!("{user}@{}", self.host)))
        .with_context(|| format!("sshd log:\n{}", self.log_text()))
    }

    /// Starts sshd again on the same port with the same keys (after [`Sshd::kill`]).
    pub fn resume(&mut self) -> Result<()> {
        let mut cmd = match &self.link {
            Some(link) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{}", link.namespace))
                    .arg("unshare");
                cmd
            }
            None => Command::new("unshare"),
        };
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-f",
        ])
        .arg(self.dir.path().join("sshd_config"));
        let mut process = Process::spawn("sshd", &mut cmd, &self.dir.path().join("sshd.log"))?;
        let (host, port) = (self.host.as_str(), self.port);
        wait_until(Duration::from_secs(10), "sshd banner", || {
            banner_at(host, port).is_ok()
        })
        .with_context(|| process.log_text())?;
        process.check_alive()?;
        self.process = Some(process);
        Ok(())
    }

    /// Kills sshd and its per-connection children (SIGKILL, like a crashed server): existing
    /// connections die with it.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill_tree();
        }
    }

    /// Makes a node directory under the storage root and returns its absolute path.
    pub fn node_directory(&self, name: &str) -> Result<PathBuf> {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the SSH identification line from `127.0.0.1:port`.
pub fn banner(port: u16) -> Result<String> {
    banner_at("127.0.0.1", port)
}

/// Reads the SSH identification line from `host:port`.
pub fn banner_at(host: &str, port: u16) -> Result<String> {
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    if !line.starts_with("SSH-2.0-") {
        bail!("not an SSH banner: {line:?}");
    }
    let _ = stream.write_all(b"SSH-2.0-probe\r\n");
    Ok(line)
}

/// A throwaway PostgreSQL server on 127.0.0.1, run as the `postgres` user from a temporary data
/// directory: fsync off for tests ([`Postgres::start`]), on for benchmarks
/// ([`Postgres::start_durable`]); a streaming standby of it for failover tests
/// ([`Postgres::start_standby`], [`Postgres::promote`]).
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    durable: bool,
    process: Option<Process>,
}

/// The directory holding the newest installed PostgreSQL server binaries.
fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server is not installed (/usr/lib/postgresql is missing)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions
        .pop()
        .context("no PostgreSQL server binaries under /usr/lib/postgresql")
}

impl Postgres {
    /// A server for tests, in the system's temporary directory, with fsync off.
    pub fn start() -> Result<Self> {
        Self::start_in(&std::env::temp_dir(), false)
    }

    /// A server whose commits are durable (`fsync=on`, `synchronous_commit=on`), with its data
    /// under `parent`: for benchmarks, where fsync off would flatter one-commit-per-event
    /// writers. Put `parent` on a real disk, not a tmpfs.
    pub fn start_durable(parent: &Path) -> Result<Self> {
        Self::start_in(parent, true)
    }

    fn start_in(parent: &Path, durable: bool) -> Result<Self> {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
        let dir = tempfile::Builder::new()
            .prefix("mft-pg-")
            .tempdir_in(parent)?;
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))?;
        let bin = postgres_bin()?;
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
            .arg(&data);
        if !durable {
            initdb.arg("--no-sync");
        }
        run(initdb.uid(user.uid.as_raw()).gid(user.gid.as_raw()))?;
        let mut pg = Self {
            dir,
            port: free_port(),
            durable,
            process: None,
        };
        pg.resume()?;
        Ok(pg)
    }

    /// Starts the server (again) on the same port and data directory.
    pub fn resume(&mut self) -> Result<()> {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
        let log = self.dir.path().join("postgres.log");
        std::fs::File::create(&log)?;
        nix::unistd::chown(&log, Some(user.uid), Some(user.gid))?;
        let mut cmd = Command::new(postgres_bin()?.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "max_connections=200", "-c"])
            .arg(if self.durable {
                "fsync=on"
            } else {
                "fsync=off"
            })
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw());
        if self.durable {
            cmd.args(["-c", "synchronous_commit=on"]);
        }
        let mut process = Process::spawn("postgres", &mut cmd, &log)?;
        let url = self.url("postgres");
        wait_until(
            Duration::from_secs(30),
            "postgres to accept connections",
            || {
                use diesel::Connection;
                diesel::PgConnection::establish(&url).is_ok()
            },
        )
        .with_context(|| process.log_text())?;
        process.check_alive()?;
        self.process = Some(process);
        Ok(())
    }

    /// A streaming standby of this server: a base backup (`pg_basebackup -R`, which writes the
    /// standby's `primary_conninfo`) in a temporary directory of its own, started on its own port.
    /// It is read-only until [`Postgres::promote`].
    pub fn start_standby(&self) -> Result<Self> {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
        let parent = self
            .dir
            .path()
            .parent()
            .context("the server's directory has no parent")?;
        let dir = tempfile::Builder::new()
            .prefix("mft-pg-")
            .tempdir_in(parent)?;
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))?;
        let mut backup = Command::new(postgres_bin()?.join("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
                "-D",
            ])
            .arg(dir.path().join("data"));
        if !self.durable {
            backup.arg("--no-sync");
        }
        run(backup.uid(user.uid.as_raw()).gid(user.gid.as_raw()))?;
        let mut standby = Self {
            dir,
            port: free_port(),
            durable: self.durable,
            process: None,
        };
        standby.resume()?;
        Ok(standby)
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, which waits until it takes writes).
    pub fn promote(&self) -> Result<()> {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
        run(Command::new(postgres_bin()?.join("pg_ctl"))
            .args(["promote", "-w", "-D"])
            .arg(self.dir.path().join("data"))
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw()))?;
        Ok(())
    }

    /// Kills the postmaster and its backends (SIGKILL, like a crash); [`Postgres::resume`]
    /// recovers from the write-ahead log.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill_tree();
        }
    }

    /// The connection URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = diesel::PgConnection::establish(&self.url("postgres"))?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn)?;
        Ok(self.url(name))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            // SIGINT is PostgreSQL's fast shutdown.
            p.stop_with(Signal::SIGINT);
        }
    }
}

use std::os::unix::process::CommandExt;

/// Where the workspace's binaries are: `MFT_BIN_DIR`, or the `target/<profile>` directory this
/// test binary was built into (`scripts/test` builds them first).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MFT_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The path of workspace binary `name`, failing clearly if it has not been built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// Whether `path` is currently a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&target))
}

/// A process serving a FUSE mount (fsd, sshfs): stopped, and the mount detached, when dropped.
pub struct FuseMount {
    pub process: Process,
    pub mount_point: PathBuf,
}

impl FuseMount {
    /// Waits up to 20 s for `process` to mount `mount_point`.
    pub fn wait(what: &str, process: Process, mount_point: PathBuf) -> Result<Self> {
        let mount = Self {
            process,
            mount_point,
        };
        wait_until(Duration::from_secs(20), &format!("{what} to mount"), || {
            is_mounted(&mount.mount_point)
        })?;
        Ok(mount)
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        self.process.stop();
        unmount_if_mounted(&self.mount_point);
    }
}

/// Mounts `server_dir` of `sshd` with sshfs (pinned host key, the client key, options `extra`
/// besides) at `mount_point` under `dir`, logging to `dir/<name>.log`: the benches' anchor.
pub fn mount_sshfs(
    sshd: &Sshd,
    server_dir: &Path,
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> Result<FuseMount> {
    let mount_point = dir.join(name);
    std::fs::create_dir_all(&mount_point)?;
    let known = dir.join("known_hosts");
    std::fs::write(&known, format!("{}\n", sshd.host_key_line))?;
    let mut cmd = Command::new("sshfs");
    cmd.arg("-f")
        .arg(format!("root@{}:{}", sshd.host, server_dir.display()))
        .arg(&mount_point)
        .arg("-o")
        .arg(format!(
            "port={},IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking=yes,BatchMode=yes",
            sshd.port,
            sshd.client_key.display(),
            known.display()
        ));
    for option in extra {
        cmd.args(["-o", option]);
    }
    let process = Process::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))?;
    FuseMount::wait("sshfs", process, mount_point)
}

/// Detaches a FUSE mount left at `path` (`fusermount3 -u -z`), if there is one: the last step
/// of a test's or bench's cleanup, after the filesystem's process was stopped.
pub fn unmount_if_mounted(path: &Path) {
    if is_mounted(path) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(path)
            .status();
    }
}

/// The lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

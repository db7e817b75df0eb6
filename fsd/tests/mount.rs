//! The real fsd binary against a throwaway OpenSSH server, through a real FUSE mount: every
//! operation, the pinned host key, 1,000 files open at once, a server killed mid-write and
//! brought back, a server whose SFTP processes are stopped, systemd notification, `fsd keygen`
//! and `fsd check`.
//!
//! Needs root and /dev/fuse. Every test unmounts what it mounted (lazily, if fsd failed to) and
//! stops what it started.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use fsd::status::FsdStatus;

use anyhow::{ensure, Context, Result};
use mft_tests::{is_mounted, wait_until, NodeToml, Process, Sshd};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::RngCore;

const NODE: &str = "node_1";

/// fsd serving `sshd`'s node directory at a fresh mount point.
struct Mount {
    fsd: Process,
    mount_point: PathBuf,
    /// The node directory as the server sees it.
    server_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// The node configuration for fsd against `sshd`, mounting at `dir/store`, with a short
/// keepalive; `configure` changes it before it is written.
fn write_config(dir: &Path, sshd: &Sshd, configure: impl FnOnce(&mut NodeToml)) -> Result<PathBuf> {
    let mut toml = NodeToml::new(sshd, NODE, dir)?;
    toml.mount_point = dir.join("store");
    toml.keepalive_secs = Some(2);
    configure(&mut toml);
    toml.write()
}

fn spawn_fsd(dir: &Path, config: &Path) -> Result<Process> {
    spawn_fsd_with(dir, config, |_| {})
}

fn spawn_fsd_with(dir: &Path, config: &Path, setup: impl FnOnce(&mut Command)) -> Result<Process> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsd"));
    cmd.arg("--config").arg(config);
    setup(&mut cmd);
    Process::spawn("fsd", &mut cmd, &dir.join("fsd.log"))
}

/// Runs `fsd <args> --config <config>` to completion; returns whether it succeeded and stdout.
fn fsd_command(config: &Path, args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_fsd"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

impl Mount {
    fn start(sshd: &Sshd) -> Result<Self> {
        Self::start_with(sshd, |_| {}, |_| {})
    }

    /// fsd with its configuration changed by `configure` and its command by `setup`.
    fn start_with(
        sshd: &Sshd,
        configure: impl FnOnce(&mut NodeToml),
        setup: impl FnOnce(&mut Command),
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mft-fsd-").tempdir()?;
        // Not created in advance: fsd makes its mount point.
        let mount_point = dir.path().join("store");
        let config = write_config(dir.path(), sshd, configure)?;
        let mut fsd = spawn_fsd_with(dir.path(), &config, setup)?;
        let server_dir = sshd.node_directory(NODE)?;
        let message = format!(
            "fsd mounted root@127.0.0.1:{} at {}",
            server_dir.display(),
            mount_point.display()
        );
        let mounted = wait_until(Duration::from_secs(15), "fsd to mount", || {
            fsd.log_text().contains(&message) || fsd.check_alive().is_err()
        });
        let mount = Self {
            server_dir,
            fsd,
            mount_point,
            _dir: dir,
        };
        mounted?;
        ensure!(
            is_mounted(&mount.mount_point) && mount.fsd.log_text().contains(&message),
            "fsd did not mount:\n{}",
            mount.fsd.log_text()
        );
        Ok(mount)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.mount_point.join(relative)
    }

    fn on_server(&self, relative: &str) -> PathBuf {
        self.server_dir.join(relative)
    }

    fn config(&self) -> PathBuf {
        self._dir.path().join("node.toml")
    }

    fn status(&self) -> Result<FsdStatus> {
        Ok(FsdStatus::load(&self._dir.path().join("fsd-status.json"))?)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.fsd.stop();
        mft_tests::unmount_if_mounted(&self.mount_point);
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rng().fill_bytes(&mut data);
    data
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    file.write_all(data)?;
    file.sync_all().context("fsync")?;
    Ok(())
}

fn names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

#[test]
fn files_written_through_the_mount_land_on_the_server() -> Result<()> {
    let sshd = Sshd::start()?;
    let mut mount = Mount::start(&sshd)?;

    // mkdir -p of the seed's layout.
    let hour = "files/im/20250101/13";
    fs::create_dir_all(mount.path(hour))?;
    ensure!(mount.on_server(hour).is_dir());
    let err = fs::create_dir(mount.path(hour)).unwrap_err();
    ensure!(
        err.kind() == ErrorKind::AlreadyExists,
        "mkdir of an existing directory: {err}"
    );

    // A 10 MiB file, fsynced, read back, and the same bytes on the server.
    let big = random_bytes(10 << 20);
    let big_path = format!("{hour}/big.bin");
    write_synced(&mount.path(&big_path), &big)?;
    ensure!(fs::metadata(mount.path(&big_path))?.len() == big.len() as u64);
    let mut back = Vec::new();
    File::open(mount.path(&big_path))?.read_to_end(&mut back)?;
    ensure!(back == big, "read back differs");
    ensure!(
        fs::read(mount.on_server(&big_path))? == big,
        "the server has other bytes"
    );

    // Temp name, fsync, rename over an existing file.
    let final_path = format!("{hour}/final");
    let temp_path = format!("{hour}/.final.tmp");
    write_synced(&mount.path(&final_path), b"old")?;
    write_synced(&mount.path(&temp_path), b"new content")?;
    fs::rename(mount.path(&temp_path), mount.path(&final_path))?;
    ensure!(fs::read(mount.path(&final_path))? == b"new content");
    ensure!(fs::read(mount.on_server(&final_path))? == b"new content");
    ensure!(!mount.on_server(&temp_path).exists());

    // O_EXCL on an existing name.
    let err = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mount.path(&final_path))
        .unwrap_err();
    ensure!(
        err.kind() == ErrorKind::AlreadyExists,
        "O_EXCL create: {err}"
    );

    // Truncating open (cp onto an existing file).
    fs::write(mount.path(&final_path), b"short")?;
    ensure!(fs::read(mount.on_server(&final_path))? == b"short");

    // isatty(3) on a file (Python's open() asks, for every file): not a terminal, and quietly.
    let file = File::open(mount.path(&final_path))?;
    // SAFETY: `file` is open for the duration of the call.
    let tty = unsafe { libc::isatty(file.as_raw_fd()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    ensure!(
        tty == 0 && errno == Some(libc::ENOTTY),
        "isatty: {tty}, {errno:?}"
    );
    drop(file);
    ensure!(
        !mount.fsd.log_text().contains("Not Implemented"),
        "fsd logged an unanswered request:\n{}",
        mount.fsd.log_text()
    );

    // Listing, stat.
    ensure!(
        names(&mount.path(hour))? == ["big.bin", "final"],
        "{:?}",
        names(&mount.path(hour))?
    );
    ensure!(names(&mount.path("files"))? == ["im"]);
    let meta = fs::metadata(mount.path(hour))?;
    ensure!(meta.is_dir());

    // rmdir of a non-empty directory, unlink, rmdir.
    let err = fs::remove_dir(mount.path(hour)).unwrap_err();
    ensure!(
        err.raw_os_error() == Some(libc::ENOTEMPTY),
        "rmdir non-empty: {err}"
    );
    fs::remove_file(mount.path(&big_path))?;
    fs::remove_file(mount.path(&final_path))?;
    ensure!(!mount.on_server(&big_path).exists());
    fs::remove_dir(mount.path(hour))?;
    ensure!(!mount.on_server(hour).exists());
    let err = fs::metadata(mount.path(hour)).unwrap_err();
    ensure!(
        err.kind() == ErrorKind::NotFound,
        "stat of a removed directory: {err}"
    );

    // df.
    let stats = nix::sys::statvfs::statvfs(&mount.mount_point)?;
    ensure!(
        stats.blocks() > 0 && stats.fragment_size() > 0,
        "statvfs: {stats:?}"
    );

    // SIGTERM: unmounted, exit 0.
    let status = mount
        .fsd
        .stop_with(Signal::SIGTERM)
        .context("fsd was running")?;
    ensure!(
        status.success(),
        "fsd exited with {status}:\n{}",
        mount.fsd.log_text()
    );
    ensure!(
        !is_mounted(&mount.mount_point),
        "still mounted after SIGTERM"
    );
    Ok(())
}

#[test]
fn a_thousand_files_open_at_once_all_work() -> Result<()> {
    // Many times what one SFTP session can hold (russh-sftp breaks on a session's 129th handle).
    const FILES: usize = 1_000;
    mft_tests::allow_open_files(FILES as u64 + 200)?;
    let sshd = Sshd::start()?;
    let mount = Mount::start(&sshd)?;
    fs::create_dir(mount.path("many"))?;
    let mut open: Vec<File> = (0..FILES)
        .map(|i| File::create(mount.path(&format!("many/{i}"))).context("create"))
        .collect::<Result<_>>()?;
    for (i, file) in open.iter_mut().enumerate() {
        file.write_all(format!("file {i}").as_bytes())?;
    }
    for file in &open {
        file.sync_all()?;
    }
    drop(open);
    for i in 0..FILES {
        let on_server = fs::read_to_string(mount.on_server(&format!("many/{i}")))?;
        ensure!(
            on_server == format!("file {i}"),
            "file {i} holds {on_server:?}"
        );
    }
    ensure!(names(&mount.path("many"))?.len() == FILES);
    Ok(())
}

#[test]
fn a_killed_fsd_leaves_no_mount_behind() -> Result<()> {
    let sshd = Sshd::start()?;
    let mut mount = Mount::start(&sshd)?;
    mount.fsd.stop_with(Signal::SIGKILL);
    wait_until(
        Duration::from_secs(10),
        "the auto-unmount after SIGKILL",
        || !is_mounted(&mount.mount_point),
    )
}

/// `ssh-keygen -lf`'s fingerprint of a public key file.
fn fingerprint(public_key: &Path) -> Result<String> {
    let out = mft_tests::run(Command::new("ssh-keygen").arg("-lf").arg(public_key))?;
    Ok(out
        .split_whitespace()
        .nth(1)
        .context("fingerprint field")?
        .to_owned())
}

#[test]
fn a_wrong_host_key_is_refused_and_nothing_is_mounted() -> Result<()> {
    let sshd = Sshd::start()?;
    let other = Sshd::start()?;
    // The other server's key, pinned for this server's address.
    let (_, other_key) = other.host_key_line.split_once(' ').context("key line")?;
    let pinned = format!("[127.0.0.1]:{} {other_key}", sshd.port);

    let dir = tempfile::tempdir()?;
    let mount_point = dir.path().join("store");
    let config = write_config(dir.path(), &sshd, |toml| toml.host_key = pinned)?;
    let mut fsd = spawn_fsd(dir.path(), &config)?;
    let status = fsd.wait_exit(Duration::from_secs(15))?;
    let log = fsd.log_text();
    ensure!(!status.success(), "fsd accepted a wrong host key:\n{log}");
    ensure!(
        !is_mounted(&mount_point),
        "mounted despite the wrong host key"
    );

    let expected = fingerprint(&other.dir.path().join("host_ed25519.pub"))?;
    let presented = fingerprint(&sshd.dir.path().join("host_ed25519.pub"))?;
    ensure!(expected.starts_with("SHA256:") && presented.starts_with("SHA256:"));
    ensure!(log.contains("host key mismatch"), "{log}");
    ensure!(log.contains(&format!("expected {expected}")), "{log}");
    ensure!(log.contains(&format!("presented {presented}")), "{log}");
    Ok(())
}

#[test]
fn links_modes_times_and_truncation_reach_the_server() -> Result<()> {
    let sshd = Sshd::start()?;
    let mount = Mount::start(&sshd)?;
    write_synced(&mount.path("a"), b"0123456789")?;

    // symlink and readlink, stored verbatim on the server.
    std::os::unix::fs::symlink("a", mount.path("link"))?;
    ensure!(fs::read_link(mount.path("link"))? == Path::new("a"));
    ensure!(fs::read_link(mount.on_server("link"))? == Path::new("a"));
    ensure!(fs::symlink_metadata(mount.path("link"))?
        .file_type()
        .is_symlink());
    ensure!(
        fs::read(mount.path("link"))? == b"0123456789",
        "followed by the kernel"
    );

    // A hard link is the same file on the server.
    fs::hard_link(mount.path("a"), mount.path("b"))?;
    let (a, b) = (
        fs::metadata(mount.on_server("a"))?,
        fs::metadata(mount.on_server("b"))?,
    );
    ensure!(a.ino() == b.ino() && a.nlink() == 2, "{a:?} {b:?}");
    let err = fs::hard_link(mount.path("a"), mount.path("b")).unwrap_err();
    ensure!(
        err.kind() == ErrorKind::AlreadyExists,
        "link onto an existing name: {err}"
    );

    // chmod, utimens, truncate.
    fs::set_permissions(mount.path("a"), fs::Permissions::from_mode(0o640))?;
    ensure!(fs::metadata(mount.on_server("a"))?.mode() & 0o7777 == 0o640);
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    File::options()
        .write(true)
        .open(mount.path("a"))?
        .set_modified(mtime)?;
    ensure!(fs::metadata(mount.on_server("a"))?.modified()? == mtime);
    File::options()
        .write(true)
        .open(mount.path("a"))?
        .set_len(3)?;
    ensure!(fs::read(mount.on_server("a"))? == b"012");
    // The other name's attributes are cached (by fsd and the kernel) for a few seconds.
    wait_until(
        Duration::from_secs(5),
        "the other name to see the truncation",
        || fs::metadata(mount.path("b")).is_ok_and(|m| m.len() == 3),
    )?;

    // mknod makes regular files; SFTP has no FIFOs (or sockets, or devices).
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o640);
    nix::sys::stat::mknod(
        &mount.path("empty"),
        nix::sys::stat::SFlag::S_IFREG,
        mode,
        0,
    )?;
    let made = fs::metadata(mount.on_server("empty"))?;
    ensure!(made.is_file() && made.len() == 0, "{made:?}");
    let err = nix::unistd::mkfifo(&mount.path("fifo"), mode).unwrap_err();
    ensure!(err == nix::errno::Errno::EPERM, "{err}");
    ensure!(
        !mount.fsd.log_text().contains("Not Implemented"),
        "{}",
        mount.fsd.log_text()
    );

    // Names SFTP cannot carry.
    let long = "x".repeat(256);
    let err = File::create(mount.path(&long)).unwrap_err();
    ensure!(err.raw_os_error() == Some(libc::ENAMETOOLONG), "{err}");
    let err = fs::remove_file(mount.path("absent")).unwrap_err();
    ensure!(err.kind() == ErrorKind::NotFound, "{err}");
    Ok(())
}

/// The kernel keeps a link's target (FUSE_CACHE_SYMLINKS): reading a real-name link for each
/// download asks the file server once, not every time.
#[test]
fn a_link_read_again_and_again_asks_the_server_once() -> Result<()> {
    let sshd = Sshd::start()?;
    let mount = Mount::start(&sshd)?;
    std::os::unix::fs::symlink("the real name.pdf", mount.path("link"))?;
    ensure!(fs::read_link(mount.path("link"))? == Path::new("the real name.pdf"));
    // The status file is written every 10 s: requests counted between two of its versions.
    let next_status = |after: &str| -> Result<FsdStatus> {
        let mut status = None;
        wait_until(Duration::from_secs(25), "the next status file", || {
            status = mount.status().ok().filter(|s| s.updated_at != after);
            status.is_some()
        })?;
        Ok(status.expect("found"))
    };
    let before = next_status("")?;
    let before = next_status(&before.updated_at)?;
    for _ in 0..200 {
        ensure!(fs::read_link(mount.path("link"))? == Path::new("the real name.pdf"));
    }
    let after = next_status(&before.updated_at)?;
    let asked = after.counters.ops - before.counters.ops;
    ensure!(asked < 100, "200 reads of one link sent {asked} requests");
    Ok(())
}

#[test]
fn a_killed_server_fails_the_writer_in_bounded_time_and_fsd_reconnects() -> Result<()> {
    let mut sshd = Sshd::start()?;
    let mount = Mount::start(&sshd)?;
    let path = mount.path("big.bin");
    let writer = std::thread::spawn(move || -> std::io::Result<Instant> {
        let mut file = File::create(&path)?;
        let chunk = vec![7u8; 1 << 20];
        // Bounded: 4 GiB at most, far more than is written before the kill.
        for _ in 0..4096 {
            if let Err(e) = file.write_all(&chunk) {
                eprintln!("writer: {e}");
                return Ok(Instant::now());
            }
        }
        file.sync_all().map(|()| Instant::now())
    });
    std::thread::sleep(Duration::from_millis(700));
    let killed = Instant::now();
    sshd.kill();
    wait_until(Duration::from_secs(25), "the writer to fail", || {
        writer.is_finished()
    })
    .with_context(|| mount.fsd.log_text())?;
    let failed_at = writer.join().expect("writer thread")?;
    ensure!(
        failed_at.duration_since(killed) < Duration::from_secs(20),
        "the writer failed only after {:?}",
        failed_at.duration_since(killed)
    );
    wait_until(Duration::from_secs(10), "the alarm", || {
        mount.fsd.log_text().contains("MftExtFsMountError raised")
    })?;

    // While the server is down, new operations fail at once instead of hanging.
    let started = Instant::now();
    let err = fs::write(mount.path("while-down"), b"x").unwrap_err();
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    ensure!(
        matches!(err.raw_os_error(), Some(libc::ENOTCONN | libc::EIO)),
        "{err}"
    );

    sshd.resume()?;
    wait_until(Duration::from_secs(30), "the reconnection", || {
        mount.fsd.log_text().contains("MftExtFsMountError cleared")
    })
    .with_context(|| mount.fsd.log_text())?;
    write_synced(&mount.path("after.txt"), b"back again")?;
    ensure!(fs::read(mount.on_server("after.txt"))? == b"back again");
    ensure!(
        fs::metadata(mount.path("big.bin"))?.is_file(),
        "names still resolve"
    );
    wait_until(
        Duration::from_secs(15),
        "the status file to show the reconnection",
        || {
            mount
                .status()
                .is_ok_and(|s| s.connected && s.counters.reconnects == 1 && s.alarms.is_empty())
        },
    )?;
    Ok(())
}

/// The processes serving fsd's SFTP sessions on `sshd`. With `Subsystem sftp internal-sftp`,
/// sshd forks one child per session from the connection's process (listener → connection →
/// sessions for root; a privileged monitor comes between for other users), so they are the
/// leaves of the listener's tree below its children. Found by parent PID in /proc, never by
/// name.
fn sftp_processes(sshd: &Sshd) -> Result<Vec<Pid>> {
    let listener: i32 = fs::read_to_string(sshd.dir.path().join("sshd.pid"))?
        .trim()
        .parse()?;
    let parents = mft_tests::parent_pids();
    let children = |of: i32| {
        parents
            .iter()
            .filter(move |(_, ppid)| *ppid == of)
            .map(|(pid, _)| *pid)
    };
    let mut below: Vec<i32> = children(listener).flat_map(children).collect();
    let mut sessions = Vec::new();
    while let Some(pid) = below.pop() {
        let before = below.len();
        below.extend(children(pid));
        if below.len() == before {
            sessions.push(Pid::from_raw(pid));
        }
    }
    ensure!(
        !sessions.is_empty(),
        "no SFTP session process under sshd {listener}"
    );
    Ok(sessions)
}

/// Stops the SFTP session processes of fsd's connection (SIGSTOP) while the SSH connection
/// stays up; continues them when dropped.
struct StoppedSessions(Vec<Pid>);

impl StoppedSessions {
    fn stop(sshd: &Sshd) -> Result<Self> {
        let stopped = Self(sftp_processes(sshd)?);
        for &pid in &stopped.0 {
            kill(pid, Signal::SIGSTOP)?;
        }
        Ok(stopped)
    }
}

impl Drop for StoppedSessions {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }
}

#[test]
fn a_stuck_sftp_session_fails_the_writer_within_the_deadline_and_fsd_reconnects() -> Result<()> {
    let sshd = Sshd::start()?;
    let mount = Mount::start(&sshd)?;
    let mut file = File::create(mount.path("stuck.bin"))?;
    file.write_all(b"before")?;
    file.sync_all()?;

    let stopped = StoppedSessions::stop(&sshd)?;
    let started = Instant::now();
    let err = file
        .write_all(&random_bytes(1 << 20))
        .and_then(|()| file.sync_all())
        .expect_err("a write and fsync on a stopped SFTP server succeeded");
    let took = started.elapsed();
    eprintln!(
        "write+fsync with {} SFTP processes stopped failed after {took:?}: {err}",
        stopped.0.len()
    );
    ensure!(err.raw_os_error() == Some(libc::ETIMEDOUT), "{err}");
    ensure!(
        took < Duration::from_secs(25),
        "the writer failed only after {took:?}"
    );
    drop(file);

    // fsd gave the stuck connection up and made a new one: the mount works while the old
    // processes are still stopped.
    let failed = Instant::now();
    wait_until(Duration::from_secs(15), "a write through the mount", || {
        write_synced(&mount.path("while-stopped.txt"), b"new session").is_ok()
    })
    .with_context(|| mount.fsd.log_text())?;
    eprintln!(
        "the mount worked again {:?} after the failure",
        failed.elapsed()
    );
    ensure!(fs::read(mount.on_server("while-stopped.txt"))? == b"new session");

    drop(stopped);
    write_synced(&mount.path("after.txt"), b"continued")?;
    ensure!(fs::read(mount.path("after.txt"))? == b"continued");
    ensure!(fs::read(mount.on_server("after.txt"))? == b"continued");
    wait_until(
        Duration::from_secs(15),
        "the status file to show the reconnection",
        || {
            mount
                .status()
                .is_ok_and(|s| s.connected && s.counters.reconnects == 1)
        },
    )?;
    Ok(())
}

#[test]
fn a_stuck_idle_sftp_session_is_found_by_the_probe_and_replaced() -> Result<()> {
    let sshd = Sshd::start()?;
    let mount = Mount::start(&sshd)?;
    let stopped = StoppedSessions::stop(&sshd)?;
    let started = Instant::now();
    // Nothing is asked through the mount: only fsd's own probe can find the stuck sessions.
    wait_until(
        Duration::from_secs(40),
        "fsd to replace the stuck connection",
        || {
            mount
                .fsd
                .log_text()
                .contains("reconnected to the file server")
        },
    )
    .with_context(|| mount.fsd.log_text())?;
    let took = started.elapsed();
    eprintln!("fsd replaced the connection {took:?} after its SFTP processes stopped");
    ensure!(took < Duration::from_secs(25), "found only after {took:?}");

    let started = Instant::now();
    write_synced(&mount.path("fresh.txt"), b"no wait")?;
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(stopped);
    ensure!(fs::read(mount.on_server("fresh.txt"))? == b"no wait");
    Ok(())
}

#[test]
fn systemd_hears_ready_then_stopping() -> Result<()> {
    let sshd = Sshd::start()?;
    let dir = tempfile::tempdir()?;
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut mount = Mount::start_with(
        &sshd,
        |_| {},
        |cmd| {
            cmd.env("NOTIFY_SOCKET", &socket_path);
        },
    )?;
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).context("READY=1")?;
    ensure!(
        &buf[..n] == b"READY=1",
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    ensure!(is_mounted(&mount.mount_point), "READY only once mounted");
    let status = mount.fsd.stop_with(Signal::SIGTERM).context("running")?;
    let n = socket.recv(&mut buf).context("STOPPING=1")?;
    ensure!(
        &buf[..n] == b"STOPPING=1",
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    ensure!(status.success() && !is_mounted(&mount.mount_point));
    Ok(())
}

#[test]
fn check_reports_the_seven_tests_and_the_status_file_carries_them() -> Result<()> {
    let sshd = Sshd::start()?;
    let mut mount = Mount::start(&sshd)?;
    let (ok, out, err) = fsd_command(&mount.config(), &["check"])?;
    ensure!(ok, "fsd check failed:\n{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    ensure!(
        names
            == [
                "PASS reachable",
                "PASS listening",
                "PASS host_key",
                "PASS node_key",
                "PASS directory",
                "PASS mounted",
                "PASS free_space"
            ],
        "{out}"
    );
    wait_until(Duration::from_secs(15), "the status file", || {
        mount.status().is_ok_and(|s| s.healthy() && s.connected)
    })?;
    let status = mount.status()?;
    ensure!(
        status.checks.len() == 7 && status.mount_point == mount.mount_point.display().to_string()
    );

    mount.fsd.stop();
    let (ok, out, _) = fsd_command(&mount.config(), &["check"])?;
    ensure!(!ok, "check passed without a mount:\n{out}");
    ensure!(out.contains("FAIL mounted: nothing is mounted at"), "{out}");
    ensure!(out.contains("PASS node_key"), "{out}");
    Ok(())
}

#[test]
fn a_server_under_the_free_space_threshold_raises_the_alarm_and_still_takes_files() -> Result<()> {
    let sshd = Sshd::start()?;
    // No disk in use is 100 % free: this threshold is always crossed.
    let mount = Mount::start_with(&sshd, |toml| toml.free_space_warn_percent = 100, |_| {})?;
    let (ok, out, err) = fsd_command(&mount.config(), &["check"])?;
    ensure!(!ok, "check passed under the threshold:\n{out}{err}");
    ensure!(
        out.contains("FAIL free_space: ") && out.contains("threshold 100%"),
        "{out}"
    );
    ensure!(
        out.lines().filter(|l| l.starts_with("PASS ")).count() == 6,
        "{out}"
    );
    wait_until(
        Duration::from_secs(15),
        "the alarm in the status file",
        || {
            mount
                .status()
                .is_ok_and(|s| s.alarms == ["MftExtFsFreeSpaceWarn"] && s.connected)
        },
    )?;
    let log = mount.fsd.log_text();
    ensure!(log.contains("MftExtFsFreeSpaceWarn raised: "), "{log}");
    // The alarm warns; it does not refuse files.
    write_synced(&mount.path("still.txt"), b"taken")?;
    ensure!(fs::read(mount.on_server("still.txt"))? == b"taken");
    Ok(())
}

#[test]
fn keygen_makes_rotates_and_guards_the_node_key() -> Result<()> {
    let sshd = Sshd::start()?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("keys/node_key");
    fs::create_dir(dir.path().join("keys"))?;
    let config = write_config(dir.path(), &sshd, |toml| toml.client_key = key.clone())?;

    let (ok, first, err) = fsd_command(&config, &["keygen"])?;
    ensure!(ok, "{first}{err}");
    let line = first
        .lines()
        .find(|l| l.starts_with("ssh-ed25519 "))
        .context("key line")?;
    ensure!(line.ends_with("mft-node-node_1"), "{first}");
    ensure!(fs::metadata(&key)?.mode() & 0o777 == 0o600);
    let (ok, _, err) = fsd_command(&config, &["keygen"])?;
    ensure!(!ok && err.contains("--rotate"), "{err}");
    let (ok, second, err) = fsd_command(&config, &["keygen", "--rotate"])?;
    ensure!(ok, "{err}");
    ensure!(
        second.contains(line),
        "the old line is printed for removal:\n{second}"
    );
    ensure!(key.with_extension("old").exists());

    // A key others can read is refused before connecting.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644))?;
    let mut fsd = spawn_fsd(dir.path(), &config)?;
    let status = fsd.wait_exit(Duration::from_secs(15))?;
    ensure!(!status.success());
    ensure!(
        fsd.log_text().contains("readable by group or others"),
        "{}",
        fsd.log_text()
    );
    Ok(())
}

//! The real fsd binary against a throwaway OpenSSH server, through a real FUSE mount.
//!
//! Needs root and /dev/fuse. Every test unmounts what it mounted (lazily, if fsd failed to) and
//! stops what it started.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mft_tests::{is_mounted, wait_until, Process, Sshd};
use nix::sys::signal::Signal;
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

/// The node configuration for fsd against `sshd`, pinning `host_key`.
fn write_config(dir: &Path, sshd: &Sshd, host_key: &str, mount_point: &Path) -> Result<PathBuf> {
    let text = format!(
        r#"
[node]
id = "node_1"
public_url = "http://127.0.0.1:7336"

[file_server]
name = "fs_1"
host = "127.0.0.1"
port = {port}
user = "root"
directory = "{directory}"
host_key = "{host_key}"
private_key = "{key}"
mount_point = "{mount_point}"

[http]
token_secrets = ["0123456789abcdef0123456789abcdef"]
"#,
        port = sshd.port,
        directory = sshd.node_directory(NODE)?.display(),
        key = sshd.client_key.display(),
        mount_point = mount_point.display(),
    );
    let path = dir.join("node.toml");
    fs::write(&path, text)?;
    Ok(path)
}

fn spawn_fsd(dir: &Path, config: &Path) -> Result<Process> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsd"));
    cmd.arg("--config").arg(config).env("RUST_LOG", "info");
    Process::spawn("fsd", &mut cmd, &dir.join("fsd.log"))
}

impl Mount {
    fn start(sshd: &Sshd) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mft-fsd-").tempdir()?;
        // Not created in advance: fsd makes its mount point.
        let mount_point = dir.path().join("store");
        let config = write_config(dir.path(), sshd, &sshd.host_key_line, &mount_point)?;
        let mut fsd = spawn_fsd(dir.path(), &config)?;
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
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.fsd.stop();
        if is_mounted(&self.mount_point) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mount_point)
                .status();
        }
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
fn hundreds_of_files_open_at_once_all_work() -> Result<()> {
    // More than one SFTP session can hold (russh-sftp breaks on a session's 129th handle).
    const FILES: usize = 300;
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
    let config = write_config(dir.path(), &sshd, &pinned, &mount_point)?;
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

//! The seed's seven file-server checks.
//!
//! `fsd check` runs every check against the configured server; the running fsd runs them every
//! 10 s and publishes them ([`crate::status`]). Each check is a plain function answering a
//! [`CheckResult`], so both use the same code and the same wording. "Reachable" is a TCP connect
//! to the SSH port within [`PROBE_TIMEOUT`], not an ICMP ping: ping needs privileges, is often
//! filtered, and says nothing about the port fsd needs.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use mft_journal::probe;

use crate::backend::{FileKind, FsStats, OpenOptions, SftpBackend, SftpError};
use crate::status::{Check, CheckResult};

/// How long a probe of the server or of the mount may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the file the directory check creates and removes in the node directory.
pub const PROBE_FILE: &str = ".mft-fsd-probe";

/// Reachable: a TCP connection to `host:port` within [`PROBE_TIMEOUT`] ([`probe::tcp_reachable`]).
pub fn reachable(host: &str, port: u16) -> CheckResult {
    CheckResult::of(
        Check::Reachable,
        probe::tcp_reachable(host, port, PROBE_TIMEOUT),
    )
}

/// Listening: the server sends an SSH identification line (`SSH-2.0-…`).
pub fn listening(host: &str, port: u16) -> CheckResult {
    let banner = probe::tcp_connect(host, port, PROBE_TIMEOUT).and_then(|(mut stream, _)| {
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        let mut buf = [0u8; 255];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned())
    });
    match banner {
        Ok(line) if line.starts_with("SSH-2.0-") => {
            CheckResult::pass(Check::Listening, format!("SSH server answers: {line}"))
        }
        Ok(line) => CheckResult::fail(
            Check::Listening,
            format!("{host}:{port} does not speak SSH 2 (it sent {line:?})"),
        ),
        Err(e) => CheckResult::fail(
            Check::Listening,
            format!("no SSH banner from {host}:{port}: {e}"),
        ),
    }
}

/// Host key and node key, from how far connecting got: `failure` is the check that failed and
/// why (`None`: the connection was made).
pub fn key_checks(failure: Option<&(Check, String)>) -> [CheckResult; 2] {
    let not_tested = |check, why: &str| CheckResult::fail(check, format!("not tested: {why}"));
    match failure {
        None | Some((Check::Directory | Check::Mounted | Check::FreeSpace, _)) => [
            CheckResult::pass(Check::HostKey, "the server presented the pinned host key"),
            CheckResult::pass(Check::NodeKey, "the server accepted the node key"),
        ],
        Some((Check::HostKey, why)) => [
            CheckResult::fail(Check::HostKey, why.clone()),
            not_tested(Check::NodeKey, "the host key check failed"),
        ],
        Some((Check::NodeKey, why)) => [
            CheckResult::pass(Check::HostKey, "the server presented the pinned host key"),
            CheckResult::fail(Check::NodeKey, why.clone()),
        ],
        Some((Check::Reachable | Check::Listening, why)) => [
            not_tested(Check::HostKey, why),
            not_tested(Check::NodeKey, why),
        ],
    }
}

/// Directory valid: `directory` is a directory in which the node can create and remove a file.
pub async fn directory<B: SftpBackend>(backend: &B, directory: &str) -> CheckResult {
    let probe = async {
        let attrs = backend.lstat(directory).await?;
        if attrs.kind != FileKind::Directory {
            return Ok(Some(format!("{directory} is not a directory")));
        }
        let path = format!("{}/{PROBE_FILE}", directory.trim_end_matches('/'));
        let options = OpenOptions {
            write: true,
            create: true,
            truncate: true,
            ..OpenOptions::default()
        };
        let handle = backend.open(&path, options, 0o600).await?;
        backend.close(&handle).await?;
        backend.remove(&path).await?;
        Ok::<_, SftpError>(None)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(None)) => CheckResult::pass(
            Check::Directory,
            format!("{directory} is a directory the node can create files in"),
        ),
        Ok(Ok(Some(problem))) => CheckResult::fail(Check::Directory, problem),
        Ok(Err(e)) => CheckResult::fail(Check::Directory, format!("{directory}: {e}")),
        Err(_) => CheckResult::fail(
            Check::Directory,
            format!("{directory}: no answer within {PROBE_TIMEOUT:?}"),
        ),
    }
}

/// The file system type of the mount at `mount_point` in a `/proc/self/mountinfo` text.
pub fn mount_type(mountinfo: &str, mount_point: &Path) -> Option<String> {
    let wanted = mount_point.to_string_lossy();
    mountinfo.lines().rev().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        let point = fields.split(' ').nth(4)?;
        // mountinfo escapes space, tab, newline and backslash in octal.
        let point = point
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\");
        (point == wanted).then(|| rest.split(' ').next().unwrap_or_default().to_owned())
    })
}

/// Whether `mount_point` is an fsd mount (`fuse.mft-fsd`) in this mount namespace; the
/// failed check if not.
fn fsd_mount_listed(mount_point: &Path) -> Result<(), CheckResult> {
    let shown = mount_point.display();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mount_type(&mountinfo, mount_point).as_deref() {
        Some("fuse.mft-fsd") => Ok(()),
        Some(other) => Err(CheckResult::fail(
            Check::Mounted,
            format!("{shown} is a {other} mount, not fsd's"),
        )),
        None => Err(CheckResult::fail(
            Check::Mounted,
            format!("nothing is mounted at {shown}"),
        )),
    }
}

/// Mounted, as the running fsd sees its own mount: listed, and its FUSE session still served.
/// (fsd never calls into its own mount: a thread of the server blocked on it would keep a
/// killed fsd from ever exiting.)
pub fn serving(mount_point: &Path, serving: bool) -> CheckResult {
    if let Err(failed) = fsd_mount_listed(mount_point) {
        return failed;
    }
    if serving {
        CheckResult::pass(
            Check::Mounted,
            format!("fsd serves its mount at {}", mount_point.display()),
        )
    } else {
        CheckResult::fail(Check::Mounted, "the kernel no longer talks to fsd")
    }
}

/// Mounted, from outside fsd: `mount_point` is an fsd mount (`fuse.mft-fsd`) and answers
/// `statvfs`.
pub fn mounted(mount_point: &Path) -> CheckResult {
    let shown = mount_point.display();
    if let Err(failed) = fsd_mount_listed(mount_point) {
        return failed;
    }
    // statvfs in a thread of its own: a wedged mount must not wedge the check.
    let (answer, answered) = mpsc::channel();
    let path = mount_point.to_owned();
    std::thread::spawn(move || {
        let _ = answer.send(statvfs(&path));
    });
    match answered.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(())) => CheckResult::pass(Check::Mounted, format!("fsd's mount at {shown} answers")),
        Ok(Err(e)) => CheckResult::fail(Check::Mounted, format!("statvfs of {shown} failed: {e}")),
        Err(_) => CheckResult::fail(
            Check::Mounted,
            format!("statvfs of {shown} did not answer within {PROBE_TIMEOUT:?}"),
        ),
    }
}

fn statvfs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `statvfs` is plain old data, so all zeroes is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a writable statvfs, both alive for
    // the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Free space: the share of the server's blocks available to the node, against the threshold.
pub fn free_space(stats: Result<FsStats, SftpError>, threshold_percent: u8) -> CheckResult {
    let stats = match stats {
        Ok(stats) if stats.blocks > 0 => stats,
        Ok(_) => return CheckResult::fail(Check::FreeSpace, "the server reports no blocks"),
        Err(e) => return CheckResult::fail(Check::FreeSpace, format!("statvfs@openssh.com: {e}")),
    };
    let percent = stats.blocks_avail as f64 * 100.0 / stats.blocks as f64;
    let gib = |blocks: u64| (blocks as f64 * stats.block_size as f64) / f64::from(1 << 30);
    let detail = format!(
        "{percent:.1}% available ({:.1} GiB of {:.1} GiB), threshold {threshold_percent}%",
        gib(stats.blocks_avail),
        gib(stats.blocks)
    );
    if percent >= f64::from(threshold_percent) {
        CheckResult::pass(Check::FreeSpace, detail)
    } else {
        CheckResult::fail(Check::FreeSpace, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn free_space_compares_available_blocks_with_the_threshold() {
        let stats = |avail| FsStats {
            block_size: 4096,
            blocks: 1000,
            blocks_avail: avail,
            ..FsStats::default()
        };
        let low = free_space(Ok(stats(50)), 10);
        assert!(
            !low.ok && low.detail.starts_with("5.0% available"),
            "{low:?}"
        );
        assert!(free_space(Ok(stats(100)), 10).ok);
        assert!(free_space(Ok(stats(0)), 0).ok, "threshold 0 never fails");
        assert!(!free_space(Err(SftpError::Timeout), 10).ok);
    }

    #[test]
    fn key_checks_follow_how_far_the_connection_got() {
        let [host, node] = key_checks(None);
        assert!(host.ok && node.ok);
        let [host, node] = key_checks(Some(&(Check::HostKey, "mismatch".into())));
        assert!(!host.ok && host.detail == "mismatch");
        assert!(!node.ok && node.detail.starts_with("not tested"));
        let [host, node] = key_checks(Some(&(Check::NodeKey, "refused".into())));
        assert!(host.ok && !node.ok);
        let [host, node] = key_checks(Some(&(Check::Reachable, "refused".into())));
        assert!(!host.ok && !node.ok);
    }

    #[test]
    fn mount_type_reads_mountinfo_with_escapes() {
        let info = "\
36 25 0:32 / /var/lib/mft/store rw,nosuid,nodev - fuse.mft-fsd mft-fsd rw,user_id=0\n\
37 25 0:33 / /tmp/with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_type(info, Path::new("/var/lib/mft/store")).as_deref(),
            Some("fuse.mft-fsd")
        );
        assert_eq!(
            mount_type(info, Path::new("/tmp/with space")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(mount_type(info, Path::new("/var/lib")), None);
        let unmounted = mounted(Path::new("/nonexistent/mft"));
        assert!(!unmounted.ok && unmounted.detail.contains("nothing is mounted"));
    }

    #[tokio::test]
    async fn the_directory_check_creates_and_removes_a_probe() {
        let backend = MemoryBackend::new("/srv/node_1");
        let ok = directory(&backend, "/srv/node_1").await;
        assert!(ok.ok, "{ok:?}");
        assert!(backend.file_content("/srv/node_1/.mft-fsd-probe").is_none());
        let missing = directory(&backend, "/srv/node_2").await;
        assert!(
            !missing.ok && missing.detail.starts_with("/srv/node_2: "),
            "{missing:?}"
        );
    }

    #[test]
    fn probes_of_a_closed_port_fail_with_the_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let unreachable = reachable("127.0.0.1", port);
        assert!(
            !unreachable.ok && unreachable.detail.contains("refused"),
            "{unreachable:?}"
        );
        assert!(!listening("127.0.0.1", port).ok);
    }
}

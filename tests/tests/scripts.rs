//! The operator scripts: `setup-file-server` prepares a file server that a stock OpenSSH with
//! `StrictModes yes` accepts, idempotently; `verify-host-key` pins only the server's own key.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mft_tests::{run, Sshd};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn output(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn verify_host_key_prints_the_line_to_pin_only_for_the_servers_own_key() {
    let sshd = Sshd::start().unwrap();
    let (out, text) = output(
        Command::new(script("verify-host-key"))
            .args(["127.0.0.1", "--port", &sshd.port.to_string(), "--key-file"])
            .arg(sshd.host_key_file()),
    );
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("host_key = \"{}\"", sshd.host_key_line)
    );

    let other = Sshd::start().unwrap();
    let (out, text) = output(
        Command::new(script("verify-host-key"))
            .args(["127.0.0.1", "--port", &sshd.port.to_string(), "--key-file"])
            .arg(other.host_key_file()),
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("host key MISMATCH") && text.matches("SHA256:").count() == 2,
        "{text}"
    );
    assert!(out.stdout.is_empty(), "nothing to pin on a mismatch");
}

/// A throwaway system user, removed with its home directory on drop.
struct TempUser(String);

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg("-r").arg(&self.0).output();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn setup_file_server_is_idempotent_and_satisfies_strict_sshd() {
    let user = TempUser(format!("mftt{}", std::process::id()));
    let sshd = Sshd::start_for_user(&user.0).unwrap();
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let top = base.path().join("opt/mftFileStore");
    let key = sshd.client_key.with_extension("pub");
    let setup = || {
        run(Command::new(script("setup-file-server"))
            .args(["--user", &user.0, "--top"])
            .arg(&top)
            .args(["--node", "node_1", "--node", "node_2", "--key-file"])
            .arg(&key))
        .unwrap()
    };
    setup();
    setup(); // a second run changes nothing

    let home = PathBuf::from(format!("/home/{}", user.0));
    let auth = home.join(".ssh/authorized_keys");
    let authorized = std::fs::read_to_string(&auth).unwrap();
    assert_eq!(
        authorized.lines().count(),
        1,
        "the key once, not twice: {authorized}"
    );
    assert_eq!(
        authorized.trim(),
        std::fs::read_to_string(&key).unwrap().trim()
    );
    assert_eq!(
        (mode(&home), mode(&home.join(".ssh")), mode(&auth)),
        (0o700, 0o700, 0o600)
    );
    let uid = std::fs::metadata(&home).unwrap().uid();
    for dir in [top.clone(), top.join("node_1"), top.join("node_2")] {
        assert_eq!(mode(&dir), 0o700, "{dir:?}");
        assert_eq!(
            std::fs::metadata(&dir).unwrap().uid(),
            uid,
            "{dir:?} owned by the transfer user"
        );
    }

    // The node key logs in as the transfer user and can write into its node directory.
    let listing = sshd
        .sftp(
            &user.0,
            &format!("mkdir {0}/node_1/files\nls -la {0}/node_1\n", top.display()),
        )
        .unwrap();
    assert!(listing.contains("files"), "{listing}");
    assert_eq!(
        std::fs::metadata(top.join("node_1/files")).unwrap().uid(),
        uid
    );
}

#[test]
fn setup_file_server_refuses_bad_input_before_changing_anything() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("store");
    for (args, expected) in [
        (vec!["--node", "node 1"], "--node"),
        (
            vec!["--node", "node_1", "--key", "not a key"],
            "not an OpenSSH public key",
        ),
        (vec!["--node", "node_1", "--user", "Bad User"], "--user"),
        (vec![], "at least one node"),
    ] {
        let (out, text) = output(
            Command::new(script("setup-file-server"))
                .arg("--top")
                .arg(&top)
                .args(&args),
        );
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(text.contains(expected), "{args:?}: {text}");
        assert!(!top.exists(), "{args:?} created {top:?}");
    }
}

/// A node of `scripts/run-node` in a directory of its own, on free ports, with the binaries the
/// tests use; stopped with `scripts/run-node stop` when dropped.
struct RunNode {
    dir: tempfile::TempDir,
    http_port: u16,
}

impl RunNode {
    fn command(dir: &Path, http_port: u16) -> Command {
        let mut command = Command::new(script("run-node"));
        command
            .env("MFT_RUN_DIR", dir)
            .env("MFT_NODE_BIN", mft_tests::bin_dir())
            .env("MFT_HTTP_PORT", http_port.to_string())
            .env("MFT_SSH_PORT", mft_tests::free_port().to_string());
        command
    }

    fn start() -> RunNode {
        let node = RunNode {
            dir: tempfile::tempdir().unwrap(),
            http_port: mft_tests::free_port(),
        };
        let (out, text) = output(&mut Self::command(node.dir.path(), node.http_port));
        assert!(out.status.success(), "run-node failed: {text}");
        node
    }

    fn stop(&self) -> String {
        let (out, text) = output(Self::command(self.dir.path(), self.http_port).arg("stop"));
        assert!(out.status.success(), "run-node stop failed: {text}");
        text
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.path(&format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for RunNode {
    fn drop(&mut self) {
        let _ = Self::command(self.dir.path(), self.http_port)
            .arg("stop")
            .output();
    }
}

/// Two nodes of `scripts/run-node` on one machine each keep their own fsd status file, and
/// `run-node stop` clears the mount a killed fsd left (which `mountpoint -q` does not see).
#[test]
fn run_node_twice_keeps_each_status_file_and_stop_clears_a_killed_fsds_mount() {
    let (first, second) = (RunNode::start(), RunNode::start());
    for node in [&first, &second] {
        let status = node.path("fsd-status.json");
        mft_tests::wait_until(
            std::time::Duration::from_secs(15),
            "fsd's status file",
            || status.exists(),
        )
        .unwrap();
        let text = std::fs::read_to_string(&status).unwrap();
        let written: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            written["mount_point"],
            node.path("mnt").display().to_string(),
            "{text}"
        );
        let config = std::fs::read_to_string(node.path("node.toml")).unwrap();
        assert!(
            config.contains(&format!("status_file = \"{}\"", status.display())),
            "{config}"
        );
    }

    let fsd = nix::unistd::Pid::from_raw(first.pid("fsd"));
    mft_tests::kill_tree(fsd.as_raw());
    // Gone, or a zombie that the init process has not reaped yet.
    mft_tests::wait_until(std::time::Duration::from_secs(10), "fsd gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{fsd}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
    .unwrap();
    assert!(
        mft_tests::is_mounted(&first.path("mnt")),
        "the killed fsd left its mount"
    );
    let said = first.stop();
    assert!(
        !mft_tests::is_mounted(&first.path("mnt")),
        "run-node stop left the stale mount: {said}"
    );

    let healthz =
        mft_tests::curl(&[format!("http://127.0.0.1:{}/healthz", second.http_port)]).unwrap();
    assert_eq!(healthz.status, 200, "the other node still serves");
    second.stop();
    assert!(!mft_tests::is_mounted(&second.path("mnt")));
}

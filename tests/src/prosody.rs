//! A throwaway Prosody (Debian's package) with this repository's `mod_mft` on 127.0.0.1, and
//! the XMPP clients of `tests/xmpp/clients.py` (slixmpp, in a virtualenv under `target/`).
//!
//! The server's configuration, data and log live in a temporary directory; it serves c2s on a
//! free port (no TLS, no s2s), the VirtualHost `localhost` with users alice, bob, carol and dave
//! (password `pw`), an ad hoc MUC `conference.localhost` and a MUC whose rooms are persistent,
//! `rooms.localhost`. With [`Options::web_root`] it also serves HTTP on a free port: XMPP over
//! WebSocket (`mod_websocket`, `/xmpp-websocket`) and that directory's files (`mod_http_files`,
//! `/`), so a web client's page and its XMPP connection share one origin. It is stopped by PID
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, run, wait_until, Process};

/// The users every test server has.
pub const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// What a server serves besides c2s, and whom its users know.
#[derive(Debug, Default)]
pub struct Options {
    /// Serve HTTP on a free port of 127.0.0.1: WebSocket at `/xmpp-websocket`, this
    /// directory's files at `/`.
    pub web_root: Option<PathBuf>,
    /// Pairs of users who are each other's contacts (roster subscription `both`).
    pub contacts: Vec<(&'static str, &'static str)>,
}

/// A running Prosody.
pub struct Prosody {
    pub dir: tempfile::TempDir,
    pub c2s_port: u16,
    /// The HTTP port, with [`Options::web_root`].
    pub http_port: Option<u16>,
    config: PathBuf,
    process: Option<Process>,
}

/// The repository's root (this crate lives in `tests/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

impl Prosody {
    /// Starts Prosody with `mod_mft` pointed at the node `base_url` with `secret`.
    pub fn start(base_url: &str, secret: &str) -> Result<Self> {
        Self::start_with(base_url, secret, Options::default())
    }

    /// [`Prosody::start`], serving and knowing what `options` say.
    pub fn start_with(base_url: &str, secret: &str, options: Options) -> Result<Self> {
        ensure_installed()?;
        let dir = tempfile::tempdir()?;
        let c2s_port = free_port();
        let config = dir.path().join("prosody.cfg.lua");
        let d = dir.path().display();
        let modules = repo_root().join("xmpp/prosody");
        let http_port = options.web_root.as_ref().map(|_| free_port());
        let http = match (&options.web_root, http_port) {
            (Some(root), Some(port)) => format!(
                r#"http_ports = {{ {port} }}
http_interfaces = {{ "127.0.0.1" }}
http_default_host = "localhost"
http_paths = {{ files = "/", websocket = "/xmpp-websocket" }}
http_files_dir = "{root}"
consider_websocket_secure = true
"#,
                root = root.display()
            ),
            _ => "http_ports = { }\n".to_owned(),
        };
        let web_modules = if http_port.is_some() {
            r#", "websocket", "http_files""#
        } else {
            ""
        };
        std::fs::write(
            &config,
            format!(
                r#"-- Written by the test harness (tests/src/prosody.rs).
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
plugin_paths = {{ "{modules}" }}
log = {{ debug = "{d}/prosody.log" }}
daemonize = false
run_as_root = true
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
{http}https_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "disco", "offline", "ping", "posix"{web_modules} }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
storage = "internal"

VirtualHost "localhost"
modules_enabled = {{ "mft" }}
mft_base_url = "{base_url}"
mft_secret = "{secret}"
mft_retry_max_delay = 1

Component "conference.localhost" "muc"
muc_room_locking = false

Component "rooms.localhost" "muc"
muc_room_locking = false
muc_room_default_persistent = true
"#,
                modules = modules.display(),
            ),
        )?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        for user in USERS {
            run(Command::new("prosodyctl")
                .arg("--config")
                .arg(&config)
                .args(["register", user, "localhost", "pw"]))
            .with_context(|| format!("registering {user}"))?;
        }
        write_rosters(&dir.path().join("data/localhost/roster"), &options.contacts)?;
        let mut prosody = Self {
            c2s_port,
            http_port,
            config,
            process: None,
            dir,
        };
        prosody.start_process()?;
        Ok(prosody)
    }

    /// `http://127.0.0.1:<http port>/<path>`, with [`Options::web_root`].
    pub fn http_url(&self, path: &str) -> Option<String> {
        self.http_port
            .map(|port| format!("http://127.0.0.1:{port}/{path}"))
    }

    fn start_process(&mut self) -> Result<()> {
        let ports: Vec<u16> = std::iter::once(self.c2s_port)
            .chain(self.http_port)
            .collect();
        self.process = Some(spawn(self.dir.path(), &self.config, &ports)?);
        Ok(())
    }

    /// Prosody's own log, for failure messages.
    pub fn log(&self) -> String {
        log(self.dir.path())
    }

    /// Runs `tests/xmpp/clients.py` with `args` against this server; returns its JSON answer.
    pub fn clients(&self, args: &[&str]) -> Result<serde_json::Value> {
        let python = venv()?;
        let script = repo_root().join("tests/xmpp/clients.py");
        let port = self.c2s_port.to_string();
        let out = run(Command::new(python)
            .arg(script)
            .args(["--port", &port])
            .args(args))
        .with_context(|| {
            format!(
                "clients.py {args:?}; prosody's log:\n{}",
                tail(&self.log(), 60)
            )
        })?;
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("clients.py printed no JSON: {out}"))
    }
}

/// Fails unless Debian's prosody package is installed.
pub(crate) fn ensure_installed() -> Result<()> {
    if !Path::new("/usr/bin/prosody").exists() {
        bail!("prosody is not installed: run scripts/test (it installs Debian's prosody package)");
    }
    Ok(())
}

/// Runs Prosody with `config` in the foreground (its output in `dir/prosody.stdout`) and waits
/// until it serves each of `ports` on 127.0.0.1; fails with its log (`dir/prosody.log`).
pub(crate) fn spawn(dir: &Path, config: &Path, ports: &[u16]) -> Result<Process> {
    let mut process = Process::spawn(
        "prosody",
        Command::new("prosody")
            .arg("--config")
            .arg(config)
            .arg("-F"),
        &dir.join("prosody.stdout"),
    )?;
    wait_until(Duration::from_secs(15), "prosody's ports", || {
        process.check_alive().is_ok()
            && ports
                .iter()
                .all(|&port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    })
    .with_context(|| log(dir))?;
    Ok(process)
}

/// Prosody's own log in `dir` (the configuration's `log` file).
pub(crate) fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prosody.log")).unwrap_or_default()
}

/// Writes each user's roster (storage `internal`: one Lua table per user) with `contacts`.
fn write_rosters(dir: &Path, contacts: &[(&str, &str)]) -> Result<()> {
    let mut rosters = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for &(a, b) in contacts {
        rosters.entry(a).or_default().push(b);
        rosters.entry(b).or_default().push(a);
    }
    if !rosters.is_empty() {
        std::fs::create_dir_all(dir)?;
    }
    for (user, contacts) in rosters {
        let items: String = contacts
            .iter()
            .map(|c| format!("[\"{c}@localhost\"] = {{ subscription = \"both\", name = \"{c}\", groups = {{}} }};\n"))
            .collect();
        std::fs::write(
            dir.join(format!("{user}.dat")),
            format!("return {{\n[false] = {{ version = 1 }};\n{items}}};\n"),
        )?;
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The Python of the clients' virtualenv, `target/xmpp-venv` (made, with slixmpp and aiohttp
/// from PyPI, if missing). Tests running at once make it one at a time: each holds an exclusive
/// lock on `target/xmpp-venv.lock` while it looks and builds, and a half-made one (no `.ready`)
/// is made again from scratch.
fn venv() -> Result<PathBuf> {
    let dir = repo_root().join("target/xmpp-venv");
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    std::fs::create_dir_all(repo_root().join("target"))?;
    let lock = std::fs::File::create(repo_root().join("target/xmpp-venv.lock"))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow::anyhow!("locking target/xmpp-venv.lock: {errno}"))?;
    if !ready.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        run(Command::new(dir.join("bin/pip")).args([
            "install",
            "-q",
            "slixmpp==1.17.0",
            "aiohttp==3.14.5",
        ]))
        .context("installing slixmpp and aiohttp from PyPI")?;
        std::fs::write(&ready, "")?;
    }
    Ok(python)
}

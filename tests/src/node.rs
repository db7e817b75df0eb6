//! A whole node for end-to-end tests: logd, fsd and httpd started from their binaries with one
//! generated `node.toml`, against a [`crate::Sshd`] file server and SQLite or a
//! [`crate::Postgres`] database, driven with `curl` as a chat client would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mft_config::fixture::NodeConfigText;
use nix::sys::signal::Signal;

use crate::{bin, free_port, is_mounted, run, wait_until, Process, Sshd};

/// Where the node keeps `aft_log`.
#[derive(Debug, Clone)]
pub enum Database {
    /// A file in the node's temporary directory.
    Sqlite,
    /// A database URL on a running server.
    Postgres(String),
}

/// A test node's `node.toml`: loopback everywhere, the [`Sshd`] as file server, every local
/// file (logd's socket, fsd's status file, a SQLite database) under `dir`. [`NodeToml::new`]
/// fills in defaults; change the public fields before [`NodeToml::write`].
#[derive(Debug, Clone)]
pub struct NodeToml {
    pub id: String,
    pub dir: PathBuf,
    pub ssh_port: u16,
    /// The node's directory on the file server.
    pub server_dir: PathBuf,
    pub client_key: PathBuf,
    pub host_key: String,
    pub mount_point: PathBuf,
    pub http_port: u16,
    pub database: Database,
    /// `fsd.keepalive_secs`, when not the default.
    pub keepalive_secs: Option<u64>,
    /// `fsd.free_space_warn_percent`. 1 by default, not the node's 10: how full the test
    /// machine's own disk is must not decide whether a test sees `MftExtFsFreeSpaceWarn`.
    pub free_space_warn_percent: u8,
    /// More lines for `[http]`, e.g. `"request_timeout_secs = 2\n"`.
    pub http_extra: String,
}

impl NodeToml {
    /// Defaults for node `id` on `sshd` (whose node directory it creates): the server's real
    /// host key, mount point `dir/mnt`, HTTP port 7336, SQLite in `dir`.
    pub fn new(sshd: &Sshd, id: &str, dir: &Path) -> Result<Self> {
        Ok(Self {
            id: id.to_owned(),
            dir: dir.to_owned(),
            ssh_port: sshd.port,
            server_dir: sshd.node_directory(id)?,
            client_key: sshd.client_key.clone(),
            host_key: sshd.host_key_line.clone(),
            mount_point: dir.join("mnt"),
            http_port: 7336,
            database: Database::Sqlite,
            keepalive_secs: None,
            free_space_warn_percent: 1,
            http_extra: String::new(),
        })
    }

    /// The database URL the configuration names.
    pub fn database_url(&self) -> String {
        match &self.database {
            Database::Sqlite => self
                .dir
                .join("aft_log.sqlite3")
                .to_string_lossy()
                .into_owned(),
            Database::Postgres(url) => url.clone(),
        }
    }

    /// The configuration text.
    pub fn text(&self) -> String {
        let kind = match self.database {
            Database::Sqlite => "sqlite",
            Database::Postgres(_) => "postgres",
        };
        let path = |p: &Path| p.display().to_string();
        let mut text = NodeConfigText::new()
            .set("node", "id", self.id.as_str())
            .set(
                "node",
                "public_url",
                format!("http://127.0.0.1:{}", self.http_port),
            )
            .set("file_server", "name", "test_fileserver")
            .set("file_server", "host", "127.0.0.1")
            .set("file_server", "port", u32::from(self.ssh_port))
            .set("file_server", "user", "root")
            .set("file_server", "directory", path(&self.server_dir))
            .set("file_server", "host_key", self.host_key.as_str())
            .set("file_server", "private_key", path(&self.client_key))
            .set("file_server", "mount_point", path(&self.mount_point))
            .set("database", "kind", kind)
            .set("database", "url", self.database_url())
            .set("logd", "socket", path(&self.dir.join("logd.sock")))
            .set("http", "listen", format!("127.0.0.1:{}", self.http_port))
            .set(
                "http",
                "token_secrets",
                vec!["test-secret-0123456789abcdef0123456789"],
            )
            .lines("http", &self.http_extra)
            .set(
                "fsd",
                "status_file",
                path(&self.dir.join("fsd-status.json")),
            )
            .set(
                "fsd",
                "free_space_warn_percent",
                u32::from(self.free_space_warn_percent),
            );
        if let Some(secs) = self.keepalive_secs {
            text = text.set(
                "fsd",
                "keepalive_secs",
                i64::try_from(secs).expect("a TOML integer"),
            );
        }
        text.text()
    }

    /// Writes `dir/node.toml` and returns its path.
    pub fn write(&self) -> Result<PathBuf> {
        let path = self.dir.join("node.toml");
        std::fs::write(&path, self.text())?;
        Ok(path)
    }
}

/// A running node; its daemons stop (and fsd unmounts) when it is dropped.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub mount: PathBuf,
    /// The node's directory on the file server, as the server's own filesystem sees it.
    pub server_dir: PathBuf,
    pub http_port: u16,
    pub database_url: String,
    // Dropped in reverse order of start: httpd, then fsd (unmounts), then logd.
    httpd: Option<Process>,
    fsd: Option<Process>,
    logd: Option<Process>,
}

/// What `curl` got back.
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Node {
    /// Starts a node named `id` whose file-server directory is `id` under the sshd's root.
    pub fn start(sshd: &Sshd, id: &str, database: Database) -> Result<Self> {
        Self::start_with(sshd, id, database, &sshd.host_key_line)
    }

    /// Like [`Node::start`], pinning `host_key` instead of the server's real key.
    pub fn start_with(sshd: &Sshd, id: &str, database: Database, host_key: &str) -> Result<Self> {
        Self::start_configured(sshd, id, database, |toml| {
            toml.host_key = host_key.to_owned()
        })
    }

    /// Like [`Node::start`], with `configure` changing the configuration before it is written.
    pub fn start_configured(
        sshd: &Sshd,
        id: &str,
        database: Database,
        configure: impl FnOnce(&mut NodeToml),
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mft-node-").tempdir()?;
        let mut toml = NodeToml::new(sshd, id, dir.path())?;
        toml.http_port = free_port();
        toml.database = database;
        configure(&mut toml);
        let config = toml.write()?;
        let (mount, server_dir, http_port, database_url) = (
            toml.mount_point.clone(),
            toml.server_dir.clone(),
            toml.http_port,
            toml.database_url(),
        );
        let mut node = Self {
            config,
            mount,
            server_dir,
            http_port,
            database_url,
            httpd: None,
            fsd: None,
            logd: None,
            dir,
        };
        node.start_logd()?;
        node.start_fsd()?;
        node.start_httpd()?;
        Ok(node)
    }

    fn spawn(&self, name: &str) -> Result<Process> {
        let mut cmd = Command::new(bin(name)?);
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info");
        Process::spawn(name, &mut cmd, &self.dir.path().join(format!("{name}.log")))
    }

    /// Waits for `ready`, failing with the process's log if it exits or times out.
    fn await_ready(
        process: &mut Process,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let mut exited = None;
        let waited = wait_until(Duration::from_secs(30), what, || {
            if let Err(e) = process.check_alive() {
                exited = Some(e);
                return true;
            }
            ready()
        });
        match (exited, waited) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e.context(process.log_text())),
            (None, Ok(())) => Ok(()),
        }
    }

    pub fn start_logd(&mut self) -> Result<()> {
        let mut logd = self.spawn("logd")?;
        let socket = self.dir.path().join("logd.sock");
        Self::await_ready(&mut logd, "logd's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })?;
        self.logd = Some(logd);
        self.await_admission()
    }

    pub fn start_fsd(&mut self) -> Result<()> {
        let mut fsd = self.spawn("fsd")?;
        let mount = self.mount.clone();
        Self::await_ready(&mut fsd, "fsd's mount", || is_mounted(&mount))?;
        self.fsd = Some(fsd);
        self.await_admission()
    }

    /// When httpd runs, waits until its status report says uploads are admitted: httpd refuses
    /// them while its latest report saw the file server or logd down (it looks by itself every
    /// 2 s, 0.25 s while refusing, and at every `/status`, which this asks for).
    pub fn await_admission(&self) -> Result<()> {
        if self.httpd.is_none() {
            return Ok(());
        }
        let url = self.url("/status");
        let mut last = String::new();
        wait_until(
            Duration::from_secs(30),
            "httpd to see the file server and logd up",
            || {
                let Ok(response) = curl(std::slice::from_ref(&url)) else {
                    return false;
                };
                last = response.text();
                let Ok(report) = serde_json::from_str::<serde_json::Value>(&last) else {
                    return false;
                };
                // What the upload path checks: the admission's verdict, which a report started
                // after this one may have set (and the next look corrects within 0.25 s).
                report["uploads"]["admitted"] == true
            },
        )
        .map_err(|e| e.context(last))
    }

    pub fn start_httpd(&mut self) -> Result<()> {
        let mut httpd = self.spawn("httpd")?;
        let port = self.http_port;
        Self::await_ready(&mut httpd, "httpd's port", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        self.httpd = Some(httpd);
        Ok(())
    }

    /// SIGKILLs fsd with its descendants (its `fusermount3` auto-unmount helper), as systemd
    /// kills a unit's processes once its main process is killed: the mount is left stale.
    pub fn kill_fsd_tree(&mut self) {
        if let Some(mut fsd) = self.fsd.take() {
            fsd.kill_tree();
        }
    }

    /// httpd's process id, while it runs.
    pub fn httpd_pid(&self) -> Option<u32> {
        self.httpd.as_ref().and_then(Process::pid)
    }

    /// Stops logd (SIGTERM) and returns its process for inspection.
    pub fn stop_logd(&mut self) {
        self.logd.take();
    }

    /// SIGKILLs logd, like a crash: its socket file is left behind.
    pub fn kill_logd(&mut self) {
        if let Some(mut logd) = self.logd.take() {
            logd.stop_with(Signal::SIGKILL);
        }
    }

    /// SIGKILLs httpd, like a crash: its transfers in flight break off.
    pub fn kill_httpd(&mut self) {
        if let Some(mut httpd) = self.httpd.take() {
            httpd.stop_with(Signal::SIGKILL);
        }
    }

    /// Stops httpd (by its PID); [`Node::start_httpd`] starts it again.
    pub fn stop_httpd(&mut self) {
        self.httpd.take();
    }

    /// The combined logs of the node's daemons, for failure messages.
    pub fn logs(&self) -> String {
        ["logd", "fsd", "httpd"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                format!("--- {n}.log\n{text}")
            })
            .collect()
    }

    /// Mints a token with `httpd token ...` (`args` after the kind, e.g. `["--as", "bob@x"]`).
    pub fn token(&self, kind: &str, args: &[&str]) -> Result<String> {
        let out = run(Command::new(bin("httpd")?)
            .args(["token", kind, "--config"])
            .arg(&self.config)
            .args(args))?;
        Ok(out.trim().to_owned())
    }

    pub fn upload_token(&self, from: &str, to: &str, chat_type: &str) -> Result<String> {
        self.token(
            "upload",
            &["--from", from, "--to", to, "--chat-type", chat_type],
        )
    }

    pub fn download_token(&self, who: &str) -> Result<String> {
        self.token("download", &["--as", who])
    }

    /// The base URL of the node's HTTP interface.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// `POST /files?name=<name>` with `body` as the raw request body.
    pub fn upload(&self, token: &str, name: &str, body: &Path) -> Result<Response> {
        let encoded: String = url_encode(name);
        curl(&[
            "-X".into(),
            "POST".into(),
            "-H".into(),
            format!("Authorization: Bearer {token}"),
            "-H".into(),
            "Content-Type: application/octet-stream".into(),
            "--data-binary".into(),
            format!("@{}", body.display()),
            self.url(&format!("/files?name={encoded}")),
        ])
    }

    /// `GET url` with a bearer token.
    pub fn download(&self, token: &str, url: &str) -> Result<Response> {
        curl(&[
            "-H".into(),
            format!("Authorization: Bearer {token}"),
            url.into(),
        ])
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs curl with `args`, returning status, headers and body.
pub fn curl(args: &[String]) -> Result<Response> {
    let dir = tempfile::tempdir()?;
    let (headers, body) = (dir.path().join("headers"), dir.path().join("body"));
    let status = run(Command::new("curl")
        .args(["-sS", "--max-time", "120", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args))?;
    let status: u16 = status
        .trim()
        .parse()
        .with_context(|| format!("curl status {status:?}"))?;
    if status == 0 {
        bail!("curl got no HTTP response");
    }
    Ok(Response {
        status,
        headers: std::fs::read_to_string(&headers)?,
        body: std::fs::read(&body).unwrap_or_default(),
    })
}

/// One `aft_log` row as the XMPP and browser tests check it.
#[derive(diesel::QueryableByName, Debug, Clone, PartialEq)]
pub struct AuditRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub method: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub jid: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub to_jid: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub chat_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub file_path: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub file_size: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub bytes_transferred: i64,
}

impl AuditRow {
    /// `(method, jid, to_jid, chat_type)`: who, to whom, in which chat.
    pub fn trail(&self) -> (String, String, String, String) {
        (
            self.method.clone(),
            self.jid.clone(),
            self.to_jid.clone(),
            self.chat_type.clone(),
        )
    }
}

impl Node {
    /// The rows of the file uploaded as `real_name`, in order (a node on SQLite).
    pub fn rows_of_upload(&self, real_name: &str) -> Vec<AuditRow> {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = diesel::SqliteConnection::establish(&self.database_url)
            .expect("the node's SQLite database");
        diesel::sql_query(
            "SELECT method, jid, to_jid, chat_type, file_path, file_size, bytes_transferred FROM aft_log \
             WHERE real_filename = ? ORDER BY aft_index",
        )
        .bind::<diesel::sql_types::Text, _>(real_name)
        .load(&mut conn)
        .expect("aft_log rows")
    }
}

//! The node configuration: one TOML file (`/etc/mft/node.toml` by default) that fsd, logd and
//! httpd all read with `--config PATH`.
//!
//! [`NodeConfig::load`] parses and validates the whole file once; the daemons then pass the typed
//! sections to their library code, which never reads files or the environment itself. Unknown
//! keys are errors, and every validation error names the key, says what is wrong and shows a
//! right value (see `README.md` for every key and its default).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixture;

/// The largest file a node accepts when `http.max_file_size` is 0: 4 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 << 30;

/// The directory of the real-name links, beside `files/` in the node's directory: httpd keeps
/// each stored file's real name as the link `.names/<file_name>` → `<real name>`, and
/// `logd purge` deletes the link with its file.
pub const NAMES_DIR: &str = ".names";

/// The directory of the stored files in the node's directory:
/// `files/<chat_type>/<YYYYMMDD>/<HH>[.<n>]/<file_name>`.
pub const FILES_DIR: &str = "files";

/// The directory of httpd's upload slot records, beside `files/`; `logd reconcile` reads them.
pub const SLOTS_DIR: &str = ".slots";

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the node configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, a missing key, an unknown key or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A value of the right type that is not acceptable.
    #[error("{0}")]
    Invalid(Invalid),
    /// Either of the above, in a named file.
    #[error("{}: {message}", path.display())]
    InFile { path: PathBuf, message: String },
}

/// One unacceptable value: which key, what is wrong, and an example of a right value.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub problem: String,
    pub example: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; for example: {}",
            self.key, self.problem, self.example
        )
    }
}

fn invalid(key: &'static str, problem: impl Into<String>, example: &'static str) -> ConfigError {
    ConfigError::Invalid(Invalid {
        key,
        problem: problem.into(),
        example,
    })
}

/// The whole node configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: Node,
    pub file_server: FileServer,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub logd: Logd,
    pub http: Http,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub fsd: Fsd,
}

/// `[fsd]`: how fsd watches the file server and where it publishes what it sees.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fsd {
    /// `MftExtFsFreeSpaceWarn` is raised while less than this percentage of the file server's
    /// space is available (0 disables the alarm).
    #[serde(default = "default_free_space_warn_percent")]
    pub free_space_warn_percent: u8,
    /// The JSON file where fsd publishes its checks, alarms and counters (httpd reads it).
    #[serde(default = "default_fsd_status_file")]
    pub status_file: PathBuf,
    /// Seconds between SSH keepalives; a silent server is declared dead after three intervals.
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
}

impl Default for Fsd {
    fn default() -> Self {
        Self {
            free_space_warn_percent: default_free_space_warn_percent(),
            status_file: default_fsd_status_file(),
            keepalive_secs: default_keepalive_secs(),
        }
    }
}

/// `[log]`: how much the daemons log (to journald under systemd, else to stderr).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// `[node]`: who this node is and whether it carries managed transfers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Names the node in download URIs; 1–128 letters, digits, `-`, `_`.
    pub id: String,
    /// The base of every URI the node hands out, e.g. `https://mft1.example.com`.
    pub public_url: String,
    #[serde(default)]
    pub transfer_mode: TransferMode,
}

/// The seed's file transfer types. Only the managed ones let httpd store and log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferMode {
    Disabled,
    PeerToPeer,
    #[default]
    Managed,
    ManagedAndPeerToPeer,
}

impl TransferMode {
    /// Whether this node stores and logs transfers.
    pub fn is_managed(self) -> bool {
        matches!(self, Self::Managed | Self::ManagedAndPeerToPeer)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::PeerToPeer => "peer-to-peer",
            Self::Managed => "managed",
            Self::ManagedAndPeerToPeer => "managed-and-peer-to-peer",
        }
    }
}

/// `[file_server]`: the external SFTP server and where fsd mounts this node's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// A descriptive name: 1–128 letters, digits, `-`, `_` (the seed's rule).
    pub name: String,
    /// Host name or IP address; it is also what `aft_log.file_server` records.
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// This node's directory on the file server, absolute, e.g. `/opt/mftFileStore/node_1`.
    pub directory: String,
    /// The pinned host key: the `ssh-keyscan` line, beginning with `host` (or `[host]:port`).
    pub host_key: String,
    /// The node's private key (OpenSSH format), readable by the owner only.
    #[serde(default = "default_private_key")]
    pub private_key: PathBuf,
    /// Where fsd mounts `directory` and where httpd reads and writes files.
    #[serde(default = "default_mount_point")]
    pub mount_point: PathBuf,
}

impl FileServer {
    /// The absolute path on the file server of a path relative to the node's directory.
    pub fn server_path(&self, relative: &str) -> String {
        format!(
            "{}/{}",
            self.directory.trim_end_matches('/'),
            relative.trim_start_matches('/')
        )
    }
}

/// `[database]`: where logd keeps `aft_log`, and how it batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    #[serde(default)]
    pub kind: DatabaseKind,
    /// A file path for SQLite; a `postgres://` URL for PostgreSQL.
    #[serde(default = "default_database_url")]
    pub url: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// The most events one transaction commits.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long the writer waits for more events before it commits a batch.
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            kind: DatabaseKind::default(),
            url: default_database_url(),
            pool_size: default_pool_size(),
            batch_max_events: default_batch_max_events(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    #[default]
    Sqlite,
    Postgres,
}

/// `[logd]`: the socket httpd reports transfers on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logd {
    #[serde(default = "default_logd_socket")]
    pub socket: PathBuf,
}

impl Default for Logd {
    fn default() -> Self {
        Self {
            socket: default_logd_socket(),
        }
    }
}

/// `[http]`: httpd's listener, limits and credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bytes; 0 means 4 GiB. Use [`Http::max_file_size_bytes`].
    #[serde(default)]
    pub max_file_size: u64,
    /// HS256 secrets shared with the IM server; any of them verifies a token, the first signs.
    pub token_secrets: Vec<String>,
    /// PEM certificate chain; with `tls_key`, httpd serves HTTPS (both or neither).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_certificate`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Whether a native download URI works without a download token (a capability URL).
    #[serde(default)]
    pub anonymous_downloads: bool,
    /// Secrets shared with the XMPP server for XEP-0363 external upload slots (Prosody
    /// `mod_http_upload_external`, ejabberd `external_secret`, Prosody `mod_http_file_share`
    /// JWTs); any of them verifies a slot, so a secret rotates without downtime. Empty: `PUT
    /// /upload/…` is refused.
    #[serde(default)]
    pub slot_secrets: Vec<String>,
    /// The XMPP domain of ejabberd's uploaders when its `mod_http_upload` has
    /// `jid_in_url: node`: a slot's first segment is then the uploader's node, recorded as
    /// `<node>@<this domain>`. Unset: ejabberd slots name no uploader.
    #[serde(default)]
    pub ejabberd_jid_domain: Option<String>,
    /// Uploads and downloads in progress at most; beyond, 503 with `Retry-After`.
    #[serde(default = "default_max_concurrent_transfers")]
    pub max_concurrent_transfers: usize,
    /// Seconds allowed to receive a request's headers, for an upload body to stall (no data),
    /// and for a client to leave sent data unacknowledged (a download it stopped reading).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// The web origins (`https://host[:port]`) whose pages may fill upload slots and download
    /// files (CORS on `/upload/…` and `/files/…`); `"*"` allows any origin, an empty list none.
    /// The default is `["*"]`: those routes take only explicit credentials (a bearer token or
    /// the slot URL itself), never cookies, so a page can use only what it already holds.
    #[serde(default = "default_cors_allowed_origins")]
    pub cors_allowed_origins: Vec<String>,
}

impl Http {
    /// The effective largest upload, in bytes.
    pub fn max_file_size_bytes(&self) -> u64 {
        match self.max_file_size {
            0 => DEFAULT_MAX_FILE_SIZE,
            n => n,
        }
    }

    /// The certificate and key files when both are set (HTTPS), `None` for plain HTTP.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        self.tls_certificate.as_deref().zip(self.tls_key.as_deref())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.token_secrets.is_empty() {
            return Err(invalid(
                "http.token_secrets",
                "must list at least one secret",
                "token_secrets = [\"<at least 32 random characters>\"]",
            ));
        }
        if let Some(short) = self.token_secrets.iter().find(|s| s.len() < 32) {
            return Err(invalid(
                "http.token_secrets",
                format!(
                    "each secret must be at least 32 characters, one has {}",
                    short.len()
                ),
                "token_secrets = [\"<output of: openssl rand -hex 32>\"]",
            ));
        }
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "http.tls_certificate",
                "tls_certificate and tls_key go together: set both (HTTPS) or neither (plain HTTP)",
                "tls_certificate = \"/etc/mft/tls/cert.pem\"  and  tls_key = \"/etc/mft/tls/key.pem\"",
            ));
        }
        for (key, path) in [
            ("http.tls_certificate", &self.tls_certificate),
            ("http.tls_key", &self.tls_key),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(invalid(
                    key,
                    format!("must be an absolute path, got {path:?}"),
                    "tls_key = \"/etc/mft/tls/key.pem\"",
                ));
            }
        }
        if let Some(short) = self.slot_secrets.iter().find(|s| s.len() < 16) {
            return Err(invalid(
                "http.slot_secrets",
                format!(
                    "each secret must be at least 16 characters, one has {}",
                    short.len()
                ),
                "slot_secrets = [\"<output of: openssl rand -hex 32>\"]",
            ));
        }
        if let Some(domain) = &self.ejabberd_jid_domain {
            if domain.is_empty()
                || domain.contains(['@', '/', ' '])
                || domain.chars().any(char::is_control)
            {
                return Err(invalid(
                    "http.ejabberd_jid_domain",
                    format!("must be an XMPP domain such as example.com, got {domain:?}"),
                    "ejabberd_jid_domain = \"example.com\"",
                ));
            }
        }
        if !(1..=100_000).contains(&self.max_concurrent_transfers) {
            return Err(invalid(
                "http.max_concurrent_transfers",
                format!("must be 1 to 100000, got {}", self.max_concurrent_transfers),
                "max_concurrent_transfers = 64",
            ));
        }
        if let Some(bad) = self.cors_allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(invalid(
                "http.cors_allowed_origins",
                format!("each entry must be \"*\" or an origin such as https://chat.example.com (scheme, host, optional port; no path), got {bad:?}"),
                "cors_allowed_origins = [\"https://chat.example.com\"]",
            ));
        }
        if !(1..=3_600).contains(&self.request_timeout_secs) {
            return Err(invalid(
                "http.request_timeout_secs",
                format!(
                    "must be 1 to 3600 seconds, got {}",
                    self.request_timeout_secs
                ),
                "request_timeout_secs = 60",
            ));
        }
        Ok(())
    }
}

fn default_cors_allowed_origins() -> Vec<String> {
    vec!["*".into()]
}
/// Room for the bursts of open-loop arrivals at several hundred requests a second (the seed-day
/// bench at ×25 had 64 in progress within 0.1 s); each costs an open file on the mount and at
/// most two of httpd's gather buffers (`store::WRITE_SIZE`, 256 KiB).
fn default_max_concurrent_transfers() -> usize {
    256
}
fn default_request_timeout_secs() -> u64 {
    60
}

/// `*`, or a web origin: `http://` or `https://`, then a host (and port) without path, query,
/// user or whitespace.
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    host.is_some_and(|host| {
        !host.is_empty()
            && !host.contains(['/', '?', '#', '@', '*'])
            && !host.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn default_ssh_port() -> u16 {
    22
}
fn default_private_key() -> PathBuf {
    PathBuf::from("/etc/mft/node_key")
}
fn default_mount_point() -> PathBuf {
    PathBuf::from("/var/lib/mft/store")
}
fn default_database_url() -> String {
    "/var/lib/mft/aft_log.sqlite3".into()
}
fn default_pool_size() -> u32 {
    4
}
fn default_batch_max_events() -> usize {
    256
}
fn default_batch_max_wait_ms() -> u64 {
    2
}
fn default_logd_socket() -> PathBuf {
    PathBuf::from("/run/mft/logd.sock")
}
fn default_free_space_warn_percent() -> u8 {
    10
}
fn default_fsd_status_file() -> PathBuf {
    PathBuf::from("/run/mft/fsd-status.json")
}
fn default_keepalive_secs() -> u64 {
    5
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7336))
}

impl NodeConfig {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| ConfigError::InFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config: NodeConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax(e.to_string().trim_end().to_owned()))?;
        config.validate()?;
        config.node.public_url = config.node.public_url.trim_end_matches('/').to_owned();
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_name("node.id", &self.node.id, "id = \"node_1\"")?;
        let url = &self.node.public_url;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.contains(['?', '#', ' '])
        {
            return Err(invalid(
                "node.public_url",
                format!("must be an http:// or https:// base URL without query or fragment, got {url:?}"),
                "public_url = \"https://mft1.example.com\"",
            ));
        }
        self.validate_file_server()?;
        self.validate_database()?;
        self.validate_fsd()?;
        self.http.validate()
    }

    fn validate_file_server(&self) -> Result<(), ConfigError> {
        let fs = &self.file_server;
        check_name("file_server.name", &fs.name, "name = \"fileserver_1\"")?;
        if fs.host.is_empty()
            || fs
                .host
                .contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(invalid(
                "file_server.host",
                format!("must be a host name or IP address, got {:?}", fs.host),
                "host = \"files.example.com\"",
            ));
        }
        if fs.user.is_empty()
            || fs
                .user
                .contains(|c: char| c.is_whitespace() || c == '@' || c == ':')
        {
            return Err(invalid(
                "file_server.user",
                format!("must be a user name on the file server, got {:?}", fs.user),
                "user = \"mftuser\"",
            ));
        }
        if !fs.directory.starts_with('/') || fs.directory.split('/').any(|c| c == "..") {
            return Err(invalid(
                "file_server.directory",
                format!(
                    "must be an absolute path on the file server without '..', got {:?}",
                    fs.directory
                ),
                "directory = \"/opt/mftFileStore/node_1\"",
            ));
        }
        check_host_key(fs)?;
        for (key, path, example) in [
            (
                "file_server.private_key",
                &fs.private_key,
                "private_key = \"/etc/mft/node_key\"",
            ),
            (
                "file_server.mount_point",
                &fs.mount_point,
                "mount_point = \"/var/lib/mft/store\"",
            ),
        ] {
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("must be an absolute path, got {path:?}"),
                    example,
                ));
            }
        }
        Ok(())
    }

    fn validate_fsd(&self) -> Result<(), ConfigError> {
        let fsd = &self.fsd;
        if fsd.free_space_warn_percent > 100 {
            return Err(invalid(
                "fsd.free_space_warn_percent",
                format!("must be 0 to 100, got {}", fsd.free_space_warn_percent),
                "free_space_warn_percent = 10",
            ));
        }
        if !fsd.status_file.is_absolute() {
            return Err(invalid(
                "fsd.status_file",
                format!("must be an absolute path, got {:?}", fsd.status_file),
                "status_file = \"/run/mft/fsd-status.json\"",
            ));
        }
        // Detection takes three intervals and must stay within 15 s.
        if !(1..=5).contains(&fsd.keepalive_secs) {
            return Err(invalid(
                "fsd.keepalive_secs",
                format!(
                    "must be 1 to 5 seconds (a dead server is detected after 3 intervals), got {}",
                    fsd.keepalive_secs
                ),
                "keepalive_secs = 5",
            ));
        }
        Ok(())
    }

    fn validate_database(&self) -> Result<(), ConfigError> {
        let db = &self.database;
        match db.kind {
            DatabaseKind::Postgres
                if !(db.url.starts_with("postgres://") || db.url.starts_with("postgresql://")) =>
            {
                return Err(invalid(
                    "database.url",
                    format!(
                        "with kind = \"postgres\" must be a postgres:// URL, got {:?}",
                        db.url
                    ),
                    "url = \"postgres://mft:secret@db.example.com/mft_node_1\"",
                ));
            }
            DatabaseKind::Sqlite if !db.url.starts_with('/') => {
                return Err(invalid(
                    "database.url",
                    format!(
                        "with kind = \"sqlite\" must be an absolute file path, got {:?}",
                        db.url
                    ),
                    "url = \"/var/lib/mft/aft_log.sqlite3\"",
                ));
            }
            _ => {}
        }
        if !(1..=64).contains(&db.pool_size) {
            return Err(invalid(
                "database.pool_size",
                format!("must be 1 to 64, got {}", db.pool_size),
                "pool_size = 4",
            ));
        }
        if !(1..=10_000).contains(&db.batch_max_events) {
            return Err(invalid(
                "database.batch_max_events",
                format!("must be 1 to 10000, got {}", db.batch_max_events),
                "batch_max_events = 256",
            ));
        }
        if db.batch_max_wait_ms > 1_000 {
            return Err(invalid(
                "database.batch_max_wait_ms",
                format!(
                    "must be 0 to 1000 milliseconds, got {}",
                    db.batch_max_wait_ms
                ),
                "batch_max_wait_ms = 2",
            ));
        }
        Ok(())
    }
}

/// The seed's rule for names: 1–128 characters, letters, digits, `-` and `_`.
fn check_name(key: &'static str, value: &str, example: &'static str) -> Result<(), ConfigError> {
    let ok = (1..=128).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be 1 to 128 letters, digits, '-' or '_', got {value:?}"),
            example,
        ))
    }
}

/// The pinned key is an `ssh-keyscan` line: `<host> <type> <base64>`, and (the seed's rule) it
/// must begin with the configured host; `ssh-keyscan -p PORT` writes `[host]:port` instead.
fn check_host_key(fs: &FileServer) -> Result<(), ConfigError> {
    const EXAMPLE: &str = "host_key = \"files.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA...\" (the output of: ssh-keyscan -t ed25519 files.example.com)";
    let mut fields = fs.host_key.split_whitespace();
    let (Some(host), Some(kind), Some(_key)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(invalid(
            "file_server.host_key",
            "must be a whole ssh-keyscan line: host, key type and key",
            EXAMPLE,
        ));
    };
    let bracketed = format!("[{}]:{}", fs.host, fs.port);
    if host != fs.host && host != bracketed {
        return Err(invalid(
            "file_server.host_key",
            format!(
                "must begin with the file server host {:?} (file_server.host), but begins with {host:?}",
                if fs.port == 22 { fs.host.clone() } else { bracketed }
            ),
            EXAMPLE,
        ));
    }
    if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-")) {
        return Err(invalid(
            "file_server.host_key",
            format!("{kind:?} is not an SSH public key type"),
            EXAMPLE,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture on a file server at 127.0.0.1:2222, with a public URL that needs normalizing.
    fn good() -> String {
        fixture::NodeConfigText::new()
            .set("node", "public_url", "http://127.0.0.1:7336/")
            .set("file_server", "host", "127.0.0.1")
            .set("file_server", "port", 2222)
            .set(
                "file_server",
                "host_key",
                "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",
            )
            .text()
    }

    fn error_of(text: &str) -> String {
        NodeConfig::parse(text)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = NodeConfig::parse(&good()).unwrap();
        assert_eq!(c.node.public_url, "http://127.0.0.1:7336");
        assert_eq!(c.node.transfer_mode, TransferMode::Managed);
        assert_eq!(c.database.kind, DatabaseKind::Sqlite);
        assert_eq!(c.http.listen, "127.0.0.1:7336".parse().unwrap());
        assert_eq!(c.http.max_file_size_bytes(), 4 * 1024 * 1024 * 1024);
        assert_eq!(
            c.file_server.mount_point,
            PathBuf::from("/var/lib/mft/store")
        );
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(
            c.file_server.server_path("files/im/x"),
            "/srv/mft/node_1/files/im/x"
        );
    }

    #[test]
    fn host_key_must_begin_with_the_host() {
        let text = good().replace("[127.0.0.1]:2222 ssh-ed25519", "otherhost ssh-ed25519");
        let e = error_of(&text);
        assert!(
            e.starts_with(
                "file_server.host_key: must begin with the file server host \"[127.0.0.1]:2222\""
            ),
            "{e}"
        );
        assert!(e.contains("for example: host_key = "), "{e}");
    }

    #[test]
    fn host_key_on_port_22_is_the_bare_host() {
        let text = good()
            .replace("port = 2222\n", "")
            .replace("[127.0.0.1]:2222 ssh-ed25519", "127.0.0.1 ssh-ed25519");
        assert_eq!(NodeConfig::parse(&text).unwrap().file_server.port, 22);
    }

    #[test]
    fn host_key_needs_type_and_key() {
        let e = error_of(&good().replace(
            "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",
            "127.0.0.1",
        ));
        assert!(e.contains("whole ssh-keyscan line"), "{e}");
    }

    #[test]
    fn file_server_name_follows_the_seed() {
        let e = error_of(&good().replace("name = \"fs_1\"", "name = \"fs 1\""));
        assert_eq!(
            e,
            "file_server.name: must be 1 to 128 letters, digits, '-' or '_', got \"fs 1\"; for example: name = \"fileserver_1\""
        );
        let long = "a".repeat(129);
        assert!(error_of(&good().replace("fs_1", &long)).starts_with("file_server.name:"));
        assert!(NodeConfig::parse(&good().replace("fs_1", &"a".repeat(128))).is_ok());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = error_of(&good().replace("user = \"mft\"", "user = \"mft\"\npasword = \"x\""));
        assert!(e.contains("unknown field `pasword`"), "{e}");
        let e = error_of(&format!("{}\n[extra]\nx = 1\n", good()));
        assert!(e.contains("unknown field `extra`"), "{e}");
    }

    #[test]
    fn max_file_size_zero_means_four_gib() {
        let c = NodeConfig::parse(&good().replace("[http]", "[http]\nmax_file_size = 0")).unwrap();
        assert_eq!(c.http.max_file_size_bytes(), DEFAULT_MAX_FILE_SIZE);
        let c =
            NodeConfig::parse(&good().replace("[http]", "[http]\nmax_file_size = 1000")).unwrap();
        assert_eq!(c.http.max_file_size_bytes(), 1000);
    }

    #[test]
    fn http_section_has_defaults_and_limits() {
        let c = NodeConfig::parse(&good()).unwrap();
        assert_eq!(
            (c.http.max_concurrent_transfers, c.http.request_timeout_secs),
            (256, 60)
        );
        assert!(!c.http.anonymous_downloads);
        assert_eq!((c.http.tls(), c.http.slot_secrets.len()), (None, 0));
        assert_eq!(c.http.cors_allowed_origins, ["*"]);
        let c = NodeConfig::parse(&good().replace("[http]", "[http]\ncors_allowed_origins = [\"https://chat.example.com\", \"http://127.0.0.1:5280\"]")).unwrap();
        assert_eq!(
            c.http.cors_allowed_origins,
            ["https://chat.example.com", "http://127.0.0.1:5280"]
        );
        let c = NodeConfig::parse(&good().replace(
            "[http]",
            "[http]\ntls_certificate = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\nslot_secrets = [\"0123456789abcdef\", \"fedcba9876543210\"]",
        ))
        .unwrap();
        assert_eq!(
            c.http.tls(),
            Some((Path::new("/etc/c.pem"), Path::new("/etc/k.pem")))
        );
        assert_eq!(
            c.http.slot_secrets,
            ["0123456789abcdef", "fedcba9876543210"]
        );
        for (text, key) in [
            ("tls_certificate = \"/etc/c.pem\"", "http.tls_certificate:"),
            ("tls_key = \"/etc/k.pem\"", "http.tls_certificate:"),
            (
                "tls_certificate = \"c.pem\"\ntls_key = \"/k.pem\"",
                "http.tls_certificate:",
            ),
            (
                "slot_secrets = [\"0123456789abcdef\", \"short\"]",
                "http.slot_secrets:",
            ),
            (
                "max_concurrent_transfers = 0",
                "http.max_concurrent_transfers:",
            ),
            (
                "ejabberd_jid_domain = \"alice@example.com\"",
                "http.ejabberd_jid_domain:",
            ),
            ("request_timeout_secs = 0", "http.request_timeout_secs:"),
            (
                "cors_allowed_origins = [\"https://chat.example.com/\"]",
                "http.cors_allowed_origins:",
            ),
            (
                "cors_allowed_origins = [\"chat.example.com\"]",
                "http.cors_allowed_origins:",
            ),
            (
                "cors_allowed_origins = [\"https://*.example.com\"]",
                "http.cors_allowed_origins:",
            ),
        ] {
            let e = error_of(&good().replace("[http]", &format!("[http]\n{text}")));
            assert!(e.starts_with(key), "expected {key} in: {e}");
        }
        let e = error_of(&good().replace("[http]", "[http]\nslot_secret = \"0123456789abcdef\""));
        assert!(
            e.contains("unknown field `slot_secret`") && e.contains("`slot_secrets`"),
            "the old key points to the new one: {e}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                good().replace("/srv/mft/node_1", "srv/mft"),
                "file_server.directory:",
            ),
            (
                good().replace("http://127.0.0.1:7336/", "ftp://x"),
                "node.public_url:",
            ),
            (
                good().replace("0123456789abcdef0123456789abcdef", "short"),
                "http.token_secrets:",
            ),
            (
                good().replace("node_1\"\npublic", "node/1\"\npublic"),
                "node.id:",
            ),
            (
                format!(
                    "{}\n[database]\nkind = \"postgres\"\nurl = \"/tmp/x\"\n",
                    good()
                ),
                "database.url:",
            ),
            (
                format!("{}\n[database]\npool_size = 0\n", good()),
                "database.pool_size:",
            ),
        ];
        for (text, key) in cases {
            let e = error_of(&text);
            assert!(e.starts_with(key), "expected {key} in: {e}");
            assert!(e.contains("; for example: "), "{e}");
        }
    }

    #[test]
    fn wrong_types_and_missing_keys_are_reported() {
        let e = error_of(&good().replace("port = 2222", "port = \"ssh\""));
        assert!(e.contains("port"), "{e}");
        let e = error_of(&good().replace("user = \"mft\"\n", ""));
        assert!(e.contains("missing field `user`"), "{e}");
        let e = error_of(&format!("{}\n[node.x", good()));
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn log_level_is_one_of_five() {
        let c = NodeConfig::parse(&format!("{}\n[log]\nlevel = \"debug\"\n", good())).unwrap();
        assert_eq!(c.log.level, LogLevel::Debug);
        let e = error_of(&format!("{}\n[log]\nlevel = \"verbose\"\n", good()));
        assert!(e.contains("unknown variant `verbose`"), "{e}");
    }

    #[test]
    fn transfer_modes_parse() {
        let c = NodeConfig::parse(&good().replace(
            "[file_server]",
            "transfer_mode = \"peer-to-peer\"\n[file_server]",
        ))
        .unwrap();
        assert_eq!(c.node.transfer_mode, TransferMode::PeerToPeer);
        assert!(!c.node.transfer_mode.is_managed());
    }

    #[test]
    fn fsd_section_has_defaults_and_limits() {
        let c = NodeConfig::parse(&good()).unwrap();
        assert_eq!(c.fsd.free_space_warn_percent, 10);
        assert_eq!(c.fsd.status_file, PathBuf::from("/run/mft/fsd-status.json"));
        assert_eq!(c.fsd.keepalive_secs, 5);
        let c = NodeConfig::parse(&format!(
            "{}\n[fsd]\nfree_space_warn_percent = 0\nkeepalive_secs = 1\n",
            good()
        ))
        .unwrap();
        assert_eq!(
            (c.fsd.free_space_warn_percent, c.fsd.keepalive_secs),
            (0, 1)
        );
        for (text, key) in [
            (
                "free_space_warn_percent = 101",
                "fsd.free_space_warn_percent:",
            ),
            ("status_file = \"fsd.json\"", "fsd.status_file:"),
            ("keepalive_secs = 0", "fsd.keepalive_secs:"),
            ("keepalive_secs = 6", "fsd.keepalive_secs:"),
        ] {
            let e = error_of(&format!("{}\n[fsd]\n{text}\n", good()));
            assert!(e.starts_with(key), "expected {key} in: {e}");
        }
        let e = error_of(&format!("{}\n[fsd]\nkeepalive = 5\n", good()));
        assert!(e.contains("unknown field `keepalive`"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, good().replace("fs_1", "fs!")).unwrap();
        let e = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: file_server.name:", path.display())),
            "{e}"
        );
        let e = NodeConfig::load(&dir.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the node configuration"), "{e}");
    }
}

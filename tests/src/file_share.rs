//! Prosody 0.12's own `mod_http_file_share` (Debian's package) as a benchmark anchor: a
//! throwaway Prosody serving only that module's HTTP endpoint on a free port of 127.0.0.1, storing
//! uploads on local disk under its temporary directory (the module's default: no remote storage,
//! no audit), logging at `info` as Debian's configuration does, stopped by PID when dropped.
//!
//! No XMPP client is needed: the configuration sets `http_file_share_secret`, so
//! [`FileShare::slot`] signs a slot's token itself, with the claims `mod_http_file_share.lua`
//! signs and checks (HS256: `sub`, `iat`, `exp` = `iat` + 300 s, `slot`, `expires`, `filename`,
//! `filesize`, `filetype`). The slot is then `PUT` once to its URL, `/file_share/<slot>/<name>`,
//! with `Authorization: Bearer <token>` and a `Content-Length` equal to `filesize` (201; a second
//! `PUT` of the slot is 409), and the same URL serves the file without credentials. Such a slot is
//! not in the module's slot store (only XMPP slot requests write there): `GET` finds it in the
//! module's in-memory cache of the 1,024 most recently uploaded or served slots, and is 404 once it
//! has left it.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::node::url_encode;
use crate::prosody::{ensure_installed, log, spawn};
use crate::{free_port, Process};

/// The VirtualHost the module serves (every request lands on it, whatever its `Host`).
const HOST: &str = "localhost";
/// The largest upload the module accepts (`http_file_share_size_limit`): 2 GiB.
pub const SIZE_LIMIT: u64 = 2 << 30;
/// How long a slot's token is valid, as the module's own tokens (`exp`).
const TOKEN_SECS: u64 = 300;

/// A running Prosody with `mod_http_file_share`.
pub struct FileShare {
    pub dir: tempfile::TempDir,
    pub port: u16,
    secret: String,
    process: Process,
}

/// One upload slot, as an XMPP client would get it in a slot reply.
#[derive(Debug, Clone)]
pub struct Slot {
    /// `/file_share/<slot>/<name>`: where the file is `PUT`, then served from.
    pub path: String,
    /// [`Slot::path`] on the server: `http://127.0.0.1:<port>/file_share/<slot>/<name>`.
    pub url: String,
    /// The `PUT`'s `Authorization` header value: `Bearer <token>`.
    pub authorization: String,
}

impl FileShare {
    /// Starts Prosody with `mod_http_file_share` on a free port.
    pub fn start() -> Result<Self> {
        ensure_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("mft-file-share-")
            .tempdir()?;
        let port = free_port();
        let secret = format!("{:032x}", rand::random::<u128>());
        let d = dir.path().display();
        let config = dir.path().join("prosody.cfg.lua");
        std::fs::write(
            &config,
            format!(
                r#"-- Written by the benchmark harness (tests/src/file_share.rs).
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ info = "{d}/prosody.log" }}
daemonize = false
run_as_root = true
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ {port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
http_default_host = "{HOST}"
modules_disabled = {{ "s2s" }}
storage = "internal"

VirtualHost "{HOST}"
modules_enabled = {{ "http_file_share" }}
http_file_share_secret = "{secret}"
http_file_share_size_limit = {SIZE_LIMIT}
"#
            ),
        )?;
        // Its data, and an empty certificate directory (it indexes one beside the config).
        for sub in ["data", "certs"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        let process = spawn(dir.path(), &config, &[port])?;
        Ok(Self {
            dir,
            port,
            secret,
            process,
        })
    }

    /// `http://127.0.0.1:<port>`, the base of every [`Slot::url`].
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new slot for an upload of `size` bytes named `name`, from alice@localhost.
    pub fn slot(&self, name: &str, size: u64) -> Result<Slot> {
        let id = format!("{:016x}", rand::random::<u64>());
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = serde_json::json!({
            "sub": format!("alice@{HOST}"),
            "iat": now,
            "exp": now + TOKEN_SECS,
            "slot": id,
            "expires": now + 7 * 86_400,
            "filename": name,
            "filesize": size,
            "filetype": "application/octet-stream",
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .context("signing a slot token")?;
        let path = format!("/file_share/{id}/{}", url_encode(name));
        Ok(Slot {
            url: format!("{}{path}", self.base_url()),
            path,
            authorization: format!("Bearer {token}"),
        })
    }

    /// Where the module stores the files (one `<slot>.bin` each).
    pub fn store(&self) -> PathBuf {
        self.dir
            .path()
            .join("data")
            .join(HOST)
            .join("http_file_share")
    }

    /// Prosody's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Prosody's own log, for failure messages.
    pub fn log(&self) -> String {
        log(self.dir.path())
    }
}

//! What the httpd benches share: the nginx-on-sshfs anchor, Debian's nginx accepting WebDAV
//! `PUT` (`dav_methods PUT`, `create_full_put_path on`) and serving `GET` from an sshfs mount
//! (default options) of the bench's sshd: no fsync, no database.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use mft_tests::{free_port, wait_until, FuseMount, Process, Sshd};

/// A running nginx over its sshfs mount; both stop (and the mount goes) when dropped.
pub struct Nginx {
    pub port: u16,
    /// The directory nginx serves, as the file server's own filesystem sees it.
    pub server_dir: PathBuf,
    _nginx: Process,
    _sshfs: FuseMount,
}

/// Mounts the sshd's directory `nginx_dav` with sshfs under `dir` and starts nginx on it.
pub fn start_nginx(sshd: &Sshd, dir: &Path) -> Result<Nginx> {
    let server_dir = sshd.node_directory("nginx_dav")?;
    let sshfs = mft_tests::mount_sshfs(sshd, &server_dir, dir, "sshfs", &[])?;
    let port = free_port();
    // Debian's defaults where they matter (sendfile on); the request body's temporary file on
    // the mount, so that a stored PUT is a rename on the file server, as DAV setups do.
    let config = format!(
        "user root;\nworker_processes auto;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  client_max_body_size 0;\n\
         client_body_temp_path {mnt}/.nginx-tmp;\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {mnt};\n\
         location / {{ dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n",
        dir = dir.display(),
        mnt = sshfs.mount_point.display(),
    );
    let conf = dir.join("nginx.conf");
    fs::write(&conf, config)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(dir);
    let nginx = Process::spawn("nginx", &mut cmd, &dir.join("nginx.log"))?;
    wait_until(Duration::from_secs(10), "nginx to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .with_context(|| nginx.log_text())?;
    Ok(Nginx {
        port,
        server_dir,
        _nginx: nginx,
        _sshfs: sshfs,
    })
}

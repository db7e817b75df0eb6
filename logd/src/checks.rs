//! The seed's database tests: **reachable** (PostgreSQL: a TCP connection to the server's host
//! and port, to any of them for a multi-host URL; SQLite: the database file's directory exists and is writable), **connected** (a
//! connection opens and answers `SELECT 1`), **schema verified** (`aft_log` is DESIGN.md's
//! table). `logd check` runs them on a fresh connection; the running logd on its pool, for the
//! `status` request. Each test ends in a [`Check`]; nothing here writes to the database.

use std::ops::DerefMut;
use std::path::Path;
use std::time::Duration;

use diesel::RunQueryDsl;
use mft_config::DatabaseKind;

use crate::db::{self, AnyConnection, Database};
use crate::status::Check;

/// How long each network step of a check may take.
const TIMEOUT: Duration = Duration::from_secs(2);

pub use crate::status::{CONNECTED, REACHABLE, SCHEMA_VERIFIED};

/// Runs the three tests; `connect` supplies the connection for the last two.
pub fn run<C, E>(
    config: &mft_config::Database,
    connect: impl FnOnce() -> Result<C, E>,
) -> Vec<Check>
where
    C: DerefMut<Target = AnyConnection>,
    E: std::fmt::Display,
{
    let reachable = reachable(config);
    let (connected, schema) = match connect() {
        Err(e) => (
            check(CONNECTED, Err(e.to_string())),
            not_run("no connection"),
        ),
        Ok(mut conn) => match diesel::sql_query("SELECT 1").execute(&mut *conn) {
            Err(e) => (
                check(CONNECTED, Err(format!("SELECT 1 failed: {e}"))),
                not_run("SELECT 1 failed"),
            ),
            Ok(_) => (
                check(CONNECTED, Ok("SELECT 1 answered".into())),
                check(
                    SCHEMA_VERIFIED,
                    db::verify_schema(&mut conn)
                        .map(|()| "aft_log has every column with its type and NOT NULL".into())
                        .map_err(|e| e.to_string()),
                ),
            ),
        },
    };
    vec![reachable, connected, schema]
}

/// The running logd's tests, on a connection of its pool (for the `status` request).
pub fn run_pooled(db: &Database) -> Vec<Check> {
    run(db.config(), || db.pooled(TIMEOUT))
}

/// `logd check`: the three tests on a connection of its own. A missing SQLite file is reported,
/// not created.
pub fn run_direct(config: &mft_config::Database) -> Vec<Check> {
    run(config, || {
        if config.kind == DatabaseKind::Sqlite && !Path::new(&config.url).exists() {
            return Err(format!(
                "{} does not exist (logd creates it when it starts)",
                config.url
            ));
        }
        db::connect(config).map(Box::new).map_err(|e| e.to_string())
    })
}

/// A test's outcome; the detail without trailing whitespace (a driver's message may end in a
/// newline).
fn check(name: &str, outcome: Result<String, String>) -> Check {
    let trimmed = |detail: String| detail.trim_end().to_owned();
    Check::of(name.into(), outcome.map(trimmed).map_err(trimmed))
}

fn not_run(why: &str) -> Check {
    check(SCHEMA_VERIFIED, Err(format!("not checked: {why}")))
}

fn reachable(config: &mft_config::Database) -> Check {
    check(
        REACHABLE,
        match config.kind {
            DatabaseKind::Postgres => {
                server_addresses(&config.url).and_then(|servers| any_connects(&servers))
            }
            DatabaseKind::Sqlite => writable_directory(Path::new(&config.url)),
        },
    )
}

/// A TCP connection to the first of `servers` that takes one; else why none did.
fn any_connects(servers: &[(String, u16)]) -> Result<String, String> {
    let mut failures = Vec::new();
    for (host, port) in servers {
        match mft_journal::probe::tcp_reachable(host, *port, TIMEOUT) {
            Ok(reached) => return Ok(reached),
            Err(e) => failures.push(e),
        }
    }
    Err(failures.join("; "))
}

/// Whether the directory of the SQLite file exists and a file can be created in it.
fn writable_directory(file: &Path) -> Result<String, String> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".logd-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(format!("the directory {} is writable", dir.display()))
}

/// The servers a `postgres://` URL names, in the order libpq tries them: one host, or several
/// separated by commas (`host1:port1,host2:port2`, the multi-host form a failover set-up uses),
/// each with libpq's defaults (`localhost`, 5432); `host` and `port` query parameters win, a
/// single port applying to every host. A Unix-socket host is refused: this test is a TCP one.
fn server_addresses(url: &str) -> Result<Vec<(String, u16)>, String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| "the database URL has no scheme".to_owned())?;
    let (authority, query) = match rest.split_once('?') {
        Some((before, query)) => (before.split('/').next().unwrap_or_default(), query),
        None => (rest.split('/').next().unwrap_or_default(), ""),
    };
    let host_list = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let listed: Vec<(String, String)> = host_list
        .split(',')
        .map(host_and_port)
        .collect::<Result<_, _>>()?;
    let (mut hosts, mut ports): (Vec<String>, Vec<String>) = listed.into_iter().unzip();
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        match key {
            "host" => hosts = value.split(',').map(str::to_owned).collect(),
            "port" => ports = value.split(',').map(str::to_owned).collect(),
            _ => {}
        }
    }
    if ports.len() == 1 {
        ports = vec![ports[0].clone(); hosts.len()];
    }
    if ports.len() != hosts.len() {
        return Err(format!(
            "the database URL names {} hosts but {} ports",
            hosts.len(),
            ports.len()
        ));
    }
    hosts
        .into_iter()
        .zip(ports)
        .map(|(host, port)| {
            if host.starts_with('/') {
                return Err(format!(
                    "the server is on a Unix socket ({host}), not reachable over TCP"
                ));
            }
            let port = match port.as_str() {
                "" => 5432,
                text => text
                    .parse()
                    .map_err(|_| format!("bad port {text:?} in the database URL"))?,
            };
            Ok((
                if host.is_empty() {
                    "localhost".into()
                } else {
                    host
                },
                port,
            ))
        })
        .collect()
}

/// One `host[:port]` of a URL's host list (`[v6]:port` for an IPv6 address); either may be empty.
fn host_and_port(host_port: &str) -> Result<(String, String), String> {
    match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 host in {host_port:?}"))?;
            Ok((
                host.to_owned(),
                after.strip_prefix(':').unwrap_or_default().to_owned(),
            ))
        }
        None => Ok(match host_port.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.to_owned()),
            None => (host_port.to_owned(), String::new()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_follow_libpq() {
        let addresses = |url| {
            server_addresses(url).map(|servers| {
                servers
                    .iter()
                    .map(|(h, p)| format!("{h} {p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        assert_eq!(
            addresses("postgres://mft:s3cr@t@db.example.com:6432/mft"),
            Ok("db.example.com 6432".into())
        );
        assert_eq!(addresses("postgresql://db/mft"), Ok("db 5432".into()));
        assert_eq!(
            addresses("postgres://u@[::1]:5433/x?sslmode=require"),
            Ok("::1 5433".into())
        );
        assert_eq!(
            addresses("postgres:///mft?host=10.0.0.7&port=7000"),
            Ok("10.0.0.7 7000".into())
        );
        assert_eq!(addresses("postgres:///mft"), Ok("localhost 5432".into()));
        assert!(addresses("postgres:///mft?host=/run/postgresql")
            .unwrap_err()
            .contains("Unix socket"));
        assert!(addresses("postgres://db:x/mft")
            .unwrap_err()
            .contains("bad port"));
    }

    #[test]
    fn multi_host_urls_name_every_server() {
        let addresses = |url| server_addresses(url).unwrap();
        let pair = |h: &str, p| (h.to_owned(), p);
        assert_eq!(
            addresses("postgres://mft@db1:5433,db2:5434/mft?target_session_attrs=read-write"),
            [pair("db1", 5433), pair("db2", 5434)]
        );
        assert_eq!(
            addresses("postgres://mft@db1,[::1]:6000,/mft"),
            [
                pair("db1", 5432),
                pair("::1", 6000),
                pair("localhost", 5432)
            ]
        );
        assert_eq!(
            addresses("postgres:///mft?host=db1,db2&port=7000"),
            [pair("db1", 7000), pair("db2", 7000)]
        );
        assert_eq!(
            addresses("postgres:///mft?host=db1,db2&port=7000,7001"),
            [pair("db1", 7000), pair("db2", 7001)]
        );
        assert!(
            server_addresses("postgres:///mft?host=db1,db2,db3&port=1,2")
                .unwrap_err()
                .contains("3 hosts but 2 ports")
        );
    }

    /// A failover set-up is reachable while one of its servers takes connections: the one first
    /// in the list may be the dead primary.
    #[test]
    fn a_multi_host_url_is_reachable_through_any_of_its_servers() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = |ports: String| mft_config::Database {
            kind: DatabaseKind::Postgres,
            url: format!("postgres://mft@{ports}/mft?target_session_attrs=read-write"),
            ..Default::default()
        };
        let both = config(format!(
            "127.0.0.1:{closed},127.0.0.1:{}",
            open.local_addr().unwrap().port()
        ));
        let reached = reachable(&both);
        assert!(reached.ok, "{reached:?}");
        assert!(
            reached.detail.starts_with("TCP connection to 127.0.0.1:"),
            "{reached:?}"
        );
        let none = reachable(&config(format!("127.0.0.1:{closed},127.0.0.1:{closed}")));
        assert!(!none.ok);
        assert_eq!(
            none.detail
                .matches("no TCP connection to 127.0.0.1:")
                .count(),
            2,
            "{none:?}"
        );
    }

    #[test]
    fn lines_say_pass_or_fail() {
        let pass = check(REACHABLE, Ok("TCP connection to db:5432".into()));
        let fail = check(SCHEMA_VERIFIED, Err("the table does not exist\n".into()));
        assert_eq!(pass.line(), "PASS reachable: TCP connection to db:5432");
        assert_eq!(
            fail.line(),
            "FAIL schema verified: the table does not exist"
        );
    }

    #[test]
    fn sqlite_reachability_is_a_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(writable_directory(&dir.path().join("aft_log.sqlite3")).is_ok());
        let missing = writable_directory(&dir.path().join("nowhere/aft_log.sqlite3"));
        assert!(missing.unwrap_err().contains("does not exist"));
    }

    #[test]
    fn the_three_checks_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let config = mft_config::Database {
            url: dir.path().join("aft_log.sqlite3").display().to_string(),
            ..Default::default()
        };
        let names = |checks: &[Check]| {
            checks
                .iter()
                .map(|c| (c.name.clone(), c.ok))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&run_direct(&config)),
            [
                (REACHABLE.into(), true),
                (CONNECTED.into(), false),
                (SCHEMA_VERIFIED.into(), false)
            ]
        );
        drop(crate::db::Database::open(&config).unwrap());
        assert_eq!(
            names(&run_direct(&config)),
            [
                (REACHABLE.into(), true),
                (CONNECTED.into(), true),
                (SCHEMA_VERIFIED.into(), true)
            ]
        );
    }
}

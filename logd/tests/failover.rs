//! PostgreSQL failover under load: the logd binary writes to a primary with a synchronous
//! streaming standby through a libpq multi-host URL (`target_session_attrs=read-write`); the
//! primary is killed mid-load and the standby promoted. logd must follow the promoted server on
//! its own, and every event it acknowledged must be a row there, once.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use logd::db::schema::aft_log;
use logd::{LogdClient, Transfer};
use mft_tests::{wait_until, NodeToml, Postgres, Process};

/// Concurrent senders, as httpd's upload handlers would be.
const SENDERS: usize = 4;
/// How long the senders start new events; the primary dies at [`KILL_AT`], the standby is
/// promoted [`OUTAGE`] later. The outage is longer than logd's wait for a pooled connection (5 s),
/// so events fail during it and are sent again, as an automated failover's would.
const LOAD: Duration = Duration::from_secs(16);
const KILL_AT: Duration = Duration::from_secs(4);
const OUTAGE: Duration = Duration::from_secs(7);
/// How long an event already sent may still be retried after [`LOAD`] ends.
const SETTLE: Duration = Duration::from_secs(25);

/// One acknowledged event: its id, the row logd answered, when its acknowledged attempt started
/// and ended, and how many attempts it took.
struct Acked {
    event_id: String,
    aft_index: i64,
    sent: Instant,
    acked: Instant,
    attempts: u32,
}

/// The event id of sender `task`'s `n`th event, UUID-shaped.
fn event_id(task: usize, n: usize) -> String {
    format!("00000000-0000-4000-8000-{task:04}{n:08}")
}

/// Sends events until `load_end`, each again with its event id after an error (httpd keeps
/// retrying an unanswered Post the same way) until acknowledged or `give_up`.
async fn send(client: LogdClient, task: usize, load_end: Instant, give_up: Instant) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut n = 0;
    while Instant::now() < load_end {
        let t = Transfer {
            event_id: Some(event_id(task, n)),
            ..common::transfer(task, n)
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = Instant::now();
            match client.post(&t).await {
                Ok(aft_index) => {
                    acked.push(Acked {
                        event_id: event_id(task, n),
                        aft_index,
                        sent,
                        acked: Instant::now(),
                        attempts,
                    });
                    break;
                }
                Err(e) if Instant::now() < give_up => {
                    if attempts == 1 {
                        eprintln!("sender {task}: event {n} failed ({e}); retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("event {} not recorded by the end: {e}", event_id(task, n)),
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

/// The node configuration for logd alone (the file server's keys are never used by logd).
fn node_toml(dir: &std::path::Path, url: String) -> NodeToml {
    NodeToml {
        id: "node_1".into(),
        dir: dir.to_owned(),
        ssh_port: 22,
        server_dir: "/opt/mftFileStore/node_1".into(),
        client_key: dir.join("node_key"),
        host_key: "127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA".into(),
        mount_point: dir.join("mnt"),
        http_port: 7336,
        database: mft_tests::Database::Postgres(url),
        keepalive_secs: None,
        free_space_warn_percent: 1,
        http_extra: String::new(),
    }
}

#[derive(QueryableByName)]
struct SyncState {
    #[diesel(sql_type = diesel::sql_types::Text)]
    sync_state: String,
}

/// Makes `primary`'s commits wait until the standby has the commit's WAL, and waits until the
/// standby is attached as synchronous.
fn make_synchronous(primary: &Postgres) {
    let mut conn = PgConnection::establish(&primary.url("postgres")).unwrap();
    diesel::sql_query("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query("SELECT pg_reload_conf()")
        .execute(&mut conn)
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the standby to be synchronous",
        || {
            diesel::sql_query("SELECT sync_state::text AS sync_state FROM pg_stat_replication")
                .load::<SyncState>(&mut conn)
                .is_ok_and(|rows| rows.iter().any(|r| r.sync_state == "sync"))
        },
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_failover_loses_no_acknowledged_event_and_logd_follows() {
    let mut primary = Postgres::start().unwrap();
    primary.create_database("mft_node_1").unwrap();
    let standby = primary.start_standby().unwrap();
    make_synchronous(&primary);
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/mft_node_1?target_session_attrs=read-write",
        primary.port, standby.port
    );

    let dir = tempfile::tempdir().unwrap();
    let config = node_toml(dir.path(), url).write().unwrap();
    let mut logd = Process::spawn(
        "logd",
        std::process::Command::new(env!("CARGO_BIN_EXE_logd"))
            .arg("--config")
            .arg(&config),
        &dir.path().join("logd.log"),
    )
    .unwrap();
    let socket = dir.path().join("logd.sock");
    wait_until(Duration::from_secs(30), "logd's socket", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", logd.log_text()));

    let client = LogdClient::new(&socket);
    let start = Instant::now();
    let (load_end, give_up) = (start + LOAD, start + LOAD + SETTLE);
    let senders: Vec<_> = (0..SENDERS)
        .map(|task| tokio::spawn(send(client.clone(), task, load_end, give_up)))
        .collect();

    tokio::time::sleep(KILL_AT).await;
    primary.kill();
    let killed = Instant::now();
    // With no read-write server, logd's status says it cannot connect (httpd refuses uploads
    // with 503 on that) while the standby still answers TCP.
    let outage = client.status().await.unwrap();
    let passed = |status: &logd::LogdStatus, name: &str| {
        status.checks.iter().any(|c| c.name == name && c.ok)
    };
    assert!(
        passed(&outage, logd::REACHABLE) && !passed(&outage, logd::CONNECTED),
        "{outage:?}"
    );
    tokio::time::sleep((killed + OUTAGE).saturating_duration_since(Instant::now())).await;
    let promoting = Instant::now();
    let promoted_server = tokio::task::spawn_blocking(move || standby.promote().map(|()| standby))
        .await
        .unwrap()
        .unwrap();
    let promoted = Instant::now();

    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(sender.await.unwrap());
    }
    logd.check_alive().unwrap();
    let after_failover = client.status().await.unwrap();
    assert!(after_failover.healthy(), "{after_failover:?}");

    let rows: Vec<(i64, Option<String>)> = aft_log::table
        .select((aft_log::aft_index, aft_log::event_id))
        .load(&mut PgConnection::establish(&promoted_server.url("mft_node_1")).unwrap())
        .unwrap();
    let mut in_table = HashMap::new();
    for (index, event_id) in &rows {
        let event_id = event_id.clone().expect("every event has an id");
        assert!(
            in_table.insert(event_id.clone(), *index).is_none(),
            "{event_id} recorded twice"
        );
    }
    let ids: HashSet<&str> = acked.iter().map(|a| a.event_id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "each event acknowledged once");
    for a in &acked {
        assert_eq!(
            in_table.get(&a.event_id),
            Some(&a.aft_index),
            "acknowledged {} is its row in the promoted server",
            a.event_id
        );
    }
    // Every event was retried until acknowledged, so every row is an acknowledged one.
    assert_eq!(rows.len(), acked.len(), "no row that was not acknowledged");

    // No server took writes between the kill and the promotion: an attempt sent in between
    // cannot have been acknowledged.
    let impossible: Vec<_> = acked
        .iter()
        .filter(|a| a.sent > killed && a.acked < promoting)
        .map(|a| &a.event_id)
        .collect();
    assert!(
        impossible.is_empty(),
        "acknowledged with no primary: {impossible:?}"
    );
    let before = acked.iter().filter(|a| a.acked < killed).count();
    let retried = acked.iter().filter(|a| a.attempts > 1).count();
    let first_after = acked
        .iter()
        .filter(|a| a.acked > promoted)
        .map(|a| a.acked)
        .min();
    let after = acked.iter().filter(|a| a.acked > promoted).count();
    assert!(
        before > 0 && retried > 0,
        "the primary died mid-load: {before} acknowledged before, {retried} retried"
    );
    let follow = first_after.expect("logd recorded events on the promoted server") - promoted;
    let mut times: Vec<Instant> = acked.iter().map(|a| a.acked).collect();
    times.sort();
    let silence = times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "failover: {} events acknowledged ({before} before the kill, {after} after the promotion, {retried} sent again after an error); \
         primary killed {:?} before the promotion, which took {:?}; logd's first acknowledgement came {follow:?} after it; \
         no acknowledgement for {silence:?}",
        acked.len(),
        promoting - killed,
        promoted - promoting,
    );
}

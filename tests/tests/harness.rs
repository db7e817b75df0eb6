//! The harness itself works: sshd serves SFTP with the pinned keys, PostgreSQL accepts queries,
//! and both are gone after drop.

use mft_tests::{banner, Postgres, Sshd};

#[test]
fn sshd_serves_sftp_to_the_node_key_and_stops_on_drop() {
    let sshd = Sshd::start().unwrap();
    let node = sshd.node_directory("node_1").unwrap();
    std::fs::write(node.join("hello.txt"), "hi").unwrap();
    let listing = sshd
        .sftp("root", &format!("ls {}\n", node.display()))
        .unwrap();
    assert!(listing.contains("hello.txt"), "{listing}");
    let port = sshd.port;
    drop(sshd);
    assert!(banner(port).is_err(), "sshd still answers after drop");
}

#[test]
fn postgres_accepts_queries_and_stops_on_drop() {
    use diesel::{Connection, RunQueryDsl};
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("harness").unwrap();
    let mut conn = diesel::PgConnection::establish(&url).unwrap();
    diesel::sql_query("CREATE TABLE t (x INT)")
        .execute(&mut conn)
        .unwrap();
    assert_eq!(
        diesel::sql_query("INSERT INTO t VALUES (1), (2)")
            .execute(&mut conn)
            .unwrap(),
        2
    );
    drop(conn);
    let dead = pg.url("harness");
    drop(pg);
    assert!(diesel::PgConnection::establish(&dead).is_err());
}

#[test]
fn killing_sshd_cuts_its_established_connections() {
    use std::io::Read;
    let mut sshd = Sshd::start().unwrap();
    // An SFTP session held open by a client process, like fsd's connection.
    let mut client = std::process::Command::new("ssh")
        .args(["-N", "-p", &sshd.port.to_string(), "-i"])
        .arg(&sshd.client_key)
        .args([
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oBatchMode=yes",
            "root@127.0.0.1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    mft_tests::wait_until(
        std::time::Duration::from_secs(10),
        "the session to be up",
        || sshd.log_text().contains("Accepted publickey"),
    )
    .unwrap();
    sshd.kill();
    // The client sees its connection die instead of hanging on a surviving session process.
    let status = mft_tests::wait_until(std::time::Duration::from_secs(10), "ssh to exit", || {
        matches!(client.try_wait(), Ok(Some(_)))
    });
    let mut err = String::new();
    let _ = client.kill();
    let _ = client.stderr.take().unwrap().read_to_string(&mut err);
    status.unwrap_or_else(|e| panic!("{e}: {err}"));
}

#[test]
fn the_durable_server_syncs_and_the_test_server_does_not() {
    use diesel::{Connection, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        fsync: String,
    }
    let show = |pg: &Postgres| {
        let mut conn = diesel::PgConnection::establish(&pg.url("postgres")).unwrap();
        diesel::sql_query("SHOW fsync")
            .get_result::<Setting>(&mut conn)
            .unwrap()
            .fsync
    };
    let parent = tempfile::tempdir().unwrap();
    let durable = Postgres::start_durable(parent.path()).unwrap();
    assert!(durable.dir.path().starts_with(parent.path()));
    assert_eq!(show(&durable), "on");
    assert_eq!(show(&Postgres::start().unwrap()), "off");
}

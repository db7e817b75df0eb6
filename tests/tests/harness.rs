//! The harness itself works: sshd serves SFTP with the pinned keys, PostgreSQL accepts queries,
//! and both are gone after drop.

use mft_tests::{banner, Postgres, Sshd};

#[test]
fn sshd_serves_sftp_to_the_node_key_and_stops_on_drop() {
    let sshd = Sshd::start().unwrap();
    let node = sshd.node_directory("node_1").unwrap();
    std::fs::write(node.join("hello.txt"), "hi").unwrap();
    let listing = sshd.sftp("root", &format!("ls {}\n", node.display())).unwrap();
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
    diesel::sql_query("CREATE TABLE t (x INT)").execute(&mut conn).unwrap();
    assert_eq!(diesel::sql_query("INSERT INTO t VALUES (1), (2)").execute(&mut conn).unwrap(), 2);
    drop(conn);
    let dead = pg.url("harness");
    drop(pg);
    assert!(diesel::PgConnection::establish(&dead).is_err());
}

//! The seed's cluster: three nodes on one machine, each with its own HTTP port, its own
//! logical database on one PostgreSQL server and its own directory on one file server. Each
//! node stores and logs only its own transfers, and never serves another node's file.

use diesel::{Connection, RunQueryDsl};
use mft_tests::{Database, Node, Postgres, Sshd};

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    method: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    file_path: String,
}

fn rows(url: &str) -> Vec<Row> {
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    diesel::sql_query("SELECT method, file_path FROM aft_log ORDER BY aft_index")
        .load(&mut conn)
        .unwrap()
}

#[test]
fn three_nodes_share_one_database_server_and_one_file_server() {
    let sshd = Sshd::start().unwrap();
    let pg = Postgres::start().unwrap();
    let ids = ["node_1", "node_2", "node_3"];
    let nodes: Vec<Node> = ids
        .iter()
        .map(|id| {
            let url = pg.create_database(&format!("mft_{id}")).unwrap();
            Node::start(&sshd, id, Database::Postgres(url)).unwrap()
        })
        .collect();
    let work = tempfile::tempdir().unwrap();

    let mut uris = Vec::new();
    for (node, id) in nodes.iter().zip(ids) {
        let source = work.path().join(id);
        std::fs::write(&source, format!("stored by {id}")).unwrap();
        let up = node
            .upload_token(
                "alice@example.com",
                "room@conference.example.com",
                "groupchat",
            )
            .unwrap();
        let resp = node.upload(&up, &format!("{id}.txt"), &source).unwrap();
        assert_eq!(resp.status, 201, "{}\n{}", resp.text(), node.logs());
        let uri = resp.header("location").unwrap();
        assert!(
            uri.starts_with(&node.url("/")),
            "{uri} names its own node's address"
        );
        assert!(uri.contains(&format!("/{id}/")), "{uri} names node {id}");
        uris.push(uri);
    }

    for (i, node) in nodes.iter().enumerate() {
        let down = node.download_token("bob@example.com").unwrap();
        // The owner serves its file.
        let got = node.download(&down, &uris[i]).unwrap();
        assert_eq!(
            (got.status, got.text()),
            (200, format!("stored by {}", ids[i]))
        );
        // Another node, asked for the same file path, refuses with a 404 naming the owner.
        let other = &nodes[(i + 1) % nodes.len()];
        let path = &uris[i][node.url("").len()..];
        let down_other = other.download_token("bob@example.com").unwrap();
        let refused = other.download(&down_other, &other.url(path)).unwrap();
        assert_eq!(refused.status, 404, "{}", refused.text());
        let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(ids[i]),
            "names the owner: {body}"
        );
    }

    for (node, id) in nodes.iter().zip(ids) {
        let logged = rows(&node.database_url);
        let methods: Vec<_> = logged.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["Post", "Get"], "{id} logs only its own transfers");
        for row in &logged {
            assert!(
                row.file_path
                    .starts_with(&format!("{}/", node.server_dir.display())),
                "{id}: {}",
                row.file_path
            );
            assert!(std::path::Path::new(&row.file_path).exists());
        }
        // Each node's directory holds exactly its own one file (and its real-name link).
        let stored = walk_files(&node.server_dir.join("files"));
        assert_eq!(stored.len(), 1, "{id}: {stored:?}");
        assert_eq!(walk_files(&node.server_dir.join(".names")).len(), 1, "{id}");
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

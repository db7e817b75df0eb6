//! The audit trail of standard XMPP clients: a real Prosody with `xmpp/prosody/mod_mft.lua`, a
//! real node (sshd, fsd's FUSE mount, logd on SQLite, httpd) and real clients (slixmpp: XEP-0363
//! upload, messages with body and OOB URL, HEAD then GET as Conversations, Dino and Gajim do).
//! Each case checks the exact `aft_log` rows of its file and the file's directory.

use std::path::Path;
use std::time::{Duration, Instant};

use mft_tests::prosody::Prosody;
use mft_tests::{wait_until, AuditRow as Row, Database, Node, Sshd};

const SLOT_SECRET: &str = "xmpp-slot-secret-0123456789abcdef";

/// `(method, jid, to_jid, chat_type)` of each row.
fn trail(rows: &[Row]) -> Vec<(String, String, String, String)> {
    rows.iter().map(Row::trail).collect()
}

fn expected(rows: &[(&str, &str, &str, &str)]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|(m, j, t, c)| (m.to_string(), j.to_string(), t.to_string(), c.to_string()))
        .collect()
}

/// The node, the XMPP server and a work directory.
struct Setup {
    node: Node,
    prosody: Prosody,
    work: tempfile::TempDir,
    _sshd: Sshd,
}

impl Setup {
    fn start() -> Setup {
        let sshd = Sshd::start().unwrap();
        let node = Node::start_configured(&sshd, "node_1", Database::Sqlite, |toml| {
            toml.http_extra = format!("slot_secrets = [\"{SLOT_SECRET}\"]\n");
        })
        .unwrap();
        let prosody = Prosody::start(&node.url(""), SLOT_SECRET).unwrap();
        Setup {
            node,
            prosody,
            work: tempfile::tempdir().unwrap(),
            _sshd: sshd,
        }
    }

    /// Runs the XMPP clients (see [`Prosody::clients`]); a failure shows the node's logs too.
    fn clients(&self, args: &[&str]) -> serde_json::Value {
        self.prosody
            .clients(args)
            .unwrap_or_else(|e| panic!("{e:?}\n{}", self.node.logs()))
    }

    /// alice uploads a file of `size` bytes named `name`; its slot URL.
    fn upload(&self, name: &str, size: usize) -> String {
        let file = self.work.path().join(name);
        std::fs::write(&file, vec![b'x'; size]).unwrap();
        let answer = self.clients(&["upload", "alice", file.to_str().unwrap()]);
        answer["url"].as_str().unwrap().to_owned()
    }

    /// Waits until the rows of `name` satisfy `done` (shares are reported, and downloads'
    /// byte counts recorded, in the background); the rows then.
    fn rows_when(&self, name: &str, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
        let _ = wait_until(Duration::from_secs(15), "the expected aft_log rows", || {
            done(&self.node.rows_of_upload(name))
        });
        let found = self.node.rows_of_upload(name);
        eprintln!("{name}: {found:#?}");
        found
    }

    /// The file's directory under `files/` on the file server: `im`, `groupchat` or `persistent`.
    fn directory_of(&self, row: &Row) -> String {
        let path = Path::new(&row.file_path);
        assert!(path.is_file(), "{} is on the file server", row.file_path);
        let relative = path.strip_prefix(&self.node.server_dir).unwrap();
        relative
            .iter()
            .nth(1)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

fn complete(rows: &[Row], count: usize) -> bool {
    rows.len() == count
        && rows[0].to_jid != "anonymous@node_1"
        && rows
            .iter()
            .all(|r| r.method != "Get" || r.bytes_transferred == r.file_size)
}

#[test]
fn xmpp_clients_leave_the_complete_audit_trail() {
    let s = Setup::start();

    // 1:1, recipient online: the URL bob gets is his own, body and OOB alike; HEAD answers the size.
    let url = s.upload("one-to-one.txt", 1000);
    let sent = s.clients(&[
        "send",
        "alice",
        "bob@localhost",
        &url,
        "--recipients",
        "bob",
        "--download",
    ]);
    let bob = &sent["received"]["bob"];
    assert!(
        bob["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{url}?mft_for=bob%40localhost&")),
        "{sent}"
    );
    assert_eq!(
        (
            bob["head_length"].as_i64(),
            bob["status"].as_i64(),
            bob["bytes"].as_i64()
        ),
        (Some(1000), Some(200), Some(1000))
    );
    let r = s.rows_when("one-to-one.txt", |r| complete(r, 2));
    assert_eq!(
        trail(&r),
        expected(&[
            ("Post", "alice@localhost", "bob@localhost", "im"),
            ("Get", "bob@localhost", "bob@localhost", "im")
        ]),
        "{r:?}\n{}",
        s.node.logs()
    );
    assert_eq!(s.directory_of(&r[0]), "im");

    // 1:1, recipient offline: bob downloads after logging in.
    let url = s.upload("offline.txt", 2000);
    s.clients(&["send", "alice", "bob@localhost", &url]);
    s.clients(&["receive", "bob", "--download"]);
    let r = s.rows_when("offline.txt", |r| complete(r, 2));
    assert_eq!(
        trail(&r),
        expected(&[
            ("Post", "alice@localhost", "bob@localhost", "im"),
            ("Get", "bob@localhost", "bob@localhost", "im")
        ]),
        "{r:?}"
    );

    // An ad hoc room with three occupants: one Get per downloader, each to the room.
    let room = "adhoc@conference.localhost";
    let url = s.upload("adhoc.txt", 3000);
    s.clients(&[
        "send",
        "alice",
        room,
        &url,
        "--groupchat",
        "--recipients",
        "bob,carol",
        "--download",
    ]);
    let r = s.rows_when("adhoc.txt", |r| complete(r, 3));
    let mut gets = trail(&r[1..]);
    gets.sort();
    assert_eq!(
        trail(&r[..1]),
        expected(&[("Post", "alice@localhost", room, "groupchat")]),
        "{r:?}"
    );
    assert_eq!(
        gets,
        expected(&[
            ("Get", "bob@localhost", room, "groupchat"),
            ("Get", "carol@localhost", room, "groupchat")
        ])
    );
    assert_eq!(s.directory_of(&r[0]), "groupchat");

    // A persistent room: chat type persistent, the file under files/persistent/.
    let room = "team@rooms.localhost";
    let url = s.upload("persistent.txt", 4000);
    s.clients(&[
        "send",
        "alice",
        room,
        &url,
        "--groupchat",
        "--recipients",
        "bob",
        "--download",
    ]);
    let r = s.rows_when("persistent.txt", |r| complete(r, 2));
    assert_eq!(
        trail(&r),
        expected(&[
            ("Post", "alice@localhost", room, "persistent"),
            ("Get", "bob@localhost", room, "persistent")
        ]),
        "{r:?}"
    );
    assert_eq!(s.directory_of(&r[0]), "persistent");

    // A slot filled but never shared: the uploader is known, the recipient is not.
    s.upload("unshared.txt", 10);
    let r = s.node.rows_of_upload("unshared.txt");
    assert_eq!(
        trail(&r),
        expected(&[("Post", "alice@localhost", "anonymous@node_1", "im")])
    );
    assert_eq!(s.directory_of(&r[0]), "im");

    // A URL not of this node is delivered untouched.
    let foreign = "https://elsewhere.example.org/upload/abc/photo.jpg";
    let sent = s.clients(&[
        "send",
        "alice",
        "bob@localhost",
        foreign,
        "--recipients",
        "bob",
    ]);
    assert_eq!(sent["received"]["bob"]["url"], foreign);
}

#[test]
fn messages_are_delivered_while_httpd_is_down_and_the_share_is_recorded_when_it_is_back() {
    let mut s = Setup::start();
    let url = s.upload("while-down.txt", 500);
    s.node.stop_httpd();
    let started = Instant::now();
    let sent = s.clients(&[
        "send",
        "alice",
        "bob@localhost",
        &url,
        "--recipients",
        "bob",
    ]);
    let delay = sent["received"]["bob"]["delay_ms"].as_i64().unwrap();
    assert!(
        delay < 1000,
        "delivered in {delay} ms with httpd down ({:?} for the whole run)",
        started.elapsed()
    );
    eprintln!("delivered in {delay} ms while httpd was down");
    assert_eq!(
        s.node.rows_of_upload("while-down.txt")[0].to_jid,
        "anonymous@node_1"
    );
    s.node.start_httpd().unwrap();
    let r = s.rows_when("while-down.txt", |r| r[0].to_jid != "anonymous@node_1");
    assert_eq!(
        trail(&r),
        expected(&[("Post", "alice@localhost", "bob@localhost", "im")]),
        "{}",
        s.prosody.log()
    );
}

//! A real browser XMPP client on the node: Converse.js (npm `converse.js`, pinned in
//! `tests/browser/package-lock.json`) in Debian's Chromium, headless, driven by `playwright-core`
//! (`tests/browser/converse.mjs`). Prosody (with `xmpp/prosody/mod_mft.lua`) serves the page and
//! XMPP over WebSocket on one origin; the node is another origin, so the upload (`PUT` of the
//! slot, with its preflight) works only because httpd answers CORS.
//!
//! alice and bob are contacts; alice's page sends bob a PNG with the chat toolbar's file upload,
//! bob's page (a second browser context) shows it. The test checks the requests each page made
//! (the preflight Chromium sent before the `PUT`, seen through the DevTools protocol), what bob's
//! browser got, and the `aft_log` rows, and leaves screenshots of both chats under
//! `target/browser-screenshots/`. Converse shows the sender's own image too, from the URL
//! without a capability: that `GET` is an anonymous `Get` row. Images are `<img>` loads (no
//! CORS); with Converse's default `fetch_url_headers: false` it sends no `HEAD`.
//!
//! The npm packages are installed with `npm ci` into `target/browser/` on the first run (and when
//! the lock file changes); later runs reuse them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mft_tests::prosody::{Options, Prosody};
use mft_tests::{run, wait_until, Database, Node, Sshd};

const SLOT_SECRET: &str = "browser-slot-secret-0123456789abcdef";
const IMAGE: &str = "picture.png";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// `target/browser/`: the lock file's packages (installed if the lock file changed since the
/// last install), the page and the Playwright script (copied each run, so the script resolves
/// `playwright-core` from there).
fn browser_dir() -> PathBuf {
    let sources = repo_root().join("tests/browser");
    let dir = repo_root().join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::read(sources.join("package-lock.json")).unwrap();
    let installed = dir.join("node_modules/.installed-lock.json");
    if std::fs::read(&installed).ok().as_ref() != Some(&lock) {
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(sources.join(file), dir.join(file)).unwrap();
        }
        let started = Instant::now();
        run(Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&dir))
        .expect("npm ci of tests/browser/package-lock.json");
        eprintln!("npm ci took {:?}", started.elapsed());
        std::fs::write(&installed, &lock).unwrap();
    }
    for file in ["index.html", "converse.mjs"] {
        std::fs::copy(sources.join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn converse_in_chromium_uploads_to_a_contact_who_downloads_it() {
    if !Path::new("/usr/bin/chromium").exists() {
        panic!(
            "chromium is not installed: run scripts/test (it installs Debian's chromium package)"
        );
    }
    let web = browser_dir();
    let sshd = Sshd::start().unwrap();
    let node = Node::start_configured(&sshd, "node_1", Database::Sqlite, |toml| {
        toml.http_extra = format!("slot_secrets = [\"{SLOT_SECRET}\"]\n");
    })
    .unwrap();
    let options = Options {
        web_root: Some(web.clone()),
        contacts: vec![("alice", "bob")],
    };
    let prosody = Prosody::start_with(&node.url(""), SLOT_SECRET, options).unwrap();
    let shots = repo_root().join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let started = Instant::now();
    let out = Command::new("node")
        .arg(web.join("converse.mjs"))
        .arg(prosody.http_url("").unwrap())
        .arg(repo_root().join("tests/browser").join(IMAGE))
        .arg(&shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "converse.mjs failed ({}; failure screenshots in {}):\n{stdout}\n{}\nprosody:\n{}\nnode:\n{}",
        out.status,
        shots.display(),
        String::from_utf8_lossy(&out.stderr),
        prosody.log().lines().rev().take(80).collect::<Vec<_>>().join("\n"),
        node.logs()
    );
    eprintln!("the browsers took {:?}", started.elapsed());
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&result).unwrap());

    // bob's browser showed the image from his own URL: the slot URL with bob's capability.
    let alice_url = result["alice_img"].as_str().unwrap();
    let bob_url = result["bob_img"].as_str().unwrap();
    assert!(
        alice_url.starts_with(&node.url("/upload/")) && alice_url.ends_with(&format!("/{IMAGE}")),
        "{result}"
    );
    assert!(
        bob_url.starts_with(&format!("{alice_url}?mft_for=bob%40localhost&")),
        "{result}"
    );
    assert_eq!(result["bob_img_width"], 96, "{result}");
    // What the pages asked of the node: alice's PUT (CORS mode, after its preflight), then on
    // each page the image's GET (`<img>`: no CORS), alice of her own URL, bob of his. Converse's
    // `fetch_url_headers` (a CORS HEAD before rendering) is off, its default.
    let mut requests: Vec<(&str, &str, bool, i64)> = result["node_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let capability = r["url"].as_str().unwrap().contains("mft_cap=");
            (
                r["user"].as_str().unwrap(),
                r["method"].as_str().unwrap(),
                capability,
                r["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    requests.sort();
    let expected = [
        ("alice", "GET", false, 200),
        ("alice", "PUT", false, 201),
        ("bob", "GET", true, 200),
    ];
    assert_eq!(requests, expected, "{result}");
    for request in result["node_requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] != "GET")
    {
        assert_eq!(request["allow_origin"], "*", "{request}");
    }
    let preflights = result["preflights"].as_array().unwrap();
    assert_eq!(preflights.len(), 1, "{result}");
    let preflight = &preflights[0];
    assert_eq!(
        (&preflight["user"], &preflight["status"]),
        (&"alice".into(), &204.into()),
        "{preflight}"
    );
    assert_eq!(
        preflight["request"]["access-control-request-method"], "PUT",
        "{preflight}"
    );
    assert_eq!(
        preflight["request"]["access-control-request-headers"], "authorization,content-type",
        "{preflight}"
    );
    assert!(
        preflight["response"]["access-control-allow-methods"]
            .as_str()
            .unwrap()
            .contains("PUT"),
        "{preflight}"
    );

    // The trail: alice's upload to bob; bob's download, and alice's page showing her own image
    // from the URL without a capability (anonymous, addressed to the upload's recipient).
    let _ = wait_until(
        Duration::from_secs(15),
        "the share and the download rows",
        || {
            let r = node.rows_of_upload(IMAGE);
            r.len() == 3 && r[0].to_jid == "bob@localhost"
        },
    );
    let found = node.rows_of_upload(IMAGE);
    eprintln!("aft_log: {found:#?}");
    let mut r: Vec<_> = found.iter().map(|row| row.trail()).collect();
    let row = |method: &str, jid: &str, to_jid: &str| {
        (
            method.to_owned(),
            jid.to_owned(),
            to_jid.to_owned(),
            "im".to_owned(),
        )
    };
    assert_eq!(
        r.first(),
        Some(&row("Post", "alice@localhost", "bob@localhost")),
        "{r:?}"
    );
    r[1..].sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(r[2], row("Get", "bob@localhost", "bob@localhost"), "{r:?}");
    // alice's own GET may come before mod_mft's share report (sent in the background) reaches
    // the node: it is then addressed to the Post row's recipient of that moment, anonymous.
    assert!(
        r[1] == row("Get", "anonymous@node_1", "bob@localhost")
            || r[1] == row("Get", "anonymous@node_1", "anonymous@node_1"),
        "{r:?}"
    );
    for shot in result["screenshots"].as_array().unwrap() {
        println!("screenshot: {}", shot.as_str().unwrap());
    }
}

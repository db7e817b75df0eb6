//! httpd against its own OpenAPI description (`httpd/openapi.json`), on a live node (real sshd,
//! FUSE mount, logd on SQLite): schemathesis, from PyPI, generates requests for every operation
//! from the description (examples, coverage of the edge values, random and negative data,
//! stateful sequences) and checks every response: no 5xx, only documented statuses, content
//! types, headers and bodies that match their schemas, refusals of invalid data, and
//! credentials that are not ignored. Run with an upload token, then a download token, so that
//! both kinds of grant reach every route.
//!
//! Ignored by `cargo test`: it needs the schemathesis virtualenv, which `scripts/schemathesis`
//! makes (under target/) and then runs this test with. `MFT_SCHEMATHESIS` is the executable,
//! `MFT_SCHEMATHESIS_EXAMPLES` the examples per operation (default 50), `MFT_SCHEMATHESIS_SEED`
//! the seed (default 1: the same cases every run; change it to explore).

use std::path::Path;
use std::process::Command;

use mft_tests::{Database, Node, Sshd};

#[test]
#[ignore = "needs schemathesis: run scripts/schemathesis"]
fn every_response_is_as_the_openapi_description_says() {
    let schemathesis = std::env::var("MFT_SCHEMATHESIS").expect(
        "MFT_SCHEMATHESIS names the schemathesis executable (scripts/schemathesis sets it)",
    );
    let examples = std::env::var("MFT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "50".into());
    let seed = std::env::var("MFT_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let sshd = Sshd::start().unwrap();
    let node = Node::start_configured(&sshd, "node_1", Database::Sqlite, |toml| {
        toml.http_extra = "slot_secrets = [\"schemathesis-slot-secret\"]\n".into();
    })
    .unwrap();
    // One stored file, so that downloads can find something.
    let upload = node
        .upload_token("alice@example.com", "bob@example.com", "im")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let body = work.path().join("report.pdf");
    std::fs::write(&body, b"%PDF-1.4 schemathesis").unwrap();
    let stored = node.upload(&upload, "report.pdf", &body).unwrap();
    assert_eq!(stored.status, 201, "{}", stored.text());

    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../httpd/openapi.json");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let download = node.download_token("bob@example.com").unwrap();
    for (grant, token) in [("upload", &upload), ("download", &download)] {
        let report = work.path().join(format!("{grant}.junit.xml"));
        let status = Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(&spec)
            .args([
                "--url",
                &node.url(""),
                "--max-examples",
                &examples,
                "--seed",
                &seed,
            ])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--report",
                "junit",
                "--report-junit-path",
            ])
            .arg(&report)
            .env("NO_COLOR", "1")
            // Its cache (.schemathesis/) goes with the temporary directory.
            .current_dir(work.path())
            .status()
            .unwrap();
        if !status.success() {
            let logs = node.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            panic!("schemathesis with the {grant} token failed ({status}); the end of the node's logs:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

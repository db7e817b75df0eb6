//! Property tests of the filesystem logic, no mount needed: random sequences of operations on
//! [`Filesystem`] over the in-memory backend, checked step by step against a reference model
//! (a map from name to content); and fault tests over [`FaultyBackend`]: a lost connection or a
//! stalled server gives every caller an error in bounded time, and no write error is lost.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

use fsd::backend::fault::FaultyBackend;
use fsd::backend::memory::MemoryBackend;
use fsd::fs::{AttributeChanges, Filesystem, ROOT};
use proptest::prelude::*;

const DIR: &str = "/srv/node_1";
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Write {
        name: usize,
        offset: u16,
        data: Vec<u8>,
    },
    Truncate {
        name: usize,
        size: u16,
    },
    Unlink {
        name: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Link {
        from: usize,
        to: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        4 => (name.clone(), 0u16..3000, prop::collection::vec(any::<u8>(), 0..2000))
            .prop_map(|(name, offset, data)| Op::Write { name, offset, data }),
        1 => (name.clone(), 0u16..3000).prop_map(|(name, size)| Op::Truncate { name, size }),
        1 => name.clone().prop_map(|name| Op::Unlink { name }),
        1 => (name.clone(), name.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (name.clone(), name).prop_map(|(from, to)| Op::Link { from, to }),
    ]
}

fn os(name: usize) -> &'static OsStr {
    OsStr::new(NAMES[name])
}

/// The model: files by name; a hard link shares content, so content lives in slots.
#[derive(Default)]
struct Model {
    names: BTreeMap<usize, usize>,
    contents: Vec<Vec<u8>>,
}

impl Model {
    fn content(&mut self, name: usize) -> &mut Vec<u8> {
        if !self.names.contains_key(&name) {
            self.contents.push(Vec::new());
            self.names.insert(name, self.contents.len() - 1);
        }
        &mut self.contents[self.names[&name]]
    }
}

async fn apply(fs: &Filesystem<MemoryBackend>, model: &mut Model, op: &Op) {
    match op.clone() {
        Op::Write { name, offset, data } => {
            // Open (creating it) for writing, write, close: the model's write.
            let (_, fh) = fs
                .create(ROOT, os(name), 0o644, libc::O_WRONLY)
                .await
                .unwrap();
            fs.write(fh, offset.into(), data.clone()).await.unwrap();
            fs.release(fh).await.unwrap();
            let content = model.content(name);
            let end = offset as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[offset as usize..end].copy_from_slice(&data);
        }
        Op::Truncate { name, size } => {
            let found = fs.lookup(ROOT, os(name)).await;
            let changes = AttributeChanges {
                size: Some(size.into()),
                ..AttributeChanges::default()
            };
            match found {
                Ok(entry) => {
                    fs.setattr(entry.ino, None, changes).await.unwrap();
                    model.content(name).resize(size.into(), 0);
                }
                Err(e) => {
                    assert_eq!(e.errno(), libc::ENOENT);
                    assert!(!model.names.contains_key(&name));
                }
            }
        }
        Op::Unlink { name } => match fs.unlink(ROOT, os(name)).await {
            Ok(()) => assert!(model.names.remove(&name).is_some()),
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOENT);
                assert!(!model.names.contains_key(&name));
            }
        },
        Op::Rename { from, to } => match fs.rename(ROOT, os(from), ROOT, os(to), false).await {
            Ok(()) => {
                let slot = model.names.remove(&from).expect("renamed an existing name");
                model.names.insert(to, slot);
            }
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOENT);
                assert!(!model.names.contains_key(&from));
            }
        },
        Op::Link { from, to } => {
            let Ok(entry) = fs.lookup(ROOT, os(from)).await else {
                assert!(!model.names.contains_key(&from));
                return;
            };
            match fs.link(entry.ino, ROOT, os(to)).await {
                Ok(_) => {
                    let slot = model.names[&from];
                    assert!(model.names.insert(to, slot).is_none());
                }
                Err(e) => {
                    assert_eq!(e.errno(), libc::EEXIST, "{e}");
                    assert!(model.names.contains_key(&to));
                }
            }
        }
    }
}

/// Every name the model has exists with its content and size; no other name exists.
async fn check(fs: &Filesystem<MemoryBackend>, model: &Model) {
    for (index, name) in NAMES.iter().enumerate() {
        let found = fs.lookup(ROOT, OsStr::new(name)).await;
        match model.names.get(&index) {
            None => assert_eq!(found.unwrap_err().errno(), libc::ENOENT, "{name}"),
            Some(&slot) => {
                let want = &model.contents[slot];
                let entry = found.unwrap();
                let (fh, _) = fs.open(entry.ino, libc::O_RDONLY).await.unwrap();
                let got = fs.read(fh, 0, 8192).await.unwrap();
                fs.release(fh).await.unwrap();
                assert_eq!(&got, want, "content of {name}");
                let on_server = fs.backend().file_content(&format!("{DIR}/{name}"));
                assert_eq!(on_server.as_ref(), Some(want), "server copy of {name}");
            }
        }
    }
    assert_eq!(fs.backend().open_handles(), 0, "every handle closed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let fs = Filesystem::new(MemoryBackend::new(DIR), DIR);
            let mut model = Model::default();
            for op in &ops {
                apply(&fs, &mut model, op).await;
                check(&fs, &model).await;
            }
        });
    }
}

fn faulty() -> Filesystem<FaultyBackend<MemoryBackend>> {
    let backend =
        FaultyBackend::new(MemoryBackend::new(DIR)).with_deadline(Duration::from_millis(300));
    Filesystem::new(backend, DIR)
}

#[tokio::test]
async fn a_disconnect_fails_queued_writes_at_flush_and_reconnected_opens_work() {
    let fs = faulty();
    let (entry, fh) = fs
        .create(ROOT, OsStr::new("f"), 0o644, libc::O_WRONLY)
        .await
        .unwrap();
    fs.backend().set_delay(Duration::from_millis(100));
    // Queued (write-behind) before the cut: acknowledged, then lost with the connection.
    fs.write(fh, 0, vec![1; 1000]).await.unwrap();
    fs.backend().disconnect();
    let started = Instant::now();
    let err = fs.flush(fh).await.unwrap_err();
    // ENOTCONN if the write was in flight at the cut, EIO if it was still queued (its handle
    // belongs to the lost connection).
    let errno = err.errno();
    assert!(errno == libc::ENOTCONN || errno == libc::EIO, "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The error stays: a later write, fsync and the release report it too.
    assert_eq!(
        fs.write(fh, 1000, vec![2]).await.unwrap_err().errno(),
        errno
    );
    assert_eq!(fs.fsync(fh).await.unwrap_err().errno(), errno);
    // While down, new requests fail at once.
    let started = Instant::now();
    assert_eq!(
        fs.getattr(entry.ino, None).await.unwrap_err().errno(),
        libc::ENOTCONN
    );
    assert!(started.elapsed() < Duration::from_millis(200));

    fs.backend().set_delay(Duration::ZERO);
    fs.backend().reconnect();
    assert_eq!(fs.release(fh).await.unwrap_err().errno(), errno);
    let (fh, _) = fs.open(entry.ino, libc::O_WRONLY).await.unwrap();
    fs.write(fh, 0, b"again".to_vec()).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(
        fs.backend()
            .inner()
            .file_content(&format!("{DIR}/f"))
            .unwrap(),
        b"again"
    );
}

#[tokio::test]
async fn a_handle_of_a_lost_connection_fails_with_eio_after_reconnecting() {
    let fs = faulty();
    let (entry, fh) = fs
        .create(ROOT, OsStr::new("f"), 0o644, libc::O_RDWR)
        .await
        .unwrap();
    fs.backend().disconnect();
    fs.backend().reconnect();
    assert_eq!(fs.read(fh, 0, 10).await.unwrap_err().errno(), libc::EIO);
    // stat through the dead handle falls back to the name.
    assert_eq!(fs.getattr(entry.ino, Some(fh)).await.unwrap().attrs.size, 0);
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn a_stalled_server_times_out_instead_of_blocking_callers() {
    let fs = faulty();
    let (_, fh) = fs
        .create(ROOT, OsStr::new("f"), 0o644, libc::O_WRONLY)
        .await
        .unwrap();
    fs.backend().set_delay(Duration::from_secs(3600));
    let started = Instant::now();
    assert_eq!(
        fs.lookup(ROOT, OsStr::new("g")).await.unwrap_err().errno(),
        libc::ETIMEDOUT
    );
    fs.write(fh, 0, vec![0; 10]).await.unwrap();
    assert_eq!(fs.flush(fh).await.unwrap_err().errno(), libc::ETIMEDOUT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_failed_write_is_reported_at_close_not_lost() {
    let fs = faulty();
    let (_, fh) = fs
        .create(ROOT, OsStr::new("f"), 0o644, libc::O_WRONLY)
        .await
        .unwrap();
    fs.backend().fail_writes_after(2);
    for i in 0..4u64 {
        // Some of these are acknowledged before the failure is known.
        let _ = fs.write(fh, i * 10, vec![1; 10]).await;
    }
    let err = fs.release(fh).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
}

//! The node's counters and their Prometheus exposition.
//!
//! - [`Timeslice`]: what happened in the last *complete* reporting interval (60 s, as the seed's
//!   `…LastTimeslice` counters), from a clock the caller passes in.
//! - [`TransferCounters`]: the seed's six counters (files and bytes, up and down, totals and last
//!   timeslice). There is one per process, [`TRANSFER_COUNTERS`], which the transfer code bumps when an
//!   upload is stored and logged and when a download's body ends.
//! - [`Metrics`]: the Prometheus registry served at `/metrics`: the counters, one gauge per seed
//!   alarm and a request-latency histogram by route, method and status class (each label from
//!   a fixed set, so anonymous requests cannot add series).
//!
//! `docs/operations-endpoints.md` maps each metric to the seed's counter and alarm names.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use mft_journal::Alarm;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// The seed's reporting interval ("typically 60 seconds").
pub const TIMESLICE: Duration = Duration::from_secs(60);

/// Files and bytes moved in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
}

/// TransferService counted per fixed interval: the one in progress and the last complete one.
///
/// Intervals are aligned on the instant the `Timeslice` was made; an interval in which nothing
/// happened counts as a complete interval with nothing in it.
#[derive(Debug, Clone)]
pub struct Timeslice {
    length: Duration,
    /// When the interval in progress began.
    start: Instant,
    current: Tally,
    last: Tally,
}

impl Timeslice {
    /// A timeslice of `length` whose first interval starts at `now`.
    pub fn new(length: Duration, now: Instant) -> Self {
        assert!(!length.is_zero(), "a timeslice must last");
        Self {
            length,
            start: now,
            current: Tally::default(),
            last: Tally::default(),
        }
    }

    /// Counts `files` and `bytes` at `now`.
    pub fn add(&mut self, now: Instant, files: u64, bytes: u64) {
        self.advance(now);
        self.current.files += files;
        self.current.bytes += bytes;
    }

    /// What the last complete interval before `now` counted.
    pub fn last(&mut self, now: Instant) -> Tally {
        self.advance(now);
        self.last
    }

    /// Closes the intervals that have ended by `now`.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        let ended = elapsed.as_nanos() / self.length.as_nanos();
        if ended == 0 {
            return;
        }
        // Only when exactly one interval ended is the one in progress the last complete one;
        // after a longer gap, the last complete interval was an empty one.
        self.last = if ended == 1 {
            self.current
        } else {
            Tally::default()
        };
        self.current = Tally::default();
        let ended = u32::try_from(ended).unwrap_or(u32::MAX);
        self.start += self.length.saturating_mul(ended);
    }
}

/// The source of [`Instant`]s for the timeslices; tests pass a clock they move by hand.
pub type MonotonicClock = Box<dyn Fn() -> Instant + Send + Sync>;

/// The seed's counters: totals since httpd started and the last complete timeslice.
pub struct TransferCounters {
    clock: MonotonicClock,
    files_uploaded: Counter,
    bytes_uploaded: Counter,
    files_downloaded: Counter,
    bytes_downloaded: Counter,
    /// Uploads, then downloads.
    slices: Mutex<[Timeslice; 2]>,
}

/// The counters at one instant, as `/status` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransferCounts {
    pub uploaded: Tally,
    pub downloaded: Tally,
    pub uploaded_last_timeslice: Tally,
    pub downloaded_last_timeslice: Tally,
    /// The timeslice's length, in seconds.
    pub timeslice_seconds: u64,
}

/// The process's counters, bumped by the transfer code.
pub static TRANSFER_COUNTERS: LazyLock<Arc<TransferCounters>> =
    LazyLock::new(|| Arc::new(TransferCounters::new(TIMESLICE, Box::new(Instant::now))));

impl TransferCounters {
    /// Counters whose timeslices last `slice`, timed by `clock`.
    pub fn new(slice: Duration, clock: MonotonicClock) -> Self {
        let now = clock();
        Self {
            clock,
            files_uploaded: Counter::default(),
            bytes_uploaded: Counter::default(),
            files_downloaded: Counter::default(),
            bytes_downloaded: Counter::default(),
            slices: Mutex::new([Timeslice::new(slice, now), Timeslice::new(slice, now)]),
        }
    }

    /// An upload of `bytes` was stored and its `Post` row committed.
    pub fn upload_completed(&self, bytes: u64) {
        self.files_uploaded.inc();
        self.bytes_uploaded.inc_by(bytes);
        self.slices()[0].add((self.clock)(), 1, bytes);
    }

    /// A download's body ended after `sent` bytes; it counts as a file downloaded if `complete`.
    pub fn download_ended(&self, sent: u64, complete: bool) {
        let files = u64::from(complete);
        self.files_downloaded.inc_by(files);
        self.bytes_downloaded.inc_by(sent);
        self.slices()[1].add((self.clock)(), files, sent);
    }

    pub fn snapshot(&self) -> TransferCounts {
        let now = (self.clock)();
        let mut slices = self.slices();
        TransferCounts {
            uploaded: Tally {
                files: self.files_uploaded.get(),
                bytes: self.bytes_uploaded.get(),
            },
            downloaded: Tally {
                files: self.files_downloaded.get(),
                bytes: self.bytes_downloaded.get(),
            },
            uploaded_last_timeslice: slices[0].last(now),
            downloaded_last_timeslice: slices[1].last(now),
            timeslice_seconds: slices[0].length.as_secs(),
        }
    }

    fn slices(&self) -> std::sync::MutexGuard<'_, [Timeslice; 2]> {
        self.slices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlarmLabels {
    name: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The matched route pattern (`/files/{path:.*}`), or `none`: bounded cardinality.
    route: String,
    /// One of [`METHOD_LABELS`], or `other`: bounded cardinality, whatever clients send.
    method: &'static str,
    /// `2xx`, `4xx`, …
    status: &'static str,
}

/// The request methods that get a label of their own; any other method is counted as `other`.
pub const METHOD_LABELS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE", "PATCH"];

type RequestHistograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The registry behind `/metrics`.
pub struct Metrics {
    registry: Registry,
    counters: Arc<TransferCounters>,
    /// files up, bytes up, files down, bytes down: set from the timeslices at each scrape.
    last_timeslice: [Gauge; 4],
    alarms: Family<AlarmLabels, Gauge>,
    requests: RequestHistograms,
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    pub fn new(counters: Arc<TransferCounters>) -> Self {
        let mut registry = Registry::default();
        let totals = [
            (
                "mft_files_uploaded",
                "Files uploaded (stored and logged) since httpd started (seed: MFTFilesUploaded)",
                &counters.files_uploaded,
            ),
            (
                "mft_bytes_uploaded",
                "Bytes uploaded since httpd started",
                &counters.bytes_uploaded,
            ),
            (
                "mft_files_downloaded",
                "Files downloaded completely since httpd started (seed: MFTFilesDownloaded)",
                &counters.files_downloaded,
            ),
            (
                "mft_bytes_downloaded",
                "Bytes sent by downloads since httpd started",
                &counters.bytes_downloaded,
            ),
        ];
        for (name, help, counter) in totals {
            registry.register(name, help, counter.clone());
        }
        let last_timeslice: [Gauge; 4] = Default::default();
        let slices = [
            (
                "mft_files_uploaded_last_timeslice",
                "Files uploaded in the last complete 60 s interval (seed: MFTFilesUploadedLastTimeslice)",
            ),
            (
                "mft_bytes_uploaded_last_timeslice",
                "Bytes uploaded in the last complete 60 s interval (seed: MFTBytesUpoadedLastTimeslice)",
            ),
            (
                "mft_files_downloaded_last_timeslice",
                "Files downloaded in the last complete 60 s interval (seed: MFTFilesDownloadedLastTimeslice)",
            ),
            (
                "mft_bytes_downloaded_last_timeslice",
                "Bytes downloaded in the last complete 60 s interval (seed: MFTBytesDownloadedLastTimeslice)",
            ),
        ];
        for ((name, help), gauge) in slices.into_iter().zip(&last_timeslice) {
            registry.register(name, help, gauge.clone());
        }
        let alarms = Family::<AlarmLabels, Gauge>::default();
        registry.register(
            "mft_alarm",
            "1 while the seed's alarm `name` is raised, else 0",
            alarms.clone(),
        );
        let requests: RequestHistograms =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 4.0, 10)));
        registry.register(
            "mft_http_request_duration_seconds",
            "Time from a request's arrival to its response head, by route, method and status class",
            requests.clone(),
        );
        Self {
            registry,
            counters,
            last_timeslice,
            alarms,
            requests,
        }
    }

    /// Records one request's latency. `route` is the matched pattern, if any.
    pub fn observe_request(
        &self,
        route: Option<&str>,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];
        let labels = RequestLabels {
            route: route.unwrap_or("none").to_owned(),
            method: METHOD_LABELS
                .into_iter()
                .find(|m| *m == method)
                .unwrap_or("other"),
            status: CLASSES
                .get(usize::from(status / 100))
                .copied()
                .unwrap_or("other"),
        };
        self.requests
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition (OpenMetrics text), with the alarm gauges set from `active_alarms` (names)
    /// and the timeslice gauges from the counters now.
    pub fn encode(&self, active_alarms: &[String]) -> String {
        let snapshot = self.counters.snapshot();
        let values = [
            snapshot.uploaded_last_timeslice.files,
            snapshot.uploaded_last_timeslice.bytes,
            snapshot.downloaded_last_timeslice.files,
            snapshot.downloaded_last_timeslice.bytes,
        ];
        for (gauge, value) in self.last_timeslice.iter().zip(values) {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        for alarm in Alarm::SEED {
            let raised = active_alarms.iter().any(|a| a == alarm.name());
            self.alarms
                .get_or_create(&AlarmLabels { name: alarm.name() })
                .set(i64::from(raised));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_timeslice_reports_the_last_complete_interval_only() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut slice = Timeslice::new(MINUTE, t0);
        slice.add(at(1), 1, 100);
        slice.add(at(59), 2, 50);
        assert_eq!(
            slice.last(at(59)),
            Tally::default(),
            "the first interval is still in progress"
        );
        assert_eq!(
            slice.last(at(60)),
            Tally {
                files: 3,
                bytes: 150
            }
        );
        slice.add(at(70), 1, 7);
        assert_eq!(
            slice.last(at(119)),
            Tally {
                files: 3,
                bytes: 150
            }
        );
        assert_eq!(slice.last(at(120)), Tally { files: 1, bytes: 7 });
        // Two intervals later with nothing in between: the last complete one was empty.
        slice.add(at(130), 1, 1);
        assert_eq!(slice.last(at(250)), Tally::default());
        // A clock that went backwards counts into the interval in progress.
        slice.add(at(10), 1, 2);
        assert_eq!(slice.last(at(300)), Tally { files: 1, bytes: 2 });
    }

    /// Counters on a clock the test moves.
    fn counters_on_a_test_clock() -> (Arc<TransferCounters>, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = now.clone();
        let counters = TransferCounters::new(MINUTE, Box::new(move || *clock.lock().unwrap()));
        (Arc::new(counters), now)
    }

    #[test]
    fn counters_total_and_slice_uploads_and_downloads() {
        let (counters, now) = counters_on_a_test_clock();
        counters.upload_completed(1000);
        counters.upload_completed(24);
        counters.download_ended(1024, true);
        counters.download_ended(10, false);
        let snapshot = counters.snapshot();
        assert_eq!(
            snapshot.uploaded,
            Tally {
                files: 2,
                bytes: 1024
            }
        );
        assert_eq!(
            snapshot.downloaded,
            Tally {
                files: 1,
                bytes: 1034
            }
        );
        assert_eq!(snapshot.uploaded_last_timeslice, Tally::default());
        *now.lock().unwrap() += MINUTE;
        let snapshot = counters.snapshot();
        assert_eq!(
            snapshot.uploaded_last_timeslice,
            Tally {
                files: 2,
                bytes: 1024
            }
        );
        assert_eq!(
            snapshot.downloaded_last_timeslice,
            Tally {
                files: 1,
                bytes: 1034
            }
        );
        assert_eq!(snapshot.timeslice_seconds, 60);
    }

    /// The value of the sample line that starts with `series ` in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn the_exposition_carries_counters_slices_alarms_and_latencies() {
        let (counters, now) = counters_on_a_test_clock();
        let metrics = Metrics::new(counters.clone());
        counters.upload_completed(5);
        *now.lock().unwrap() += MINUTE;
        counters.download_ended(3, true);
        metrics.observe_request(Some("/files"), "POST", 201, Duration::from_millis(3));
        metrics.observe_request(None, "GET", 404, Duration::from_micros(100));
        let text = metrics.encode(&["MftDbFullError".into()]);
        assert_eq!(
            sample(&text, "mft_files_uploaded_total"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(&text, "mft_bytes_uploaded_total"), Some(5.0));
        assert_eq!(sample(&text, "mft_files_downloaded_total"), Some(1.0));
        assert_eq!(sample(&text, "mft_bytes_downloaded_total"), Some(3.0));
        assert_eq!(
            sample(&text, "mft_files_uploaded_last_timeslice"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "mft_bytes_uploaded_last_timeslice"),
            Some(5.0)
        );
        assert_eq!(
            sample(&text, "mft_files_downloaded_last_timeslice"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "mft_alarm{name=\"MftDbFullError\"}"),
            Some(1.0)
        );
        for quiet in [
            "MftExtFsMountError",
            "MftExtFsFreeSpaceWarn",
            "MftDbConnectError",
        ] {
            assert_eq!(
                sample(&text, &format!("mft_alarm{{name=\"{quiet}\"}}")),
                Some(0.0),
                "{quiet}"
            );
        }
        assert_eq!(
            sample(
                &text,
                "mft_http_request_duration_seconds_count{route=\"/files\",method=\"POST\",status=\"2xx\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "mft_http_request_duration_seconds_count{route=\"none\",method=\"GET\",status=\"4xx\"}"
            ),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"));
    }

    /// Defect 4 of issue 15: anonymous requests with made-up methods add no series.
    #[test]
    fn request_methods_are_a_fixed_set_of_labels() {
        let (counters, _) = counters_on_a_test_clock();
        let metrics = Metrics::new(counters);
        for i in 0..200 {
            metrics.observe_request(None, &format!("X{i}"), 405, Duration::from_micros(1));
        }
        metrics.observe_request(None, "GET", 404, Duration::from_micros(1));
        let text = metrics.encode(&[]);
        let series = text
            .lines()
            .filter(|l| l.starts_with("mft_http_request_duration_seconds_count{"))
            .count();
        assert_eq!(series, 2, "{text}");
        assert_eq!(
            sample(&text, "mft_http_request_duration_seconds_count{route=\"none\",method=\"other\",status=\"4xx\"}"),
            Some(200.0)
        );
    }
}

//! Sample `aft_log` rows for logd's tests and its benchmark: one upload that passes every
//! check, which a test varies in the fields it is about (`Transfer { jid: …,
//! ..sample::transfer() }`). The unit tests (`crate::sample`), the integration tests
//! (`common::sample`) and the benchmark include this one file; its parent module provides `row`.

use chrono::{TimeZone, Utc};

use super::row::{ChatType, Method, Row, Transfer};

/// An upload of `report.pdf` (1234 bytes) from alice's phone to bob, at 2025-01-02 03:04:05 UTC.
pub fn transfer() -> Transfer {
    Transfer {
        jid: "alice@example.com/phone".into(),
        to_jid: "bob@example.com".into(),
        filename: "Zm9v".into(),
        real_filename: "report.pdf".into(),
        file_type: "pdf".into(),
        chat_type: ChatType::Im,
        file_server: "files.example.com".into(),
        file_path: "/opt/mftFileStore/node_1/files/im/20250102/03/Zm9v".into(),
        file_size: 1234,
        bytes_transferred: 1234,
        timestamp: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        sha256: None,
        event_id: None,
    }
}

/// `transfer` as the row of `method`; panics if a test made it invalid.
pub fn row(method: Method, transfer: Transfer) -> Row {
    Row::new(method, transfer).expect("a sample row is valid")
}

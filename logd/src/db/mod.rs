//! The database side of logd: connections to PostgreSQL or SQLite behind one connection type,
//! the embedded migrations, the startup schema check, the [`Database`] that commits a batch in
//! one transaction, and the sorting of database errors into unreachable / full / refused.
//! Nothing here decides what to reply or which alarm to raise; that is the writer's job.

mod connection;
pub mod schema;
mod verify;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use mft_config::DatabaseKind;

use crate::row::{Amendment, FileMark, Invalid, Method, Row};
use crate::store::{AftStore, Command, CommitError, Done};
use connection::ConnectionManager;
pub use connection::{connect, AnyConnection};
use schema::{aft_log, AftRecord};
pub use verify::SchemaMismatch;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long taking a pooled connection may wait before the batch fails as unreachable.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The same, once the database is known to be unreachable: events fail promptly during an
/// outage, while each batch still tries to reconnect.
const OUTAGE_CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// Why logd cannot use the database at start.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the {kind} database {url}: {message}")]
    Connect {
        kind: &'static str,
        url: String,
        message: String,
    },
    #[error("cannot run the aft_log migrations: {0}")]
    Migrate(String),
    #[error("cannot read the aft_log schema: {0}")]
    Inspect(#[from] DieselError),
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
}

/// The `aft_log` database: a connection pool whose schema has been migrated and verified.
/// Clones share the pool.
#[derive(Clone)]
pub struct Database {
    pool: r2d2::Pool<ConnectionManager>,
    config: mft_config::Database,
    /// Whether the last attempt found the database unreachable.
    unreachable: bool,
}

impl Database {
    /// Connects (`pool_size` connections), runs the pending migrations and verifies the table.
    pub fn open(config: &mft_config::Database) -> Result<Self, DbError> {
        let connect_error = |message: String| DbError::Connect {
            kind: kind_name(config.kind),
            url: redact(&config.url),
            message: message.trim_end().to_owned(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(CONNECTION_TIMEOUT)
            // r2d2 would log every failed connection attempt; its errors carry the last one,
            // and logd logs them where it handles them (at start, and in the writer).
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(ConnectionManager {
                kind: config.kind,
                url: config.url.clone(),
            })
            .map_err(|e| connect_error(e.to_string()))?;
        let mut conn = pool.get().map_err(|e| connect_error(e.to_string()))?;
        let migrations = match config.kind {
            DatabaseKind::Postgres => POSTGRES_MIGRATIONS,
            DatabaseKind::Sqlite => SQLITE_MIGRATIONS,
        };
        let applied = conn
            .run_pending_migrations(migrations)
            .map_err(|e| DbError::Migrate(e.to_string()))?;
        for version in applied {
            log::info!("applied migration {version}");
        }
        verify::compare(&verify::columns(&mut conn)?)?;
        Ok(Self {
            pool,
            config: config.clone(),
            unreachable: false,
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &mft_config::Database {
        &self.config
    }

    /// A connection of the pool, waiting at most `timeout` for one.
    pub fn pooled(
        &self,
        timeout: Duration,
    ) -> Result<impl std::ops::DerefMut<Target = AnyConnection>, String> {
        self.pool.get_timeout(timeout).map_err(|e| e.to_string())
    }

    /// A connection with the pool's timeout for the current state, remembering the outcome.
    fn connection(&mut self) -> Result<r2d2::PooledConnection<ConnectionManager>, CommitError> {
        let timeout = match self.unreachable {
            true => OUTAGE_CONNECTION_TIMEOUT,
            false => CONNECTION_TIMEOUT,
        };
        self.pool
            .get_timeout(timeout)
            .map_err(|e| CommitError::Unreachable(e.to_string()))
    }

    fn remember<T>(&mut self, result: Result<T, CommitError>) -> Result<T, CommitError> {
        self.unreachable = matches!(result, Err(CommitError::Unreachable(_)));
        result
    }
}

/// The differences between the `aft_log` table found through `conn` and DESIGN.md's.
pub fn verify_schema(conn: &mut AnyConnection) -> Result<(), DbError> {
    Ok(verify::compare(&verify::columns(conn)?)?)
}

/// A `LIKE` pattern (escape character `\`) matching text that starts with `prefix`.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn kind_name(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Postgres => "postgres",
        DatabaseKind::Sqlite => "sqlite",
    }
}

/// The URL without its password, fit for logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl AftStore for Database {
    fn commit(&mut self, commands: &[Command]) -> Result<Vec<Result<Done, Invalid>>, CommitError> {
        let result = self.connection().and_then(|mut conn| {
            conn.transaction(|conn| apply(conn, commands))
                .map_err(classify)
        });
        self.remember(result)
    }

    fn probe(&mut self) -> Result<(), CommitError> {
        let result = self.connection().and_then(|mut conn| {
            diesel::sql_query("SELECT 1")
                .execute(&mut *conn)
                .map(drop)
                .map_err(classify)
        });
        self.remember(result)
    }
}

/// The body of one batch's transaction: the rows already written by events of the same
/// `event_id`s, the Post recipients that Get rows take, all inserts, then all `get_end` updates
/// (so that a `get_end` finds a Get row inserted earlier in the same batch), then the
/// amendments and file marks of Post rows, in batch order. An insert whose `event_id` a row
/// already has (or an earlier insert of the batch claims) is not made again and is answered with
/// that row. A `get_end`, an amendment, a mark or a lookup is answered with the `aft_index` of
/// its row, or refused alone if there is none.
fn apply(
    conn: &mut AnyConnection,
    commands: &[Command],
) -> QueryResult<Vec<Result<Done, Invalid>>> {
    let mut events = recorded_events(conn, commands)?;
    let mut claimed = HashSet::new();
    // Per command, the record it inserts, if it inserts one.
    let mut rows = Vec::with_capacity(commands.len());
    for command in commands {
        let record = match command {
            Command::Insert(row) | Command::InsertToPostRecipient(row)
                if row
                    .transfer()
                    .event_id
                    .as_ref()
                    .is_some_and(|id| events.contains_key(id) || !claimed.insert(id)) =>
            {
                None
            }
            Command::Insert(row) => Some(AftRecord::from(row)),
            Command::InsertToPostRecipient(row) => {
                let mut record = AftRecord::from(row);
                if let Some(to_jid) = post_recipient(conn, &record.filename)? {
                    record.to_jid = to_jid;
                }
                Some(record)
            }
            Command::GetEnd { .. }
            | Command::AmendPost(_)
            | Command::MarkFile(_)
            | Command::Lookup(_) => None,
        };
        rows.push(record);
    }
    let records: Vec<&AftRecord> = rows.iter().flatten().collect();
    let ends: Vec<(i64, i64)> = commands
        .iter()
        .filter_map(|c| match c {
            Command::GetEnd {
                aft_index,
                bytes_transferred,
            } => Some((*aft_index, *bytes_transferred)),
            _ => None,
        })
        .collect();
    let (indexes, updated) = match conn {
        AnyConnection::Postgres(pg) => {
            (insert_postgres(pg, &records)?, update_postgres(pg, &ends)?)
        }
        AnyConnection::Sqlite(sqlite) => (
            insert_sqlite(sqlite, &records)?,
            update_sqlite(sqlite, &ends)?,
        ),
    };
    let mut indexes = indexes.into_iter();
    let inserted: Vec<Option<Event>> = rows
        .iter()
        .map(|row| {
            row.as_ref().map(|row| {
                let event = Event {
                    aft_index: indexes.next().expect("one index per insert"),
                    to_jid: row.to_jid.clone(),
                };
                if let Some(id) = &row.event_id {
                    events.insert(id.clone(), event.clone());
                }
                event
            })
        })
        .collect();
    // Per amendment and mark, in batch order, the Post row it changed.
    let mut changed = Vec::new();
    for command in commands {
        match command {
            Command::AmendPost(amendment) => changed.push(amend_post(conn, amendment)?),
            Command::MarkFile(mark) => changed.push(mark_file(conn, mark)?),
            _ => {}
        }
    }
    let mut changed = changed.into_iter();
    // The row an insert wrote, or the one that has its event id.
    let row_of = |row: &Row, inserted: Option<Event>| {
        inserted.unwrap_or_else(|| {
            let id = row
                .transfer()
                .event_id
                .as_ref()
                .expect("only inserts with an event id are skipped");
            events[id].clone()
        })
    };
    Ok(commands
        .iter()
        .zip(inserted)
        .map(|(command, inserted)| match command {
            Command::Insert(row) => Ok(Done::row(row_of(row, inserted).aft_index)),
            Command::InsertToPostRecipient(row) => {
                let Event { aft_index, to_jid } = row_of(row, inserted);
                Ok(Done {
                    aft_index,
                    to_jid: Some(to_jid),
                })
            }
            Command::GetEnd { aft_index, .. } if updated.contains(aft_index) => {
                Ok(Done::row(*aft_index))
            }
            Command::GetEnd { aft_index, .. } => Err(Invalid::new(
                "aft_index",
                format!("there is no Get row with aft_index {aft_index}"),
            )),
            Command::AmendPost(amendment) => changed
                .next()
                .expect("one result per amendment")
                .map(Done::row)
                .ok_or_else(|| {
                    Invalid::new(
                        "filename",
                        format!("there is no Post row of {:?}", amendment.filename),
                    )
                }),
            Command::MarkFile(mark) => changed
                .next()
                .expect("one result per mark")
                .map(Done::row)
                .ok_or_else(|| {
                    Invalid::new(
                        "filename",
                        format!(
                            "there is no Post row of {:?} at {:?}",
                            mark.filename, mark.file_path
                        ),
                    )
                }),
            Command::Lookup(id) => events
                .get(id)
                .map(|event| Done::row(event.aft_index))
                .ok_or_else(|| Invalid::new("event_id", format!("no row has event_id {id:?}"))),
        })
        .collect())
}

/// A row written by an event with an `event_id`: its index and recipient.
#[derive(Debug, Clone)]
struct Event {
    aft_index: i64,
    to_jid: String,
}

/// The rows that already carry an `event_id` named by `commands` (an insert's or a lookup's).
fn recorded_events(
    conn: &mut AnyConnection,
    commands: &[Command],
) -> QueryResult<HashMap<String, Event>> {
    let ids: Vec<&str> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Insert(row) | Command::InsertToPostRecipient(row) => {
                row.transfer().event_id.as_deref()
            }
            Command::Lookup(id) => Some(id.as_str()),
            Command::GetEnd { .. } | Command::AmendPost(_) | Command::MarkFile(_) => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Option<String>, i64, String)> = aft_log::table
        .filter(aft_log::event_id.eq_any(&ids))
        .select((aft_log::event_id, aft_log::aft_index, aft_log::to_jid))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, aft_index, to_jid)| Some((id?, Event { aft_index, to_jid })))
        .collect())
}

/// The `to_jid` of the Post row of `filename` (the first, should there be several).
fn post_recipient(conn: &mut AnyConnection, filename: &str) -> QueryResult<Option<String>> {
    aft_log::table
        .filter(aft_log::method.eq(Method::Post.as_str()))
        .filter(aft_log::filename.eq(filename))
        .order(aft_log::aft_index)
        .select(aft_log::to_jid)
        .first(conn)
        .optional()
}

/// Sets the recipient, chat type and path of the Post row of `amendment.filename`; its
/// `aft_index`, or `None` if there is no such row.
fn amend_post(conn: &mut AnyConnection, amendment: &Amendment) -> QueryResult<Option<i64>> {
    let post = aft_log::table
        .filter(aft_log::method.eq(Method::Post.as_str()))
        .filter(aft_log::filename.eq(&amendment.filename));
    diesel::update(post)
        .set((
            aft_log::to_jid.eq(&amendment.to_jid),
            aft_log::chat_type.eq(amendment.chat_type.as_str()),
            aft_log::file_path.eq(&amendment.file_path),
        ))
        .execute(conn)?;
    post.order(aft_log::aft_index)
        .select(aft_log::aft_index)
        .first(conn)
        .optional()
}

/// Sets `file_state` of the Post rows of `mark.filename` at `mark.file_path`, whatever it was
/// (a row that reconcile marked `missing` before the mark came is expired all the same);
/// returns the first one's `aft_index`, or `None` if there is none.
fn mark_file(conn: &mut AnyConnection, mark: &FileMark) -> QueryResult<Option<i64>> {
    let post = aft_log::table
        .filter(aft_log::method.eq(Method::Post.as_str()))
        .filter(aft_log::filename.eq(&mark.filename))
        .filter(aft_log::file_path.eq(&mark.file_path));
    diesel::update(post)
        .set(aft_log::file_state.eq(mark.file_state.as_str()))
        .execute(conn)?;
    post.order(aft_log::aft_index)
        .select(aft_log::aft_index)
        .first(conn)
        .optional()
}

/// One `aft_index` returned by a statement written in SQL.
#[derive(QueryableByName)]
struct AftIndex {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    aft_index: i64,
}

/// Inserts `records` on PostgreSQL. One record is one `INSERT … RETURNING aft_index`. More go
/// in two statements whatever their number, each prepared once per connection: their
/// `aft_index`es are drawn from the table's sequence first, then all rows go in with them, as
/// columns of arrays (`unnest`). Each record thus knows its index without the server returning
/// the rows (RETURNING promises no order).
fn insert_postgres(
    conn: &mut diesel::PgConnection,
    records: &[&AftRecord],
) -> QueryResult<Vec<i64>> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
    match records {
        [] => return Ok(Vec::new()),
        [record] => {
            return diesel::insert_into(aft_log::table)
                .values(*record)
                .returning(aft_log::aft_index)
                .get_result(conn)
                .map(|index| vec![index])
        }
        _ => {}
    }
    let count = i32::try_from(records.len()).expect("a batch is at most 10,000 events");
    let indexes: Vec<i64> = diesel::sql_query(
        "SELECT nextval(pg_get_serial_sequence('aft_log', 'aft_index')) AS aft_index \
         FROM generate_series(1, $1)",
    )
    .bind::<Integer, _>(count)
    .load::<AftIndex>(conn)?
    .into_iter()
    .map(|d| d.aft_index)
    .collect();
    let text = |field: fn(&AftRecord) -> &str| records.iter().map(|r| field(r)).collect::<Vec<_>>();
    let count = |field: fn(&AftRecord) -> i64| records.iter().map(|r| field(r)).collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO aft_log (aft_index, jid, to_jid, method, filename, real_filename, file_type, \
         chat_type, file_server, file_path, file_size, bytes_transferred, timestampvalue, sha256, \
         event_id) \
         SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::varchar[], \
         $5::varchar[], $6::varchar[], $7::varchar[], $8::varchar[], $9::varchar[], $10::varchar[], \
         $11::bigint[], $12::bigint[], $13::timestamp[], $14::varchar[], $15::varchar[])",
    )
    .bind::<Array<BigInt>, _>(&indexes)
    .bind::<Array<Text>, _>(text(|r| &r.jid))
    .bind::<Array<Text>, _>(text(|r| &r.to_jid))
    .bind::<Array<Text>, _>(text(|r| &r.method))
    .bind::<Array<Text>, _>(text(|r| &r.filename))
    .bind::<Array<Text>, _>(text(|r| &r.real_filename))
    .bind::<Array<Text>, _>(text(|r| &r.file_type))
    .bind::<Array<Text>, _>(text(|r| &r.chat_type))
    .bind::<Array<Text>, _>(text(|r| &r.file_server))
    .bind::<Array<Text>, _>(text(|r| &r.file_path))
    .bind::<Array<BigInt>, _>(count(|r| r.file_size))
    .bind::<Array<BigInt>, _>(count(|r| r.bytes_transferred))
    .bind::<Array<Timestamp>, _>(records.iter().map(|r| r.timestampvalue).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(records.iter().map(|r| r.sha256.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(records.iter().map(|r| r.event_id.as_deref()).collect::<Vec<_>>())
    .execute(conn)?;
    Ok(indexes)
}

/// Inserts `records` on SQLite one row per statement, the same prepared statement each time
/// (SQLite runs in-process: a statement costs no round trip, and a small one is far cheaper to
/// run than one multi-row statement is to compile); each returns its own row's `aft_index`.
fn insert_sqlite(
    conn: &mut diesel::SqliteConnection,
    records: &[&AftRecord],
) -> QueryResult<Vec<i64>> {
    records
        .iter()
        .map(|record| {
            diesel::insert_into(aft_log::table)
                .values(*record)
                .returning(aft_log::aft_index)
                .get_result(conn)
        })
        .collect()
}

/// Sets `bytes_transferred` of the Get rows named by `ends` (`(aft_index, bytes_transferred)`
/// of each `get_end`, in batch order) on PostgreSQL, in one statement whatever their number: the
/// values go in as columns of arrays (`UPDATE … FROM unnest(…)`), and the server returns the
/// `aft_index`es of the rows updated. An `aft_index` named twice takes its last value, as one
/// `UPDATE` per `get_end` in order would (given both, PostgreSQL would update the row once, with
/// either value).
fn update_postgres(
    conn: &mut diesel::PgConnection,
    ends: &[(i64, i64)],
) -> QueryResult<HashSet<i64>> {
    use diesel::sql_types::{Array, BigInt, Text};
    if ends.is_empty() {
        return Ok(HashSet::new());
    }
    // Later values replace earlier ones.
    let last: HashMap<i64, i64> = ends.iter().copied().collect();
    let (indexes, bytes): (Vec<i64>, Vec<i64>) = last.into_iter().unzip();
    diesel::sql_query(
        "UPDATE aft_log SET bytes_transferred = v.bytes_transferred \
         FROM unnest($1::bigint[], $2::bigint[]) AS v(aft_index, bytes_transferred) \
         WHERE aft_log.aft_index = v.aft_index AND aft_log.method = $3 \
         RETURNING aft_log.aft_index",
    )
    .bind::<Array<BigInt>, _>(&indexes)
    .bind::<Array<BigInt>, _>(&bytes)
    .bind::<Text, _>(Method::Get.as_str())
    .load::<AftIndex>(conn)
    .map(|rows| rows.into_iter().map(|r| r.aft_index).collect())
}

/// The same on SQLite: one run of the same prepared `UPDATE` per `get_end`, in batch order (no
/// round trips to save, as for inserts).
fn update_sqlite(
    conn: &mut diesel::SqliteConnection,
    ends: &[(i64, i64)],
) -> QueryResult<HashSet<i64>> {
    let mut updated = HashSet::new();
    for &(aft_index, bytes_transferred) in ends {
        let rows = diesel::update(
            aft_log::table
                .filter(aft_log::aft_index.eq(aft_index))
                .filter(aft_log::method.eq(Method::Get.as_str())),
        )
        .set(aft_log::bytes_transferred.eq(bytes_transferred))
        .execute(conn)?;
        if rows > 0 {
            updated.insert(aft_index);
        }
    }
    Ok(updated)
}

/// Sorts a failed transaction by what the writer should do about it.
fn classify(error: DieselError) -> CommitError {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => CommitError::Unreachable(info.message().to_owned()),
        DieselError::DatabaseError(_, info) if is_full(info.message(), info.hint()) => {
            CommitError::Full(info.message().to_owned())
        }
        DieselError::DatabaseError(_, info) => CommitError::Refused(info.message().to_owned()),
        other => CommitError::Unreachable(other.to_string()),
    }
}

/// Whether a database error says the disk or tablespace is full.
///
/// SQLite's `SQLITE_FULL` always reads "database or disk is full". PostgreSQL reports it as
/// SQLSTATE 53100 (`disk_full`, class 53), but diesel does not expose the SQLSTATE of an error
/// it does not map, so its message and hint are recognised instead: the server's
/// "could not extend file …: No space left on device" with the hint "Check free disk space.",
/// and "could not write …: No space left on device" (messages of a server running with English
/// `lc_messages`, the default).
fn is_full(message: &str, hint: Option<&str>) -> bool {
    message.contains("database or disk is full")
        || message.contains("No space left on device")
        || hint == Some("Check free disk space.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::{ChatType, Transfer};
    use crate::sample;
    use diesel::connection::SimpleConnection;

    /// The `aft_index` of each result.
    fn indexes(results: Vec<Result<Done, Invalid>>) -> Vec<Result<i64, Invalid>> {
        results
            .into_iter()
            .map(|r| r.map(|done| done.aft_index))
            .collect()
    }

    /// Runs `test` on a fresh SQLite database file.
    fn on_sqlite(test: fn(mft_config::Database)) {
        let dir = tempfile::tempdir().unwrap();
        test(mft_config::Database {
            url: dir.path().join("aft_log.sqlite3").display().to_string(),
            ..Default::default()
        });
    }

    /// Runs `test` on a database of a throwaway PostgreSQL server.
    fn on_postgres(test: fn(mft_config::Database)) {
        let pg = mft_tests::Postgres::start().expect("start a throwaway PostgreSQL");
        test(mft_config::Database {
            kind: DatabaseKind::Postgres,
            url: pg.create_database("mft_node_1").unwrap(),
            ..Default::default()
        });
    }

    /// A sample transfer by `jid` to b@x of the file `f` at `/f`, no bytes moved.
    fn transfer(jid: &str) -> Transfer {
        Transfer {
            jid: jid.into(),
            to_jid: "b@x".into(),
            filename: "f".into(),
            file_path: "/f".into(),
            file_size: 0,
            bytes_transferred: 0,
            ..sample::transfer()
        }
    }

    fn insert(method: Method, transfer: Transfer) -> Command {
        Command::Insert(sample::row(method, transfer))
    }

    #[test]
    fn jid_prefixes_match_literally() {
        assert_eq!(like_prefix("alice@example.com"), "alice@example.com%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(
            redact("postgres://mft:s3cret@db.example.com/mft"),
            "postgres://mft:***@db.example.com/mft"
        );
        assert_eq!(redact("postgres://mft@db/mft"), "postgres://mft@db/mft");
        assert_eq!(
            redact("/var/lib/mft/aft_log.sqlite3"),
            "/var/lib/mft/aft_log.sqlite3"
        );
    }

    /// An error as diesel gives it for a statement the server refused.
    struct ServerError {
        message: &'static str,
        hint: Option<&'static str>,
    }

    impl diesel::result::DatabaseErrorInformation for ServerError {
        fn message(&self) -> &str {
            self.message
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            self.hint
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn refused(
        kind: DatabaseErrorKind,
        message: &'static str,
        hint: Option<&'static str>,
    ) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(ServerError { message, hint }))
    }

    #[test]
    fn full_disks_are_recognised() {
        // PostgreSQL, SQLSTATE 53100 (disk_full): md.c's extension failure, and a write failure.
        assert_eq!(
            classify(refused(
                DatabaseErrorKind::Unknown,
                "could not extend file \"base/16384/16385\": No space left on device",
                Some("Check free disk space."),
            )),
            CommitError::Full(
                "could not extend file \"base/16384/16385\": No space left on device".into()
            )
        );
        assert!(matches!(
            classify(refused(
                DatabaseErrorKind::Unknown,
                "could not write to file \"base/pgsql_tmp/t1\": No space left on device",
                None
            )),
            CommitError::Full(_)
        ));
        // The same with a translated message: the hint alone (if also English) suffices.
        assert!(matches!(
            classify(refused(
                DatabaseErrorKind::Unknown,
                "kann Datei nicht erweitern",
                Some("Check free disk space.")
            )),
            CommitError::Full(_)
        ));
        // SQLite's SQLITE_FULL.
        assert!(matches!(
            classify(refused(
                DatabaseErrorKind::Unknown,
                "database or disk is full",
                None
            )),
            CommitError::Full(_)
        ));
    }

    #[test]
    fn other_errors_are_refusals_or_outages() {
        assert!(matches!(
            classify(refused(
                DatabaseErrorKind::UniqueViolation,
                "duplicate key value violates unique constraint",
                None
            )),
            CommitError::Refused(_)
        ));
        assert!(matches!(
            classify(refused(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection unexpectedly",
                None
            )),
            CommitError::Unreachable(_)
        ));
        assert!(matches!(
            classify(DieselError::BrokenTransactionManager),
            CommitError::Unreachable(_)
        ));
    }

    /// Commits, on a fresh database, rows 1 (Get), 2 (Post) and 3 (Get), then a batch mixing
    /// inserts with `get_end`s: of earlier rows, of a row inserted in the same batch, of one row
    /// twice (the last value wins), of a Post row and of no row (each refused alone); and checks
    /// the replies and the table.
    fn get_ends_in_one_batch(config: mft_config::Database) {
        let mut db = Database::open(&config).unwrap();
        let get = || insert(Method::Get, transfer("a@x"));
        let end = |aft_index, bytes_transferred| Command::GetEnd {
            aft_index,
            bytes_transferred,
        };
        let earlier = [get(), insert(Method::Post, transfer("b@x")), get()];
        assert_eq!(indexes(db.commit(&earlier).unwrap()), [Ok(1), Ok(2), Ok(3)]);
        let batch = [
            end(1, 10),
            get(),
            end(3, 30),
            end(4, 40),
            end(1, 11),
            end(2, 20),
            end(99, 90),
            insert(Method::Post, transfer("c@x")),
        ];
        let no_get_row = |n| {
            Err(Invalid::new(
                "aft_index",
                format!("there is no Get row with aft_index {n}"),
            ))
        };
        assert_eq!(
            indexes(db.commit(&batch).unwrap()),
            [
                Ok(1),
                Ok(4),
                Ok(3),
                Ok(4),
                Ok(1),
                no_get_row(2),
                no_get_row(99),
                Ok(5)
            ]
        );
        // A batch of one get_end.
        assert_eq!(indexes(db.commit(&[end(3, 31)]).unwrap()), [Ok(3)]);
        let rows: Vec<(i64, String, i64)> = aft_log::table
            .order(aft_log::aft_index)
            .select((
                aft_log::aft_index,
                aft_log::method,
                aft_log::bytes_transferred,
            ))
            .load(&mut connect(&config).unwrap())
            .unwrap();
        let expected = [
            (1, "Get", 11),
            (2, "Post", 0),
            (3, "Get", 31),
            (4, "Get", 40),
            (5, "Post", 0),
        ];
        assert_eq!(
            rows,
            expected.map(|(index, method, bytes)| (index, method.to_owned(), bytes))
        );
    }

    /// A file's trail as shares make it: a Post row to a placeholder, a Get addressed to the
    /// Post's recipient (before and after the first share amends it, and in the same batch as
    /// the amendment), a `Share` row, an amendment of no Post row (refused alone).
    fn shares_amend_the_post_row(config: mft_config::Database) {
        let mut db = Database::open(&config).unwrap();
        let post = insert(
            Method::Post,
            Transfer {
                to_jid: "anonymous@node_1".into(),
                filename: "f1".into(),
                ..transfer("alice@x")
            },
        );
        let get = |jid: &str| {
            let get = Transfer {
                to_jid: "anonymous@node_1".into(),
                filename: "f1".into(),
                ..transfer(jid)
            };
            Command::InsertToPostRecipient(sample::row(Method::Get, get))
        };
        let amend = |filename: &str| {
            Command::AmendPost(Amendment {
                filename: filename.into(),
                to_jid: "room@conference.x".into(),
                chat_type: ChatType::Persistent,
                file_path: "/srv/files/persistent/20250102/03/f1".into(),
            })
        };
        let share = insert(
            Method::Share,
            Transfer {
                to_jid: "dave@x".into(),
                filename: "f1".into(),
                ..transfer("alice@x")
            },
        );
        assert_eq!(
            indexes(db.commit(&[post, get("bob@x")]).unwrap()),
            [Ok(1), Ok(2)]
        );
        assert_eq!(
            indexes(
                db.commit(&[amend("f1"), get("carol@x"), share, amend("nothing")])
                    .unwrap()
            ),
            [
                Ok(1),
                Ok(3),
                Ok(4),
                Err(Invalid::new(
                    "filename",
                    "there is no Post row of \"nothing\""
                ))
            ]
        );
        let done = db.commit(&[get("dave@x")]).unwrap();
        assert_eq!(
            done,
            [Ok(Done {
                aft_index: 5,
                to_jid: Some("room@conference.x".into())
            })],
            "the reply names the recipient the row took"
        );
        let rows: Vec<(String, String, String, String, String)> = aft_log::table
            .order(aft_log::aft_index)
            .select((
                aft_log::method,
                aft_log::jid,
                aft_log::to_jid,
                aft_log::chat_type,
                aft_log::file_path,
            ))
            .load(&mut connect(&config).unwrap())
            .unwrap();
        let moved = "/srv/files/persistent/20250102/03/f1";
        let expected = [
            ("Post", "alice@x", "room@conference.x", "persistent", moved),
            ("Get", "bob@x", "anonymous@node_1", "im", "/f"),
            // The Get rows of a batch take the recipient the Post row had before the batch.
            ("Get", "carol@x", "anonymous@node_1", "im", "/f"),
            ("Share", "alice@x", "dave@x", "im", "/f"),
            ("Get", "dave@x", "room@conference.x", "im", "/f"),
        ];
        assert_eq!(
            rows,
            expected.map(|(m, j, t, c, p)| (m.into(), j.into(), t.into(), c.into(), p.into()))
        );
    }

    /// Files removed on purpose mark their Post rows `expired`: found by filename and path (the
    /// path an amendment earlier in the batch set), never a Get row of the same file, whatever
    /// the row's state was (reconcile's `missing`), again without harm; a mark of no Post row is
    /// refused alone.
    fn files_are_marked_expired(config: mft_config::Database) {
        let mut db = Database::open(&config).unwrap();
        let at = |filename: &str, file_path: &str| Transfer {
            filename: filename.into(),
            file_path: file_path.into(),
            ..transfer("a@x")
        };
        let mark = |filename: &str, file_path: &str| {
            Command::MarkFile(FileMark {
                filename: filename.into(),
                file_path: file_path.into(),
                file_state: crate::row::FileState::Expired,
            })
        };
        let rows = [
            insert(Method::Post, at("f1", "/im/f1")),
            insert(Method::Get, at("f1", "/im/f1")),
            insert(Method::Post, at("f2", "/im/f2")),
            insert(Method::Post, at("f3", "/im/f3")),
        ];
        assert_eq!(
            indexes(db.commit(&rows).unwrap()),
            [Ok(1), Ok(2), Ok(3), Ok(4)]
        );
        let mut conn = connect(&config).unwrap();
        diesel::update(aft_log::table.filter(aft_log::aft_index.eq(4)))
            .set(aft_log::file_state.eq("missing"))
            .execute(&mut conn)
            .unwrap();
        let moved = Command::AmendPost(Amendment {
            filename: "f2".into(),
            to_jid: "room@conference.x".into(),
            chat_type: ChatType::Persistent,
            file_path: "/persistent/f2".into(),
        });
        let batch = [
            mark("f1", "/im/f1"),
            mark("f1", "/elsewhere/f1"),
            moved,
            mark("f2", "/persistent/f2"),
            mark("f3", "/im/f3"),
            mark("f1", "/im/f1"),
        ];
        assert_eq!(
            indexes(db.commit(&batch).unwrap()),
            [
                Ok(1),
                Err(Invalid::new(
                    "filename",
                    "there is no Post row of \"f1\" at \"/elsewhere/f1\""
                )),
                Ok(3),
                Ok(3),
                Ok(4),
                Ok(1)
            ]
        );
        let states: Vec<Option<String>> = aft_log::table
            .order(aft_log::aft_index)
            .select(aft_log::file_state)
            .load(&mut conn)
            .unwrap();
        let expired = || Some("expired".to_owned());
        assert_eq!(states, [expired(), None, expired(), expired()]);
    }

    #[test]
    fn sqlite_files_are_marked_expired() {
        on_sqlite(files_are_marked_expired);
    }

    #[test]
    fn postgres_files_are_marked_expired() {
        on_postgres(files_are_marked_expired);
    }

    #[test]
    fn sqlite_shares_amend_the_post_row() {
        on_sqlite(shares_amend_the_post_row);
    }

    #[test]
    fn postgres_shares_amend_the_post_row() {
        on_postgres(shares_amend_the_post_row);
    }

    /// A Post row's SHA-256 is stored as given, NULL where there is none: alone in its batch
    /// and among others (PostgreSQL inserts those two differently).
    fn digests_are_stored(config: mft_config::Database) {
        let mut db = Database::open(&config).unwrap();
        let digest = |c: char| c.to_string().repeat(crate::row::SHA256_LEN);
        let with = |c| {
            let t = Transfer {
                sha256: Some(digest(c)),
                ..transfer("a@x")
            };
            insert(Method::Post, t)
        };
        db.commit(&[with('a')]).unwrap();
        db.commit(&[insert(Method::Post, transfer("b@x")), with('b')])
            .unwrap();
        let stored: Vec<Option<String>> = aft_log::table
            .order(aft_log::aft_index)
            .select(aft_log::sha256)
            .load(&mut connect(&config).unwrap())
            .unwrap();
        assert_eq!(stored, [Some(digest('a')), None, Some(digest('b'))]);
    }

    /// An event sent again with its `event_id` (its answer was lost) is answered with the row
    /// it wrote the first time, in a later batch or the same one, alone or among others (the
    /// two PostgreSQL inserts); a Get to the Post recipient answers that row's `to_jid`; a
    /// lookup finds the row of an id and refuses one that no row has.
    fn events_are_recorded_once_per_id(config: mft_config::Database) {
        let mut db = Database::open(&config).unwrap();
        let with = |id: &str| {
            let t = Transfer {
                event_id: Some(id.into()),
                ..transfer("a@x")
            };
            insert(Method::Post, t)
        };
        let get = sample::row(
            Method::Get,
            Transfer {
                to_jid: "downloader@x".into(),
                event_id: Some("g1".into()),
                ..transfer("c@x")
            },
        );
        let first = indexes(db.commit(&[with("p1")]).unwrap());
        assert_eq!(first, [Ok(1)]);
        let again = db
            .commit(&[
                insert(Method::Post, transfer("b@x")),
                with("p1"),
                with("p2"),
                with("p2"),
                Command::InsertToPostRecipient(get.clone()),
                Command::Lookup("p2".into()),
                Command::Lookup("nothing".into()),
            ])
            .unwrap();
        assert_eq!(
            again,
            [
                Ok(Done::row(2)),
                Ok(Done::row(1)),
                Ok(Done::row(3)),
                Ok(Done::row(3)),
                Ok(Done {
                    aft_index: 4,
                    to_jid: Some("b@x".into())
                }),
                Ok(Done::row(3)),
                Err(Invalid::new("event_id", "no row has event_id \"nothing\"")),
            ]
        );
        let retried = db
            .commit(&[
                Command::InsertToPostRecipient(get),
                Command::Lookup("p1".into()),
            ])
            .unwrap();
        assert_eq!(
            retried,
            [
                Ok(Done {
                    aft_index: 4,
                    to_jid: Some("b@x".into())
                }),
                Ok(Done::row(1))
            ]
        );
        let stored: Vec<Option<String>> = aft_log::table
            .order(aft_log::aft_index)
            .select(aft_log::event_id)
            .load(&mut connect(&config).unwrap())
            .unwrap();
        assert_eq!(
            stored,
            [
                Some("p1".into()),
                None,
                Some("p2".into()),
                Some("g1".into())
            ]
        );
    }

    #[test]
    fn sqlite_events_are_recorded_once_per_id() {
        on_sqlite(events_are_recorded_once_per_id);
    }

    #[test]
    fn postgres_events_are_recorded_once_per_id() {
        on_postgres(events_are_recorded_once_per_id);
    }

    #[test]
    fn sqlite_digests_are_stored() {
        on_sqlite(digests_are_stored);
    }

    #[test]
    fn postgres_digests_are_stored() {
        on_postgres(digests_are_stored);
    }

    #[test]
    fn sqlite_get_ends_in_one_batch() {
        on_sqlite(get_ends_in_one_batch);
    }

    #[test]
    fn postgres_get_ends_in_one_batch() {
        on_postgres(get_ends_in_one_batch);
    }

    /// A real SQLite database limited to a few pages: the batch that does not fit fails as full,
    /// and nothing of it is committed.
    #[test]
    fn a_full_sqlite_database_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let config = mft_config::Database {
            url: dir.path().join("full.sqlite3").display().to_string(),
            ..Default::default()
        };
        let mut conn = connect(&config).unwrap();
        conn.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        let pages: i64 = {
            #[derive(QueryableByName)]
            struct Pages {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                page_count: i64,
            }
            diesel::sql_query("PRAGMA page_count")
                .get_result::<Pages>(&mut conn)
                .unwrap()
                .page_count
        };
        conn.batch_execute(&format!("PRAGMA max_page_count = {}", pages + 2))
            .unwrap();
        let batch: Vec<Command> = (0..200)
            .map(|n| {
                let t = Transfer {
                    file_path: format!("/{}", "p".repeat(1000 + n)),
                    ..transfer("a@x")
                };
                insert(Method::Post, t)
            })
            .collect();
        let error = conn
            .transaction(|conn| apply(conn, &batch))
            .map_err(classify)
            .unwrap_err();
        assert_eq!(error, CommitError::Full("database or disk is full".into()));
        assert_eq!(
            aft_log::table.count().get_result::<i64>(&mut conn).unwrap(),
            0
        );
    }
}

//! Connections to the `aft_log` database: one connection type over both backends, opened the
//! same way (SQLite's durability pragmas included) for the pool and for the operator commands.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;
use mft_config::DatabaseKind;

/// A connection to either backend; the kind comes from the configuration, never guessed from
/// the URL.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// One connection of the configured kind, outside any pool (for `logd check` and `logd purge`).
pub fn connect(config: &mft_config::Database) -> Result<AnyConnection, diesel::ConnectionError> {
    r2d2::ManageConnection::connect(&ConnectionManager {
        kind: config.kind,
        url: config.url.clone(),
    })
}

/// Opens connections of the configured kind for the r2d2 pool.
pub(crate) struct ConnectionManager {
    pub kind: DatabaseKind,
    pub url: String,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = diesel::ConnectionError;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        match self.kind {
            DatabaseKind::Postgres => {
                diesel::PgConnection::establish(&self.url).map(AnyConnection::Postgres)
            }
            DatabaseKind::Sqlite => {
                let mut conn = diesel::SqliteConnection::establish(&self.url)?;
                // busy_timeout first: it waits out other connections' locks (the pool opens
                // several at once) and an operator's writes. WAL lets operators read while
                // logd writes; FULL makes each commit durable before it is acknowledged.
                conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping()
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

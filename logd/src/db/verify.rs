//! The schema check logd runs after migrating and before accepting events: does `aft_log` have
//! exactly the columns of DESIGN.md, with their types and NOT NULL, and logd's own `sha256`, `event_id` and `file_state`? Reading the catalog is a
//! thin per-backend query; normalising types and comparing are pure functions.

use std::fmt;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text};

use super::connection::AnyConnection;
use crate::row::{
    CHAT_TYPE_MAX, EVENT_ID_MAX, FILE_STATE_MAX, FILE_TYPE_MAX, JID_MAX, METHOD_MAX, NAME_MAX,
    PATH_MAX, SHA256_LEN,
};

/// A column type, as far as logd cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColumnType {
    BigInt,
    Varchar(usize),
    Timestamp,
    /// Anything else, as the catalog spells it.
    Other(String),
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BigInt => f.write_str("BIGINT"),
            Self::Varchar(n) => write!(f, "VARCHAR({n})"),
            Self::Timestamp => f.write_str("TIMESTAMP"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

/// One column of the table found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub not_null: bool,
}

/// The table differs from what logd writes; each entry says one difference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the aft_log table is not what logd expects: {}", .0.join("; "))]
pub struct SchemaMismatch(pub Vec<String>);

/// DESIGN.md's columns, in order, all NOT NULL; then the columns logd adds, which allow NULL
/// (rows written before them have none).
fn expected() -> [(&'static str, ColumnType, bool); 16] {
    use ColumnType::{BigInt, Timestamp, Varchar};
    [
        ("aft_index", BigInt, true),
        ("jid", Varchar(JID_MAX), true),
        ("to_jid", Varchar(JID_MAX), true),
        ("method", Varchar(METHOD_MAX), true),
        ("filename", Varchar(NAME_MAX), true),
        ("real_filename", Varchar(NAME_MAX), true),
        ("file_type", Varchar(FILE_TYPE_MAX), true),
        ("chat_type", Varchar(CHAT_TYPE_MAX), true),
        ("file_server", Varchar(NAME_MAX), true),
        ("file_path", Varchar(PATH_MAX), true),
        ("file_size", BigInt, true),
        ("bytes_transferred", BigInt, true),
        ("timestampvalue", Timestamp, true),
        ("sha256", Varchar(SHA256_LEN), false),
        ("event_id", Varchar(EVENT_ID_MAX), false),
        ("file_state", Varchar(FILE_STATE_MAX), false),
    ]
}

/// Compares the columns found with the expected ones.
pub(crate) fn compare(found: &[Column]) -> Result<(), SchemaMismatch> {
    if found.is_empty() {
        return Err(SchemaMismatch(vec!["the table does not exist".into()]));
    }
    let expected = expected();
    let mut differences = Vec::new();
    for (name, ty, not_null) in &expected {
        let null = if *not_null { " NOT NULL" } else { "" };
        match found.iter().find(|c| c.name == *name) {
            None => differences.push(format!("column {name} is missing (expected {ty}{null})")),
            Some(column) => {
                if column.ty != *ty {
                    differences.push(format!("column {name} is {}, expected {ty}", column.ty));
                }
                if column.not_null != *not_null {
                    let (is, expected) = if *not_null {
                        ("allows NULL", "NOT NULL")
                    } else {
                        ("is NOT NULL", "NULL allowed")
                    };
                    differences.push(format!("column {name} {is}, expected {expected}"));
                }
            }
        }
    }
    for column in found
        .iter()
        .filter(|c| !expected.iter().any(|(name, ..)| *name == c.name))
    {
        differences.push(format!(
            "column {} ({}) is not part of aft_log",
            column.name, column.ty
        ));
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(SchemaMismatch(differences))
    }
}

/// A PostgreSQL `information_schema.columns.data_type` (and its length) as a [`ColumnType`].
fn postgres_type(data_type: &str, max_length: Option<i32>) -> ColumnType {
    match (data_type, max_length) {
        ("bigint", _) => ColumnType::BigInt,
        ("character varying", Some(n)) => ColumnType::Varchar(n as usize),
        ("timestamp without time zone", _) => ColumnType::Timestamp,
        (other, Some(n)) => ColumnType::Other(format!("{other}({n})")),
        (other, None) => ColumnType::Other(other.to_owned()),
    }
}

/// A SQLite declared type as a [`ColumnType`]. INTEGER is 64-bit in SQLite (and is what an
/// `INTEGER PRIMARY KEY` rowid alias must be declared as), so it counts as BIGINT.
fn sqlite_type(declared: &str) -> ColumnType {
    let normal: String = declared.to_ascii_uppercase().split_whitespace().collect();
    let varchar = normal
        .strip_prefix("VARCHAR(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|n| n.parse().ok());
    match (normal.as_str(), varchar) {
        (_, Some(n)) => ColumnType::Varchar(n),
        ("BIGINT" | "INTEGER", _) => ColumnType::BigInt,
        ("TIMESTAMP", _) => ColumnType::Timestamp,
        _ => ColumnType::Other(declared.to_owned()),
    }
}

#[derive(QueryableByName)]
struct PostgresColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Nullable<Integer>)]
    max_length: Option<i32>,
    #[diesel(sql_type = Bool)]
    not_null: bool,
}

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    declared: String,
    #[diesel(sql_type = Bool)]
    not_null: bool,
}

/// Reads the columns of `aft_log` from the database's catalog (none if the table is absent).
pub(crate) fn columns(conn: &mut AnyConnection) -> QueryResult<Vec<Column>> {
    Ok(match conn {
        AnyConnection::Postgres(pg) => diesel::sql_query(
            "SELECT column_name::text AS name, data_type::text AS data_type, \
             character_maximum_length::int4 AS max_length, is_nullable = 'NO' AS not_null \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'aft_log'",
        )
        .load::<PostgresColumn>(pg)?
        .into_iter()
        .map(|c| Column { ty: postgres_type(&c.data_type, c.max_length), name: c.name, not_null: c.not_null })
        .collect(),
        AnyConnection::Sqlite(sqlite) => diesel::sql_query(
            "SELECT name, type AS declared, \"notnull\" <> 0 AS not_null FROM pragma_table_info('aft_log')",
        )
        .load::<SqliteColumn>(sqlite)?
        .into_iter()
        .map(|c| Column { ty: sqlite_type(&c.declared), name: c.name, not_null: c.not_null })
        .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Vec<Column> {
        expected()
            .into_iter()
            .map(|(name, ty, not_null)| Column {
                name: name.into(),
                ty,
                not_null,
            })
            .collect()
    }

    #[test]
    fn the_expected_table_passes() {
        assert_eq!(compare(&good()), Ok(()));
    }

    #[test]
    fn a_missing_table_is_reported() {
        assert_eq!(
            compare(&[]).unwrap_err().to_string(),
            "the aft_log table is not what logd expects: the table does not exist"
        );
    }

    #[test]
    fn every_difference_is_reported() {
        let mut found = good();
        found.retain(|c| c.name != "to_jid");
        found[1].ty = ColumnType::Varchar(255); // jid
        found[9].ty = ColumnType::Other("TEXT".into()); // file_size
        found[10].not_null = false; // bytes_transferred
        found[12].not_null = true; // sha256
        found.push(Column {
            name: "extra".into(),
            ty: ColumnType::BigInt,
            not_null: false,
        });
        assert_eq!(
            compare(&found).unwrap_err().0,
            [
                "column jid is VARCHAR(255), expected VARCHAR(3071)",
                "column to_jid is missing (expected VARCHAR(3071) NOT NULL)",
                "column file_size is TEXT, expected BIGINT",
                "column bytes_transferred allows NULL, expected NOT NULL",
                "column sha256 is NOT NULL, expected NULL allowed",
                "column extra (BIGINT) is not part of aft_log",
            ]
        );
    }

    #[test]
    fn postgres_types_normalise() {
        assert_eq!(postgres_type("bigint", None), ColumnType::BigInt);
        assert_eq!(
            postgres_type("character varying", Some(511)),
            ColumnType::Varchar(511)
        );
        assert_eq!(
            postgres_type("timestamp without time zone", None),
            ColumnType::Timestamp
        );
        assert_eq!(
            postgres_type("integer", None),
            ColumnType::Other("integer".into())
        );
        assert_eq!(
            postgres_type("character", Some(10)),
            ColumnType::Other("character(10)".into())
        );
        assert_eq!(
            postgres_type("timestamp with time zone", None).to_string(),
            "timestamp with time zone"
        );
    }

    #[test]
    fn sqlite_types_normalise() {
        assert_eq!(sqlite_type("INTEGER"), ColumnType::BigInt);
        assert_eq!(sqlite_type("bigint"), ColumnType::BigInt);
        assert_eq!(sqlite_type("VARCHAR(3071)"), ColumnType::Varchar(3071));
        assert_eq!(sqlite_type("varchar ( 10 )"), ColumnType::Varchar(10));
        assert_eq!(sqlite_type("TIMESTAMP"), ColumnType::Timestamp);
        assert_eq!(sqlite_type("TEXT"), ColumnType::Other("TEXT".into()));
        assert_eq!(
            sqlite_type("VARCHAR(x)"),
            ColumnType::Other("VARCHAR(x)".into())
        );
    }
}

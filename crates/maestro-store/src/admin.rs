//! Creating and dropping whole PostgreSQL databases: for tests and benchmarks that want a fresh
//! database per run (never used by the server).

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use maestro_dag::store::StoreError;

use crate::error::{Error, from_diesel};

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Store(StoreError::Other(format!(
            "database name `{name}` must be 1-63 characters of [a-z0-9_]"
        ))))
    }
}

async fn admin(url: &str) -> Result<AsyncPgConnection, Error> {
    AsyncPgConnection::establish(url)
        .await
        .map_err(|e| Error::Store(StoreError::Unavailable(format!("connect to {url}: {e}"))))
}

/// Creates database `name` on the server of `url` (connecting to `url`'s database) and returns
/// the URL of the new database.
pub async fn create_database(url: &str, name: &str) -> Result<String, Error> {
    check_name(name)?;
    let mut conn = admin(url).await?;
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(|e| Error::Store(from_diesel("create database", e)))?;
    Ok(with_database(url, name))
}

/// Drops database `name` on the server of `url`, closing its connections (`WITH (FORCE)`).
pub async fn drop_database(url: &str, name: &str) -> Result<(), Error> {
    check_name(name)?;
    let mut conn = admin(url).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| Error::Store(from_diesel("drop database", e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert!(check_name("Robert'); DROP TABLE x").is_err());
        assert!(check_name("maestro_bench_1").is_ok());
    }
}

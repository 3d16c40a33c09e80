//! How to reach the database, and the pool's size and timeouts.

use core::time::Duration;

use crate::ConnectError;

/// Where the store lives and how the pool behaves.
///
/// ```
/// use e2m_keystore_pg::PgConfig;
/// let config = PgConfig::from_conninfo("host=127.0.0.1 port=5432 user=e2m dbname=e2m")?
///     .with_schema("e2m_site_a")?
///     .with_pool_size(16)?;
/// assert_eq!(config.schema(), "e2m_site_a");
/// # Ok::<(), e2m_keystore_pg::ConnectError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PgConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) timeout: Duration,
}

impl PgConfig {
    /// The schema used unless [`with_schema`](Self::with_schema) names another.
    pub const DEFAULT_SCHEMA: &'static str = "e2m";
    /// Connections per store instance unless [`with_pool_size`](Self::with_pool_size) says
    /// otherwise: enough for 16 concurrent HSS pushers (the push benchmark) without making
    /// PostgreSQL run more backends than a small machine has cores for many times over.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// How long to wait for a connection (to be made, or to be free in the pool) before an
    /// operation fails with a typed error instead of hanging.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A configuration from a libpq-style connection string (`host=… port=… user=…
    /// dbname=…`) or URL (`postgresql://user@host:port/dbname`).
    ///
    /// Every connection is opened with `synchronous_commit=on` whatever the server's
    /// default, so that a commit returns only once it is durable (and, with a synchronous
    /// standby configured, on the standby too): a push is acknowledged only then.
    ///
    /// # Errors
    /// [`ConnectError::Conninfo`] if the string does not parse.
    pub fn from_conninfo(conninfo: &str) -> Result<PgConfig, ConnectError> {
        let pg: tokio_postgres::Config = conninfo.parse().map_err(ConnectError::Conninfo)?;
        Ok(PgConfig {
            pg,
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// Keeps the tables in schema `name` (created if missing): 1 to 63 characters of
    /// `a-z`, `0-9` and `_`, not starting with a digit nor with `pg_`. Several deployments
    /// (or test stores) can so share one database without seeing each other's rows.
    ///
    /// # Errors
    /// [`ConnectError::InvalidConfig`] for any other name.
    pub fn with_schema(mut self, name: &str) -> Result<PgConfig, ConnectError> {
        let valid = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit()
            && !name.starts_with("pg_");
        if !valid {
            return Err(ConnectError::InvalidConfig(
                "schema name must be 1-63 of a-z, 0-9, _ (no leading digit, no pg_ prefix)",
            ));
        }
        self.schema = name.to_owned();
        Ok(self)
    }

    /// At most `n` connections from this store instance (1 to 1,000).
    ///
    /// # Errors
    /// [`ConnectError::InvalidConfig`] outside that range.
    pub fn with_pool_size(mut self, n: usize) -> Result<PgConfig, ConnectError> {
        if !(1..=1000).contains(&n) {
            return Err(ConnectError::InvalidConfig("pool size must be 1 to 1000"));
        }
        self.pool_size = n;
        Ok(self)
    }

    /// Waits at most `timeout` to connect, or for a free connection, before an operation
    /// fails (at least one millisecond).
    ///
    /// # Errors
    /// [`ConnectError::InvalidConfig`] for a zero timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<PgConfig, ConnectError> {
        if timeout < Duration::from_millis(1) {
            return Err(ConnectError::InvalidConfig("timeout must not be zero"));
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool's size.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The connection and wait timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client configuration every pooled connection is opened with: the one given,
    /// plus `synchronous_commit=on` and the connect timeout.
    pub(crate) fn connection_config(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        if !options.is_empty() {
            options.push(' ');
        }
        options.push_str("-c synchronous_commit=on");
        pg.options(&options);
        pg.connect_timeout(self.timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("e2m-keystore-pg");
        }
        pg
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn debug_output_has_no_password() {
        let config =
            PgConfig::from_conninfo("host=db.example port=5432 user=emks password=s3cr3t-pw")
                .unwrap();
        let text = format!("{config:?} {:?}", config.connection_config());
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(text.contains("db.example"), "{text}");
    }

    #[test]
    fn schema_names_are_checked() {
        let config = PgConfig::from_conninfo("host=localhost").unwrap();
        for bad in ["", "1abc", "pg_x", "E2m", "a-b", "a;drop", &"a".repeat(64)] {
            assert!(config.clone().with_schema(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["e2m", "site_a", "_x9"] {
            assert_eq!(config.clone().with_schema(good).unwrap().schema(), good);
        }
        assert!(config.clone().with_pool_size(0).is_err());
        assert!(config.with_timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn every_connection_forces_synchronous_commit() {
        let config = PgConfig::from_conninfo("host=localhost options='-c work_mem=4MB'").unwrap();
        let options = config.connection_config().get_options().unwrap().to_owned();
        assert_eq!(options, "-c work_mem=4MB -c synchronous_commit=on");
    }
}

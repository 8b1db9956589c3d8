//! Cassandra / ScyllaDB: session set-up from [`CassandraConfig`] and the schema migrations of
//! `schemas/cql` (idempotent statements, applied in file order, recorded in
//! `<keyspace>.schema_migrations`).

use std::time::Duration;

use scylla::{
    client::{
        execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder,
    },
    statement::Consistency,
};
use secrecy::ExposeSecret;
use tracing::{info, warn};

use crate::{config::CassandraConfig, retry::Backoff};

/// Parses a consistency name from configuration.
pub fn consistency(name: &str) -> anyhow::Result<Consistency> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "one" => Consistency::One,
        "local_one" => Consistency::LocalOne,
        "quorum" => Consistency::Quorum,
        "local_quorum" => Consistency::LocalQuorum,
        "all" => Consistency::All,
        other => anyhow::bail!("cassandra.consistency: unknown level {other:?} (one, local_one, quorum, local_quorum, all)"),
    })
}

/// Connects once (no retry).
pub async fn connect_once(cfg: &CassandraConfig) -> anyhow::Result<Session> {
    let profile = ExecutionProfile::builder()
        .consistency(consistency(&cfg.consistency)?)
        .request_timeout(Some(cfg.request_timeout))
        .build()
        .into_handle();
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile);
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        b = b.user(u.clone(), p.expose_secret().to_string());
    }
    b.build().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to Cassandra at {}: {e}",
            cfg.nodes.join(",")
        )
    })
}

/// Connects, retrying with capped backoff until `token` is cancelled. Each failure is logged
/// with the nodes it tried, so an operator sees at once which dependency is missing.
pub async fn connect(
    cfg: &CassandraConfig,
    token: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Session> {
    let mut backoff = Backoff::default_for_dependencies();
    loop {
        match connect_once(cfg).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(error = format!("{e:#}"), retry_in = ?delay, attempt = backoff.attempts(), "Cassandra unavailable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {},
                    _ = token.cancelled() => anyhow::bail!("shutdown while waiting for Cassandra: {e:#}"),
                }
            }
        }
    }
}

/// Splits a migration file into statements: `--` comments dropped, `;`-separated.
pub fn statements(text: &str) -> Vec<String> {
    let without_comments: String = text
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Applies every migration of `tci_schemas::CQL_MIGRATIONS` to `cfg.keyspace`. Idempotent: each
/// statement is `IF NOT EXISTS`, and applied files are recorded.
pub async fn migrate(
    session: &Session,
    cfg: &CassandraConfig,
) -> anyhow::Result<Vec<&'static str>> {
    let ks = &cfg.keyspace;
    if !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || ks.is_empty() {
        anyhow::bail!("cassandra.keyspace {ks:?} must be letters, digits and underscores");
    }
    let mut applied = Vec::new();
    for (i, (name, text)) in tci_schemas::CQL_MIGRATIONS.iter().enumerate() {
        let text = text
            .replace("{keyspace}", ks)
            .replace("{replication}", &cfg.replication);
        for stmt in statements(&text) {
            if let Some((table, column)) = added_column(&stmt) {
                if column_exists(session, ks, table, column)
                    .await
                    .map_err(|e| anyhow::anyhow!("migration {name}: {e}\n  statement: {stmt}"))?
                {
                    continue;
                }
            }
            session
                .query_unpaged(stmt.as_str(), ())
                .await
                .map_err(|e| anyhow::anyhow!("migration {name}: {e}\n  statement: {stmt}"))?;
        }
        if i == 0 {
            session
                .query_unpaged(
                    format!(
                        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (name text PRIMARY KEY, applied_at timestamp)"
                    ),
                    (),
                )
                .await?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.schema_migrations (name, applied_at) VALUES (?, toTimestamp(now()))"),
                (name,),
            )
            .await?;
        applied.push(*name);
    }
    session.await_schema_agreement().await?;
    info!(keyspace = %ks, files = applied.len(), "Cassandra migrations applied");
    Ok(applied)
}

/// `(table, column)` of an `ALTER TABLE ks.table ADD column type` statement. Neither Cassandra
/// before 5.0 nor ScyllaDB accepts `ADD IF NOT EXISTS`, so the runner makes these idempotent by
/// looking the column up first.
fn added_column(stmt: &str) -> Option<(&str, &str)> {
    let mut words = stmt.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("ALTER") || !words.next()?.eq_ignore_ascii_case("TABLE")
    {
        return None;
    }
    let table = words.next()?;
    let table = table.rsplit_once('.').map_or(table, |(_, t)| t);
    if !words.next()?.eq_ignore_ascii_case("ADD") {
        return None;
    }
    Some((table, words.next()?))
}

async fn column_exists(
    session: &Session,
    keyspace: &str,
    table: &str,
    column: &str,
) -> anyhow::Result<bool> {
    let rows = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (keyspace, table, column),
        )
        .await?
        .into_rows_result()?;
    Ok(rows.rows_num() > 0)
}

/// True when Cassandra answers a trivial query (used by `/readyz`).
pub async fn reachable(session: &Session) -> bool {
    session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements() {
        for (name, text) in tci_schemas::CQL_MIGRATIONS {
            let s = statements(text);
            assert!(!s.is_empty(), "{name}");
            for st in &s {
                match added_column(st) {
                    Some((table, column)) => {
                        assert!(!table.is_empty() && !column.is_empty(), "{name}: {st}")
                    }
                    // Setting table options is idempotent by nature.
                    None if st.starts_with("ALTER TABLE") && st.contains(" WITH ") => {}
                    None => {
                        assert!(st.starts_with("CREATE"), "{name}: {st}");
                        assert!(
                            st.contains("IF NOT EXISTS"),
                            "{name} must be idempotent: {st}"
                        );
                    }
                }
                // Nothing ScyllaDB lacks.
                for banned in [
                    "StorageAttachedIndex",
                    "SAI",
                    "CREATE CUSTOM INDEX",
                    "MATERIALIZED VIEW",
                ] {
                    assert!(!st.contains(banned), "{name} uses {banned}");
                }
            }
        }
        assert_eq!(statements("a; -- x;\n b ;"), vec!["a", "b"]);
        assert_eq!(
            added_column("ALTER TABLE ks.chat_messages ADD raw_line text"),
            Some(("chat_messages", "raw_line"))
        );
        assert_eq!(added_column("ALTER TABLE t DROP c"), None);
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS t (a int)"), None);
    }

    #[test]
    fn consistency_names() {
        assert_eq!(
            consistency("LOCAL_QUORUM").expect("ok"),
            Consistency::LocalQuorum
        );
        assert!(consistency("most").is_err());
    }
}

/// What to do about a failed Cassandra request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The node, the network or the load: retrying later can succeed (timeouts, unavailable,
    /// overloaded, bootstrapping, broken connections, an empty connection pool).
    Transient,
    /// The request itself is wrong for this cluster: retrying cannot succeed (invalid query, a
    /// table or column that is not there, syntax, authentication or permission, values the
    /// statement cannot take). Stop and tell the operator.
    Permanent,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Transient => "transient",
            Failure::Permanent => "permanent",
        }
    }
}

/// Classifies a driver error: only [`Failure::Transient`] errors are worth retrying.
pub fn classify(e: &scylla::errors::ExecutionError) -> Failure {
    use scylla::errors::{ExecutionError as E, PrepareError as P};
    match e {
        E::BadQuery(_) => Failure::Permanent,
        E::LastAttemptError(a) => classify_attempt(a),
        E::PrepareError(P::AllAttemptsFailed { first_attempt }) => classify_attempt(first_attempt),
        E::UseKeyspaceError(_) => Failure::Permanent,
        E::RequestTimeout(_)
        | E::ConnectionPoolError(_)
        | E::EmptyPlan
        | E::SchemaAgreementError(_)
        | E::MetadataError(_)
        | E::PrepareError(_) => Failure::Transient,
        // A future driver's new kind: retrying is the safe default (a stop needs certainty).
        #[allow(unreachable_patterns)]
        _ => Failure::Transient,
    }
}

fn classify_attempt(a: &scylla::errors::RequestAttemptError) -> Failure {
    use scylla::errors::{DbError as D, RequestAttemptError as A};
    match a {
        A::DbError(
            D::SyntaxError
            | D::Invalid
            | D::AlreadyExists { .. }
            | D::FunctionFailure { .. }
            | D::AuthenticationError
            | D::Unauthorized
            | D::ConfigError
            | D::ProtocolError,
            _,
        ) => Failure::Permanent,
        A::SerializationError(_) | A::CqlRequestSerialization(_) => Failure::Permanent,
        A::RepreparedIdChanged { .. } => Failure::Permanent,
        _ => Failure::Transient,
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};

    fn db(e: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "msg".into()))
    }

    #[test]
    fn node_and_load_troubles_are_retried() {
        for e in [
            ExecutionError::RequestTimeout(Duration::from_secs(1)),
            db(DbError::Overloaded),
            db(DbError::IsBootstrapping),
            db(DbError::Unavailable {
                consistency: Consistency::One,
                required: 1,
                alive: 0,
            }),
            db(DbError::WriteTimeout {
                consistency: Consistency::One,
                received: 0,
                required: 1,
                write_type: WriteType::Simple,
            }),
            ExecutionError::LastAttemptError(RequestAttemptError::UnableToAllocStreamId),
        ] {
            assert_eq!(classify(&e), Failure::Transient, "{e}");
        }
    }

    #[test]
    fn wrong_requests_stop() {
        for e in [
            db(DbError::Invalid),
            db(DbError::SyntaxError),
            db(DbError::Unauthorized),
            db(DbError::AuthenticationError),
            db(DbError::ConfigError),
        ] {
            assert_eq!(classify(&e), Failure::Permanent, "{e}");
        }
    }
}

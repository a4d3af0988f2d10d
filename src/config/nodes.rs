//! Several nodes on one PostgreSQL (issue 16): `store` (a `postgres://` URL; SQLite in the
//! data directory stays the default), `node` (this node's name, the host name by default)
//! and `lease` (how long a silent owner keeps the database). Checked at load, like the rest.

use std::time::Duration;

use super::{ConfigError, seconds};
use crate::store::postgres::Target;

/// Default of `lease`: a node that stops renewing loses the database after this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The settings as the file, the environment and the flags give them.
#[derive(Debug, Default)]
pub(super) struct Given {
    pub store: Option<String>,
    pub node: Option<String>,
    pub lease: Option<f64>,
}

/// The PostgreSQL target, when `store` names one.
pub(super) fn checked(given: Given) -> Result<Option<Target>, ConfigError> {
    let lease = seconds("lease", given.lease)?.unwrap_or(DEFAULT_LEASE);
    if lease < Duration::from_secs(1) {
        return Err(ConfigError(format!(
            "lease: must be at least 1 second, not {}",
            lease.as_secs_f64()
        )));
    }
    let node = match given.node {
        Some(name) => checked_name(name)?,
        None => host_name(),
    };
    let Some(url) = given.store else {
        return Ok(None);
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError(
            "store: must be a postgres:// (or postgresql://) URL; SQLite in the data directory \
             is the default (--data-dir)"
                .into(),
        ));
    }
    if let Err(e) = url.parse::<postgres::Config>() {
        return Err(ConfigError(format!(
            "store: {} is not a usable PostgreSQL URL: {e}",
            crate::store::postgres::shown(&url)
        )));
    }
    Ok(Some(Target { url, node, lease }))
}

/// A name other nodes and people read: letters, digits, `.`, `-` and `_`, 1 to 63 of them.
fn checked_name(name: String) -> Result<String, ConfigError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || name.len() > 63 || !name.chars().all(fine) {
        return Err(ConfigError(format!(
            "node: {name:?} must be 1 to 63 letters, digits, '.', '-' or '_'"
        )));
    }
    Ok(name)
}

/// This machine's host name, or `node` when it has none that fits.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
    if done == 0 {
        checked_name(name).unwrap_or_else(|_| "node".into())
    } else {
        "node".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(store: &str) -> Given {
        Given {
            store: Some(store.into()),
            ..Given::default()
        }
    }

    #[test]
    fn a_postgres_url_names_the_target_and_the_defaults_fill_the_rest() {
        let target = checked(given("postgres://swarm@db.internal:5432/swarm"))
            .unwrap()
            .unwrap();
        assert_eq!(target.lease, DEFAULT_LEASE);
        assert!(!target.node.is_empty());
        assert!(
            checked(Given::default()).unwrap().is_none(),
            "SQLite by default"
        );
    }

    #[test]
    fn bad_settings_name_their_key_and_never_show_the_password() {
        let err = |g: Given| checked(g).expect_err("refused").0;
        assert!(err(given("sqlite:///tmp/x")).starts_with("store: must be a postgres://"));
        let bad = err(given("postgres://swarm:hunter2@db:notaport/swarm"));
        assert!(
            bad.starts_with("store:") && !bad.contains("hunter2"),
            "{bad}"
        );
        let name = Given {
            node: Some("two words".into()),
            ..given("postgres://db/swarm")
        };
        assert!(err(name).starts_with("node:"));
        let lease = Given {
            lease: Some(0.5),
            ..given("postgres://db/swarm")
        };
        assert!(err(lease).starts_with("lease: must be at least 1 second"));
    }
}

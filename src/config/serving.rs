//! How the port is served (issue 12): TLS (`tls_cert`, `tls_key`), the limits every
//! surface shares (`max_streams_per_key`, `request_timeout`) and how much of the audit is
//! kept (`audit_retention`). Checked when the configuration loads, so `serve` and
//! `config check` refuse the same things.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, sync::Arc, time::Duration};

use tokio_rustls::rustls::ServerConfig;

use super::{ConfigError, seconds};
use crate::{
    api::{stream_limit::DEFAULT_MAX_STREAMS_PER_KEY, timeout::DEFAULT_REQUEST_TIMEOUT, tls},
    store::audit::DEFAULT_AUDIT_RETENTION,
};

/// The checked settings.
#[derive(Clone, Debug)]
pub struct Serving {
    /// TLS on the port, when `tls_cert` and `tls_key` are set.
    pub tls: Option<Tls>,
    /// Event streams one key (one client address, without keys) may hold open.
    pub max_streams_per_key: usize,
    /// How long a call may take to be answered (streams excepted).
    pub request_timeout: Duration,
    /// Audit records kept; older ones are deleted as new ones come.
    pub audit_retention: usize,
}

/// The certificate and key the port is served with, read and checked.
#[derive(Clone, Debug)]
pub struct Tls {
    /// `tls_cert`: the PEM certificate chain, the server's first.
    pub cert: PathBuf,
    /// `tls_key`: its PEM private key.
    pub key: PathBuf,
    /// What the listener handshakes with.
    pub config: Arc<ServerConfig>,
}

/// The settings as the file, the environment and the flags give them.
#[derive(Debug, Default)]
pub(super) struct Given {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_streams_per_key: Option<usize>,
    pub request_timeout: Option<f64>,
    pub audit_retention: Option<usize>,
}

impl Serving {
    pub(super) fn check(given: Given) -> Result<Self, ConfigError> {
        let tls = match (given.tls_cert, given.tls_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError(
                    "tls_key: tls_cert is set, so its private key is needed too".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "tls_cert: tls_key is set, so its certificate is needed too".into(),
                ));
            }
            (Some(cert), Some(key)) => {
                let config = tls::server_config(&cert, &key).map_err(ConfigError)?;
                warn_if_others_read(&key);
                Some(Tls { cert, key, config })
            }
        };
        let max_streams_per_key = match given.max_streams_per_key {
            Some(0) => {
                return Err(ConfigError(
                    "max_streams_per_key: must be at least 1".into(),
                ));
            }
            other => other.unwrap_or(DEFAULT_MAX_STREAMS_PER_KEY),
        };
        let audit_retention = match given.audit_retention {
            Some(0) => return Err(ConfigError("audit_retention: must be at least 1".into())),
            other => other.unwrap_or(DEFAULT_AUDIT_RETENTION),
        };
        Ok(Self {
            tls,
            max_streams_per_key,
            request_timeout: seconds("request_timeout", given.request_timeout)?
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            audit_retention,
        })
    }
}

/// A private key others may read is no longer private: said at start, not refused (a
/// container may mount it so on purpose).
fn warn_if_others_read(key: &std::path::Path) {
    let Ok(meta) = std::fs::metadata(key) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            tls_key = %key.display(),
            mode = format!("{:o}", mode & 0o777),
            "tls_key: the private key file is readable by other users; `chmod 600` it"
        );
    }
}

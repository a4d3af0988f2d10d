//! API keys and roles, the half of "safe to expose" that asks who is calling.
//!
//! A client sends `authorization: Bearer <key>` (gRPC metadata, an HTTP header). The server
//! keeps only each key's SHA-256 with a name (for logs and errors) and a [`Role`]; [`access`]
//! says, in one table, which role every RPC and route needs. Browsers cannot set headers on a
//! WebSocket or an `EventSource`, so the event streams also take `?token=`, a single-use
//! token a key obtains from `POST /auth/stream-token` ([`tokens`]).
//!
//! A server with no keys asks for none: every caller is [`Caller::anonymous`], with every
//! role. `serve` allows that only on a loopback address (or with `--insecure`).
//!
//! The guard authenticates each request before anything runs and makes its [`Caller`] the
//! current one for the rest of the request ([`Caller::scope`]), so the service can ask for
//! more than the route's role where the request's content calls for it (a shell `command`
//! needs `admin`).

pub mod access;
pub mod tokens;

use std::{collections::HashMap, future::Future, sync::Arc};

use axum::http::{HeaderMap, header};
use sha2::{Digest as _, Sha256};

use crate::engine::model::words::words;

words! {
    /// What a key may do. Each role may also do everything the roles before it may.
    pub enum Role {
        /// Status, lists, gets, events, metrics, the API's documents.
        Read = "read",
        /// Also submit and cancel tasks, execute and cancel workflows.
        Operate = "operate",
        /// Also spawn, scale and terminate instances, and run shell steps (`command`).
        Admin = "admin",
    }
}

/// The SHA-256 of a secret (a key or a stream token).
pub type Digest = [u8; 32];

pub fn digest(secret: &str) -> Digest {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn to_hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest written as 64 hex digits.
pub fn parse_hex(text: &str) -> Option<Digest> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

/// `bytes` random bytes from the operating system, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source works");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key: `swarm_` and 256 random bits as hex.
pub fn new_key() -> String {
    format!("swarm_{}", random_hex(32))
}

/// One key the server accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Names the key in logs and errors; never the secret.
    pub name: String,
    pub role: Role,
    /// The SHA-256 of the secret; the secret itself is not kept.
    pub sha256: Digest,
}

impl ApiKey {
    /// A key from its parts as a config file writes them (`sha256` in hex). Errors name
    /// the part at fault.
    pub fn hashed(name: &str, role: &str, sha256: &str) -> Result<Self, String> {
        Ok(Self {
            name: checked_name(name)?,
            role: parse_role(role)?,
            sha256: parse_hex(sha256).ok_or_else(|| {
                format!("sha256 of {name:?}: must be 64 hex digits (`claude-swarm key hash`)")
            })?,
        })
    }

    /// One `name:role:key` entry of `SWARM_API_KEYS` (the key itself, which may contain
    /// `:` but not `,`).
    pub fn from_entry(entry: &str) -> Result<Self, String> {
        let mut parts = entry.trim().splitn(3, ':');
        let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            // Never echo the entry: it may be a bare key.
            return Err("is not name:role:key".into());
        };
        if secret.len() < 16 {
            return Err(format!("the key of {name:?} is shorter than 16 characters"));
        }
        Ok(Self {
            name: checked_name(name)?,
            role: parse_role(role)?,
            sha256: digest(secret),
        })
    }
}

fn checked_name(name: &str) -> Result<String, String> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

fn parse_role(role: &str) -> Result<Role, String> {
    Role::parse(role).ok_or_else(|| {
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("role {role:?}: must be one of {}", roles.join(", "))
    })
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's name, or `anonymous` on a server without keys.
    pub name: Arc<str>,
    pub role: Role,
}

tokio::task_local! {
    /// The caller of the request being served: set by the guard for its whole course.
    static CALLER: Caller;
}

impl Caller {
    /// Anyone, on a server that has no keys: every role.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    }

    /// The caller of the request being served; `None` outside one, or on a route open to
    /// all (`/health`), where nobody is asked who they are.
    pub fn current() -> Option<Self> {
        CALLER.try_with(Clone::clone).ok()
    }

    /// Runs `work` (the rest of a request) with this caller as the current one.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CALLER.scope(self, work).await
    }
}

/// The keys a server accepts, by digest.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    by_digest: HashMap<Digest, Caller>,
}

impl Keys {
    /// Refuses two keys with one name, and one key given twice.
    pub fn new(keys: impl IntoIterator<Item = ApiKey>) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        let mut names = Vec::new();
        for key in keys {
            if names.contains(&key.name) {
                return Err(format!("two keys are named {:?}", key.name));
            }
            let caller = Caller {
                name: key.name.as_str().into(),
                role: key.role,
            };
            if let Some(earlier) = by_digest.insert(key.sha256, caller) {
                return Err(format!(
                    "keys {:?} and {:?} are the same key",
                    earlier.name, key.name
                ));
            }
            names.push(key.name);
        }
        Ok(Self { by_digest })
    }

    /// No key is configured: nobody is asked for one.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Who each key is (its name and role, never its digest), by name: what
    /// `config show` may print of the keys.
    pub fn callers(&self) -> Vec<&Caller> {
        let mut callers: Vec<&Caller> = self.by_digest.values().collect();
        callers.sort_by(|a, b| a.name.cmp(&b.name));
        callers
    }

    fn caller(&self, secret: &str) -> Option<Caller> {
        self.by_digest.get(&digest(secret)).cloned()
    }
}

/// Why a caller was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No key, one this server does not know, or a bad stream token: 401, UNAUTHENTICATED.
    Unauthenticated {
        /// `Authorization`, or `token` (the query parameter).
        field: &'static str,
        message: String,
    },
    /// A known key whose role is too low: 403, PERMISSION_DENIED.
    Forbidden { message: String },
}

/// Checks callers against the keys and the stream tokens.
pub struct Auth {
    keys: Keys,
    tokens: Arc<tokens::StreamTokens>,
}

impl Auth {
    pub fn new(keys: Keys, tokens: Arc<tokens::StreamTokens>) -> Self {
        Self { keys, tokens }
    }

    /// Who is calling `operation`, and whether they may: its bearer key, or a stream `token`
    /// (the guard passes one only on an event stream). `None` for an open route.
    pub fn check(
        &self,
        operation: &access::Operation,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<Option<Caller>, Denied> {
        let access::Access::Key(needed) = operation.access else {
            return Ok(None);
        };
        let caller = match (token, headers.get(header::AUTHORIZATION)) {
            (Some(token), _) => {
                self.tokens
                    .redeem(token)
                    .ok_or_else(|| Denied::Unauthenticated {
                        field: "token",
                        message: "the stream token is unknown, used already or expired: get a new \
                              one from POST /auth/stream-token"
                            .into(),
                    })?
            }
            (None, _) if self.keys.is_empty() => Caller::anonymous(),
            (None, None) => {
                return Err(Denied::Unauthenticated {
                    field: "Authorization",
                    message: format!(
                        "{} needs an API key: send `authorization: Bearer <key>`",
                        operation.name
                    ),
                });
            }
            (None, Some(value)) => {
                let secret = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, secret)| secret.trim())
                    .ok_or_else(|| Denied::Unauthenticated {
                        field: "Authorization",
                        message: "Authorization must be `Bearer <key>`".into(),
                    })?;
                self.keys
                    .caller(secret)
                    .ok_or_else(|| Denied::Unauthenticated {
                        field: "Authorization",
                        message: "the key in Authorization is not one of this server's".into(),
                    })?
            }
        };
        if caller.role < needed {
            return Err(Denied::Forbidden {
                message: format!(
                    "the key {:?} has role {}; {} needs {needed}",
                    caller.name, caller.role, operation.name
                ),
            });
        }
        Ok(Some(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_print_and_parse_as_hex() {
        let d = digest("abc");
        let hex = to_hex(&d);
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hex(&hex.to_ascii_uppercase()), Some(d));
        for bad in ["", "ab", &hex[1..], &format!("{}zz", &hex[2..])] {
            assert_eq!(parse_hex(bad), None, "{bad}");
        }
        let key = new_key();
        assert!(key.starts_with("swarm_") && key.len() == 70, "{key}");
        assert_ne!(key, new_key());
    }

    #[test]
    fn entries_and_hashed_keys_name_what_is_wrong() {
        let key = ApiKey::from_entry("ci:operate:secret:with:colons").unwrap();
        assert_eq!(key.name, "ci");
        assert_eq!(key.role, Role::Operate);
        assert_eq!(key.sha256, digest("secret:with:colons"));
        assert_eq!(
            ApiKey::hashed("ci", "operate", &to_hex(&digest("secret:with:colons"))),
            Ok(key)
        );
        for (entry, says) in [
            ("ci:operate", "not name:role:key"),
            ("ci:boss:0123456789abcdef", "role \"boss\""),
            ("c i:read:0123456789abcdef", "name \"c i\""),
            ("ci:read:short", "shorter than 16"),
        ] {
            let err = ApiKey::from_entry(entry).unwrap_err();
            assert!(err.contains(says), "{entry}: {err}");
        }
        let err = ApiKey::hashed("ci", "read", "nothex").unwrap_err();
        assert!(err.starts_with("sha256 of \"ci\""), "{err}");
        let a = ApiKey::from_entry("a:read:0123456789abcdef").unwrap();
        let b = ApiKey::from_entry("b:admin:0123456789abcdef").unwrap();
        assert!(Keys::new([a.clone(), b]).unwrap_err().contains("same key"));
        assert!(Keys::new([a.clone(), a]).unwrap_err().contains("two keys"));
    }

    #[test]
    fn roles_are_ordered_and_a_key_needs_the_role_of_the_operation() {
        assert!(Role::Read < Role::Operate && Role::Operate < Role::Admin);
        let keys = Keys::new([
            ApiKey::from_entry("viewer:read:viewer-key-0123456789").unwrap(),
            ApiKey::from_entry("ops:operate:ops-key-0123456789").unwrap(),
        ])
        .unwrap();
        let auth = Auth::new(keys, Default::default());
        let submit = access::Operation {
            name: "POST /tasks",
            access: access::Access::Key(Role::Operate),
        };
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        let ops = auth
            .check(&submit, &with("Bearer ops-key-0123456789"), None)
            .unwrap()
            .unwrap();
        assert_eq!(&*ops.name, "ops");
        assert!(
            auth.check(&submit, &with("bearer  ops-key-0123456789 "), None)
                .is_ok()
        );
        assert!(matches!(
            auth.check(&submit, &with("Bearer viewer-key-0123456789"), None),
            Err(Denied::Forbidden { message }) if message.contains("\"viewer\" has role read")
        ));
        for bad in ["Bearer nope", "Basic b3BzOng=", "ops-key-0123456789"] {
            assert!(matches!(
                auth.check(&submit, &with(bad), None),
                Err(Denied::Unauthenticated {
                    field: "Authorization",
                    ..
                })
            ));
        }
        assert!(matches!(
            auth.check(&submit, &HeaderMap::new(), None),
            Err(Denied::Unauthenticated { field: "Authorization", message })
                if message.contains("POST /tasks needs an API key")
        ));
        let health = access::Operation {
            name: "GET /health",
            access: access::Access::Open,
        };
        assert_eq!(auth.check(&health, &HeaderMap::new(), None), Ok(None));
        let open = Auth::new(Keys::default(), Default::default());
        assert_eq!(
            open.check(&submit, &HeaderMap::new(), None),
            Ok(Some(Caller::anonymous()))
        );
    }
}

//! Stream tokens: a browser cannot set `Authorization` on a WebSocket or an `EventSource`,
//! so a page holding a key asks `POST /auth/stream-token` for a token and opens
//! `/ws/stream?token=...` or `/events?token=...` with it. A token opens one stream, within
//! [`TOKEN_TTL`] of being issued, with the role of the key that asked for it; a stream
//! already open stays open. Only tokens' digests are kept, in memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Extension, Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Caller, Digest, digest, random_hex};
use crate::api::rest::ApiError;

/// How long a token may wait to be used.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Tokens kept at once; past this, the oldest are forgotten first.
const MAX_OUTSTANDING: usize = 1024;

/// The tokens issued and not yet used or expired.
#[derive(Debug, Default)]
pub struct StreamTokens {
    outstanding: Mutex<HashMap<Digest, (Caller, Instant)>>,
}

impl StreamTokens {
    /// A new token for `caller`.
    pub fn issue(&self, caller: Caller) -> String {
        self.issue_at(caller, Instant::now())
    }

    fn issue_at(&self, caller: Caller, now: Instant) -> String {
        let token = random_hex(32);
        let mut outstanding = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        outstanding.retain(|_, (_, expires)| *expires > now);
        if outstanding.len() >= MAX_OUTSTANDING
            && let Some(oldest) = outstanding
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(d, _)| *d)
        {
            outstanding.remove(&oldest);
        }
        outstanding.insert(digest(&token), (caller, now + TOKEN_TTL));
        token
    }

    /// The caller `token` was issued to, if it is outstanding; it is used up either way.
    pub fn redeem(&self, token: &str) -> Option<Caller> {
        self.redeem_at(token, Instant::now())
    }

    fn redeem_at(&self, token: &str, now: Instant) -> Option<Caller> {
        let mut outstanding = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        let (caller, expires) = outstanding.remove(&digest(token))?;
        (expires > now).then_some(caller)
    }
}

/// `POST /auth/stream-token`: `{"token", "expires_in"}` for one event stream.
pub async fn stream_token(Extension(tokens): Extension<Arc<StreamTokens>>) -> Response {
    let Some(caller) = Caller::current() else {
        // The guard asks every caller of this route who they are.
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no caller for this request".into(),
            Some("Authorization".into()),
        )
        .into_response();
    };
    let token = tokens.issue(caller);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "token": token, "expires_in": TOKEN_TTL.as_secs() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Role;

    fn viewer() -> Caller {
        Caller {
            name: "viewer".into(),
            role: Role::Read,
        }
    }

    #[test]
    fn a_token_opens_one_stream_within_its_time() {
        let tokens = StreamTokens::default();
        let start = Instant::now();
        let token = tokens.issue_at(viewer(), start);
        assert_eq!(token.len(), 64);
        assert_eq!(tokens.redeem_at("nope", start), None);
        assert_eq!(
            tokens.redeem_at(&token, start + TOKEN_TTL / 2),
            Some(viewer())
        );
        assert_eq!(tokens.redeem_at(&token, start), None, "used up");

        let late = tokens.issue_at(viewer(), start);
        assert_eq!(tokens.redeem_at(&late, start + TOKEN_TTL), None, "expired");
    }

    #[test]
    fn expired_and_then_the_oldest_tokens_are_forgotten() {
        let tokens = StreamTokens::default();
        let start = Instant::now();
        let first = tokens.issue_at(viewer(), start);
        let second = tokens.issue_at(viewer(), start + Duration::from_millis(1));
        for i in 2..MAX_OUTSTANDING {
            tokens.issue_at(viewer(), start + Duration::from_millis(i as u64));
        }
        let last = tokens.issue_at(viewer(), start + Duration::from_secs(1));
        assert_eq!(tokens.outstanding.lock().unwrap().len(), MAX_OUTSTANDING);
        let now = start + Duration::from_secs(2);
        assert_eq!(tokens.redeem_at(&first, now), None, "the oldest went first");
        assert_eq!(tokens.redeem_at(&second, now), Some(viewer()));
        assert_eq!(tokens.redeem_at(&last, now), Some(viewer()));

        tokens.issue_at(viewer(), start + TOKEN_TTL * 2);
        assert_eq!(tokens.outstanding.lock().unwrap().len(), 1, "expired ones");
    }
}

//! `max_streams_per_key`: how many live streams one caller may hold open at once, counted
//! together over gRPC `StreamEvents` (and grpc-web), SSE (`GET /events`), the WebSocket
//! (`GET /ws/stream`) and health's `Watch`. A caller is its API key (by name), or on a
//! server without keys, and on health (open to all, no key asked), its client address. A
//! stream holds a [`StreamSlot`] for as long as it is fed; the one that would pass the limit
//! is refused (RESOURCE_EXHAUSTED, 429) naming it.
//!
//! The client address is known to the layer in front of the routes ([`scope_peer`]) and
//! read back here through a task-local, as the guard does with the caller.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};
use http_body_util::BodyExt as _;

use super::auth::Caller;
use crate::engine::EngineError;

/// The default of `max_streams_per_key`: a dashboard, a few `watch`es and every
/// `submit --wait` of a busy script, with room to spare.
pub const DEFAULT_MAX_STREAMS_PER_KEY: usize = 32;

tokio::task_local! {
    /// The client address of the request being served.
    static PEER: Option<IpAddr>;
}

/// The layer's work: the rest of the request knows the client's address.
pub async fn scope_peer(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    PEER.scope(peer, next.run(request)).await
}

/// The client address of the request being served, when known.
pub fn peer() -> Option<IpAddr> {
    PEER.try_with(|peer| *peer).ok().flatten()
}

/// The streams of routes open to all, counted here by client address (nobody is asked who
/// they are): health's `Watch` (tonic-health serves it: not ours to count inside) and the
/// node link's `Attach` (held from the first frame, before its secret is checked).
const OPEN_STREAMS: [&str; 2] = [
    "/grpc.health.v1.Health/Watch",
    "/claude_swarm.v1.NodeService/Attach",
];

/// The layer in front of the gRPC services: a stream of an open route takes a place for as
/// long as its response body lives, or is refused when its caller has none left.
pub async fn hold_open_streams(
    State(limit): State<Arc<StreamLimit>>,
    request: Request,
    next: Next,
) -> Response {
    if !OPEN_STREAMS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match limit.take() {
        Ok(slot) => next.run(request).await.map(|body| {
            // The place goes with the body: when the stream ends or its client leaves.
            Body::new(body.map_frame(move |frame| {
                let _held = &slot;
                frame
            }))
        }),
        Err(refused) => tonic::Status::from(refused).into_http::<Body>(),
    }
}

/// Who holds streams.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Holder {
    /// An API key, by name.
    Key(Arc<str>),
    /// A client address, on a server without keys (`None`: not known, one for all).
    Address(Option<IpAddr>),
}

/// The streams open now, per holder.
#[derive(Debug)]
pub struct StreamLimit {
    max: usize,
    /// By key name when the server has keys, else by address.
    by_key: bool,
    open: Mutex<HashMap<Holder, usize>>,
}

/// One open stream; dropping it frees its place.
#[derive(Debug)]
pub struct StreamSlot {
    limit: Arc<StreamLimit>,
    holder: Holder,
}

impl StreamLimit {
    /// At most `max` streams per key when `by_key`, else per client address.
    pub fn new(max: usize, by_key: bool) -> Arc<Self> {
        Arc::new(Self {
            max,
            by_key,
            open: Mutex::default(),
        })
    }

    /// A place for one more stream of the current caller (its key, or the client's
    /// address); `Err` names the limit when it holds `max` already.
    pub fn take(self: &Arc<Self>) -> Result<StreamSlot, EngineError> {
        let holder = match Caller::current() {
            Some(caller) if self.by_key => Holder::Key(caller.name),
            _ => Holder::Address(peer()),
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(holder.clone()).or_default();
        if *count >= self.max {
            let who = match &holder {
                Holder::Key(name) => format!("the key {name:?}"),
                Holder::Address(Some(ip)) => format!("the address {ip}"),
                Holder::Address(None) => "this client".to_owned(),
            };
            return Err(EngineError::ResourceExhausted {
                limit: "max_streams_per_key",
                reason: format!(
                    "{who} has {} event streams open, the most one caller may (gRPC, SSE and \
                     WebSocket together); close one first",
                    self.max
                ),
            });
        }
        *count += 1;
        Ok(StreamSlot {
            limit: self.clone(),
            holder,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Role;

    fn caller(name: &str) -> Caller {
        Caller {
            name: name.into(),
            role: Role::Read,
        }
    }

    #[tokio::test]
    async fn each_key_holds_at_most_max_streams_and_a_closed_one_frees_its_place() {
        let limit = StreamLimit::new(2, true);
        let (one, two) = caller("a")
            .scope(async { (limit.take().unwrap(), limit.take().unwrap()) })
            .await;
        let refused = caller("a").scope(async { limit.take() }).await.unwrap_err();
        assert!(
            matches!(&refused, EngineError::ResourceExhausted { limit, reason }
                if *limit == "max_streams_per_key" && reason.contains("the key \"a\" has 2")),
            "{refused:?}"
        );
        assert!(caller("b").scope(async { limit.take() }).await.is_ok());
        drop(one);
        let three = caller("a").scope(async { limit.take() }).await;
        assert!(three.is_ok());
        drop((two, three));
        assert!(
            limit.open.lock().unwrap().is_empty(),
            "nothing is left open"
        );
    }

    #[tokio::test]
    async fn without_keys_each_address_has_its_own_count() {
        let limit = StreamLimit::new(1, false);
        let at = |ip: &str| Some(ip.parse::<IpAddr>().unwrap());
        let anonymous = || Caller::anonymous();
        let first = PEER
            .scope(at("10.0.0.1"), anonymous().scope(async { limit.take() }))
            .await;
        assert!(first.is_ok());
        let again = PEER
            .scope(at("10.0.0.1"), anonymous().scope(async { limit.take() }))
            .await;
        let message = again.unwrap_err().to_string();
        assert!(message.contains("the address 10.0.0.1"), "{message}");
        let other = PEER
            .scope(at("10.0.0.2"), anonymous().scope(async { limit.take() }))
            .await;
        assert!(other.is_ok());
    }
}

//! The port of a node that does not own the database: every request the node's guard lets
//! through (its `Host`, `Origin` and body type, by this node's configuration) goes on to the
//! owner, which answers it as its own: who is calling (the API key), the limits and the call
//! itself. So any node's port sees and steers the whole swarm, on every surface: gRPC and
//! grpc-web over HTTP/2, REST, SSE, and the WebSocket over an HTTP/1.1 upgrade.
//!
//! A forwarded request carries the database's link secret ([`SECRET`]), without which the
//! owner trusts none of it, and the client's address ([`CALLER`]), which stands for the
//! node's own on the owner (rate limits, stream limits, the audit). Whatever a client sends
//! under those names is dropped here first.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header},
    response::Response,
};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;

use crate::api::guard::Refusal;

/// The header a forwarded request carries the link secret in.
pub const SECRET: HeaderName = HeaderName::from_static(SECRET_NAME);
pub const SECRET_NAME: &str = "x-swarm-link-secret";
/// The header naming the client a forwarded request comes from (`ip:port`).
pub const CALLER: HeaderName = HeaderName::from_static("x-swarm-caller");

/// How long a node tries to reach the owner before it answers UNAVAILABLE.
const CONNECT_LIMIT: Duration = Duration::from_secs(3);

/// Where the owner is: its address and the link secret (`None` while no node owns the
/// database), as the node's worker last found it.
pub type Owner = watch::Receiver<Option<(String, String)>>;

/// The forwarding side of a node's port.
#[derive(Clone)]
pub struct Forward {
    owner: Owner,
    /// The HTTP/2 connection to the owner, by its address (a new owner gets a new one).
    channel: Arc<std::sync::Mutex<Option<(String, Channel)>>>,
}

impl Forward {
    pub fn new(owner: Owner) -> Self {
        Self {
            owner,
            channel: Arc::default(),
        }
    }

    /// The owner, waiting a little for one while none is known: the node has just started
    /// (its first look is under way), or an owner is being replaced.
    async fn owner(&self) -> Option<(String, String)> {
        let mut owner = self.owner.clone();
        let found = tokio::time::timeout(CONNECT_LIMIT, owner.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(found)) => found.clone(),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    fn channel_to(&self, address: &str) -> Result<Channel, String> {
        let mut cached = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((to, channel)) = cached.as_ref()
            && to == address
        {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("the owner's address {address:?}: {e}"))?
            .connect_timeout(CONNECT_LIMIT)
            .tcp_nodelay(true)
            .connect_lazy();
        *cached = Some((address.to_owned(), channel.clone()));
        Ok(channel)
    }
}

/// The route behind the node's guard: every request, to the owner.
pub async fn forward(
    State(forward): State<Forward>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let Some((address, secret)) = forward.owner().await else {
        let message = "no node owns the swarm's database right now (one takes it over within \
                       a lease); try again"
            .to_owned();
        return Refusal::unavailable(message).into_response(content_type.as_ref());
    };
    let Ok(secret) = HeaderValue::from_str(&secret) else {
        let message = "the database's link secret (meta.secret) is not printable text".into();
        return Refusal::unavailable(message).into_response(content_type.as_ref());
    };
    let headers = request.headers_mut();
    headers.remove(CALLER);
    // Checked here by this node's names: the owner would not know them as its own.
    headers.remove(header::ORIGIN);
    headers.insert(SECRET, secret);
    headers.insert(
        CALLER,
        HeaderValue::from_str(&client.to_string()).expect("an address is ASCII"),
    );
    let answered = if request.headers().contains_key(header::UPGRADE) {
        upgrade(&address, request).await
    } else {
        over_http2(&forward, &address, request).await
    };
    answered.unwrap_or_else(|cause| {
        tracing::warn!(owner = %address, %cause, "cannot forward a request to the owner");
        let message = format!("the swarm's owner at {address} cannot be reached: {cause}");
        Refusal::unavailable(message).into_response(content_type.as_ref())
    })
}

/// Any request but an upgrade: on the HTTP/2 connection to the owner, body and trailers
/// streamed both ways.
async fn over_http2(
    forward: &Forward,
    address: &str,
    request: Request,
) -> Result<Response, String> {
    let channel = forward.channel_to(address)?;
    let (mut parts, body) = request.into_parts();
    parts.version = Version::HTTP_2;
    parts.uri = path_only(&parts.uri);
    parts.extensions = Default::default();
    without_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    let request = Request::from_parts(parts, tonic::body::Body::new(body));
    let response = channel
        .oneshot(request)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(response.map(Body::new))
}

/// A WebSocket (`GET /ws/stream`): the same upgrade asked of the owner over HTTP/1.1, then
/// the two upgraded connections joined.
async fn upgrade(address: &str, mut request: Request) -> Result<Response, String> {
    let client_side = hyper::upgrade::on(&mut request);
    let (mut parts, _) = request.into_parts();
    parts.uri = path_only(&parts.uri);
    parts.extensions = Default::default();
    let host = HeaderValue::from_str(address).map_err(|e| e.to_string())?;
    parts.headers.insert(header::HOST, host);
    let stream = tokio::time::timeout(CONNECT_LIMIT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| format!("no connection within {CONNECT_LIMIT:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let mut response = sender
        .send_request(Request::from_parts(parts, Body::empty()))
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response.map(Body::new));
    }
    let owner_side = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (Ok(client), Ok(owner)) = tokio::join!(client_side, owner_side) else {
            return;
        };
        let (mut client, mut owner) = (TokioIo::new(client), TokioIo::new(owner));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut owner).await;
    });
    Ok(response.map(|_| Body::empty()))
}

/// The request target without scheme and authority (the connection names the owner).
fn path_only(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()))
}

/// Headers about one connection only, which HTTP/2 forbids (RFC 9113 8.2.2); `te` stays
/// when it says `trailers`, as gRPC does. `expect` goes too: this node's server answered
/// the client's `100-continue` itself.
fn without_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| name.trim().parse().ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "expect",
    ] {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

/// An error with its causes: tonic's transport error alone says only "transport error".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_go_and_te_trailers_stays() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::EXPECT, "100-continue".parse().unwrap());
        headers.insert(header::AUTHORIZATION, "Bearer k".parse().unwrap());
        without_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["te", "authorization"]);
        headers.insert(header::TE, "gzip".parse().unwrap());
        without_hop_by_hop(&mut headers);
        assert!(!headers.contains_key(header::TE));
    }

    #[test]
    fn the_target_keeps_its_path_and_query_only() {
        let uri: Uri = "http://evil.example:1/tasks?status=queued".parse().unwrap();
        assert_eq!(path_only(&uri), "/tasks?status=queued");
    }
}

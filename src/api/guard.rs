//! The guard in front of every route and RPC (REST, gRPC, grpc-web, WebSocket, SSE): the
//! browser-facing half of "safe by default". The server runs agents with shell access, and
//! any page its user visits can send requests to 127.0.0.1. So, before anything runs, it
//! refuses
//!
//! - a `Host` (or HTTP/2 `:authority`) that is not a loopback name or address, the listen
//!   address or one of `allowed_hosts`: 421 Misdirected Request. A page whose domain was
//!   rebound to 127.0.0.1 (DNS rebinding) is same-origin with the server, but names its own
//!   domain there.
//! - an `Origin` that is not a loopback origin, the server's own or one of `cors_origins`,
//!   on every state-changing call and on the event streams, even on `GET` (a WebSocket
//!   ignores CORS): 403.
//! - a body a page may send cross-site without a CORS preflight (`text/plain`, the form
//!   types, none) on a route that reads one: 415, naming the types the route takes. Those
//!   all need a preflight, and preflights are answered only for allowed origins. gRPC
//!   routes take only gRPC and grpc-web.
//!
//! Then it asks who is calling ([`auth`]): an API key of the role the operation needs
//! (401 without one or with an unknown one, 403 with too low a role), or on the event
//! streams a stream token. With a `rate_limit_per_second`, the caller's key (or, on a
//! server without keys, its address) then takes a request from its bucket
//! ([`rate_limit`](super::rate_limit)): 429 once it is empty. The caller is the current one for the rest of
//! the request.
//!
//! gRPC and grpc-web callers hear PERMISSION_DENIED instead of 421 and 403,
//! UNAUTHENTICATED instead of 401 and RESOURCE_EXHAUSTED instead of 429. Clients that are not browsers send no `Origin`, declare
//! their bodies and name the address they dial, so they pass.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{
    auth::{Auth, Caller, Denied, Digest, access, digest},
    rate_limit::{Limited, Limiter},
    rest::{self, ApiError, Route},
    server::ServerOptions,
};
use crate::cluster::forward;

/// The start of every gRPC (`application/grpc`, `+proto`) and grpc-web (`-web`,
/// `-web-text`) media type.
const GRPC: &str = "application/grpc";

/// How much of a refused request's body is read before the answer, and for how long.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// What a gRPC route takes, for the 415 that says so.
const GRPC_TYPES: &[&str] = &[
    "application/grpc",
    "application/grpc-web",
    "application/grpc-web-text",
];

/// Who may call, and what each route reads.
pub struct Guard {
    /// `allowed_hosts`, normalized: a host, and the one port it is served on if it names one.
    hosts: Vec<(String, Option<u16>)>,
    /// The address the server listens on, when known: its `Host` is served on any port.
    listen: Option<IpAddr>,
    /// `cors_origins`, compared as written (browsers send `scheme://host[:port]`).
    origins: Vec<String>,
    /// The REST operations: which bodies each reads, which are event streams.
    rest: Vec<Route>,
    /// `/{service}/` of every gRPC service: paths that take only gRPC.
    grpc: Vec<String>,
    /// Keys and stream tokens.
    auth: Auth,
    /// The callers' buckets, with a rate limit.
    limiter: Option<Limiter>,
    /// On the owner of a shared database: the digest of its link secret, which requests
    /// forwarded by the other nodes carry.
    link: Option<Digest>,
}

impl Guard {
    /// The guard for a server with `options`, listening on `listen` (if known) and serving
    /// the gRPC services named `grpc_services` besides the REST routes.
    pub fn new(
        options: &ServerOptions,
        listen: Option<IpAddr>,
        grpc_services: &[&str],
        auth: Auth,
    ) -> Self {
        let hosts = options
            .allowed_hosts
            .iter()
            .filter_map(|entry| {
                let host = split_host(entry.trim());
                if host.is_none() {
                    tracing::warn!(entry, "allowed_hosts: not a host or host:port, ignored");
                }
                host
            })
            .collect();
        Self {
            hosts,
            listen,
            origins: options.cors_origins.clone(),
            rest: rest::route_table(),
            grpc: grpc_services.iter().map(|s| format!("/{s}/")).collect(),
            auth,
            limiter: options
                .rate_limit
                .map(|limit| Limiter::new(limit, !options.keys.is_empty())),
            link: options.node_link.as_ref().map(|link| link.secret_digest()),
        }
    }

    /// Whether `authority` (`host[:port]`) names this server.
    fn serves(&self, authority: &str) -> bool {
        let Some((host, port)) = split_host(authority) else {
            return false;
        };
        let ip = ip_of(&host).map(|ip| ip.to_canonical());
        is_loopback(&host)
            || (ip.is_some() && ip == self.listen.map(|ip| ip.to_canonical()))
            || self
                .hosts
                .iter()
                .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }

    /// A loopback origin, one of `cors_origins`, or the origin of the allowed host the
    /// request is addressed to (a page this server serves under that name, calling home).
    /// The CORS layer answers browsers by the same rule.
    pub fn allows_origin(&self, origin: &HeaderValue, headers: &HeaderMap, uri: &Uri) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.origins.iter().any(|o| o == origin) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        split_host(authority).is_some_and(|(host, _)| is_loopback(&host))
            || target(headers, uri)
                .is_some_and(|t| t.eq_ignore_ascii_case(authority) && self.serves(&t))
    }

    /// What a browser could send against the user's will: a `Host`, an `Origin` or a body
    /// type this server does not take.
    fn screen(&self, request: &Request) -> Result<(), Refusal> {
        let (method, uri, headers) = (request.method(), request.uri(), request.headers());
        self.check_host(headers, uri)?;
        let changes_state = !method.is_safe();
        if let Some(origin) = headers.get(header::ORIGIN)
            && (changes_state || self.is_stream(uri.path()))
            && !self.allows_origin(origin, headers, uri)
        {
            return Err(Refusal::origin(origin));
        }
        if changes_state {
            self.check_body_type(method, uri.path(), headers)?;
        }
        Ok(())
    }

    /// Whether `request` comes from a node forwarding it (`crate::cluster::forward`), which
    /// screened it against its own names: it must carry the database's link secret. Its
    /// caller's address then stands for the client's (limits, audit). A caller's own claim
    /// of an address, without the secret, is dropped.
    fn forwarded(&self, request: &mut Request) -> Result<bool, Refusal> {
        let headers = request.headers_mut();
        let claimed = headers.remove(forward::CALLER);
        let Some(secret) = headers.remove(forward::SECRET) else {
            return Ok(false);
        };
        if self.link.is_none_or(|link| digest(&text(&secret)) != link) {
            return Err(Refusal::not_a_node());
        }
        let caller = claimed.and_then(|value| text(&value).parse::<SocketAddr>().ok());
        if let Some(caller) = caller {
            request.extensions_mut().insert(ConnectInfo(caller));
        }
        Ok(true)
    }

    /// Who is calling, when `request` may go on to its route (`None` on an open route).
    fn check(&self, request: &Request, forwarded: bool) -> Result<Option<Caller>, Refusal> {
        if !forwarded {
            self.screen(request)?;
        }
        let (method, uri, headers) = (request.method(), request.uri(), request.headers());
        let stream = self.is_stream(uri.path());
        let token = stream.then(|| stream_token(uri)).flatten();
        let caller = self
            .auth
            .check(&access::operation(method, uri.path()), headers, token)
            .map_err(Refusal::denied)?;
        // Open routes (`/health`) are not limited: a load balancer polls them.
        if let (Some(limiter), Some(caller)) = (&self.limiter, &caller) {
            let address = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            limiter
                .take(caller, address)
                .map_err(Refusal::rate_limited)?;
        }
        Ok(caller)
    }

    /// `Host` and the URI's authority (HTTP/2 `:authority`, or an absolute request target):
    /// at least one, and each must name this server.
    fn check_host(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
        let host = headers.get(header::HOST).map(|v| ("Host", text(v)));
        let authority = uri.authority().map(|a| (":authority", a.to_string()));
        if host.is_none() && authority.is_none() {
            return Err(Refusal::misdirected("Host", None));
        }
        for (field, value) in host.into_iter().chain(authority) {
            if !self.serves(&value) {
                return Err(Refusal::misdirected(field, Some(&value)));
            }
        }
        Ok(())
    }

    fn is_stream(&self, path: &str) -> bool {
        self.rest.iter().any(|r| r.stream && matches(r.path, path))
    }

    /// A gRPC route takes only gRPC; a REST route that reads a body, only its types.
    fn check_body_type(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let found = media_type(headers);
        let accepted = if self.grpc.iter().any(|prefix| path.starts_with(prefix)) {
            if found.as_deref().is_some_and(|t| t.starts_with(GRPC)) {
                return Ok(());
            }
            GRPC_TYPES
        } else {
            // A path or method it does not serve falls through to a 404 or a 405.
            let Some(route) = self
                .rest
                .iter()
                .find(|r| r.method == method && matches(r.path, path))
            else {
                return Ok(());
            };
            let declared = found.as_deref();
            if route.body_types.is_empty()
                || declared.is_some_and(|t| route.body_types.contains(&t))
            {
                return Ok(());
            }
            route.body_types
        };
        Err(Refusal::body_type(method, path, accepted, found))
    }
}

/// The layer's work: refuse, or pass the request on as its caller's.
pub async fn check(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let checked = guard
        .forwarded(&mut request)
        .and_then(|forwarded| guard.check(&request, forwarded));
    match checked {
        Ok(caller) => {
            // The stream token is the guard's business; the route never sees it.
            if guard.is_stream(request.uri().path()) {
                without_token(request.uri_mut());
            }
            match caller {
                Some(caller) => caller.scope(next.run(request)).await,
                None => next.run(request).await,
            }
        }
        Err(refusal) => refuse(refusal, request).await,
    }
}

/// The layer in front of a node that forwards its port to the owner: only [`Guard::screen`]
/// (by this node's names and origins); the owner asks who is calling.
pub async fn screen(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.screen(&request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refuse(refusal, request).await,
    }
}

async fn refuse(refusal: Refusal, request: Request) -> Response {
    tracing::warn!(
        status = refusal.status.as_u16(),
        header = refusal.field,
        method = %request.method(),
        path = request.uri().path(),
        "refused: {}",
        refusal.message
    );
    let response = refusal.into_response(request.headers().get(header::CONTENT_TYPE));
    // Take in what the client is still sending (a little, briefly): over HTTP/1.1 an
    // unread body closes the connection under it, and it hears a reset instead of
    // the refusal.
    let body = axum::body::to_bytes(request.into_body(), DRAIN_BYTES);
    let _ = tokio::time::timeout(DRAIN_TIME, body).await;
    response
}

/// The `token` query parameter of an event stream's URI.
fn stream_token(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// `uri` without its `token` query parameters.
fn without_token(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| *pair != "token" && !pair.starts_with("token="))
        .collect();
    let path_and_query = match kept.as_slice() {
        [] => uri.path().to_owned(),
        kept => format!("{}?{}", uri.path(), kept.join("&")),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
}

/// Why a request was refused.
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    /// The header (or query parameter) at fault.
    field: &'static str,
    message: String,
    /// What gRPC callers hear instead, when it is about who is calling (`Host`, `Origin`,
    /// the key, its rate); `None` answers them with the REST error too.
    grpc: Option<tonic::Code>,
    /// When a caller over its rate may try again (REST's `Retry-After`).
    retry_after: Option<std::time::Duration>,
}

impl Refusal {
    fn misdirected(field: &'static str, value: Option<&str>) -> Self {
        let message = match value {
            Some(value) => format!(
                "{field} {value:?} is not a name of this server: it answers to loopback names \
                 and addresses, its listen address and allowed_hosts"
            ),
            None => "the request names no host (Host or :authority)".to_owned(),
        };
        Self {
            status: StatusCode::MISDIRECTED_REQUEST,
            code: "misdirected_request",
            field,
            message,
            grpc: Some(tonic::Code::PermissionDenied),
            retry_after: None,
        }
    }

    fn origin(origin: &HeaderValue) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: "Origin",
            message: format!(
                "Origin {:?} may not call this server: it allows loopback origins, its own \
                 and cors_origins",
                text(origin)
            ),
            grpc: Some(tonic::Code::PermissionDenied),
            retry_after: None,
        }
    }

    fn not_a_node() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: forward::SECRET_NAME,
            message: "not the database's link secret: only the swarm's nodes forward requests"
                .to_owned(),
            grpc: Some(tonic::Code::PermissionDenied),
            retry_after: None,
        }
    }

    /// The owner of the swarm cannot be reached (a node forwarding to it says so).
    pub(crate) fn unavailable(message: String) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            field: "owner",
            message,
            grpc: Some(tonic::Code::Unavailable),
            retry_after: None,
        }
    }

    fn denied(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated { field, message } => Self {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthenticated",
                field,
                message,
                grpc: Some(tonic::Code::Unauthenticated),
                retry_after: None,
            },
            Denied::Forbidden { message } => Self {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                field: "Authorization",
                message,
                grpc: Some(tonic::Code::PermissionDenied),
                retry_after: None,
            },
        }
    }

    fn rate_limited(limited: Limited) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "resource_exhausted",
            field: "rate_limit_per_second",
            message: limited.message,
            grpc: Some(tonic::Code::ResourceExhausted),
            retry_after: Some(limited.retry_after),
        }
    }

    fn body_type(method: &Method, path: &str, accepted: &[&str], found: Option<String>) -> Self {
        let found = found.map_or("no Content-Type".to_owned(), |t| {
            format!("Content-Type {t}")
        });
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            field: "Content-Type",
            message: format!(
                "{method} {path} takes a body of type {}; the request has {found}",
                accepted.join(", ")
            ),
            grpc: None,
            retry_after: None,
        }
    }

    /// A gRPC status for a gRPC or grpc-web call (`request_type`), else the REST error body.
    pub(crate) fn into_response(self, request_type: Option<&HeaderValue>) -> Response {
        let grpc_type = request_type.filter(|t| t.as_bytes().starts_with(GRPC.as_bytes()));
        match (grpc_type, self.grpc) {
            (Some(grpc_type), Some(code)) => {
                let mut response = tonic::Status::new(code, self.message).into_http::<Body>();
                // tonic says `application/grpc`; a grpc-web client wants its own type back.
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, grpc_type.clone());
                response
            }
            _ => {
                let unauthenticated = self.status == StatusCode::UNAUTHORIZED;
                let mut response = ApiError::new(
                    self.status,
                    self.code,
                    self.message,
                    Some(self.field.to_owned()),
                )
                .into_response();
                if unauthenticated {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"claude-swarm\""),
                    );
                }
                if let Some(wait) = self.retry_after {
                    // Whole seconds, rounded up: a client waiting that long finds a request.
                    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
        }
    }
}

/// The `Content-Type` without its parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = text(headers.get(header::CONTENT_TYPE)?);
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Where the request says it is going: `Host`, else the URI's authority.
fn target(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .map(text)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

/// `host[:port]` as (host, port): the host lowercased without a trailing dot, an IPv6
/// address in its brackets; `None` when it is not of that shape.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    let end = if authority.starts_with('[') {
        authority.find(']')? + 1
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(end);
    let port = match port {
        "" => None,
        port => Some(port.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (!host.is_empty()).then_some((host, port))
}

/// `localhost`, 127.0.0.0/8 and `[::1]` (also as `[::ffff:127.x.y.z]`).
fn is_loopback(host: &str) -> bool {
    host == "localhost" || ip_of(host).is_some_and(|ip| ip.to_canonical().is_loopback())
}

/// The address a host names literally: `a.b.c.d`, or `[v6]`.
fn ip_of(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Whether `path` is one of `pattern`'s, as axum matches: literal segments equal, each
/// `{param}` one segment that is not empty.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let (mut want, mut have) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with('{') && !h.is_empty() => {}
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed_hosts: &[&str], listen: Option<IpAddr>) -> Guard {
        let options = ServerOptions {
            allowed_hosts: allowed_hosts.iter().map(|h| h.to_string()).collect(),
            ..ServerOptions::default()
        };
        let auth = Auth::new(crate::api::auth::Keys::default(), Default::default());
        Guard::new(&options, listen, &["claude_swarm.v1.TaskService"], auth)
    }

    #[test]
    fn hosts_split_into_a_normal_name_and_a_port() {
        assert_eq!(
            split_host("LocalHost.:80"),
            Some(("localhost".into(), Some(80)))
        );
        assert_eq!(
            split_host("[::1]:50051"),
            Some(("[::1]".into(), Some(50051)))
        );
        assert_eq!(split_host("[::1]"), Some(("[::1]".into(), None)));
        for bad in ["", ":80", "a:b", "a:1:2", "[::1", "[::1]x", "host:"] {
            assert_eq!(split_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_allowed_and_listen_hosts_are_served_and_nothing_else() {
        let guard = guard(
            &["swarm.lan", "Proxy.Example:8443", "http://bad entry/"],
            Some("192.168.1.5".parse().unwrap()),
        );
        assert_eq!(guard.hosts.len(), 2, "the bad entry is dropped");
        for host in [
            "localhost",
            "localhost:1",
            "127.0.0.1:50051",
            "127.255.0.9",
            "[::1]:9",
            "[::ffff:127.0.0.1]",
            "192.168.1.5:8080",
            "swarm.lan:50051",
            "proxy.example:8443",
        ] {
            assert!(guard.serves(host), "{host}");
        }
        for host in [
            "evil.example.com",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "user@127.0.0.1",
            "192.168.1.6",
            "[::2]",
            "0x7f000001",
            "proxy.example",
            "proxy.example:8444",
            "sub.swarm.lan",
        ] {
            assert!(!guard.serves(host), "{host}");
        }
    }

    #[test]
    fn every_name_a_request_gives_is_checked_and_one_is_needed() {
        let guard = guard(&[], None);
        let refused = |request: axum::http::request::Builder| {
            guard
                .check(&request.body(Body::empty()).unwrap(), false)
                .err()
                .map(|r| (r.status, r.field))
        };
        let get = |uri: &str| Request::builder().uri(uri);
        assert_eq!(
            refused(get("/health")),
            Some((StatusCode::MISDIRECTED_REQUEST, "Host"))
        );
        // An absolute request target names a host too (HTTP/2 `:authority` is one).
        assert_eq!(
            refused(get("http://evil.example/health").header(header::HOST, "localhost")),
            Some((StatusCode::MISDIRECTED_REQUEST, ":authority"))
        );
        assert_eq!(refused(get("http://127.0.0.1:9/health")), None);
        // A foreign Origin may read what CORS keeps from it, but not a stream.
        let from_page = |uri: &str| {
            get(uri)
                .header(header::HOST, "localhost")
                .header(header::ORIGIN, "http://evil.example")
        };
        assert_eq!(refused(from_page("/tasks")), None);
        assert_eq!(
            refused(from_page("/events")),
            Some((StatusCode::FORBIDDEN, "Origin"))
        );
    }

    #[test]
    fn a_stream_token_is_read_from_the_query_and_taken_out_of_it() {
        let uri = |text: &str| text.parse::<Uri>().unwrap();
        assert_eq!(stream_token(&uri("/events?after=3&token=abc")), Some("abc"));
        assert_eq!(stream_token(&uri("/events?after=3&tokens=abc")), None);
        assert_eq!(stream_token(&uri("/events")), None);
        for (before, after) in [
            ("/events?token=abc&after=3", "/events?after=3"),
            ("/ws/stream?token=abc", "/ws/stream"),
            ("/ws/stream?token", "/ws/stream"),
            ("/events?after=1", "/events?after=1"),
            ("/events", "/events"),
        ] {
            let mut stripped = uri(before);
            without_token(&mut stripped);
            assert_eq!(stripped, after, "{before}");
        }
    }

    #[test]
    fn patterns_match_as_axum_routes() {
        assert!(matches("/tasks/{id}", "/tasks/abc"));
        assert!(matches("/tasks", "/tasks"));
        for path in ["/tasks/", "/tasks/a/b", "/tasks", "/taskss/a"] {
            assert!(!matches("/tasks/{id}", path), "{path}");
        }
    }

    #[test]
    fn deletes_need_no_body_type_but_posts_and_rpcs_do() {
        let guard = guard(&[], None);
        let headers = |kind: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(kind) = kind {
                headers.insert(header::CONTENT_TYPE, kind.parse().unwrap());
            }
            headers
        };
        let ok = |method: Method, path: &str, kind: Option<&str>| {
            guard.check_body_type(&method, path, &headers(kind)).is_ok()
        };
        assert!(ok(Method::DELETE, "/tasks/x", None));
        assert!(ok(
            Method::POST,
            "/tasks",
            Some("application/json; charset=utf-8")
        ));
        assert!(ok(
            Method::POST,
            "/workflows/execute",
            Some("application/x-yaml")
        ));
        assert!(!ok(Method::POST, "/tasks", Some("application/yaml")));
        assert!(!ok(Method::POST, "/tasks", None));
        assert!(
            ok(Method::PUT, "/tasks", None),
            "a 405 comes from the router"
        );
        assert!(ok(Method::POST, "/no/such/route", None), "a 404 too");
        let rpc = "/claude_swarm.v1.TaskService/SubmitTask";
        assert!(ok(Method::POST, rpc, Some("application/grpc")));
        assert!(ok(Method::POST, rpc, Some("application/grpc-web+proto")));
        assert!(!ok(Method::POST, rpc, Some("text/plain")));
        assert!(!ok(Method::POST, rpc, None));
    }
}

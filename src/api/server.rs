//! One port for everything: gRPC (HTTP/2), grpc-web (HTTP/1.1 or 2), reflection, health
//! and the REST gateway, all on one axum router, behind the request metrics and the guard.

use std::{
    future::{Future, IntoFuture},
    io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use axum::{Extension, http::HeaderName, middleware, serve::ListenerExt};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
};
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;
use tower::Layer;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};

use super::{
    MAX_REQUEST_BYTES,
    audit::{self, Audit},
    auth::{Auth, Keys, tokens::StreamTokens},
    grpc,
    guard::{self, Guard},
    metrics::{self, Metrics},
    rate_limit::RateLimit,
    rest,
    service::Service,
    stream_limit::{self, DEFAULT_MAX_STREAMS_PER_KEY, StreamLimit},
    timeout::{self, DEFAULT_REQUEST_TIMEOUT},
    tls::TlsListener,
};
use crate::{
    engine::Engine,
    pb::{
        self, approval_service_server::ApprovalServiceServer,
        audit_service_server::AuditServiceServer, caller_service_server::CallerServiceServer,
        instance_service_server::InstanceServiceServer, node_service_server::NodeServiceServer,
        schedule_service_server::ScheduleServiceServer, swarm_service_server::SwarmServiceServer,
        task_service_server::TaskServiceServer, webhook_service_server::WebhookServiceServer,
        workflow_service_server::WorkflowServiceServer,
    },
    store::audit::AuditLog,
};

/// How long running tasks get to stop when the server shuts down.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);

/// Settings of the HTTP side.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `POST /workflows/execute {"workflow_path"}` reads only inside this directory.
    pub workspace_root: PathBuf,
    /// Browser origins allowed to call (grpc-web, REST) besides loopback ones.
    pub cors_origins: Vec<String>,
    /// `Host` names served besides loopback ones and the listen address: `name` (any
    /// port) or `name:port`, such as the name a reverse proxy or the LAN gives this
    /// machine. Any other `Host` is refused (421), so a page on a domain rebound to this
    /// address (DNS rebinding) cannot call the API.
    pub allowed_hosts: Vec<String>,
    /// The API keys accepted. None: nobody is asked for one (loopback only, unless
    /// `--insecure`).
    pub keys: Keys,
    /// Whether tasks may run shell steps (`command`) at all.
    pub allow_commands: bool,
    /// Requests each key (each client address, without keys) may make; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// `max_streams_per_key`: event streams each key (each client address, without keys)
    /// may hold open at once.
    pub max_streams_per_key: usize,
    /// `request_timeout`: how long a call may take to be answered (streams excepted).
    pub request_timeout: Duration,
    /// TLS on the port (`tls_cert`, `tls_key`); `None`: plaintext.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Where every state-changing call is recorded (in memory by default).
    pub audit: AuditLog,
    /// The configured webhooks, and where their outbox is kept (the data directory, or in
    /// memory when `None`).
    pub webhooks: Vec<crate::notify::webhook::Webhook>,
    pub data_dir: Option<PathBuf>,
    /// The node link, on the owner of a shared database (`crate::cluster`).
    pub node_link: Option<crate::cluster::leader::NodeLink>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workspace_root: std::env::current_dir().unwrap_or_else(|_| ".".into()),
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            keys: Keys::default(),
            allow_commands: true,
            rate_limit: None,
            max_streams_per_key: DEFAULT_MAX_STREAMS_PER_KEY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            tls: None,
            audit: AuditLog::default(),
            webhooks: Vec::new(),
            data_dir: None,
            node_link: None,
        }
    }
}

/// Builds the router serving every surface of `engine`. Its `Host`s are loopback ones and
/// `allowed_hosts`; [`serve_with`] adds the listen address.
pub async fn router(
    engine: Engine,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
) -> axum::Router {
    app(engine, options, None, shutdown).await
}

async fn app(
    engine: Engine,
    options: ServerOptions,
    listen: Option<IpAddr>,
    shutdown: watch::Receiver<bool>,
) -> axum::Router {
    let stopped = engine.stopped();
    let stopping = shutdown.clone();
    let link_stopping = shutdown.clone();
    let metrics = Metrics::start(engine.clone(), shutdown.clone()).await;
    let notifier = crate::notify::Notifier::start(
        engine.clone(),
        options.webhooks.clone(),
        options.data_dir.as_deref(),
        shutdown.clone(),
    );
    let streams = StreamLimit::new(options.max_streams_per_key, !options.keys.is_empty());
    let api = Service::new(
        engine,
        shutdown,
        options.allow_commands,
        metrics.subscribers(),
    )
    .with_stream_limit(streams.clone())
    .with_node_link(options.node_link.clone());
    let api = match notifier {
        Ok(notifier) => api.with_notifier(notifier),
        Err(cause) => {
            tracing::error!(%cause, "webhooks are off: their outbox cannot be opened");
            api
        }
    };
    let tokens = Arc::new(StreamTokens::default());
    let (health, health_service) = tonic_health::server::health_reporter();
    // grpcurl 1.8 speaks only v1alpha; newer clients use v1.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");

    let web = GrpcWebLayer::new();
    let max = MAX_REQUEST_BYTES;
    let audit = web.layer(
        AuditServiceServer::new(Audit::new(options.audit.clone())).max_decoding_message_size(max),
    );
    let (swarm, tasks, instances, workflows, events, health_service) = (
        web.layer(SwarmServiceServer::new(api.clone()).max_decoding_message_size(max)),
        web.layer(TaskServiceServer::new(api.clone()).max_decoding_message_size(max)),
        web.layer(InstanceServiceServer::new(api.clone()).max_decoding_message_size(max)),
        web.layer(WorkflowServiceServer::new(api.clone()).max_decoding_message_size(max)),
        web.layer(grpc::EventServer::new(api.clone(), max)),
        web.layer(health_service),
    );
    let approvals =
        web.layer(ApprovalServiceServer::new(api.clone()).max_decoding_message_size(max));
    let schedules =
        web.layer(ScheduleServiceServer::new(api.clone()).max_decoding_message_size(max));
    let webhooks = web.layer(WebhookServiceServer::new(api.clone()).max_decoding_message_size(max));
    let callers = web.layer(CallerServiceServer::new(grpc::Callers {
        keys_required: !options.keys.is_empty(),
    }));
    let api_services = api_services();
    set_health(&health, &api_services, ServingStatus::Serving).await;
    // A stopped engine answers nothing any more: health says so at once. Unless the server
    // is shutting down, that is a bug.
    tokio::spawn(async move {
        let reason = stopped.await;
        if *stopping.borrow() {
            tracing::debug!(%reason, "the engine stopped with the server");
        } else {
            tracing::error!(%reason, "the engine stopped; health is NOT_SERVING");
        }
        set_health(&health, &api_services, ServingStatus::NotServing).await;
    });
    let guard = Arc::new(Guard::new(
        &options,
        listen,
        &grpc_services(),
        Auth::new(options.keys.clone(), tokens.clone()),
    ));
    let link = options.node_link.clone().map(|link| {
        NodeServiceServer::new(link.stopping_with(link_stopping)).max_decoding_message_size(max)
    });
    let mut grpc = tonic::service::Routes::new(swarm)
        .add_service(tasks)
        .add_service(instances)
        .add_service(workflows)
        .add_service(events)
        .add_service(audit)
        .add_service(approvals)
        .add_service(schedules)
        .add_service(webhooks)
        .add_service(callers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    if let Some(link) = link {
        grpc = grpc.add_service(link);
    }
    let grpc = grpc
        .into_axum_router()
        .layer(middleware::from_fn_with_state(
            streams,
            stream_limit::hold_open_streams,
        ))
        .layer(middleware::map_response(grpc::request_errors));
    // The REST router's fallback (a JSON 404) replaces tonic's "unimplemented" one. Every
    // request, preflights too, passes the guard before anything else, and is counted
    // (refused ones too) by the metrics layer around it.
    grpc.merge(rest::router(api, options.workspace_root))
        .fallback(rest::not_found)
        .layer(Extension(tokens))
        .layer(Extension(metrics.clone()))
        .layer(Extension(Audit::new(options.audit.clone())))
        .layer(middleware::from_fn_with_state(
            options.request_timeout,
            timeout::limit,
        ))
        .layer(middleware::from_fn_with_state(options.audit, audit::record))
        .layer(middleware::from_fn(stream_limit::scope_peer))
        .layer(cors(guard.clone()))
        .layer(middleware::from_fn_with_state(guard, guard::check))
        .layer(middleware::from_fn_with_state(metrics, metrics::record))
}

/// The whole server's status and each of `services`'.
async fn set_health(
    health: &tonic_health::server::HealthReporter,
    services: &[&'static str],
    status: ServingStatus,
) {
    health.set_service_status("", status).await;
    for service in services {
        health.set_service_status(*service, status).await;
    }
}

/// The services of the API proper, by the name each is routed under (`/{name}/{method}`).
fn api_services() -> [&'static str; 10] {
    [
        <SwarmServiceServer<Service> as NamedService>::NAME,
        <TaskServiceServer<Service> as NamedService>::NAME,
        <InstanceServiceServer<Service> as NamedService>::NAME,
        <WorkflowServiceServer<Service> as NamedService>::NAME,
        <grpc::EventServer as NamedService>::NAME,
        <AuditServiceServer<Audit> as NamedService>::NAME,
        <ApprovalServiceServer<Service> as NamedService>::NAME,
        <ScheduleServiceServer<Service> as NamedService>::NAME,
        <WebhookServiceServer<Service> as NamedService>::NAME,
        <CallerServiceServer<grpc::Callers> as NamedService>::NAME,
    ]
}

/// Every gRPC service on the port: the guard takes only gRPC on their paths.
fn grpc_services() -> Vec<&'static str> {
    let mut names = api_services().to_vec();
    names.extend([
        tonic_health::pb::health_server::SERVICE_NAME,
        tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
        tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
        <NodeServiceServer<crate::cluster::leader::NodeLink> as NamedService>::NAME,
    ]);
    names
}

/// Browsers may call from the origins the guard allows, nothing else. The headers a
/// preflight asks for are allowed by name: `*` would not cover `Authorization`.
fn cors(guard: Arc<Guard>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, request| {
            guard.allows_origin(origin, &request.headers, &request.uri)
        }))
        .allow_methods(Any)
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
}

/// Serves on `listener` until `shutdown` resolves, then ends event streams, drains
/// connections and stops running tasks (bounded).
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, engine, ServerOptions::default(), shutdown).await
}

/// [`serve`] with explicit options.
pub async fn serve_with(
    listener: TcpListener,
    engine: Engine,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (down_tx, down_rx) = watch::channel(false);
    let listen = listener.local_addr()?.ip();
    let tls = options.tls.clone();
    let audit = options.audit.clone();
    let app = app(engine.clone(), options, Some(listen), down_rx).await;
    let (failed_tx, failed_rx) = oneshot::channel();
    let (draining_tx, draining) = oneshot::channel::<()>();
    let stopped = engine.stopped();
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            reason = stopped => {
                let _ = failed_tx.send(reason);
            }
        }
        let _ = down_tx.send(true);
        let _ = draining_tx.send(());
    };
    serve_app(listener, tls, app, signal, draining, SHUTDOWN_LIMIT).await?;
    engine.shutdown(SHUTDOWN_LIMIT).await;
    audit.flush().await;
    match failed_rx.await {
        // The engine ended under the server: exit non-zero with its reason.
        Ok(reason) => Err(io::Error::other(reason)),
        Err(_) => Ok(()),
    }
}

/// Serves `app` on `listener` (with TLS when `tls` is given) until `signal` resolves, then
/// drains the connections for at most `limit` after `draining`: a client holding a stream
/// open (a health watch) cannot keep the server from stopping.
async fn serve_app(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    app: axum::Router,
    signal: impl Future<Output = ()> + Send + 'static,
    draining: oneshot::Receiver<()>,
    limit: Duration,
) -> io::Result<()> {
    // The client's address, for the rate limit of a server without keys.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let served: Pin<Box<dyn Future<Output = io::Result<()>> + Send>> = match tls {
        None => {
            // Small RPCs must not wait on delayed ACKs (Nagle): ~40 ms stalls at light load.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .into_future(),
            )
        }
        Some(config) => {
            let listener = TlsListener::new(listener, config)?.tap_io(|tls| {
                let _ = tls.get_ref().0.set_nodelay(true);
            });
            Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .into_future(),
            )
        }
    };
    let drain_limit = async {
        match draining.await {
            Ok(()) => tokio::time::sleep(limit).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = served => served?,
        () = drain_limit => tracing::warn!("connections still open after the drain limit; closing them"),
    }
    Ok(())
}

/// The port of a node that does not own the shared database: the guard's screen (by this
/// node's names, origins and body types), then every request on to the owner
/// (`crate::cluster::forward`), until `shutdown` resolves. Open requests get a second to
/// end: the owner they went to is gone or going.
pub async fn forward(
    listener: TcpListener,
    options: ServerOptions,
    to: crate::cluster::forward::Forward,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listen = listener.local_addr()?.ip();
    // Keys are the owner's business: this guard only screens.
    let unused = Auth::new(Keys::default(), Arc::default());
    let guard = Arc::new(Guard::new(&options, Some(listen), &grpc_services(), unused));
    let app = axum::Router::new()
        .fallback(crate::cluster::forward::forward)
        .with_state(to)
        .layer(cors(guard.clone()))
        .layer(middleware::from_fn_with_state(guard, guard::screen));
    let (draining_tx, draining) = oneshot::channel();
    let signal = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let tls = options.tls.clone();
    serve_app(listener, tls, app, signal, draining, Duration::from_secs(1)).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

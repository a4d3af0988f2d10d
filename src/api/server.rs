//! One port for everything: gRPC (HTTP/2), grpc-web (HTTP/1.1 or 2), reflection, health
//! and the REST gateway, all on one axum router.

use std::{
    future::{Future, IntoFuture},
    io,
    path::PathBuf,
    time::Duration,
};

use axum::{http::HeaderName, serve::ListenerExt};

use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
};
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;
use tower::Layer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::{rest, service::Service};
use crate::{
    engine::Engine,
    pb::{
        self, event_service_server::EventServiceServer,
        instance_service_server::InstanceServiceServer, swarm_service_server::SwarmServiceServer,
        task_service_server::TaskServiceServer, workflow_service_server::WorkflowServiceServer,
    },
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
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workspace_root: std::env::current_dir().unwrap_or_else(|_| ".".into()),
            cors_origins: Vec::new(),
        }
    }
}

/// Builds the router serving every surface of `engine`.
pub async fn router(
    engine: Engine,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
) -> axum::Router {
    let stopped = engine.stopped();
    let api = Service::new(engine, shutdown);
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    // A stopped engine (a bug) answers nothing any more: health says so at once.
    tokio::spawn(async move {
        let reason = stopped.await;
        tracing::error!(%reason, "the engine stopped; health is NOT_SERVING");
        set_health(&health, ServingStatus::NotServing).await;
    });

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
    let grpc = tonic::service::Routes::new(web.layer(SwarmServiceServer::new(api.clone())))
        .add_service(web.layer(TaskServiceServer::new(api.clone())))
        .add_service(web.layer(InstanceServiceServer::new(api.clone())))
        .add_service(web.layer(WorkflowServiceServer::new(api.clone())))
        .add_service(web.layer(EventServiceServer::new(api.clone())))
        .add_service(web.layer(health_service))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router();
    // The REST router's fallback (a JSON 404) replaces tonic's "unimplemented" one.
    grpc.merge(rest::router(api, options.workspace_root))
        .fallback(rest::not_found)
        .layer(cors(&options.cors_origins))
}

/// The whole server's status and each service's.
async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(service_name::<SwarmServiceServer<Service>>(), status)
        .await;
    health
        .set_service_status(service_name::<TaskServiceServer<Service>>(), status)
        .await;
    health
        .set_service_status(service_name::<InstanceServiceServer<Service>>(), status)
        .await;
    health
        .set_service_status(service_name::<WorkflowServiceServer<Service>>(), status)
        .await;
    health
        .set_service_status(service_name::<EventServiceServer<Service>>(), status)
        .await;
}

fn service_name<S: tonic::server::NamedService>() -> &'static str {
    S::NAME
}

/// Browsers may call from loopback origins and the configured ones, nothing else.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<String> = origins.to_vec();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            allowed.iter().any(|a| a == origin) || is_loopback_origin(origin)
        }))
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.rsplit_once(':').map_or(rest, |(host, port)| {
        if port.parse::<u16>().is_ok() {
            host
        } else {
            rest
        }
    });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
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
    let app = router(engine.clone(), options, down_rx).await;
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
    // Small RPCs must not wait on delayed ACKs (Nagle): ~40 ms stalls at light load.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    // The drain is bounded: a client holding a stream open (a health watch) cannot keep
    // the server from stopping.
    let drain_limit = async {
        match draining.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_LIMIT).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = served => served?,
        () = drain_limit => tracing::warn!("connections still open after the drain limit; closing them"),
    }
    engine.shutdown(SHUTDOWN_LIMIT).await;
    match failed_rx.await {
        // The engine ended under the server: exit non-zero with its reason.
        Ok(reason) => Err(io::Error::other(reason)),
        Err(_) => Ok(()),
    }
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

//! One port for everything: gRPC (HTTP/2), grpc-web (HTTP/1.1 or 2), reflection, health
//! and the REST gateway, all on one axum router.

use std::{future::Future, io, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tonic_web::GrpcWebLayer;
use tower::Layer;

use super::{grpc::Api, rest};
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

/// Builds the router serving every surface of `engine`.
pub async fn router(engine: Engine, shutdown: watch::Receiver<bool>) -> axum::Router {
    let api = Api::new(engine.clone(), shutdown);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SwarmServiceServer<Api>>().await;
    health.set_serving::<TaskServiceServer<Api>>().await;
    health.set_serving::<InstanceServiceServer<Api>>().await;
    health.set_serving::<WorkflowServiceServer<Api>>().await;
    health.set_serving::<EventServiceServer<Api>>().await;

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
        .add_service(web.layer(EventServiceServer::new(api)))
        .add_service(web.layer(health_service))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router();
    // The REST router's fallback (a JSON 404) replaces tonic's "unimplemented" one.
    grpc.merge(rest::router(engine)).fallback(rest::not_found)
}

/// Serves on `listener` until `shutdown` resolves, then ends event streams, drains
/// connections and stops running tasks (bounded).
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (down_tx, down_rx) = watch::channel(false);
    let app = router(engine.clone(), down_rx).await;
    let signal = async move {
        shutdown.await;
        let _ = down_tx.send(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    engine.shutdown(SHUTDOWN_LIMIT).await;
    Ok(())
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

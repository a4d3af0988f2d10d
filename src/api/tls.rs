//! TLS on the one port (`tls_cert`, `tls_key`), with rustls: gRPC, grpc-web, REST and the
//! WebSocket alike. ALPN offers `h2` (what gRPC clients ask for) and `http/1.1` (browsers'
//! grpc-web and WebSocket, curl); the server below tells them apart as it does in the clear.
//! With TLS on, the port speaks nothing else: a plaintext client's first bytes fail the
//! handshake and its connection is closed.
//!
//! Handshakes run off the accept loop, each bounded in time (and at most 1024 at once), so
//! a client that connects and says nothing holds up no one.

use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};

/// How long a client has to finish its handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Connections handshaken and not yet taken by the server.
const READY_BACKLOG: usize = 64;

/// Handshakes under way at once; past it, new connections wait in the kernel's backlog, so a
/// flood of silent connections costs a bounded number of tasks.
const MAX_HANDSHAKES: usize = 1024;

/// The server's TLS settings from a PEM certificate chain and its PEM private key. Errors
/// name the setting at fault (`tls_cert`, `tls_key`) and the file.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tls_cert: cannot read a PEM certificate from {}: {e}",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "tls_cert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "tls_key: cannot read a PEM private key from {}: {e}",
            key.display()
        )
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                format!(
                    "tls_key: {} does not go with the certificate of tls_cert {}: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections are TLS: what `axum::serve` accepts from.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and handshakes with `config`, until the listener is dropped.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = async {
                        let permit = handshakes.clone().acquire_owned().await;
                        (permit, tcp.accept().await)
                    } => accepted,
                    () = tx.closed() => break,
                };
                let (Ok(permit), accepted) = accepted else {
                    break;
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, go on.
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream));
                    let handshake = handshake.await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, cause = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ends only once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

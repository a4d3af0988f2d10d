//! The owner's side of the node link: `NodeService/Attach`. A node proves it reads the
//! database (the link secret), lends its instances (`Engine::join_node`), and from then on
//! gets runs and sends their reports; each side pings every third of the lease. A node
//! whose call ends, or that is silent for a whole lease (killed, frozen, cut off), is
//! dropped: `Engine::leave_node` first, so its runs go back to the queue uncounted, then
//! its runs are ended; anything it sends about them later has nowhere to go.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::{
    Links,
    wire::{self, Down, Up},
};
use crate::{
    api::{auth::digest, convert::timestamp},
    engine::Engine,
    pb::{self, LinkFrame, node_service_server::NodeService},
};

/// The owner's `NodeService`.
#[derive(Clone)]
pub struct NodeLink {
    /// This node's name.
    node: String,
    engine: Engine,
    links: Arc<Links>,
    /// The database's link secret.
    secret: Arc<str>,
    lease: Duration,
    sessions: Arc<AtomicU64>,
    /// Turns true when the server stops: links end at once (they would hold its drain).
    stopping: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLink")
            .field("nodes", &self.links)
            .finish()
    }
}

impl NodeLink {
    pub fn new(
        node: &str,
        engine: Engine,
        links: Arc<Links>,
        secret: &str,
        lease: Duration,
    ) -> Self {
        Self {
            node: node.to_owned(),
            engine,
            links,
            secret: secret.into(),
            lease,
            sessions: Arc::default(),
            stopping: None,
        }
    }

    /// The nodes of the database as `GetStatus` shows them, the owner (this node, with
    /// `own` instances) first.
    pub fn nodes(&self, own: u32) -> Vec<pb::NodeStatus> {
        let now = std::time::SystemTime::now();
        let owner = pb::NodeStatus {
            name: self.node.clone(),
            owner: true,
            instances: own,
            last_heard: Some(timestamp(now)),
        };
        let others = self
            .links
            .attached()
            .into_iter()
            .map(|(name, instances, heard)| pb::NodeStatus {
                name,
                owner: false,
                instances,
                last_heard: Some(timestamp(heard)),
            });
        std::iter::once(owner).chain(others).collect()
    }

    /// The digest of the database's link secret, which requests the other nodes forward
    /// carry too (`super::forward`).
    pub fn secret_digest(&self) -> crate::api::auth::Digest {
        digest(&self.secret)
    }

    /// The same link, ended when `stopping` turns true: the nodes' runs then go back to
    /// the queue, for the next owner.
    pub fn stopping_with(mut self, stopping: watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
    }
}

type Frames = Pin<Box<dyn Stream<Item = Result<LinkFrame, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for NodeLink {
    type AttachStream = Frames;

    async fn attach(
        &self,
        request: Request<Streaming<LinkFrame>>,
    ) -> Result<Response<Frames>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.lease, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within the lease"))??
            .ok_or_else(|| Status::invalid_argument("the link ended before its hello"))?;
        let Some(Up::Hello {
            node,
            instances,
            secret,
        }) = wire::decode(&first.json)
        else {
            return Err(Status::invalid_argument("the first frame must be a hello"));
        };
        // Digests compared, so the time taken tells nothing of the secret.
        if digest(&secret) != digest(&self.secret) {
            tracing::warn!(node = %node, "refused a node link with a wrong secret");
            return Err(Status::permission_denied("wrong link secret"));
        }
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let (down, frames) = mpsc::channel::<Down>(256);
        // The same node again (it restarted, or its last call broke): what it ran under
        // the old link is lost, and goes back to the queue before the old link ends.
        self.engine
            .leave_node(node.clone())
            .await
            .map_err(Status::from)?;
        self.links.attach(&node, session, instances, down.clone());
        let lent = self
            .engine
            .join_node(node.clone(), instances)
            .await
            .map_err(Status::from)?;
        let instances: Vec<String> = lent.into_iter().map(|i| i.id).collect();
        tracing::info!(node = %node, instances = instances.len(), "a node attached and lends its instances");
        let _ = down.send(Down::Welcome { instances }).await;
        tokio::spawn(follow(self.clone(), node, session, inbound, down));
        let frames = ReceiverStream::new(frames).map(|frame| {
            Ok(LinkFrame {
                json: wire::encode(&frame),
            })
        });
        Ok(Response::new(Box::pin(frames)))
    }
}

/// Reads `node`'s frames until its call ends or it is silent for a lease, pinging it
/// meanwhile; then drops it.
async fn follow(
    link: NodeLink,
    node: String,
    session: u64,
    mut inbound: Streaming<LinkFrame>,
    down: mpsc::Sender<Down>,
) {
    let mut ping = tokio::time::interval(link.lease / 3);
    // Silence is counted from the last frame heard, whatever is sent meanwhile.
    let mut heard = tokio::time::Instant::now();
    let mut stopping = link.stopping.clone();
    let why = loop {
        let frame = tokio::select! {
            Ok(()) = async { stopping.as_mut().expect("set").wait_for(|s| *s).await.map(drop) }, if stopping.is_some() => {
                break "this server is stopping";
            }
            frame = tokio::time::timeout_at(heard + link.lease, inbound.message()) => frame,
            _ = ping.tick() => {
                if down.send(Down::Ping).await.is_err() {
                    break "its call ended";
                }
                continue;
            }
        };
        let frame = match frame {
            Err(_) => break "it was silent for a whole lease",
            Ok(Err(_)) | Ok(Ok(None)) => break "its call ended",
            Ok(Ok(Some(frame))) => frame,
        };
        heard = tokio::time::Instant::now();
        link.links.heard(&node, session);
        match wire::decode::<Up>(&frame.json) {
            Some(Up::Ping) | Some(Up::Hello { .. }) => {}
            Some(Up::Report {
                task,
                attempt,
                report,
            }) => match link.links.route(&node, session, &task, attempt) {
                Some(run) => {
                    let _ = run.send(report).await;
                }
                None => {
                    tracing::warn!(node = %node, task = %task, attempt, "refused a report of a run this swarm no longer waits for")
                }
            },
            None => break "it sent a frame that does not decode",
        }
    };
    drop(down);
    if link.links.is_current(&node, session) {
        tracing::warn!(node = %node, "dropped a node: {why}; its runs go back to the queue");
        // The engine first, so that the runs ending next go back to the queue uncounted.
        let _ = link.engine.leave_node(node.clone()).await;
        link.links.detach(&node, session);
    }
}

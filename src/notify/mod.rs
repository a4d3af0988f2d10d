//! Notifications: webhooks that the engine's events are posted to. An adapter, not engine
//! rules: each webhook's worker follows the event stream like any subscriber, from a
//! cursor kept in the outbox, so a restart takes up exactly where deliveries stood.
//!
//! Webhooks come from the config file (`webhooks:`, changed there) or the API
//! (`WebhookService`, stored in the outbox); both are checked by [`Webhook::new`].

mod deliver;
mod outbox;
pub mod webhook;

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use tokio::{sync::watch, task::AbortHandle};

use deliver::Worker;
pub use deliver::{SIGNATURE_HEADER, signature};
use outbox::Outbox;
use webhook::{Delivery, Webhook, WebhookSpec};

use crate::engine::{Engine, EngineError, EventFilter};

type Result<T> = std::result::Result<T, EngineError>;

/// The handle to every webhook's worker; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    outbox: Arc<Outbox>,
    client: reqwest::Client,
    shutdown: watch::Receiver<bool>,
    /// Every webhook, by id, in creation order, with its worker.
    hooks: Mutex<Vec<(Webhook, AbortHandle)>>,
}

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

impl Notifier {
    /// Opens the outbox (in `data_dir`'s data file, or in memory) and starts a worker for
    /// each configured webhook and each one stored.
    pub fn start(
        engine: Engine,
        configured: Vec<Webhook>,
        data_dir: Option<&Path>,
        shutdown: watch::Receiver<bool>,
    ) -> std::result::Result<Self, String> {
        let outbox = Arc::new(Outbox::open(data_dir)?);
        // https receivers: rustls on ring (installed once; another part of the server may
        // have installed it already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // A receiver's redirect is not followed: the body goes where it was configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("claude-swarm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhooks: cannot build the HTTP client: {e}"))?;
        let stored = outbox.webhooks()?;
        let notifier = Self {
            inner: Arc::new(Inner {
                engine,
                outbox,
                client,
                shutdown,
                hooks: Mutex::new(Vec::new()),
            }),
        };
        for hook in configured.into_iter().chain(stored) {
            notifier.spawn(hook);
        }
        Ok(notifier)
    }

    fn spawn(&self, hook: Webhook) {
        let worker = Worker {
            hook: hook.clone(),
            engine: self.inner.engine.clone(),
            outbox: self.inner.outbox.clone(),
            client: self.inner.client.clone(),
            shutdown: self.inner.shutdown.clone(),
        };
        let task = tokio::spawn(worker.run()).abort_handle();
        if let Ok(mut hooks) = self.inner.hooks.lock() {
            hooks.push((hook, task));
        }
    }

    /// Registers a webhook through the API; it gets the events from now on.
    pub async fn create(&self, spec: WebhookSpec) -> Result<Webhook> {
        let hook = Webhook::new(uuid::Uuid::now_v7().to_string(), spec, false)?;
        // From now: the position of a subscription opened now.
        let position = self
            .inner
            .engine
            .subscribe(None, EventFilter::default())
            .await?
            .position();
        let (outbox, stored) = (self.inner.outbox.clone(), hook.clone());
        tokio::task::spawn_blocking(move || outbox.add_webhook(&stored, position))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.spawn(hook.clone());
        Ok(hook)
    }

    /// Every webhook, configured ones first.
    pub fn list(&self) -> Vec<Webhook> {
        self.inner
            .hooks
            .lock()
            .map(|hooks| hooks.iter().map(|(h, _)| h.clone()).collect())
            .unwrap_or_default()
    }

    fn find(&self, id: &str) -> Result<Webhook> {
        self.list()
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| EngineError::not_found("webhook", id))
    }

    /// Stops and forgets a webhook made through the API (a configured one is changed in
    /// the config file).
    pub async fn delete(&self, id: &str) -> Result<Webhook> {
        let hook = self.find(id)?;
        if hook.from_config {
            return Err(EngineError::FailedPrecondition(format!(
                "webhook {id} comes from the config file; remove it there"
            )));
        }
        if let Ok(mut hooks) = self.inner.hooks.lock() {
            hooks.retain(|(h, task)| {
                if h.id == id {
                    task.abort();
                }
                h.id != id
            });
        }
        let (outbox, id) = (self.inner.outbox.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || outbox.remove_webhook(&id))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(hook)
    }

    /// The webhook's delivery log, newest first.
    pub async fn deliveries(&self, id: &str, limit: u32) -> Result<Vec<Delivery>> {
        self.find(id)?;
        let limit = if limit == 0 { 100 } else { limit.min(1000) };
        let (outbox, id) = (self.inner.outbox.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || outbox.deliveries(&id, limit))
            .await
            .map_err(internal)?
            .map_err(internal)
    }
}

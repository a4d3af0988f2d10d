//! `WebhookService`: thin calls into the notifier.

use super::{Result, Service, non_empty};
use crate::{api::convert::webhook_spec, engine::EngineError, notify::Notifier, pb};

impl Service {
    fn notifier(&self) -> Result<&Notifier> {
        self.notifier
            .as_ref()
            .ok_or_else(|| EngineError::Unavailable("this server sends no webhooks".into()))
    }

    pub async fn create_webhook(&self, request: pb::CreateWebhookRequest) -> Result<pb::Webhook> {
        let spec = webhook_spec(request)?;
        Ok((&self.notifier()?.create(spec).await?).into())
    }

    pub async fn list_webhooks(&self) -> Result<pb::ListWebhooksResponse> {
        Ok(pb::ListWebhooksResponse {
            webhooks: self.notifier()?.list().iter().map(Into::into).collect(),
        })
    }

    pub async fn delete_webhook(&self, request: pb::DeleteWebhookRequest) -> Result<pb::Webhook> {
        Ok((&self.notifier()?.delete(&id(request.webhook_id)?).await?).into())
    }

    pub async fn list_deliveries(
        &self,
        request: pb::ListDeliveriesRequest,
    ) -> Result<pb::ListDeliveriesResponse> {
        let deliveries = self
            .notifier()?
            .deliveries(&id(request.webhook_id)?, request.limit)
            .await?;
        Ok(pb::ListDeliveriesResponse {
            deliveries: deliveries.iter().map(Into::into).collect(),
        })
    }
}

fn id(webhook_id: String) -> Result<String> {
    non_empty(webhook_id).ok_or_else(|| EngineError::invalid("webhook_id", "is required"))
}

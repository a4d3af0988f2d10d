//! `WebhookService`: tonic glue around [`Service`].

use tonic::Request;

use super::{Reply, reply};
use crate::{api::service::Service, pb};

#[tonic::async_trait]
impl pb::webhook_service_server::WebhookService for Service {
    async fn create_webhook(&self, r: Request<pb::CreateWebhookRequest>) -> Reply<pb::Webhook> {
        reply(Service::create_webhook(self, r.into_inner()).await)
    }

    async fn list_webhooks(
        &self,
        _: Request<pb::ListWebhooksRequest>,
    ) -> Reply<pb::ListWebhooksResponse> {
        reply(Service::list_webhooks(self).await)
    }

    async fn delete_webhook(&self, r: Request<pb::DeleteWebhookRequest>) -> Reply<pb::Webhook> {
        reply(Service::delete_webhook(self, r.into_inner()).await)
    }

    async fn list_deliveries(
        &self,
        r: Request<pb::ListDeliveriesRequest>,
    ) -> Reply<pb::ListDeliveriesResponse> {
        reply(Service::list_deliveries(self, r.into_inner()).await)
    }
}

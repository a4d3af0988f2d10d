//! `claude-swarm webhook ...`: register, list and delete webhooks on a server, and read
//! a webhook's delivery log.

use std::process::ExitCode;

use clap::Subcommand;
use tonic::transport::Channel;

use super::{
    CliResult,
    client::Bearer,
    print::{head, print, table, word},
};
use crate::{
    api::convert,
    notify::webhook::{DeliveryStatus, Format, Topic},
    pb::{self, webhook_service_client::WebhookServiceClient},
};

#[derive(Subcommand, Debug)]
pub(super) enum WebhookCommand {
    /// Post events to a URL from now on.
    Create {
        url: String,
        #[arg(long)]
        name: Option<String>,
        /// task_completed, task_failed, workflow_completed, workflow_failed (repeatable;
        /// all when none).
        #[arg(long = "event")]
        events: Vec<String>,
        /// The signing secret (16 bytes at least). Prefer SWARM_WEBHOOK_SECRET: `ps`
        /// shows flags.
        #[arg(long, env = "SWARM_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// json or slack.
        #[arg(long, default_value = "json")]
        format: String,
    },
    List,
    /// Stop and forget one made through the API.
    Delete {
        id: String,
    },
    /// The delivery log, newest first.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub(super) async fn webhook(
    command: WebhookCommand,
    channel: Channel,
    bearer: Bearer,
    json: bool,
) -> CliResult {
    let mut hooks = WebhookServiceClient::with_interceptor(channel, bearer);
    match command {
        WebhookCommand::Create {
            url,
            name,
            events,
            secret,
            format,
        } => {
            let format = Format::parse(&format).ok_or("--format: json or slack")?;
            let events = events
                .iter()
                .map(|e| {
                    Topic::parse(e)
                        .map(convert::to_pb)
                        .ok_or_else(|| format!("--event {e:?} is not a topic"))
                })
                .collect::<Result<_, _>>()?;
            let request = pb::CreateWebhookRequest {
                name: name.unwrap_or_default(),
                url,
                events,
                secret: secret.unwrap_or_default(),
                format: convert::to_pb(format),
                ..Default::default()
            };
            let hook = hooks.create_webhook(request).await?.into_inner();
            print(json, &hook, |h| print_webhooks(std::slice::from_ref(h)))?;
        }
        WebhookCommand::List => {
            let list = hooks
                .list_webhooks(pb::ListWebhooksRequest {})
                .await?
                .into_inner();
            print(json, &list, |l| print_webhooks(&l.webhooks))?;
        }
        WebhookCommand::Delete { id } => {
            let hook = hooks
                .delete_webhook(pb::DeleteWebhookRequest { webhook_id: id })
                .await?
                .into_inner();
            print(json, &hook, |h| print_webhooks(std::slice::from_ref(h)))?;
        }
        WebhookCommand::Deliveries { id, limit } => {
            let log = hooks
                .list_deliveries(pb::ListDeliveriesRequest {
                    webhook_id: id,
                    limit,
                })
                .await?
                .into_inner();
            print(json, &log, |l| {
                let rows: Vec<Vec<String>> = l
                    .deliveries
                    .iter()
                    .map(|d| {
                        vec![
                            d.sequence.to_string(),
                            word::<Topic>(d.topic).to_owned(),
                            word::<DeliveryStatus>(d.status).to_owned(),
                            d.attempts.to_string(),
                            match d.last_status_code {
                                0 => "-".to_owned(),
                                code => code.to_string(),
                            },
                            head(&d.last_error, 60),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "SEQUENCE",
                        "TOPIC",
                        "STATUS",
                        "ATTEMPTS",
                        "HTTP",
                        "LAST ERROR",
                    ],
                    &rows,
                );
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_webhooks(hooks: &[pb::Webhook]) {
    let rows: Vec<Vec<String>> = hooks
        .iter()
        .map(|h| {
            let events: Vec<&str> = h.events.iter().map(|e| word::<Topic>(*e)).collect();
            vec![
                h.id.clone(),
                head(&h.name, 20),
                head(&h.url, 50),
                if events.is_empty() {
                    "all".to_owned()
                } else {
                    events.join(",")
                },
                word::<Format>(h.format).to_owned(),
                if h.signed { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "URL", "EVENTS", "FORMAT", "SIGNED"], &rows);
}

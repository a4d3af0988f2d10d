//! `EventService`, served by hand instead of by the generated server so that each event's
//! `pb::Event` encoding, made once ([`event_bytes`]), goes out as it is to every
//! subscriber: the codec writes those bytes where the generated one would encode the
//! message again. Clients see exactly the messages they decode as `pb::Event`. The rest
//! is the generated server's routing: one method, the request decoded by prost.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::BufMut;
use tokio_stream::StreamExt;
use tonic::{
    Status,
    body::Body,
    codec::{Codec, EncodeBuf, Encoder},
    codegen::{BoxFuture, StdError, http},
    server::{Grpc, NamedService, ServerStreamingService},
};
use tonic_prost::ProstDecoder;

use crate::{
    api::{convert::event_bytes, service::Service},
    pb,
};

/// `claude_swarm.v1.EventService` on [`Service`].
#[derive(Clone)]
pub struct EventServer {
    service: Service,
    /// The largest request decoded.
    max_decoding_message_size: usize,
}

impl EventServer {
    pub fn new(service: Service, max_decoding_message_size: usize) -> Self {
        Self {
            service,
            max_decoding_message_size,
        }
    }
}

impl NamedService for EventServer {
    const NAME: &'static str = pb::event_service_server::SERVICE_NAME;
}

const STREAM_EVENTS: &str = "/claude_swarm.v1.EventService/StreamEvents";

/// Encoded events out, `StreamEventsRequest` in.
#[derive(Default)]
struct EncodedCodec;

/// Writes an event's encoding as it is.
struct Passthrough;

impl Encoder for Passthrough {
    type Item = Arc<[u8]>;
    type Error = Status;

    fn encode(&mut self, item: Arc<[u8]>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Codec for EncodedCodec {
    type Encode = Arc<[u8]>;
    type Decode = pb::StreamEventsRequest;
    type Encoder = Passthrough;
    type Decoder = ProstDecoder<pb::StreamEventsRequest>;

    fn encoder(&mut self) -> Passthrough {
        Passthrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// The events of one `StreamEvents` call, as their encodings.
type Encoded =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Arc<[u8]>, Status>> + Send>>;

struct StreamEvents(Service);

impl ServerStreamingService<pb::StreamEventsRequest> for StreamEvents {
    type Response = Arc<[u8]>;
    type ResponseStream = Encoded;
    type Future = BoxFuture<tonic::Response<Encoded>, Status>;

    fn call(&mut self, request: tonic::Request<pb::StreamEventsRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let feed = service.stream_events(request.into_inner()).await?;
            let encoded: Encoded = Box::pin(
                feed.map(|item| item.map(|event| event_bytes(&event)).map_err(Status::from)),
            );
            Ok(tonic::Response::new(encoded))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for EventServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != STREAM_EVENTS {
            return Box::pin(async {
                Ok(Status::unimplemented("no such method of EventService").into_http())
            });
        }
        let method = StreamEvents(self.service.clone());
        let max = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(EncodedCodec).apply_max_message_size_config(Some(max), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

//! The layer that counts and times every request. A REST answer is counted when its head
//! is ready. A gRPC answer carries its status in its trailers (in the body's last frame for
//! grpc-web), unless it is an error with no message ("trailers-only", status in the head):
//! the body is watched for it, and a call whose body is dropped first (the client went
//! away from a stream) counts as `Cancelled`.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::Response,
};
use base64::Engine as _;
use http_body::{Frame, SizeHint};

use super::Metrics;
use crate::api::auth::access;

/// How a gRPC answer is framed.
#[derive(Clone, Copy)]
enum Framing {
    /// HTTP/2 trailers.
    Grpc,
    /// grpc-web: a last frame whose flag byte is `0x80`, holding the trailers as text.
    Web,
    /// grpc-web-text: the same, base64-encoded frame by frame.
    WebText,
}

fn framing(headers: &HeaderMap) -> Option<Framing> {
    let kind = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if kind.starts_with("application/grpc-web-text") {
        Some(Framing::WebText)
    } else if kind.starts_with("application/grpc-web") {
        Some(Framing::Web)
    } else if kind.starts_with("application/grpc") {
        Some(Framing::Grpc)
    } else {
        None
    }
}

/// `OK`, `PermissionDenied`, ...: the name of the gRPC status written `code`.
pub(crate) fn code_name(code: &[u8]) -> String {
    let number = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.trim().parse::<i32>().ok());
    match number.map(tonic::Code::from_i32) {
        Some(tonic::Code::Ok) => "OK".to_owned(),
        Some(code) => format!("{code:?}"),
        None => "Unknown".to_owned(),
    }
}

/// The layer's work: time the request, count it once its code is known.
pub async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let operation = access::operation(request.method(), request.uri().path()).name;
    let started = Instant::now();
    let response = next.run(request).await;
    let pending = Pending {
        metrics,
        operation,
        started,
    };
    let Some(framing) = framing(response.headers()) else {
        pending.finish(response.status().as_str().to_owned());
        return response;
    };
    if let Some(code) = response.headers().get("grpc-status") {
        pending.finish(code_name(code.as_bytes()));
        return response;
    }
    response.map(|inner| {
        Body::new(Watched {
            inner,
            framing,
            pending: Some(pending),
        })
    })
}

/// A request not yet counted.
struct Pending {
    metrics: Arc<Metrics>,
    operation: &'static str,
    started: Instant,
}

impl Pending {
    fn finish(self, code: String) {
        self.metrics
            .observe_request(self.operation, code, self.started.elapsed());
    }
}

/// A gRPC answer's body, watched for its status.
struct Watched {
    inner: Body,
    framing: Framing,
    /// Until the status is seen.
    pending: Option<Pending>,
}

impl Watched {
    fn status_in(&self, frame: &Frame<Bytes>) -> Option<String> {
        if let Some(trailers) = frame.trailers_ref() {
            return Some(code_name(trailers.get("grpc-status")?.as_bytes()));
        }
        let data = frame.data_ref()?;
        let decoded;
        let frame = match self.framing {
            Framing::Grpc => return None,
            Framing::Web => data.as_ref(),
            Framing::WebText => {
                decoded = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .ok()?;
                decoded.as_slice()
            }
        };
        // A trailers frame: flag 0x80, a 4-byte length, then `name:value\r\n` lines.
        let text = frame.strip_prefix(&[0x80])?.get(4..)?;
        text.split(|b| *b == b'\n').find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // Header names are lowercase here, as HTTP/2 writes them.
            line.strip_prefix(b"grpc-status:").map(code_name)
        })
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && self.pending.is_some()
            && let Some(code) = self.status_in(frame)
            && let Some(pending) = self.pending.take()
        {
            pending.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.finish("Cancelled".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"7"), "PermissionDenied");
        assert_eq!(code_name(b"16"), "Unauthenticated");
        assert_eq!(code_name(b"x"), "Unknown");
    }

    #[test]
    fn a_grpc_web_trailers_frame_gives_its_status() {
        let watched = |framing| Watched {
            inner: Body::empty(),
            framing,
            pending: None,
        };
        let text = b"content-type:application/grpc-web\r\ngrpc-status:5\r\n";
        let mut frame = vec![0x80];
        frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
        frame.extend_from_slice(text);
        let web = Frame::data(Bytes::from(frame.clone()));
        assert_eq!(
            watched(Framing::Web).status_in(&web).as_deref(),
            Some("NotFound")
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(&frame);
        let web_text = Frame::data(Bytes::from(encoded));
        assert_eq!(
            watched(Framing::WebText).status_in(&web_text).as_deref(),
            Some("NotFound")
        );
        let message = Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"));
        assert_eq!(watched(Framing::Web).status_in(&message), None);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frame = Frame::trailers(trailers);
        assert_eq!(
            watched(Framing::Grpc).status_in(&frame).as_deref(),
            Some("OK")
        );
    }
}

//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, served on the HTTP
//! port (HTTP/2; cleartext h2c, or with TLS negotiated by ALPN). The API key comes in the
//! `authorization` metadata (`Bearer <key>`); requests may be gzip-compressed. The export path
//! is [`crate::traces::export`], the same as OTLP/HTTP's.
//!
//! | outcome | gRPC status |
//! |---|---|
//! | Kafka acknowledged every usage event | `OK`, with `partial_success` naming unusable usage spans |
//! | no, an unknown or a revoked key | `UNAUTHENTICATED` |
//! | more usage spans than `ingest.max_events`, or than the key's burst | `INVALID_ARGUMENT` |
//! | the key is over its rate limit | `RESOURCE_EXHAUSTED` (the exporter retries) |
//! | Kafka did not acknowledge in time | `UNAVAILABLE` (the exporter retries) |
//!
//! The response metadata `ledger-usage-spans`, `ledger-skipped-spans` and
//! `ledger-rejected-spans` count the request's spans.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::limit::Refusal;
use crate::server::{self, IngestState};
use crate::traces::{export, Refused};

/// The `TraceService` of one ingest server.
#[derive(Debug, Clone)]
struct TraceReceiver {
    state: Arc<IngestState>,
}

#[tonic::async_trait]
impl TraceService for TraceReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let answer = self.answer(request, Instant::now()).await;
        self.state.metrics.grpc_request(match &answer {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        });
        answer
    }
}

impl TraceReceiver {
    async fn answer(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
        received: Instant,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let key = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(server::bearer_key);
        let caller = server::caller(&self.state, key).map_err(|problem| {
            Status::unauthenticated(match problem {
                server::Unauthorized::Missing => {
                    "send your tenant API key as the `authorization` metadata `Bearer <key>`".to_owned()
                }
                invalid => invalid.message(),
            })
        })?;
        let exported = export(&self.state, &caller, request.get_ref(), received).await.map_err(|refused| match refused {
            Refused::TooMany(message) => Status::invalid_argument(message),
            Refused::Limited(refusal @ Refusal::OverBurst { .. }, events) => {
                Status::invalid_argument(server::limit_message(&refusal, events))
            }
            Refused::Limited(refusal, events) => Status::resource_exhausted(server::limit_message(&refusal, events)),
            Refused::Kafka(problem) => {
                Status::unavailable(format!("{problem}; nothing of this request is acknowledged: export again later"))
            }
        })?;
        let mut response = tonic::Response::new(ExportTraceServiceResponse { partial_success: exported.partial_success() });
        for (name, n) in exported.counts() {
            response.metadata_mut().insert(name, MetadataValue::from(n as u64));
        }
        Ok(response)
    }
}

/// The gRPC route (`/opentelemetry.proto.collector.trace.v1.TraceService/*`), to merge into the
/// HTTP router. Not `tonic::service::Routes`: its fallback would answer every unknown HTTP path
/// with a gRPC status instead of 404.
pub(crate) fn routes(state: Arc<IngestState>) -> Router {
    let limit = state.settings.otlp_max_bytes;
    let service = TraceServiceServer::new(TraceReceiver { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    Router::new().route_service(&format!("/{}/{{*rest}}", TraceServiceServer::<TraceReceiver>::NAME), service)
}

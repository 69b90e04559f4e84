//! An OTLP/HTTP traces receiver (a collector's `otlphttp` receiver): `POST`
//! with `Content-Type: application/x-protobuf` whose body decodes as an
//! `ExportTraceServiceRequest`, answered `200` with an empty
//! `ExportTraceServiceResponse`; `415` for another content type, `400`
//! for a body that does not decode, `405` for another method. It keeps
//! every decoded export.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use super::{Api, Fake, Recorded, Reply};

/// The receiver's state: the exports it accepted, in order.
#[derive(Debug, Default)]
pub struct OtlpReceiver {
    pub exports: Vec<ExportTraceServiceRequest>,
}

/// A receiver whose exports tests read.
pub type FakeOtlp = Fake<OtlpReceiver>;

impl Api for OtlpReceiver {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.method != "POST" {
            return Reply::status(405);
        }
        if request.header("content-type").as_deref() != Some("application/x-protobuf") {
            return Reply::text(
                415,
                "unsupported content type, expected application/x-protobuf",
            );
        }
        match ExportTraceServiceRequest::decode(request.body.as_ref()) {
            Ok(export) => {
                self.exports.push(export);
                let body = ExportTraceServiceResponse::default().encode_to_vec();
                Reply {
                    status: 200,
                    headers: vec![(
                        "content-type".to_owned(),
                        "application/x-protobuf".to_owned(),
                    )],
                    body: String::from_utf8(body).unwrap_or_default(),
                    delay: std::time::Duration::ZERO,
                }
            }
            Err(error) => Reply::text(400, &format!("cannot decode the export: {error}")),
        }
    }
}

// === impl Fake<OtlpReceiver> ===

impl FakeOtlp {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(OtlpReceiver::default()).await
    }

    /// The exports accepted so far.
    #[must_use]
    pub fn exports(&self) -> Vec<ExportTraceServiceRequest> {
        self.api(|receiver| receiver.exports.clone())
    }
}

//! The one place a request's result becomes a gRPC response: timing, metrics,
//! a log line for failures, and the error-to-status mapping.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tracing::{Instrument, debug, info_span, warn};

use crate::driver::Driver;
use crate::error::CsiError;

/// Run one RPC body inside a span named for the method and the volume.
pub(crate) async fn handle<T>(
    driver: &Driver,
    method: &'static str,
    volume: &str,
    body: impl Future<Output = Result<T, CsiError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    let span = info_span!("csi", method, volume);
    let result = body.instrument(span.clone()).await;
    let code = result.as_ref().map_or_else(CsiError::code, |_| Code::Ok);
    driver.metrics.observe(method, code, start.elapsed());
    span.in_scope(|| match &result {
        Ok(_) => debug!(elapsed_ms = start.elapsed().as_millis() as u64, "ok"),
        Err(e) => warn!(code = ?code, "{e}"),
    });
    result.map(Response::new).map_err(Status::from)
}

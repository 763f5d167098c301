//! The one mapping from the node's errors to gRPC statuses.
//!
//! Every status message starts with a stable code word (`LEDGER_NOT_LEADER`, ...), and every
//! error of the client port carries it again, machine-readable, as a standard
//! `google.rpc.Status` with an `ErrorInfo` (reason = the word, `metadata["applied"]` = `no` or
//! `unknown`, from the last column below) in its details: [`ErrorDetailsLayer`] adds it to
//! every error status that starts with a word, whichever layer or service produced it
//! (`ledger_wire::error_details` has the format). `LEDGER_NOT_LEADER` also carries the
//! leader's id and address, in the `ErrorInfo` metadata and as a typed [`LeaderHint`] detail.
//!
//! | error | gRPC code | word | was the write applied? |
//! |---|---|---|---|
//! | not the leader | FAILED_PRECONDITION | LEDGER_NOT_LEADER | no |
//! | no quorum, shutting down | UNAVAILABLE | LEDGER_UNAVAILABLE | no |
//! | proposed, not confirmed in time | DEADLINE_EXCEEDED | LEDGER_OUTCOME_UNKNOWN | unknown |
//! | bad request, or not valid protobuf (rewritten from tonic's INTERNAL in `security/limits.rs`) | INVALID_ARGUMENT | LEDGER_INVALID_ARGUMENT | no |
//! | over a limit, shedding load | RESOURCE_EXHAUSTED | LEDGER_RESOURCE_EXHAUSTED | no |
//! | damaged node | UNAVAILABLE | LEDGER_UNHEALTHY | no |
//! | cluster not initialized | FAILED_PRECONDITION | LEDGER_NOT_INITIALIZED | no |
//! | bug | INTERNAL | LEDGER_INTERNAL | unknown |

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ledger_wire::error_details;
use ledger_wire::proto::ledger::LeaderHint;
use tonic::codegen::http;
use tonic::{Code, Status};

use crate::error::NodeError;

pub fn to_status(error: NodeError) -> Status {
    let message = error.to_string();
    match error {
        NodeError::NotLeader {
            leader_id,
            leader_address,
        } => {
            let hint = LeaderHint {
                leader_id: leader_id.unwrap_or(0),
                leader_address: leader_address.unwrap_or_default(),
            };
            let message = format!("LEDGER_NOT_LEADER: {message}");
            let details = error_details::encode(
                Code::FailedPrecondition,
                &message,
                "LEDGER_NOT_LEADER",
                Some(&hint),
            );
            Status::with_details(Code::FailedPrecondition, message, details.into())
        }
        NodeError::Unavailable(_) => Status::unavailable(format!("LEDGER_UNAVAILABLE: {message}")),
        NodeError::OutcomeUnknown(_) => {
            Status::deadline_exceeded(format!("LEDGER_OUTCOME_UNKNOWN: {message}"))
        }
        NodeError::InvalidArgument { .. } => {
            Status::invalid_argument(format!("LEDGER_INVALID_ARGUMENT: {message}"))
        }
        NodeError::ResourceExhausted(_) => {
            Status::resource_exhausted(format!("LEDGER_RESOURCE_EXHAUSTED: {message}"))
        }
        NodeError::Unhealthy(_) => Status::unavailable(format!("LEDGER_UNHEALTHY: {message}")),
        NodeError::NotInitialized(_) => {
            Status::failed_precondition(format!("LEDGER_NOT_INITIALIZED: {message}"))
        }
        NodeError::Internal(_) => Status::internal(format!("LEDGER_INTERNAL: {message}")),
    }
}

/// Adds the standard error details (see the module header) to an error answer that starts
/// with a code word and has none.
fn add_error_details<B>(response: &mut http::Response<B>) {
    let headers = response.headers_mut();
    if headers.contains_key("grpc-status-details-bin") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if status.code() == Code::Ok {
        return;
    }
    let Some(reason) = error_details::reason_of_message(status.message()) else {
        return;
    };
    let details = error_details::encode(status.code(), status.message(), reason, None);
    let with_details = Status::with_details(status.code(), status.message(), details.into());
    headers.remove("grpc-message");
    let _ = with_details.add_header(headers);
}

/// The outermost layer of the client port: gives every error answer its standard details.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorDetailsLayer;

impl<S> tower_layer::Layer<S> for ErrorDetailsLayer {
    type Service = ErrorDetailsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorDetailsService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct ErrorDetailsService<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for ErrorDetailsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await;
            if let Ok(response) = &mut response {
                add_error_details(response);
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_with_a_code_word_gets_its_details_and_others_are_left_alone() {
        let mut response = Status::unavailable("LEDGER_UNAVAILABLE: no quorum").into_http::<()>();
        add_error_details(&mut response);
        let status = Status::from_header_map(response.headers()).expect("a status");
        let decoded = error_details::decode(status.details());
        let info = decoded.info.expect("error info");
        assert_eq!(info.reason, "LEDGER_UNAVAILABLE");
        assert_eq!(info.metadata["applied"], "no");
        assert_eq!(status.message(), "LEDGER_UNAVAILABLE: no quorum");

        let mut response = Status::unavailable("transport error").into_http::<()>();
        add_error_details(&mut response);
        assert!(!response.headers().contains_key("grpc-status-details-bin"));

        let unknown = to_status(NodeError::OutcomeUnknown("not committed in 5 s".into()));
        let mut response = unknown.into_http::<()>();
        add_error_details(&mut response);
        let status = Status::from_header_map(response.headers()).expect("a status");
        let info = error_details::decode(status.details()).info.expect("info");
        assert_eq!(info.metadata["applied"], "unknown");
    }
}

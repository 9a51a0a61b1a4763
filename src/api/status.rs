//! The one place where service errors become gRPC statuses.

use tonic::{Code, Status};

use crate::service::ServiceError;

pub fn to_status(error: ServiceError) -> Status {
    let code = match &error {
        ServiceError::InvalidArgument(_) => Code::InvalidArgument,
        ServiceError::NotFound(_) => Code::NotFound,
        ServiceError::AlreadyExists(_) => Code::AlreadyExists,
        ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
        ServiceError::PermissionDenied(_) => Code::PermissionDenied,
        ServiceError::ResourceExhausted(_) => Code::ResourceExhausted,
        ServiceError::Unavailable(_) => Code::Unavailable,
        ServiceError::DataLoss(_) => Code::DataLoss,
        ServiceError::Aborted(_) => Code::Aborted,
        ServiceError::OutcomeUnknown(_) => Code::Unknown,
        ServiceError::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(%error, "internal error answered to a client");
    }
    if code == Code::Unknown {
        return outcome_unknown(error.to_string());
    }
    Status::new(code, error.to_string())
}

/// The machine-readable reason of an UNKNOWN answer (`google.rpc.ErrorInfo.reason`).
pub const OUTCOME_UNKNOWN_REASON: &str = "OUTCOME_UNKNOWN";
/// The `google.rpc.ErrorInfo.domain` of kyso's error details.
pub const ERROR_DOMAIN: &str = "kyso.v1";

/// UNKNOWN with a `google.rpc.ErrorInfo` detail saying the command may or may not have
/// been applied and that retrying with the same request id is safe (it returns the first
/// outcome, or applies the command once).
fn outcome_unknown(message: String) -> Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    let details = ErrorDetails::with_error_info(
        OUTCOME_UNKNOWN_REASON,
        ERROR_DOMAIN,
        [("retry".to_string(), "same_request_id".to_string())],
    );
    Status::with_error_details(Code::Unknown, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_carries_error_info_telling_to_retry_with_the_same_request_id() {
        use tonic_types::StatusExt as _;
        let status = to_status(ServiceError::OutcomeUnknown("the leader changed before the command committed".into()));
        assert_eq!(status.code(), Code::Unknown);
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo detail");
        assert_eq!(info.reason, OUTCOME_UNKNOWN_REASON);
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.get("retry").map(String::as_str), Some("same_request_id"));
        let other = to_status(ServiceError::NotFound("no such thing".into()));
        assert!(other.get_error_details().error_info().is_none(), "only unknown outcomes carry it");
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        to_status(error)
    }
}

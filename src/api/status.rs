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
        ServiceError::OutcomeUnknown(_) => Code::Unknown,
        ServiceError::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(%error, "internal error answered to a client");
    }
    Status::new(code, error.to_string())
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        to_status(error)
    }
}

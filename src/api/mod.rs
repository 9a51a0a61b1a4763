//! Adapters: gRPC services (tonic) and HTTP routes (axum). Thin: decode, check shape,
//! call a service, encode. Only this module and `cli` know prost and tonic types; service
//! errors become gRPC statuses in exactly one place ([`status::to_status`]).

pub mod auth;
pub mod cluster;
pub mod convert;
pub mod grpc;
pub mod http;
pub mod status;
pub mod tls;

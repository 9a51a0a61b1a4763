//! Adapters: gRPC services (tonic), HTTP routes (axum) and the public lookup pages. Thin: decode, check shape,
//! call a service, encode. Only this module and `cli` know prost and tonic types; service
//! errors become gRPC statuses in exactly one place ([`status::to_status`]).

pub mod auth;
pub mod cluster;
pub mod admin;
pub mod convert;
pub mod grpc;
pub mod http;
pub mod http_server;
pub mod public;
pub mod report;
pub mod slots;
pub mod status;
pub mod tls;

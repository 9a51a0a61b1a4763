//! kyso: a distributed document-signing and archive service for local government.
//!
//! Layers, top to bottom (dependencies point down only): [`cli`] and [`api`] (adapters),
//! [`service`] (use cases), then [`state`] (replicated state machine), [`archive`] (blobs),
//! [`crypto`] (certificates, CMS, keys) and [`tlog`] (Merkle log), with [`domain`] types
//! shared by all. See ARCHITECTURE.md for the map.

pub mod access;
pub mod api;
pub mod archive;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod consensus;
pub mod crypto;
pub mod domain;
pub mod fault;
pub mod lookup;
pub mod metrics;
pub mod node;
pub mod pdf;
pub mod service;
pub mod state;
pub mod statistics;
pub mod telemetry;
pub mod text;
pub mod tlog;

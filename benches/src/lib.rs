//! kyso-bench: the benchmark suite of kyso. Criterion micro-benchmarks live in `benches/`;
//! this library holds what they share with the `kyso-bench` binary, the load generator:
//!
//! - [`load`]: the closed-loop driver (N clients, bounded time and count) and [`stats`]
//!   (exact percentiles); [`cold`]: how soon a cold cluster reaches its steady rate;
//! - [`target_kyso`] and [`target_etcd`]: the operations against kyso's API and etcd's;
//! - [`pki`] and [`fixtures`]: real signers and records made with kyso's own crypto;
//! - [`limits`]: the machine's fsync, signing and hashing limits;
//! - [`bulk`] and [`node_process`]: the scale test's loader and the node it starts;
//! - [`report`]: the markdown tables of BENCHMARKS.md from a run's JSON lines.
//!
//! Nothing here is part of `cargo test`'s load: the unit tests are small and fast, and the
//! benchmarks run only through `cargo bench` or `scripts/bench.sh`.

pub mod bulk;
pub mod cold;
pub mod fixtures;
pub mod limits;
pub mod load;
pub mod node_process;
pub mod pki;
pub mod report;
pub mod state_stats;
pub mod stats;
pub mod target_etcd;
pub mod target_http;
pub mod target_kyso;

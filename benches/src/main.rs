//! `kyso-bench`: the load generator and the limit probes. Every subcommand prints one JSON
//! object per measurement on stdout (collected by scripts/bench.sh into results.jsonl)
//! and progress on stderr. Every loop is bounded by a time and a count given by flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use kyso_proto::v1 as pb;
use serde_json::json;

use kyso_bench::bulk::{self, BulkLoader};
use kyso_bench::load::{self, LoadPlan};
use kyso_bench::node_process::{self, NodeProcess};
use kyso_bench::pki::{self, BenchPki};
use kyso_bench::{cold, fixtures, limits, report, target_etcd, target_kyso};

#[derive(Debug, Parser)]
#[command(name = "kyso-bench", about = "Load generator and limit probes for kyso (and etcd, the peer)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the benchmark CA and signer in a directory (the node must trust its ca.pem).
    Pki(PkiArgs),
    /// Drive kyso nodes over gRPC: certify and verify at several client counts.
    Kyso(KysoArgs),
    /// Drive etcd over its gRPC API: puts and linearizable gets at several client counts.
    Etcd(EtcdArgs),
    /// Measure fsyncs/s of a directory's filesystem, signing rates and SHA-256 bandwidth.
    Limits(LimitsArgs),
    /// Print the size of one certification record (the value size for etcd puts).
    RecordSize(RecordSizeArgs),
    /// Load certifications into a data directory through the state machine (no gRPC).
    BulkLoad(BulkLoadArgs),
    /// Scale test: load in stages, start a node on the data, measure verify, RSS, disk, restart.
    Scale(ScaleArgs),
    /// Render a run's JSON lines as the markdown tables of BENCHMARKS.md.
    Report(ReportArgs),
    /// Print the four kyso/reference ratios of issue 18 from a run's results.jsonl.
    Ratios(RatiosArgs),
    /// Print criterion's results (from CRITERION_HOME or --dir) as JSON lines.
    Criterion(CriterionArgs),
    /// Where a stopped node's state.redb spends its bytes, per table.
    StateStats(StateStatsArgs),
    /// In-process lookups by code over every record of a stopped node's store: does memory
    /// stay bounded when the working set is the whole store?
    StateRss(StateRssArgs),
    /// Streams the state of a stopped node's data directory into a fresh state store the
    /// way a Raft snapshot travels (source read a piece at a time on one thread, staged by
    /// the sink on another, two pieces in flight, then swapped in), and reports time, bytes
    /// and this process's peak memory (both ends).
    SnapshotTransfer(SnapshotTransferArgs),
    /// What redb's quick repair costs per durable commit on a real state file: commits of
    /// one small row into the given file (a copy: it is written), alternating rounds with
    /// and without quick repair.
    CommitCost(CommitCostArgs),
    /// Makes a stopped, bulk-loaded data directory the founding (only) voter of a new Raft
    /// cluster, as `kyso restore --node-id` does with a backup: a Raft log that starts right
    /// after the state's applied index. Other members then join it with `join = true` and
    /// `kyso cluster add`, receiving the state as a streamed snapshot.
    SeedCluster(SeedClusterArgs),
}

#[derive(Debug, Args)]
struct SeedClusterArgs {
    /// The data directory of a stopped node that has no Raft log yet (a bulk-loaded one).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    node_id: u64,
    /// host:port of this member's Raft peer port (as in its config).
    #[arg(long)]
    raft_addr: String,
    /// host:port of this member's client gRPC port.
    #[arg(long)]
    client_addr: String,
}

#[derive(Debug, Args)]
struct CommitCostArgs {
    /// A state.redb to write into (use a copy of a stopped node's).
    #[arg(long)]
    file: PathBuf,
    /// Durable commits per round.
    #[arg(long, default_value_t = 200)]
    commits: u32,
    /// Rounds per mode, alternated.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// End with one commit without quick repair and abort with the file open: what an
    /// older kyso leaves at a crash (a full repair on the next open).
    #[arg(long)]
    leave_unclean: bool,
}

#[derive(Debug, Args)]
struct SnapshotTransferArgs {
    /// The data directory of a stopped node (read only).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where the receiving state store is created (must not exist).
    #[arg(long)]
    to: PathBuf,
    #[arg(long, default_value_t = 1 << 20)]
    chunk_bytes: usize,
    /// Each store's page cache, as `limits.state_cache_size_bytes_max` bounds a node's.
    #[arg(long, default_value_t = 256 << 20)]
    cache_bytes: usize,
    /// Also compare the two stores' state digests afterwards (reads both states again).
    #[arg(long)]
    check_digest: bool,
}

#[derive(Debug, Args)]
struct StateRssArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    lookups_max: u64,
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
}

#[derive(Debug, Args)]
struct StateStatsArgs {
    /// The data directory of a stopped node.
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct CriterionArgs {
    /// Criterion's output directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct PkiArgs {
    #[arg(long)]
    out: PathBuf,
    /// Signer key algorithm: ecdsa-p256, ed25519 or rsa (RSA-2048 via the openssl CLI).
    #[arg(long, default_value = "ecdsa-p256")]
    algorithm: String,
}

#[derive(Debug, Args, Clone)]
struct Window {
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    /// Seconds measured per client count.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Operations started per client count at most (warm-up included).
    #[arg(long, default_value_t = 2_000_000)]
    operations_max: u64,
    /// Client counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// HTTP/2 connections at most; each run opens min(clients, this) spread over the servers.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Nodes in the cluster under test (a label for the report).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

impl Window {
    fn plan(&self, clients: usize) -> LoadPlan {
        LoadPlan {
            clients,
            warmup: Duration::from_secs_f64(self.warmup_seconds),
            window: Duration::from_secs_f64(self.seconds),
            operations_max: self.operations_max,
        }
    }
}

#[derive(Debug, Args)]
struct KysoArgs {
    /// gRPC URL of a node; repeat for every node of the cluster.
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    /// Directory made by `kyso-bench pki`.
    #[arg(long)]
    pki: PathBuf,
    /// Operations: certify, verify-hash, verify-code, health (a gRPC health check: the
    /// transport's ceiling), comma-separated; verify-hash-summary and verify-code-summary
    /// ask for the summary view (the verdict without the CMS, chain and proof).
    /// certify-cold (first, on freshly started nodes): --cold-clients clients start
    /// certifying at once, and the run reports how soon they reached the steady rate
    /// (`kyso_bench::cold`).
    #[arg(long, value_delimiter = ',', default_value = "certify,verify-hash,verify-code,health")]
    ops: Vec<String>,
    #[command(flatten)]
    window: Window,
    /// Clients of the certify-cold run.
    #[arg(long, default_value_t = 64)]
    cold_clients: usize,
    /// Seconds of the certify-cold run, from the clients' start (no warm-up).
    #[arg(long, default_value_t = 6.0)]
    cold_seconds: f64,
    /// Distinct documents certified round-robin by the certify runs.
    #[arg(long, default_value_t = 200)]
    documents: usize,
    /// Documents certified once in setup and then verified.
    #[arg(long, default_value_t = 1000)]
    verify_documents: usize,
    #[arg(long, default_value_t = fixtures::DOCUMENT_SIZE_BYTES_DEFAULT)]
    document_size_bytes: usize,
    /// Seed of the documents (same seed, same documents: setup is idempotent).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct EtcdArgs {
    /// gRPC URL of an etcd member's client port; repeat for every member.
    #[arg(long = "endpoint", required = true)]
    endpoints: Vec<String>,
    /// Operations: put, get (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "put,get")]
    ops: Vec<String>,
    #[command(flatten)]
    window: Window,
    /// Bytes per value: use `kyso-bench record-size`.
    #[arg(long, default_value_t = 1500)]
    value_size_bytes: usize,
    /// Keys written before the get runs.
    #[arg(long, default_value_t = 1000)]
    preload_keys: usize,
}

#[derive(Debug, Args)]
struct LimitsArgs {
    /// A directory on the filesystem of the data directories.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 2.0)]
    seconds_per_probe: f64,
    #[arg(long, default_value_t = 20_000)]
    fsync_iterations_max: u64,
    #[arg(long, value_delimiter = ',', default_value = "ecdsa-p256,ed25519,rsa")]
    algorithms: Vec<String>,
    #[arg(long, default_value_t = fixtures::DOCUMENT_SIZE_BYTES_DEFAULT)]
    document_size_bytes: usize,
    /// Threads for the all-cores rates (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct RecordSizeArgs {
    #[arg(long, default_value = "ecdsa-p256")]
    algorithm: String,
    #[arg(long, default_value_t = fixtures::DOCUMENT_SIZE_BYTES_DEFAULT)]
    document_size_bytes: usize,
    /// Print only the record size in bytes (for scripts).
    #[arg(long)]
    bytes_only: bool,
}

#[derive(Debug, Args)]
struct BulkLoadArgs {
    /// The node's data directory (state.redb, blobs/, master.key).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    pki: PathBuf,
    /// Certifications the directory holds when done.
    #[arg(long)]
    records: u64,
    /// Records that are real verifiable documents (fixed when the directory is created).
    #[arg(long, default_value_t = 2000)]
    samples: u64,
}

#[derive(Debug, Args)]
struct ScaleArgs {
    /// The kyso binary to start.
    #[arg(long)]
    kyso_bin: PathBuf,
    /// Working directory: data/, kyso.toml.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    pki: PathBuf,
    /// Record counts to reach, in increasing order.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    #[arg(long, default_value_t = 2000)]
    samples: u64,
    /// Concurrent verify clients at every size.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1_000_000)]
    operations_max: u64,
    /// Where to write the node's pid file (for the calling script's cleanup).
    #[arg(long)]
    pid_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// results.jsonl of a run.
    #[arg(long)]
    results: PathBuf,
}

#[derive(Debug, Args)]
struct RatiosArgs {
    /// results.jsonl of a run.
    #[arg(long)]
    results: PathBuf,
    /// The client count whose rows are compared.
    #[arg(long, default_value_t = 64)]
    clients: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pki(args) => {
            BenchPki::create(&args.out, pki::parse_algorithm(&args.algorithm)?)?;
            eprintln!("bench PKI written to {}", args.out.display());
            Ok(())
        }
        Command::Kyso(args) => kyso(args).await,
        Command::Etcd(args) => etcd(args).await,
        Command::Limits(args) => limits_probe(args),
        Command::RecordSize(args) => {
            let size = fixtures::record_size(pki::parse_algorithm(&args.algorithm)?, args.document_size_bytes)?;
            if args.bytes_only {
                println!("{}", size.record_bytes);
            } else {
                emit(json!({"kind": "record-size", "record": size}));
            }
            Ok(())
        }
        Command::BulkLoad(args) => {
            let pki = BenchPki::load(&args.pki)?;
            let mut loader = BulkLoader::open(&args.data_dir, &pki, args.samples)?;
            let seconds = loader.load_to(args.records).await?;
            emit(json!({"kind": "bulk-load", "records": args.records, "seconds": seconds}));
            Ok(())
        }
        Command::Scale(args) => scale(args).await,
        Command::StateRss(args) => state_rss(args),
        Command::SnapshotTransfer(args) => snapshot_transfer(args),
        Command::CommitCost(args) => commit_cost(args),
        Command::SeedCluster(args) => {
            let member = kyso_cluster::raft::PeerAddress { id: args.node_id, raft_addr: args.raft_addr, client_addr: args.client_addr };
            let applied = bulk::seed_cluster(&args.data_dir, member)?;
            println!("{}", json!({"kind": "seed-cluster", "applied_index": applied, "node_id": args.node_id}));
            Ok(())
        }
        Command::StateStats(args) => {
            let progress = bulk::read_progress(&args.data_dir).ok();
            let (file, tables) = kyso_bench::state_stats::table_stats(&args.data_dir.join("state.redb"))?;
            for table in &tables {
                eprintln!(
                    "{:28} {:>10} entries {:>12} stored bytes {:>10} metadata {:>12} fragmented  height {}",
                    table.table, table.entries, table.stored_bytes, table.metadata_bytes, table.fragmented_bytes, table.tree_height
                );
            }
            let records = progress.map(|p| p.records);
            if let Some(records) = records.filter(|&records| records > 0) {
                let per = |bytes: u64| bytes as f64 / records as f64;
                eprintln!(
                    "state.redb: {} bytes long for {records} certifications, {:.0} bytes per certification; {} bytes on disk, {:.0} per certification; {} bytes in pages redb holds, {:.0} per certification",
                    file.file_bytes,
                    per(file.file_bytes),
                    file.disk_bytes,
                    per(file.disk_bytes),
                    file.allocated_bytes,
                    per(file.allocated_bytes)
                );
            }
            emit(json!({
                "kind": "state-stats",
                "file_bytes": file.file_bytes,
                "disk_bytes": file.disk_bytes,
                "allocated_bytes": file.allocated_bytes,
                "records": records,
                "tables": tables
            }));
            Ok(())
        }
        Command::Criterion(args) => {
            for record in report::criterion_results(&args.dir)? {
                emit(record);
            }
            Ok(())
        }
        Command::Ratios(args) => {
            print!("{}", report::ratios(&std::fs::read_to_string(&args.results)?, args.clients)?);
            Ok(())
        }
        Command::Report(args) => {
            print!("{}", report::render(&std::fs::read_to_string(&args.results)?)?);
            Ok(())
        }
    }
}

fn emit(value: serde_json::Value) {
    println!("{value}");
}

async fn kyso(args: KysoArgs) -> anyhow::Result<()> {
    let pki = BenchPki::load(&args.pki)?;
    let setup_channel = target_kyso::connect_one(&args.servers[0]).await?;
    let signer_id = target_kyso::register_signer(&setup_channel, &pki).await?;
    for (position, op) in args.ops.iter().enumerate() {
        let began = Instant::now();
        match op.as_str() {
            "certify-cold" => {
                // Any earlier operation certifies (verify's setup too), and so unseals the key.
                if position != 0 {
                    bail!("certify-cold must be the first operation: an earlier one unseals the signer's key");
                }
                let documents =
                    target_kyso::upload_documents(&setup_channel, args.seed, args.documents, args.document_size_bytes).await?;
                eprintln!("setup: {} documents uploaded in {:.1} s", documents.len(), began.elapsed().as_secs_f64());
                let clients = args.cold_clients;
                let channels = target_kyso::connect(&args.servers, clients.min(args.window.connections)).await?;
                let operation =
                    target_kyso::Certify { channels, signer_id: signer_id.clone(), documents, run_id: target_kyso::run_id() };
                let run = Duration::from_secs_f64(args.cold_seconds);
                let plan = LoadPlan { clients, warmup: Duration::ZERO, window: run, operations_max: args.window.operations_max };
                let (summary, completions) = load::run_with_timeline(plan, Arc::new(operation)).await;
                let cold = cold::cold_start(&completions, u32::try_from(run.as_millis()).unwrap_or(u32::MAX));
                eprintln!(
                    "kyso  certify-cold nodes={} clients={clients:4}: first success at {}, first second {} certified, steady {:.1}/s from {} ({} within {} s), errors {}",
                    args.window.nodes,
                    cold::seconds_or_never(cold.first_success_seconds, 3),
                    cold.first_second,
                    cold.steady_per_second,
                    cold::seconds_or_never(cold.steady_after_seconds, 1),
                    if cold.met() { "met" } else { "MISSED" },
                    cold::STEADY_WITHIN_SECONDS,
                    summary.errors
                );
                emit(json!({
                    "kind": "cold-start",
                    "system": "kyso",
                    "op": "certify",
                    "nodes": args.window.nodes,
                    "clients": clients,
                    "summary": summary,
                    "cold": cold,
                    "extra": {"document_size_bytes": args.document_size_bytes},
                }));
            }
            "certify" => {
                let documents =
                    target_kyso::upload_documents(&setup_channel, args.seed, args.documents, args.document_size_bytes).await?;
                eprintln!("setup: {} documents uploaded in {:.1} s", documents.len(), began.elapsed().as_secs_f64());
                for &clients in &args.window.clients {
                    let channels = target_kyso::connect(&args.servers, clients.min(args.window.connections)).await?;
                    let operation = target_kyso::Certify {
                        channels,
                        signer_id: signer_id.clone(),
                        documents: documents.clone(),
                        run_id: target_kyso::run_id(),
                    };
                    let summary = load::run(args.window.plan(clients), Arc::new(operation)).await;
                    report_load("kyso", op, &args.window, clients, &summary, json!({"document_size_bytes": args.document_size_bytes}));
                }
            }
            "verify-hash" | "verify-code" | "verify-hash-summary" | "verify-code-summary" => {
                let seed = args.seed.wrapping_add(1_000_000);
                let documents =
                    target_kyso::upload_documents(&setup_channel, seed, args.verify_documents, args.document_size_bytes).await?;
                let codes = target_kyso::certify_once(&setup_channel, seed, &signer_id, &documents).await?;
                eprintln!("setup: {} documents uploaded and certified in {:.1} s", documents.len(), began.elapsed().as_secs_f64());
                let subjects = Arc::new(documents.into_iter().zip(codes).collect::<Vec<_>>());
                let by = if op.starts_with("verify-hash") { target_kyso::VerifyBy::Hash } else { target_kyso::VerifyBy::Code };
                let view = if op.ends_with("-summary") { pb::VerifyView::Summary } else { pb::VerifyView::Full };
                for &clients in &args.window.clients {
                    let channels = target_kyso::connect(&args.servers, clients.min(args.window.connections)).await?;
                    let operation = target_kyso::Verify { channels, by, view, subjects: subjects.clone(), seed: args.seed };
                    let summary = load::run(args.window.plan(clients), Arc::new(operation)).await;
                    report_load("kyso", op, &args.window, clients, &summary, json!({"document_size_bytes": args.document_size_bytes}));
                }
            }
            "health" => {
                for &clients in &args.window.clients {
                    let channels = target_kyso::connect(&args.servers, clients.min(args.window.connections)).await?;
                    let summary = load::run(args.window.plan(clients), Arc::new(target_kyso::HealthCheck { channels })).await;
                    report_load("kyso", op, &args.window, clients, &summary, json!({}));
                }
            }
            other => bail!(
                "unknown kyso operation {other:?}: use certify-cold, certify, verify-hash, verify-code, verify-hash-summary, verify-code-summary or health"
            ),
        }
    }
    Ok(())
}

async fn etcd(args: EtcdArgs) -> anyhow::Result<()> {
    let value = Arc::new(target_etcd::value(args.value_size_bytes, 7));
    let run_id = target_kyso::run_id();
    for op in &args.ops {
        match op.as_str() {
            "put" => {
                for &clients in &args.window.clients {
                    let channels = target_kyso::connect(&args.endpoints, clients.min(args.window.connections)).await?;
                    let operation = target_etcd::Put { channels, prefix: format!("kyso-bench/{run_id}/put/{clients}"), value: value.clone() };
                    let summary = load::run(args.window.plan(clients), Arc::new(operation)).await;
                    report_load("etcd", op, &args.window, clients, &summary, json!({"value_size_bytes": args.value_size_bytes}));
                }
            }
            "get" => {
                let setup = target_kyso::connect_one(&args.endpoints[0]).await?;
                let keys = target_etcd::preload(&setup, &format!("kyso-bench/{run_id}/get"), args.preload_keys, &value).await?;
                let keys = Arc::new(keys);
                for &clients in &args.window.clients {
                    let channels = target_kyso::connect(&args.endpoints, clients.min(args.window.connections)).await?;
                    let operation = target_etcd::Get { channels, keys: keys.clone(), value_size: args.value_size_bytes, seed: 11 };
                    let summary = load::run(args.window.plan(clients), Arc::new(operation)).await;
                    report_load("etcd", op, &args.window, clients, &summary, json!({"value_size_bytes": args.value_size_bytes}));
                }
            }
            other => bail!("unknown etcd operation {other:?}: use put or get"),
        }
    }
    Ok(())
}

fn report_load(system: &str, op: &str, window: &Window, clients: usize, summary: &kyso_bench::stats::Summary, extra: serde_json::Value) {
    eprintln!(
        "{system:5} {op:12} nodes={} clients={clients:4}: {:9.1}/s  p50 {:7.2} ms  p99 {:7.2} ms  p999 {:7.2} ms  errors {}",
        window.nodes, summary.per_second, summary.p50_ms, summary.p99_ms, summary.p999_ms, summary.errors
    );
    emit(json!({
        "kind": "load",
        "system": system,
        "op": op,
        "nodes": window.nodes,
        "clients": clients,
        "connections": clients.min(window.connections),
        "summary": summary,
        "extra": extra,
    }));
}

fn limits_probe(args: LimitsArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds_per_probe);
    std::fs::create_dir_all(&args.dir)?;
    for mode in ["overwrite", "append"] {
        let probe = limits::fsync_probe(&args.dir, mode, duration, args.fsync_iterations_max)?;
        eprintln!("fsync {mode:9}: {:8.0}/s  p50 {:.2} ms  p99 {:.2} ms", probe.fsyncs_per_second, probe.p50_ms, probe.p99_ms);
        emit(json!({"kind": "fsync", "probe": probe, "dir": args.dir}));
    }
    let sha = limits::sha256_limit(duration);
    eprintln!("sha256: {:.0} MB/s on one core", sha.bytes_per_second_one_core / 1e6);
    emit(json!({"kind": "sha256", "limit": sha}));
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(1));
    for name in &args.algorithms {
        let algorithm = pki::parse_algorithm(name)?;
        let sign = limits::sign_limits(algorithm, args.document_size_bytes, threads, duration)
            .with_context(|| format!("signing probe for {name} failed"))?;
        eprintln!(
            "{:10}: raw sign {:8.0}/s one core, {:8.0}/s {} cores; CMS sign {:7.0}/s one core; sign+check {:7.0}/s all cores; verify+chain {:7.0}/s one core",
            sign.algorithm,
            sign.raw_sign_per_second_one_core,
            sign.raw_sign_per_second_all_cores,
            threads,
            sign.cms_sign_per_second_one_core,
            sign.cms_sign_and_check_per_second_all_cores,
            sign.cms_verify_and_chain_per_second_one_core
        );
        emit(json!({"kind": "sign", "limit": sign}));
    }
    Ok(())
}

async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let pki = BenchPki::load(&args.pki)?;
    let data_dir = args.dir.join("data");
    let config_path = args.dir.join("kyso.toml");
    std::fs::create_dir_all(&args.dir)?;
    let tls = node_process::write_config(
        &config_path,
        &std::path::absolute(&data_dir)?,
        &std::path::absolute(pki.ca_pem_path())?,
        &std::path::absolute(args.dir.join("tls"))?,
    )?;
    for &size in &args.sizes {
        let mut loader = BulkLoader::open(&data_dir, &pki, args.samples)?;
        let load_seconds = loader.load_to(size).await?;
        let samples = loader.progress().samples.min(size);
        drop(loader);
        eprintln!("scale: {size} records loaded ({load_seconds:.1} s for this stage)");

        let began = Instant::now();
        let mut node = NodeProcess::start(&args.kyso_bin, &config_path, args.pid_dir.as_deref())?;
        let channels = target_kyso::connect_with(&[node.grpc_url.clone()], args.connections, Some(&tls)).await?;
        let subjects: Arc<Vec<([u8; 32], String)>> = Arc::new(
            (0..samples).map(|index| (bulk::record_document(index, samples).0, bulk::record_code(index).to_string())).collect(),
        );
        let first = target_kyso::Verify { channels: channels.clone(), by: target_kyso::VerifyBy::Code, view: pb::VerifyView::Full, subjects: subjects.clone(), seed: 1 };
        load::Operation::run(&first, 0, 0).await.map_err(|error| anyhow::anyhow!("first verify after start failed: {error}"))?;
        let ready_seconds = began.elapsed().as_secs_f64();

        let plan = LoadPlan {
            clients: args.clients,
            warmup: Duration::from_secs_f64(args.warmup_seconds),
            window: Duration::from_secs_f64(args.seconds),
            operations_max: args.operations_max,
        };
        let mut results = serde_json::Map::new();
        for (name, by) in [("verify-hash", target_kyso::VerifyBy::Hash), ("verify-code", target_kyso::VerifyBy::Code)] {
            let operation =
                target_kyso::Verify { channels: channels.clone(), by, view: pb::VerifyView::Full, subjects: subjects.clone(), seed: size };
            let summary = load::run(plan, Arc::new(operation)).await;
            eprintln!(
                "scale {size:>8}: {name} {:8.1}/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
                summary.per_second, summary.p50_ms, summary.p99_ms, summary.errors
            );
            results.insert(name.to_string(), serde_json::to_value(&summary)?);
        }
        // Public lookups of codes drawn over every record: the whole store is the working set.
        let lookup = kyso_bench::target_http::Lookup::new(
            node.http_address.clone(),
            args.clients,
            size,
            size ^ 0x1d,
            Arc::new(|index| bulk::record_code(index).to_string()),
        );
        let summary = load::run(plan, Arc::new(lookup)).await;
        eprintln!(
            "scale {size:>8}: lookup over all records {:8.1}/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            summary.per_second, summary.p50_ms, summary.p99_ms, summary.errors
        );
        results.insert("lookup-uniform".to_string(), serde_json::to_value(&summary)?);
        let memory = node.memory()?;
        drop(channels);
        node.stop()?;
        let state_bytes = node_process::disk_bytes(&data_dir.join("state.redb"));
        // The file's length runs ahead of what is written (redb doubles it below 4 GiB).
        let state_disk_bytes = kyso_bench::state_stats::disk_bytes(&data_dir.join("state.redb")).unwrap_or(0);
        let blob_bytes = node_process::disk_bytes(&data_dir.join("blobs"));
        eprintln!(
            "scale {size:>8}: start {:.2} s, first verify {:.2} s, RSS {:.0} MiB (peak {:.0} MiB), state {:.0} MiB long = {:.0} bytes/record, {:.0} MiB on disk = {:.0} bytes/record",
            node.start_seconds,
            ready_seconds,
            memory.rss_bytes as f64 / 1048576.0,
            memory.peak_rss_bytes as f64 / 1048576.0,
            state_bytes as f64 / 1048576.0,
            state_bytes as f64 / size as f64,
            state_disk_bytes as f64 / 1048576.0,
            state_disk_bytes as f64 / size as f64
        );
        emit(json!({
            "kind": "scale",
            "records": size,
            "samples": samples,
            "clients": args.clients,
            "load_seconds": load_seconds,
            "start_seconds": node.start_seconds,
            "first_verify_seconds": ready_seconds,
            "rss_bytes": memory.rss_bytes,
            "peak_rss_bytes": memory.peak_rss_bytes,
            "state_bytes": state_bytes,
            "blob_bytes": blob_bytes,
            "state_bytes_per_record": state_bytes as f64 / size as f64,
            "state_disk_bytes": state_disk_bytes,
            "state_disk_bytes_per_record": state_disk_bytes as f64 / size as f64,
            "verify": results,
        }));
    }
    Ok(())
}

fn snapshot_transfer(args: SnapshotTransferArgs) -> anyhow::Result<()> {
    use kyso_cluster::StateMachine;
    anyhow::ensure!(!args.to.exists(), "{} exists: give a path for a fresh state store", args.to.display());
    let pid = std::process::id();
    let source_store = kyso::state::StateStore::open_with_cache(&args.data_dir.join("state.redb"), args.cache_bytes)?;
    let sink_store = kyso::state::StateStore::open_with_cache(&args.to, args.cache_bytes)?;
    let before = node_process::memory_of(pid)?;
    let began = Instant::now();
    let source = source_store.snapshot()?;
    let index = source.index();
    let mut sink = sink_store.receive_snapshot(index)?;
    // Two pieces in flight between reader and writer, as the transport keeps.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    let chunk_bytes = args.chunk_bytes;
    let reader = std::thread::spawn(move || {
        source.read(chunk_bytes, &mut |piece| sender.send(piece).map_err(|_| kyso_cluster::StateMachineError("the receiver stopped".into())))
    });
    let (mut bytes, mut pieces) = (0u64, 0u64);
    for piece in receiver {
        bytes += piece.len() as u64;
        pieces += 1;
        sink.write(&piece)?;
        if pieces % 1000 == 0 {
            eprintln!("snapshot-transfer: {pieces} pieces, {:.0} MiB in {:.0} s", bytes as f64 / 1048576.0, began.elapsed().as_secs_f64());
        }
    }
    reader.join().map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    let streamed_seconds = began.elapsed().as_secs_f64();
    sink.finish()?;
    sink_store.restore(index)?;
    let seconds = began.elapsed().as_secs_f64();
    let after = node_process::memory_of(pid)?;
    eprintln!(
        "snapshot-transfer: index {index}, {bytes} bytes in {pieces} pieces of {chunk_bytes}; streamed and staged in {streamed_seconds:.1} s, installed at {seconds:.1} s ({:.1} MiB/s); peak RSS {:.0} MiB before, {:.0} MiB after (both ends in this process)",
        bytes as f64 / 1048576.0 / seconds,
        before.peak_rss_bytes as f64 / 1048576.0,
        after.peak_rss_bytes as f64 / 1048576.0
    );
    let mut digests = None;
    if args.check_digest {
        let (_, source_digest) = source_store.digest()?;
        let (_, sink_digest) = sink_store.digest()?;
        anyhow::ensure!(source_digest == sink_digest, "the installed state differs from the source: {source_digest} vs {sink_digest}");
        eprintln!("snapshot-transfer: state digests equal ({source_digest})");
        digests = Some(source_digest.to_string());
    }
    emit(json!({
        "kind": "snapshot-transfer",
        "index": index,
        "bytes": bytes,
        "pieces": pieces,
        "chunk_bytes": chunk_bytes,
        "streamed_seconds": streamed_seconds,
        "seconds": seconds,
        "peak_rss_bytes_before": before.peak_rss_bytes,
        "peak_rss_bytes_after": after.peak_rss_bytes,
        "digest": digests,
    }));
    Ok(())
}

fn state_rss(args: StateRssArgs) -> anyhow::Result<()> {
    let progress = bulk::read_progress(&args.data_dir)?;
    let pid = std::process::id();
    let before = node_process::memory_of(pid)?;
    let store = kyso::state::StateStore::open(&args.data_dir.join("state.redb"))?;
    let opened = node_process::memory_of(pid)?;
    let mut random = load::PickRandom::new(23);
    let mut samples = kyso_bench::stats::Samples::default();
    let began = Instant::now();
    let deadline = Duration::from_secs_f64(args.seconds);
    let mut checkpoints = Vec::new();
    let mut done = 0u64;
    while done < args.lookups_max && began.elapsed() < deadline {
        let index = random.next_u64() % progress.records;
        let started = Instant::now();
        let found = store.certification(&bulk::record_code(index))?;
        samples.record(started.elapsed());
        if found.is_none() {
            bail!("record {index} is missing from the store");
        }
        done += 1;
        if done.is_power_of_two() && done >= 1024 {
            checkpoints.push(json!({"lookups": done, "rss_bytes": node_process::memory_of(pid)?.rss_bytes}));
        }
    }
    let after = node_process::memory_of(pid)?;
    let summary = samples.summarise(began.elapsed());
    eprintln!(
        "state-rss: {} records, {done} lookups by code at {:.0}/s (p50 {:.3} ms, p99 {:.3} ms); RSS {:.0} MiB before open, {:.0} MiB after open, {:.0} MiB after (peak {:.0} MiB)",
        progress.records,
        summary.per_second,
        summary.p50_ms,
        summary.p99_ms,
        before.rss_bytes as f64 / 1048576.0,
        opened.rss_bytes as f64 / 1048576.0,
        after.rss_bytes as f64 / 1048576.0,
        after.peak_rss_bytes as f64 / 1048576.0
    );
    emit(json!({
        "kind": "state-rss",
        "records": progress.records,
        "lookups": done,
        "summary": summary,
        "rss_before_open_bytes": before.rss_bytes,
        "rss_after_open_bytes": opened.rss_bytes,
        "rss_after_bytes": after.rss_bytes,
        "peak_rss_bytes": after.peak_rss_bytes,
        "rss_growth": checkpoints,
    }));
    Ok(())
}

fn commit_cost(args: CommitCostArgs) -> anyhow::Result<()> {
    const SCRATCH: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("kyso-bench-commit-cost");
    let db = redb::Database::create(&args.file)?;
    let file_bytes = std::fs::metadata(&args.file)?.len();
    let row = vec![0x5a_u8; 1024];
    let mut key = 0u64;
    let mut commit = |quick_repair: bool| -> anyhow::Result<()> {
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(quick_repair);
        txn.open_table(SCRATCH)?.insert(key, row.as_slice())?;
        txn.commit()?;
        key += 1;
        Ok(())
    };
    for round in 0..args.rounds {
        for quick_repair in [false, true] {
            let started = std::time::Instant::now();
            for _ in 0..args.commits {
                commit(quick_repair)?;
            }
            let seconds = started.elapsed().as_secs_f64();
            emit(json!({
                "kind": "commit-cost", "file_bytes": file_bytes, "round": round, "quick_repair": quick_repair,
                "commits": args.commits, "seconds": seconds, "ms_per_commit": seconds * 1000.0 / f64::from(args.commits),
            }));
        }
    }
    if args.leave_unclean {
        commit(false)?;
        eprintln!("left {} unclean after a commit without quick repair", args.file.display());
        std::process::abort();
    }
    Ok(())
}

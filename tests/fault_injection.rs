//! Nothing acknowledged is lost: concurrent clients against a real cluster while a seeded
//! nemesis kills, pauses, partitions, replaces and restarts nodes; then a checker over the
//! history and every node's final state.
//!
//! Every node's data directory lives on a FUSE filesystem that keeps unsynced writes in
//! memory (`kyso-testfs`); a power loss drops them for every node at once, then kills them.
//! CI runs a short run (3 nodes, KYSO_FAULT_SECONDS, default 60 s of faults) and a run of
//! power losses only (3 nodes, KYSO_POWER_LOSS_SECONDS, default 30 s). A soak:
//! `KYSO_FAULT_NODES=5 KYSO_FAULT_SECONDS=1800 cargo test --release --test fault_injection -- --nocapture`.
//! Replay a schedule with `KYSO_FAULT_SEED=<seed>`.

mod common;
mod fault;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fault::history::History;
use fault::nemesis::{power_loss_schedule, schedule, Cluster};
use fault::workload::{Client, Pool, AGENCY};
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

/// Longest run a single invocation allows, whatever the environment asks.
const RUN_SECONDS_MAX: u64 = 4 * 3600;
const CLIENTS: usize = 4;

/// Prints a line of the run's report past libtest's output capture (which takes only the
/// print macros), so that the seed and the verdict appear in CI's log even when the test
/// passes.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

async fn sample_checkpoints(urls: Vec<String>, tls: tonic::transport::ClientTlsConfig, until: Instant, seen: Arc<Mutex<Vec<(u64, [u8; 32])>>>, seed: u64) {
    let mut rng = fault::rng::Rng::new(seed ^ 0xC0FFEE);
    while Instant::now() < until {
        let url = urls[rng.below(urls.len() as u64) as usize].clone();
        let endpoint = tonic::transport::Channel::from_shared(url).unwrap().tls_config(tls.clone()).expect("test TLS configuration is usable");
        if let Ok(channel) = endpoint.timeout(Duration::from_secs(5)).connect().await {
            if let Ok(checkpoint) = pb::log_service_client::LogServiceClient::new(channel).get_checkpoint(pb::GetCheckpointRequest {}).await {
                let checkpoint = checkpoint.into_inner();
                if let Ok(root) = <[u8; 32]>::try_from(checkpoint.root_hash.as_slice()) {
                    seen.lock().unwrap().push((checkpoint.tree_size, root));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_under_faults() {
    let seconds = env_u64("KYSO_FAULT_SECONDS", 60);
    run(env_u64("KYSO_FAULT_NODES", 3) as usize, seconds, "", schedule).await;
}

/// Power losses only, every few seconds, on a filesystem that drops unsynced writes: the
/// run CI uses to prove that every store syncs what it acknowledges. Compaction is frequent,
/// so that a state store that lost applied entries cannot be saved by the Raft log.
/// `KYSO_UNSAFE_SKIP_FSYNC=raft-log` (or `state`, `blobs`) must make it fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_across_power_losses() {
    let seconds = env_u64("KYSO_POWER_LOSS_SECONDS", 30);
    run(3, seconds, "compaction_interval_entries = 50\nlog_retained_entries = 10\n", power_loss_schedule).await;
}

/// Where the nodes live: a [`kyso_testfs::LazyFs`] over `backing/`, mounted at `mnt/`. Only
/// the nodes' data directories cache unsynced writes; the harness's own files (PKI,
/// configs, logs) are written through, as an operator's provisioning would sync them.
fn mount_lazy(dir: &std::path::Path) -> (kyso_testfs::Mounted, std::path::PathBuf) {
    let (backing, mountpoint) = (dir.join("backing"), dir.join("mnt"));
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mountpoint).unwrap();
    let lazy = |path: &std::path::Path| path.components().any(|part| part.as_os_str() == "data");
    let mounted = kyso_testfs::LazyFs::mount(&backing, &mountpoint, lazy)
        .expect("mounting the test filesystem needs /dev/fuse and root (scripts/test.sh runs as root in CI)");
    (mounted, mountpoint)
}

async fn run(node_count: usize, run_seconds: u64, extra_cluster_toml: &str, make_schedule: fn(u64, usize, usize) -> Vec<fault::nemesis::Fault>) {
    let seed = env_u64("KYSO_FAULT_SEED", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000);
    let run_seconds = run_seconds.min(RUN_SECONDS_MAX);
    let skipped = std::env::var(kyso::fault::SKIP_FSYNC_VARIABLE).unwrap_or_default();
    report!("seed {seed} (replay with KYSO_FAULT_SEED={seed}), {node_count} nodes, {run_seconds} s, fsync skipped in [{skipped}]");

    let dir = tempdir();
    let (mounted, root) = mount_lazy(dir.path());
    let layout = ClusterLayout::new(&root, node_count as u64, extra_cluster_toml);
    let nodes = layout.start_all_with(|_| "fault_injection = true
".to_string());
    let ports = layout.members.iter().map(|&(_, grpc, raft)| (grpc, raft)).collect();
    let ids = layout.members.iter().map(|&(id, _, _)| id).collect();
    let power = mounted.switch.clone();
    let mut cluster = Cluster { power, layout, nodes, ids, ports, next_id: node_count as u64 + 1 };
    let leader = wait_for_leader(&cluster.nodes, Duration::from_secs(90)).await;
    let signer = register_signer(&cluster.nodes[leader], &cluster.layout.pki.issue(&signer_spec("Đỗ Văn Giang", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    let urls: Vec<String> = cluster.nodes.iter().map(|node| node.grpc_url.clone()).collect();
    let tls = cluster.layout.tls.client_tls(&cluster.layout.tls.operator);

    let history = Arc::new(History::new());
    let pool = Arc::new(Mutex::new(Pool::default()));
    let checkpoints = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(run_seconds);
    let mut tasks = Vec::new();
    for index in 0..CLIENTS {
        let client = Client::new(index, urls.clone(), tls.clone(), signer.signer_id.clone(), history.clone(), pool.clone(), seed);
        tasks.push(tokio::spawn(client.run(until)));
    }
    tasks.push(tokio::spawn(sample_checkpoints(urls.clone(), tls.clone(), until, checkpoints.clone(), seed)));

    let mut faults_by_kind = std::collections::BTreeMap::<String, usize>::new();
    for fault in make_schedule(seed, node_count, 100_000) {
        if Instant::now() + fault.gap + fault.duration > until {
            break;
        }
        tokio::time::sleep(fault.gap).await;
        cluster.apply(&fault, &history).await;
        *faults_by_kind.entry(format!("{:?}", fault.kind)).or_default() += 1;
    }
    report!("faults by kind: {faults_by_kind:?}");
    let faults: usize = faults_by_kind.values().sum();
    for task in tasks {
        task.await.unwrap();
    }
    let phase = Instant::now();
    cluster.heal_all().await;
    wait_for_leader(&cluster.nodes, Duration::from_secs(120)).await;
    wait_for_identical_state(&cluster.nodes, Duration::from_secs(180)).await;
    report!("healed and converged in {:?}", phase.elapsed());

    let history_path = dir.path().join(format!("history-{seed}.jsonl"));
    history.write(&history_path).unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-history");
    std::fs::create_dir_all(&artifacts).unwrap();
    let kept = artifacts.join(format!("history-{seed}.jsonl"));
    std::fs::copy(&history_path, &kept).unwrap();
    report!("history: {}", kept.display());

    let operations = history.operations.lock().unwrap().clone();
    let verdict = fault::checker::check(&cluster.nodes, &operations, &pool.lock().unwrap(), &checkpoints.lock().unwrap()).await;
    report!("checked in {:?}", phase.elapsed());
    for problem in &verdict.problems {
        report!("PROBLEM: {problem}");
    }
    report!(
        "faults {faults}, ops {}, acknowledged {}, lost {}, duplicates {}, inconsistent {}",
        operations.len(),
        verdict.acknowledged,
        verdict.lost,
        verdict.duplicates,
        verdict.inconsistent
    );
    report!("files whose unsynced writes a power loss dropped: {}", mounted.switch.dropped_files());
    report!("operations of unknown outcome retried with their request id on every node: {}", verdict.retried);
    assert!(verdict.acknowledged > 0, "no operation was acknowledged: the run proves nothing");
    assert_eq!((verdict.lost, verdict.duplicates, verdict.inconsistent), (0, 0, 0), "seed {seed}: see PROBLEM lines and {}", kept.display());
    // The nodes stop before the filesystem under them is unmounted.
    drop(cluster);
    drop(mounted);
}

//! Nothing acknowledged is lost: concurrent clients against a real cluster while a seeded
//! nemesis kills, pauses, partitions, replaces and restarts nodes; then a checker over the
//! history and every node's final state.
//!
//! CI runs a short run (3 nodes, KYSO_FAULT_SECONDS, default 60 s of faults). A soak:
//! `KYSO_FAULT_NODES=5 KYSO_FAULT_SECONDS=1800 cargo test --release --test fault_injection -- --nocapture`.
//! Replay a schedule with `KYSO_FAULT_SEED=<seed>`.

mod common;
mod fault;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fault::history::History;
use fault::nemesis::{schedule, Cluster};
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
    let seed = env_u64("KYSO_FAULT_SEED", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000);
    let node_count = env_u64("KYSO_FAULT_NODES", 3) as usize;
    let run_seconds = env_u64("KYSO_FAULT_SECONDS", 60).min(RUN_SECONDS_MAX);
    report!("seed {seed} (replay with KYSO_FAULT_SEED={seed}), {node_count} nodes, {run_seconds} s");

    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), node_count as u64, "");
    let nodes = layout.start_all_with(|_| "fault_injection = true
".to_string());
    let ports = layout.members.iter().map(|&(_, grpc, raft)| (grpc, raft)).collect();
    let ids = layout.members.iter().map(|&(id, _, _)| id).collect();
    let mut cluster = Cluster { layout, nodes, ids, ports, next_id: node_count as u64 + 1 };
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
    for fault in schedule(seed, node_count, 100_000) {
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
    assert!(verdict.acknowledged > 0, "no operation was acknowledged: the run proves nothing");
    assert_eq!((verdict.lost, verdict.duplicates, verdict.inconsistent), (0, 0, 0), "seed {seed}: see PROBLEM lines and {}", kept.display());
}

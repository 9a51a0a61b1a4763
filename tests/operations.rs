//! Running kyso like production: a real Prometheus server (Debian's `prometheus`,
//! installed by scripts/test.sh) scrapes the metrics listeners of a 3-node cluster and
//! answers queries through its HTTP API.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-cum";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
const SCRAPE_DEADLINE: Duration = Duration::from_secs(90);

/// A blocking HTTP/1.1 GET on 127.0.0.1; returns the status code and the body.
fn http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) { (byte as char).to_string() } else { format!("%{byte:02X}") })
        .collect()
}

/// A Prometheus server on 127.0.0.1 with its storage in a temporary directory; killed on
/// drop.
struct PrometheusServer {
    child: Child,
    address: String,
}

impl PrometheusServer {
    fn start(dir: &Path, targets: &[String]) -> PrometheusServer {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let targets = targets.iter().map(|target| format!("'{target}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: kyso\n    static_configs:\n      - targets: [{targets}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is missing: scripts/test.sh installs Debian's prometheus package");
        PrometheusServer { child, address }
    }

    /// The values of an instant query's result vector, or `None` while the server is not
    /// answering yet.
    fn query(&self, query: &str) -> Option<Vec<f64>> {
        let (status, body) = http_get(&self.address, &format!("/api/v1/query?query={}", percent_encode(query))).ok()?;
        if status != 200 {
            return None;
        }
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        assert_eq!(answer["status"], "success", "{body}");
        let values = answer["data"]["result"]
            .as_array()?
            .iter()
            .filter_map(|sample| sample["value"][1].as_str().and_then(|value| value.parse().ok()))
            .collect();
        Some(values)
    }

    /// Polls `query` until `accept` holds for its values; panics with the last answer at
    /// the deadline.
    fn wait_for(&self, query: &str, accept: impl Fn(&[f64]) -> bool) -> Vec<f64> {
        let deadline = Instant::now() + SCRAPE_DEADLINE;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(values) = self.query(query) {
                if accept(&values) {
                    return values;
                }
                last = Some(values);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("Prometheus never answered {query:?} as expected; last answer {last:?}");
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample whose line starts with `series` in a text exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_node_of_a_cluster() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let metrics: Vec<String> = layout.members.iter().map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let nodes = layout.start_all_with(|id| format!("metrics_addr = {:?}", metrics[(id - 1) as usize]));
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let via = &nodes[(leader + 1) % 3];
    let content = document(7, 20_000);
    let signer = register_signer(via, &layout.pki.issue(&signer_spec("Vũ Thị Em", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    upload(via, "dossier", AGENCY, &[("scan.pdf", content.as_slice())]).await.unwrap();
    let certification =
        via.signing().await.certify(certify_request("c1", &content, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    via.verification()
        .await
        .verify(pb::VerifyRequest {
            subject: Some(pb::verify_request::Subject::LookupCode(certification.lookup_code.clone())),
            correlation_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    let via_http = via.http_url.strip_prefix("http://").unwrap().to_string();
    let via_metrics = metrics[(leader + 1) % 3].clone();
    let lookup_path = format!("/api/v1/lookup/{}", certification.lookup_code);
    let (exposition, lookup_status) = tokio::task::spawn_blocking(move || {
        let (lookup_status, _) = http_get(&via_http, &lookup_path).unwrap();
        let (status, exposition) = http_get(&via_metrics, "/metrics").unwrap();
        assert_eq!(status, 200, "{exposition}");
        (exposition, lookup_status)
    })
    .await
    .unwrap();
    assert_eq!(lookup_status, 200);

    // The node that served the calls counts them, by method and code, with latency buckets.
    let certify = "method=\"/kyso.v1.SigningService/Certify\",port=\"client\"}";
    assert_eq!(sample(&exposition, &format!("kyso_grpc_requests_total{{code=\"OK\",{certify}")), Some(1.0), "{exposition}");
    let certify_labels = certify.trim_end_matches('}');
    assert!(
        exposition.contains(&format!("kyso_grpc_request_duration_seconds_bucket{{{certify_labels},le=\"0.005\"}}")),
        "{exposition}"
    );
    assert_eq!(sample(&exposition, "kyso_certifications_total"), Some(1.0), "{exposition}");
    assert_eq!(sample(&exposition, "kyso_verifications_total{channel=\"grpc\",outcome=\"found\"}"), Some(1.0), "{exposition}");
    assert_eq!(sample(&exposition, "kyso_verifications_total{channel=\"public_page\",outcome=\"found\"}"), Some(1.0), "{exposition}");
    assert!(sample(&exposition, "kyso_archive_bytes_written_total").unwrap_or(0.0) >= content.len() as f64, "{exposition}");
    assert!(sample(&exposition, "kyso_raft_applied_index").unwrap_or(0.0) >= 3.0, "{exposition}");
    assert!(exposition.contains("kyso_raft_snapshot_sends_total{outcome=\"finished\"}"), "{exposition}");
    // raft-engine's own metrics, from the prometheus crate's default registry.
    assert!(exposition.lines().any(|line| line.starts_with("raft_engine_")), "{exposition}");

    let prometheus_dir = dir.path().join("prometheus");
    let targets = metrics.clone();
    tokio::task::spawn_blocking(move || {
        let prometheus = PrometheusServer::start(&prometheus_dir, &targets);
        prometheus.wait_for("count(up == 1)", |values| values == [3.0]);
        // Exactly one member leads, and every member agrees on the term and applied index.
        prometheus.wait_for("sum(kyso_raft_is_leader)", |values| values == [1.0]);
        prometheus.wait_for("max(kyso_raft_term) - min(kyso_raft_term)", |values| values == [0.0]);
        let applied = prometheus.wait_for("min(kyso_raft_applied_index)", |values| values.len() == 1 && values[0] >= 3.0);
        let certifications = prometheus.wait_for("sum(kyso_certifications_total)", |values| values == [1.0]);
        eprintln!("Prometheus answered: min applied index {applied:?}, certifications {certifications:?}");
    })
    .await
    .unwrap();
}

/// One certify call of the load: which node served it, when it ran, and its answer.
struct Call {
    node: usize,
    started: Instant,
    finished: Instant,
    outcome: Result<pb::Certification, tonic::Status>,
}

/// When one node was told to stop (SIGTERM) and when it was serving again.
struct Restart {
    node: usize,
    terminated: Instant,
    back: Instant,
}

/// Certifies `content` through `node_position`'s client port, one call after another,
/// until `stop` is set; pauses a little after a failed call (a stopped node refuses fast).
async fn certify_load(
    client: pb::signing_service_client::SigningServiceClient<tonic::transport::Channel>,
    node_position: usize,
    content: Vec<u8>,
    signer_id: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut number = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        number += 1;
        let request = certify_request(&format!("roll-{node_position}-{number}"), &content, AGENCY, &signer_id);
        let started = Instant::now();
        let outcome = client.clone().certify(request).await.map(|response| response.into_inner());
        let failed = outcome.is_err();
        calls.push(Call { node: node_position, started, finished: Instant::now(), outcome });
        if failed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_fails_no_call_and_loses_nothing() {
    let dir = tempdir();
    let mut layout = ClusterLayout::new(dir.path(), 3, "");
    // Elections of 4 to 8 s outlast a follower's forwarding retries (about 2 s): without
    // the leader handing its leadership on as it stops, calls through the followers fail.
    layout.tick_interval_milliseconds = 400;
    let mut nodes = layout.start_all();
    let first_leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let content = document(9, 4_000);
    let signer = register_signer(&nodes[first_leader], &layout.pki.issue(&signer_spec("Lê Văn Cường", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    upload(&nodes[first_leader], "dossier", AGENCY, &[("scan.pdf", content.as_slice())]).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for (position, node) in nodes.iter().enumerate() {
        let client = node.signing().await;
        workers.push(tokio::spawn(certify_load(client, position, content.clone(), signer.signer_id.clone(), stop.clone())));
    }
    // Followers first, the leader last: the last stop is the one that hands leadership on.
    let mut order: Vec<usize> = (0..3).filter(|position| *position != first_leader).collect();
    order.push(first_leader);
    let mut restarts = Vec::new();
    for position in order {
        wait_for_leader(&nodes, ELECTION_DEADLINE).await;
        // Let the load run a while on the whole cluster before each stop.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let terminated = Instant::now();
        tokio::task::block_in_place(|| nodes[position].stop());
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| nodes[position].start_again());
        restarts.push(Restart { node: position, terminated, back: Instant::now() });
    }
    wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut calls = Vec::new();
    for worker in workers {
        calls.extend(worker.await.unwrap());
    }

    // A call may fail only if it was sent to a node after that node was told to stop and
    // before it was back: such a call was never in flight when the node stopped.
    let refused_for_stop = |call: &Call| {
        restarts.iter().any(|restart| restart.node == call.node && call.started >= restart.terminated && call.started <= restart.back)
    };
    let mut refused = 0;
    for call in &calls {
        if let Err(status) = &call.outcome {
            assert!(
                refused_for_stop(call),
                "a call to node position {} that was in flight or sent to a running node failed: {status:?}",
                call.node
            );
            refused += 1;
        }
    }
    // The load really ran across every stop: calls to the other nodes succeeded meanwhile.
    for restart in &restarts {
        let served_meanwhile = calls
            .iter()
            .filter(|call| call.node != restart.node && call.outcome.is_ok())
            .filter(|call| call.finished >= restart.terminated && call.started <= restart.back)
            .count();
        assert!(served_meanwhile > 0, "no call was served while node position {} restarted", restart.node);
    }
    let acknowledged: Vec<&pb::Certification> = calls.iter().filter_map(|call| call.outcome.as_ref().ok()).collect();
    eprintln!("rolling restart: {} calls, {} acknowledged, {refused} refused by a stopping node", calls.len(), acknowledged.len());

    // Nothing acknowledged was lost: every certification verifies on every node.
    let digest = wait_for_identical_state(&nodes, Duration::from_secs(90)).await;
    assert!(digest.log_tree_size > acknowledged.len() as u64, "signer registration and every acknowledged certification are in the log");
    for node in &nodes {
        let answer = node
            .verification()
            .await
            .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(sha256(&content))), correlation_id: String::new(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let valid: std::collections::HashSet<String> = answer
            .certifications
            .iter()
            .filter(|verified| verified.summary == "valid")
            .filter_map(|verified| verified.certification.as_ref().map(|certification| certification.lookup_code.clone()))
            .collect();
        for certification in &acknowledged {
            assert!(valid.contains(&certification.lookup_code), "{} is missing on {}", certification.lookup_code, node.grpc_url);
        }
    }
}

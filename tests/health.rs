//! Health that tells the truth, on a real 3-node cluster of `kyso node` processes: a
//! follower cut off from the others, then one whose state store stops taking writes, must
//! say so on `/readyz` and `/healthz` (503), on gRPC health (NOT_SERVING) and on the public
//! page and JSON ("temporarily unavailable", 503) instead of answering from a replica it
//! knows may be stale; `/livez` fails only when a restart is needed.

mod common;
mod public_fixture;

use std::time::{Duration, Instant};

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use public_fixture::get;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

const AGENCY: &str = "xa-suc-khoe";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
/// The bound under test (`cluster.quorum_contact_milliseconds_max`): short, so the test is.
const QUORUM_CONTACT_MILLISECONDS_MAX: u64 = 1_500;
/// How long a judgement may take to show: the bound, plus generous slack for a slow machine.
const SHOW_DEADLINE: Duration = Duration::from_secs(60);

async fn grpc_health(node: &TestNode) -> ServingStatus {
    let response = HealthClient::new(node.channel().await).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

/// Polls `path` on `node` until it answers `status`, bounded in time (and so in count).
async fn wait_for_http(node: &TestNode, path: &str, status: u16) -> public_fixture::HttpResponse {
    let deadline = Instant::now() + SHOW_DEADLINE;
    loop {
        let response = get(&node.http_url, path, &[]).await;
        if response.status == status {
            return response;
        }
        assert!(Instant::now() < deadline, "{path} on {} still answers {} instead of {status}: {}", node.http_url, response.status, response.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_grpc_health(node: &TestNode, expected: ServingStatus) {
    let deadline = Instant::now() + SHOW_DEADLINE;
    loop {
        let status = grpc_health(node).await;
        if status == expected {
            return;
        }
        assert!(Instant::now() < deadline, "grpc health of {} stays {status:?}, expected {expected:?}", node.grpc_url);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The follower answers everything as a healthy node does.
async fn assert_ready(node: &TestNode, code: &str) {
    wait_for_http(node, "/readyz", 200).await;
    wait_for_grpc_health(node, ServingStatus::Serving).await;
    assert_eq!(get(&node.http_url, "/healthz", &[]).await.status, 200);
    assert_eq!(get(&node.http_url, "/livez", &[]).await.status, 200);
    assert_eq!(get(&node.http_url, &format!("/v/{code}"), &[]).await.status, 200);
    assert_eq!(get(&node.http_url, &format!("/api/v1/lookup/{code}"), &[]).await.status, 200);
}

/// Not ready: every probe and every public read says so; `alive` is what /livez says.
async fn assert_not_ready(node: &TestNode, code: &str, alive: bool) {
    let ready = wait_for_http(node, "/readyz", 503).await;
    assert!(ready.body.contains("\"unavailable\""), "{}", ready.body);
    wait_for_grpc_health(node, ServingStatus::NotServing).await;
    assert_eq!(get(&node.http_url, "/healthz", &[]).await.status, 503);
    assert_eq!(get(&node.http_url, "/livez", &[]).await.status, if alive { 200 } else { 503 });
    let page = get(&node.http_url, &format!("/v/{code}"), &[]).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("Tạm thời không phục vụ") && page.body.contains("Temporarily unavailable"), "{}", page.body);
    assert!(page.header("retry-after").is_some());
    let json = get(&node.http_url, &format!("/api/v1/lookup/{code}"), &[]).await;
    assert_eq!(json.status, 503, "{}", json.body);
    assert!(json.body.contains("temporarily unavailable"), "{}", json.body);
}

async fn inject(node: &TestNode, isolate_from: Vec<u64>, fail_storage: bool) {
    node.cluster().await.inject_fault(pb::InjectFaultRequest { isolate_from, fail_storage }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_or_storage_failed_follower_says_it_is_unavailable_instead_of_serving_stale_state() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, &format!("quorum_contact_milliseconds_max = {QUORUM_CONTACT_MILLISECONDS_MAX}\n"));
    let nodes = layout.start_all_with(|_| "fault_injection = true\n".to_string());
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let content = document(90, 2_000);
    let signer = register_signer(&nodes[leader], &layout.pki.issue(&signer_spec("Lê Văn Khỏe", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    upload(&nodes[leader], "d-health", AGENCY, &[("a.pdf", &content)]).await.unwrap();
    let certification =
        nodes[leader].signing().await.certify(certify_request("c-health", &content, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let code = certification.lookup_code;
    wait_for_identical_state(&nodes, Duration::from_secs(90)).await;
    let victim = (leader + 1) % 3;
    let id_of = |position: usize| layout.members[position].0;
    let others: Vec<usize> = (0..3).filter(|&position| position != victim).collect();
    for node in &nodes {
        assert_ready(node, &code).await;
    }

    // Partitioned: alive, but it cannot know its replica is current.
    inject(&nodes[victim], others.iter().map(|&position| id_of(position)).collect(), false).await;
    for &position in &others {
        inject(&nodes[position], vec![id_of(victim)], false).await;
    }
    assert_not_ready(&nodes[victim], &code, true).await;
    assert_ready(&nodes[leader], &code).await;

    // Healed: ready again.
    for node in &nodes {
        inject(node, vec![], false).await;
    }
    assert_ready(&nodes[victim], &code).await;

    // Its storage fails under it: the next write it applies stops its driver for good.
    inject(&nodes[victim], vec![], true).await;
    upload(&nodes[leader], "d-after-failure", AGENCY, &[("b.pdf", &document(91, 1_000))]).await.unwrap();
    assert_not_ready(&nodes[victim], &code, false).await;
    // The other two still commit and serve.
    upload(&nodes[leader], "d-after-failure-2", AGENCY, &[("c.pdf", &document(92, 1_000))]).await.unwrap();
    assert_ready(&nodes[leader], &code).await;
    assert_ready(&nodes[others.iter().copied().find(|&position| position != leader).unwrap()], &code).await;
}

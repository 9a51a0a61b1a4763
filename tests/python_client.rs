//! The Python client (clients/python) against a real 3-node cluster: this test starts the
//! cluster, runs a workload whose outcome it knows, writes a manifest describing both, and
//! runs the package's pytest suite on it. Python 3 with grpcio, grpcio-tools, pytest and
//! cryptography must be installed (scripts/test.sh installs them); a missing one fails
//! the test, as does a suite that collects no tests.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use serde_json::json;

const AGENCY: &str = "xa-python";
const REVOCATION_REASON: &str = "cấp nhầm bản sao";

fn write_identity(dir: &Path, name: &str, issued: &kyso::crypto::devpki::IssuedCert) -> serde_json::Value {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, issued.cert_pem()).unwrap();
    write_private(&key, issued.key_pem().as_bytes());
    json!({ "cert": cert, "key": key })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_suite_passes_against_a_three_node_cluster() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all();
    wait_for_leader(&nodes, Duration::from_secs(120)).await;

    let identities = dir.path().join("identities");
    std::fs::create_dir_all(&identities).unwrap();
    let verifier = layout.tls.issue_client("python verifier");
    let clerk = layout.tls.issue_client("python clerk");
    grant(&nodes[0], &verifier, &["verifier"], &[], &[]).await;
    grant(&nodes[1], &clerk, &["clerk"], &[AGENCY], &[]).await;

    let signer = register_signer(&nodes[0], &layout.pki.issue(&signer_spec("Đỗ Văn Hùng", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .expect("the signer registers");
    let mut documents = Vec::new();
    for seed in 1..=3u8 {
        let content = document(seed, 3_000);
        let node = &nodes[usize::from(seed) % nodes.len()];
        upload(node, &format!("py-dossier-{seed}"), AGENCY, &[("ban-sao.pdf", &content)]).await.expect("upload");
        let certification = node
            .signing()
            .await
            .certify(certify_request(&format!("py-{seed}"), &content, AGENCY, &signer.signer_id))
            .await
            .expect("certify")
            .into_inner();
        let path = dir.path().join(format!("document-{seed}.pdf"));
        std::fs::write(&path, &content).unwrap();
        documents.push((path, content, certification.lookup_code));
    }
    nodes[2]
        .signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest {
            request_id: "py-revoke".into(),
            lookup_code: documents[1].2.clone(),
            reason: REVOCATION_REASON.into(),
        })
        .await
        .expect("revoke");
    wait_for_identical_state(&nodes, Duration::from_secs(60)).await;

    let manifest = json!({
        "nodes": nodes.iter().map(|node| json!({
            "grpc": node.grpc_url.strip_prefix("https://").unwrap(),
            "http": node.http_url,
        })).collect::<Vec<_>>(),
        "ca": layout.tls.path("cluster-ca.pem"),
        "operator": { "cert": layout.tls.path("operator.pem"), "key": layout.tls.path("operator.key") },
        "verifier": write_identity(&identities, "verifier", &verifier),
        "clerk": write_identity(&identities, "clerk", &clerk),
        "agency": AGENCY,
        "revocation_reason": REVOCATION_REASON,
        "documents": documents.iter().enumerate().map(|(position, (path, content, code))| json!({
            "path": path, "sha256_hex": hex::encode(sha256(content)), "lookup_code": code, "revoked": position == 1,
        })).collect::<Vec<_>>(),
        "expected_leaves": { "access_changed": 2, "signer_registered": 1, "certification": 3, "revocation": 1 },
    });
    let manifest_path = dir.path().join("cluster.json");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();

    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&client_dir)
        .env("KYSO_TEST_CLUSTER", &manifest_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|error| panic!("{python} is required for this test (scripts/test.sh installs what it needs): {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    // pytest exits 5 when it collected no tests: that is a failure here, as is any other.
    assert!(output.status.success(), "pytest failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(" passed"), "pytest reported no passed tests:\n{stdout}");
}

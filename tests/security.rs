//! Security on real `kyso node` processes: mutual TLS on the client and peer ports, roles
//! on every RPC with refusals recorded in the transparency log (within a budget), signing
//! keys that need the signer's PIN and lock after wrong ones, client-side signatures
//! checked before they are recorded, CRL revocation with signing-time semantics, and
//! limits on hostile input.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use kyso::crypto::devpki::{self, CrlEntrySpec, IssuedCert, TlsUsage};
use kyso::crypto::KeyAlgorithm;
use kyso::state::{LogEvent, LogLeaf};
use kyso_proto::v1 as pb;
use pb::verify_request::Subject;
use tonic::Code;

const AGENCY: &str = "xa-an-toan";

/// The call never reached a gRPC handler: the TLS handshake refused the connection.
fn assert_refused_by_tls<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    let status = result.expect_err(&format!("{what}: the call should have been refused"));
    assert!(matches!(status.code(), Code::Unavailable | Code::Cancelled | Code::Unknown), "{what}: {status:?}");
    assert!(status.metadata().get("content-type").is_none(), "{what}: a server answered instead of refusing the handshake: {status:?}");
}

/// Every leaf of the node's transparency log, decoded.
async fn leaves(node: &TestNode) -> Vec<LogLeaf> {
    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let size = log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner().tree_size;
    let mut decoded = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + 1000).min(size);
        let entries = log.get_entries(pb::GetEntriesRequest { start, end }).await.unwrap().into_inner().entries;
        decoded.extend(entries.iter().map(|entry| LogLeaf::decode(&entry.leaf_data).unwrap()));
        start = end;
    }
    decoded
}

fn refusals_by(leaves: &[LogLeaf], client: &IssuedCert) -> Vec<(String, u64)> {
    let hash = kyso::domain::Sha256::digest(&client.cert_der);
    leaves
        .iter()
        .filter(|leaf| leaf.actor.certificate_sha256 == Some(hash))
        .filter_map(|leaf| match &leaf.event {
            LogEvent::Refused { action, suppressed_before, .. } => Some((action.clone(), *suppressed_before)),
            _ => None,
        })
        .collect()
}

async fn verify_hash(node: &TestNode, content: &[u8]) -> pb::VerifyResponse {
    node.verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(Subject::Sha256(sha256(content))), correlation_id: String::new(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
}

// ----- mutual TLS --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_port_refuses_callers_without_a_valid_client_certificate() {
    let fixture = fixture("");
    let node = &fixture.node;
    let tls = &node.tls;
    let verify = |channel: tonic::transport::Channel| async move {
        pb::verification_service_client::VerificationServiceClient::new(channel)
            .verify(pb::VerifyRequest { subject: Some(Subject::Sha256(vec![0; 32])), correlation_id: String::new(), ..Default::default() })
            .await
    };
    // The operator's certificate gets through (NOT_FOUND: nothing is certified yet).
    assert_eq!(verify(node.channel().await).await.unwrap_err().code(), Code::NotFound);

    // No client certificate at all.
    let no_identity = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(tls.cluster_ca.cert_pem()));
    let channel = tonic::transport::Channel::from_shared(node.grpc_url.clone()).unwrap().tls_config(no_identity).unwrap().connect_lazy();
    assert_refused_by_tls(verify(channel).await, "no client certificate");

    // Plain text against the TLS port.
    let plain_url = node.grpc_url.replace("https://", "http://");
    let channel = tonic::transport::Channel::from_shared(plain_url).unwrap().connect_lazy();
    assert!(verify(channel).await.is_err(), "a plain-text client must not get an answer");

    let now = now_unix();
    let other_ca = devpki::self_signed_ca(&ca_spec("someone else's CA")).unwrap();
    let wrong_chain = devpki::issue_tls("wrong chain", &[], TlsUsage::Client, now - 60, now + 3600, &other_ca).unwrap();
    let expired = devpki::issue_tls("expired", &[], TlsUsage::Client, now - 7200, now - 3600, &tls.client_ca).unwrap();
    let not_yet_valid = devpki::issue_tls("not yet valid", &[], TlsUsage::Client, now + 3600, now + 7200, &tls.client_ca).unwrap();
    let server_only = devpki::issue_tls("wrong usage", &[], TlsUsage::Server, now - 60, now + 3600, &tls.client_ca).unwrap();
    let mut self_signed_spec = signer_spec("self-signed client", KeyAlgorithm::EcdsaP256);
    self_signed_spec.key_usage = kyso::crypto::devpki::KeyUsages::SIGNER;
    let self_signed = devpki::self_signed(&self_signed_spec).unwrap();
    for (what, client) in
        [("wrong chain", &wrong_chain), ("expired", &expired), ("not yet valid", &not_yet_valid), ("wrong usage", &server_only), ("self-signed", &self_signed)]
    {
        match tls.channel_as(&node.grpc_url, client).await {
            Err(_) => {}
            Ok(channel) => assert_refused_by_tls(verify(channel).await, what),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_accepts_only_certificates_of_the_cluster_ca() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let tls = tls_beside(&pki.ca_pem_path);
    let (grpc, raft) = (free_port(), free_port());
    // A one-member cluster needs no outbound peer connection, so its peer port can run TLS
    // today (kyso-cluster still dials peers in plain text).
    let config = format!(
        "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:{grpc}\"\nhttp_addr = \"127.0.0.1:0\"\ntrust_anchor_files = [{:?}]\n{}[limits]\n{TEST_LIMITS}\n\
         [cluster]\nnode_id = 1\nraft_addr = \"127.0.0.1:{raft}\"\ntick_interval_milliseconds = 50\n\
         members = [{{ id = 1, raft_addr = \"127.0.0.1:{raft}\", client_addr = \"127.0.0.1:{grpc}\" }}]\n",
        pki.ca_pem_path.display().to_string(),
        tls.toml(),
    );
    let node = TestNode::start_config(&dir.path().join("node"), &config, &tls);
    wait_for_leader(std::slice::from_ref(&node), Duration::from_secs(60)).await;
    // The node works end to end through its client port (and its log holds an archive).
    let signer = register_signer(&node, &pki.issue(&signer_spec("Một Mình", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let content = document(3, 2000);
    upload(&node, "d-peer", AGENCY, &[("a.pdf", &content)]).await.unwrap();
    node.signing().await.certify(certify_request("c-peer", &content, AGENCY, &signer.signer_id)).await.unwrap();
    let peer_url = format!("https://127.0.0.1:{raft}");
    // FillBlobs proves the connection with a read: a node holding every blob changes nothing,
    // so the probe leaves no entry in the Raft log.
    let forward = |channel: tonic::transport::Channel| async move {
        pb::node_internal_service_client::NodeInternalServiceClient::new(channel).fill_blobs(pb::FillBlobsRequest {}).await
    };
    let applied_before = node.cluster().await.state_digest(pb::StateDigestRequest {}).await.unwrap().into_inner().applied_index;
    // A node certificate (cluster CA) reaches the service: the answer is the service's own.
    let as_node = tls.channel_as(&peer_url, &tls.node).await.expect("a node certificate connects");
    let answer = forward(as_node).await.expect("a node reaches NodeInternalService").into_inner();
    assert!(answer.complete && answer.missing_blobs == 0, "{answer:?}");
    let applied_after = node.cluster().await.state_digest(pb::StateDigestRequest {}).await.unwrap().into_inner().applied_index;
    assert_eq!(applied_after, applied_before, "the probe wrote to the raft log");
    // The operator's certificate is from the client CA: refused by the peer port.
    match tls.channel_as(&peer_url, &tls.operator).await {
        Err(_) => {}
        Ok(channel) => assert_refused_by_tls(forward(channel).await, "client-CA certificate on the peer port"),
    }
    // No certificate at all.
    let no_identity = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(tls.cluster_ca.cert_pem()));
    let channel = tonic::transport::Channel::from_shared(peer_url.clone()).unwrap().tls_config(no_identity).unwrap().connect_lazy();
    assert_refused_by_tls(forward(channel).await, "no certificate on the peer port");
}

// ----- roles and audit -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_calls_only_its_rpcs_and_every_refusal_is_in_the_log_with_the_caller() {
    let fixture = fixture("");
    let node = &fixture.node;
    let signer = register_signer(node, &fixture.pki.issue(&signer_spec("Đỗ Văn Ký", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let clerk = node.tls.issue_client("clerk");
    let verifier = node.tls.issue_client("verifier");
    let stranger = node.tls.issue_client("stranger");
    grant(node, &clerk, &["clerk"], &[AGENCY], &[]).await;
    grant(node, &verifier, &["verifier"], &[], &[]).await;

    let content = document(1, 3000);
    let as_clerk = |channel| pb::archive_service_client::ArchiveServiceClient::new(channel);
    let messages = upload_messages("d-clerk", AGENCY, &[("a.pdf", &content)], 1000);
    let archived = as_clerk(node.channel_as(&clerk).await).upload_dossier(futures::stream::iter(messages)).await.unwrap().into_inner();
    let other_agency = upload_messages("d-other", "xa-khac", &[("a.pdf", &content)], 1000);
    assert_status(
        as_clerk(node.channel_as(&clerk).await).upload_dossier(futures::stream::iter(other_agency)).await,
        Code::PermissionDenied,
        "not a clerk of agency xa-khac",
    );
    let dossier = as_clerk(node.channel_as(&clerk).await)
        .get_dossier(pb::GetDossierRequest { dossier_id: archived.dossier_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dossier.private_fields.get("applicant_name").map(String::as_str), Some("Lê Văn Cường"));

    let certify = certify_request("c-clerk", &content, AGENCY, &signer.signer_id);
    let clerk_signing = pb::signing_service_client::SigningServiceClient::new(node.channel_as(&clerk).await).certify(certify.clone()).await;
    assert_status(clerk_signing, Code::PermissionDenied, "needs the role signer");

    // Anyone with a certificate of the client CA may verify one document (public role)...
    let mut stranger_verify = pb::verification_service_client::VerificationServiceClient::new(node.channel_as(&stranger).await);
    let not_certified = stranger_verify.verify(pb::VerifyRequest { subject: Some(Subject::Sha256(sha256(&content))), correlation_id: String::new(), ..Default::default() }).await;
    assert_status(not_certified, Code::NotFound, "no certification");
    // ...but neither read dossiers nor verify in bulk.
    let stranger_dossier = as_clerk(node.channel_as(&stranger).await).get_dossier(pb::GetDossierRequest { dossier_id: archived.dossier_id.clone() }).await;
    assert_status(stranger_dossier, Code::PermissionDenied, "only the public role");
    let bulk = stranger_verify.verify_stream(futures::stream::iter(Vec::<pb::VerifyRequest>::new())).await;
    assert_status(bulk, Code::PermissionDenied, "verifier");
    let mut verifier_verify = pb::verification_service_client::VerificationServiceClient::new(node.channel_as(&verifier).await);
    assert!(verifier_verify.verify_stream(futures::stream::iter(Vec::<pb::VerifyRequest>::new())).await.is_ok());
    let verifier_register = pb::signing_service_client::SigningServiceClient::new(node.channel_as(&verifier).await)
        .register_signer(pb::RegisterSignerRequest { request_id: "x".into(), ..Default::default() })
        .await;
    assert_status(verifier_register, Code::PermissionDenied, "admin");
    let stranger_grant = pb::access_service_client::AccessServiceClient::new(node.channel_as(&stranger).await)
        .set_access(pb::SetAccessRequest { request_id: "self-grant".into(), certificate_sha256: vec![0; 32], name: "me".into(), roles: vec!["admin".into()], ..Default::default() })
        .await;
    assert_status(stranger_grant, Code::PermissionDenied, "admin");

    let log = leaves(node).await;
    let clerk_refusals = refusals_by(&log, &clerk);
    assert!(clerk_refusals.iter().any(|(action, _)| action == "/kyso.v1.SigningService/Certify"), "{clerk_refusals:?}");
    assert!(clerk_refusals.iter().any(|(action, _)| action == "/kyso.v1.ArchiveService/UploadDossier"), "a service-level refusal is logged too: {clerk_refusals:?}");
    assert_eq!(refusals_by(&log, &stranger).len(), 3, "dossier, bulk verify and self-grant");
    assert_eq!(refusals_by(&log, &verifier).len(), 1);
    let operator = kyso::domain::Sha256::digest(&node.tls.operator.cert_der);
    let grants = log.iter().filter(|leaf| matches!(leaf.event, LogEvent::AccessChanged(_)) && leaf.actor.certificate_sha256 == Some(operator)).count();
    assert_eq!(grants, 2, "every grant is a leaf with the admin who made it");
    let registration = log.iter().find(|leaf| matches!(leaf.event, LogEvent::SignerRegistered(_))).unwrap();
    assert_eq!(registration.actor.certificate_sha256, Some(operator), "admin actions carry their actor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_calls_adds_a_bounded_number_of_log_entries() {
    let fixture = fixture("refusal_audits_per_client_per_minute_max = 3\nrefusal_audits_per_minute_max = 5\n");
    let node = &fixture.node;
    let before = leaves(node).await.len();
    let mut clients = Vec::new();
    for index in 0..3 {
        let client = node.tls.issue_client(&format!("flood {index}"));
        let mut access = pb::access_service_client::AccessServiceClient::new(node.channel_as(&client).await);
        for _ in 0..20 {
            let refused = access.set_access(pb::SetAccessRequest { request_id: "flood".into(), ..Default::default() }).await;
            assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
        }
        clients.push(client);
    }
    let after = leaves(node).await;
    assert_eq!(after.len() - before, 5, "60 refusals, at most 5 entries a minute for the node");
    assert_eq!(refusals_by(&after, &clients[0]).len(), 3, "at most 3 a minute for one client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_signs_only_as_its_own_signer_and_a_request_id_is_bound_to_its_caller() {
    let fixture = fixture("");
    let node = &fixture.node;
    let first = register_signer(node, &fixture.pki.issue(&signer_spec("Người Ký Một", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let second = register_signer(node, &fixture.pki.issue(&signer_spec("Người Ký Hai", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let leader = node.tls.issue_client("chủ tịch xã");
    grant(node, &leader, &["signer"], &[], &[&first.signer_id]).await;
    let content = document(5, 1000);
    upload(node, "d-own", AGENCY, &[("a.pdf", &content)]).await.unwrap();
    let mut signing = pb::signing_service_client::SigningServiceClient::new(node.channel_as(&leader).await);
    let own = signing.certify(certify_request("c-own", &content, AGENCY, &first.signer_id)).await.unwrap().into_inner();
    assert_status(signing.certify(certify_request("c-other", &content, AGENCY, &second.signer_id)).await, Code::PermissionDenied, "may not sign as signer");
    // Request ids belong to their caller: the operator using the leader's request id is
    // neither handed the leader's answer nor told the id is taken; it is its own request.
    let replay = node.signing().await.certify(certify_request("c-own", &content, AGENCY, &first.signer_id)).await.unwrap().into_inner();
    assert_ne!(replay.lookup_code, own.lookup_code, "another caller's request id is a new request");
    // The signer may revoke its own certification.
    let revoked = signing
        .revoke_certification(pb::RevokeCertificationRequest { request_id: "r-own".into(), lookup_code: own.lookup_code, reason: "ký nhầm".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.status, pb::CertificationStatus::Revoked as i32);
}

// ----- sole control of keys ------------------------------------------------------------

/// Issue 18: a cold node (no key open in memory) hit by 64 certifications for one signer
/// at once runs the 600,000-round PBKDF2 once, not once per call; the other calls wait
/// for that unseal and sign with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_node_unseals_a_signer_key_once_for_64_concurrent_certifications() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut node = TestNode::start_with(
        &dir.path().join("node"),
        &pki.ca_pem_path,
        &format!("metrics_addr = {metrics_addr:?}\n"),
        "client_requests_per_second_max = 100000\n",
    );
    let signer = register_signer(&node, &pki.issue(&signer_spec("Một Lần Mở", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let content = document(41, 2000);
    upload(&node, "d-cold", AGENCY, &[("a.pdf", &content)]).await.unwrap();
    // A restart forgets every opened key: the node is cold.
    node.restart();
    let channel = node.channel().await;
    let calls: Vec<_> = (0..64)
        .map(|index| {
            let request = certify_request(&format!("c-cold-{index}"), &content, AGENCY, &signer.signer_id);
            let channel = channel.clone();
            tokio::spawn(async move { pb::signing_service_client::SigningServiceClient::new(channel).certify(request).await })
        })
        .collect();
    let mut codes = std::collections::BTreeSet::new();
    for call in calls {
        codes.insert(call.await.unwrap().unwrap().into_inner().lookup_code);
    }
    assert_eq!(codes.len(), 64, "every call certified on its own");
    let exposition = http_get(&format!("http://{metrics_addr}/metrics")).await;
    let unseals: Vec<&str> = exposition.lines().filter(|line| line.starts_with("kyso_signer_key_unseals_total ")).collect();
    assert_eq!(unseals, vec!["kyso_signer_key_unseals_total 1"], "{exposition}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_lock_the_key_until_an_admin_unlocks_it_and_a_batch_unlocks_once() {
    let fixture = fixture("");
    let node = &fixture.node;
    let signer = register_signer(node, &fixture.pki.issue(&signer_spec("Khóa Mã PIN", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let documents: Vec<Vec<u8>> = (0..3).map(|index| document(20 + index, 1500)).collect();
    let files: Vec<(&str, &[u8])> = documents.iter().map(|content| ("a.pdf", content.as_slice())).collect();
    upload(node, "d-pin", AGENCY, &files).await.unwrap();
    let mut signing = node.signing().await;
    let mut without_pin = certify_request("c-nopin", &documents[0], AGENCY, &signer.signer_id);
    without_pin.pin.clear();
    assert_status(signing.certify(without_pin).await, Code::InvalidArgument, "pin");
    for attempt in 1..=5u32 {
        let mut wrong = certify_request(&format!("c-wrong-{attempt}"), &documents[0], AGENCY, &signer.signer_id);
        wrong.pin = format!("wrong-pin-{attempt}");
        let expected = if attempt < 5 { "wrong pin" } else { "locked" };
        assert_status(signing.certify(wrong).await, Code::PermissionDenied, expected);
    }
    assert_status(signing.certify(certify_request("c-locked", &documents[0], AGENCY, &signer.signer_id)).await, Code::PermissionDenied, "locked");
    pb::signing_service_client::SigningServiceClient::new(node.channel().await)
        .unlock_signer(pb::UnlockSignerRequest { request_id: "unlock-1".into(), signer_id: signer.signer_id.clone() })
        .await
        .unwrap();
    let batch = signing
        .certify_batch(pb::CertifyBatchRequest {
            request_id: "batch-pin".into(),
            items: documents.iter().map(|content| certify_request("", content, AGENCY, &signer.signer_id)).collect(),
            pin: TEST_PIN.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.certifications.len(), 3);
    let log = leaves(node).await;
    let rejected: Vec<(u32, bool)> = log
        .iter()
        .filter_map(|leaf| match &leaf.event {
            LogEvent::PinRejected { failures, locked, .. } => Some((*failures, *locked)),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, vec![(1, false), (2, false), (3, false), (4, false), (5, true)]);
    assert!(log.iter().any(|leaf| matches!(&leaf.event, LogEvent::SignerUnlocked { signer_id } if *signer_id == signer.signer_id)));

    // The batch left the key open in memory (limits.unlocked_key_seconds_max): a wrong PIN
    // still takes the full unlock and is counted; the right one signs.
    let mut wrong = certify_request("c-wrong-held", &documents[0], AGENCY, &signer.signer_id);
    wrong.pin = "wrong-pin-held".into();
    assert_status(signing.certify(wrong).await, Code::PermissionDenied, "wrong pin");
    signing.certify(certify_request("c-right-held", &documents[0], AGENCY, &signer.signer_id)).await.unwrap();

    // The signer changes its PIN: the old one stops working.
    let changed = signing
        .change_signer_pin(pb::ChangeSignerPinRequest {
            request_id: "pin-change".into(),
            signer_id: signer.signer_id.clone(),
            pin: TEST_PIN.into(),
            new_pin: "chỉ tôi biết 2026".into(),
        })
        .await;
    assert!(changed.is_ok(), "{changed:?}");
    let extra = document(30, 700);
    upload(node, "d-pin-2", AGENCY, &[("b.pdf", &extra)]).await.unwrap();
    assert_status(signing.certify(certify_request("c-old-pin", &extra, AGENCY, &signer.signer_id)).await, Code::PermissionDenied, "wrong pin");
    let mut new_pin = certify_request("c-new-pin", &extra, AGENCY, &signer.signer_id);
    new_pin.pin = "chỉ tôi biết 2026".into();
    signing.certify(new_pin).await.unwrap();
}

/// Every value a PIN could leave at rest through a careless hash: the PIN itself, its
/// SHA-256 (raw and hex), HMAC-SHA256 with the PIN as key or as message (under the master
/// key, the signer id, nothing), and the request fingerprints a PIN-bearing request would
/// have had if the PIN were part of it (before and after binding to the caller).
fn pin_derived_values(pins: &[&str], signer_id: &str, master_key: &[u8], actor_part: &[u8]) -> Vec<(String, Vec<u8>)> {
    use kyso::service::fingerprint;
    let hmac = |key: &[u8], message: &[u8]| ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), message).as_ref().to_vec();
    let mut values = Vec::new();
    for pin in pins {
        let bytes = pin.as_bytes();
        let sha = sha256(bytes);
        values.push((format!("{pin:?} itself"), bytes.to_vec()));
        values.push((format!("sha256({pin:?})"), sha.clone()));
        values.push((format!("hex sha256({pin:?})"), hex::encode(&sha).into_bytes()));
        values.push((format!("fingerprint([{pin:?}])"), fingerprint(&[bytes]).to_vec()));
        for (name, other) in [("empty", &b""[..]), ("signer id", signer_id.as_bytes()), ("master key", master_key)] {
            values.push((format!("hmac(key={pin:?}, {name})"), hmac(bytes, other)));
            values.push((format!("hmac(key={name}, {pin:?})"), hmac(other, bytes)));
        }
        for new_pin in pins {
            let change = fingerprint(&[b"change-pin", signer_id.as_bytes(), bytes, new_pin.as_bytes()]);
            values.push((format!("change-pin fingerprint {pin:?}->{new_pin:?}"), change.to_vec()));
            values.push((format!("bound change-pin fingerprint {pin:?}->{new_pin:?}"), fingerprint(&[&change, actor_part]).to_vec()));
        }
    }
    values
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Every regular file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pin_or_pin_derived_value_reaches_the_state_file_a_snapshot_or_the_raft_log() {
    use kyso_cluster::StateMachine as _;
    const NEW_PIN: &str = "mã mới của tôi 77";
    const WRONG_PIN: &str = "not-the-pin-1357";
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 1, "");
    let mut node = layout.start_all().pop().unwrap();
    wait_for_leader(std::slice::from_ref(&node), Duration::from_secs(60)).await;
    let signer = register_signer(&node, &layout.pki.issue(&signer_spec("Giữ Bí Mật", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let content = document(40, 900);
    upload(&node, "d-at-rest", AGENCY, &[("a.pdf", &content)]).await.unwrap();
    let mut signing = node.signing().await;
    let mut wrong = certify_request("c-rest-wrong", &content, AGENCY, &signer.signer_id);
    wrong.pin = WRONG_PIN.into();
    assert_status(signing.certify(wrong).await, Code::PermissionDenied, "wrong pin");
    let change = |new_pin: &str| pb::ChangeSignerPinRequest {
        request_id: "pin-at-rest".into(),
        signer_id: signer.signer_id.clone(),
        pin: TEST_PIN.into(),
        new_pin: new_pin.into(),
    };
    signing.change_signer_pin(change(NEW_PIN)).await.unwrap();
    // A retry with the same id answers as the first call did only if it names the PIN
    // now in force: the fingerprint no longer tells the two apart, the sealed key does.
    signing.change_signer_pin(change(NEW_PIN)).await.unwrap();
    assert_status(signing.change_signer_pin(change("một mã khác 99")).await, Code::PermissionDenied, "wrong pin");
    let mut with_new = certify_request("c-rest-new", &content, AGENCY, &signer.signer_id);
    with_new.pin = NEW_PIN.into();
    signing.certify(with_new).await.unwrap();
    node.stop();

    let data = node.dir.join("data");
    let state = kyso::state::StateStore::open(&data.join("state.redb")).unwrap();
    // The bytes a Raft snapshot streams to a member, gathered.
    let mut snapshot = Vec::new();
    state
        .snapshot()
        .unwrap()
        .read(64 * 1024, &mut |piece| {
            snapshot.extend_from_slice(&piece);
            Ok(())
        })
        .unwrap();
    drop(state);
    let mut stored: Vec<(String, Vec<u8>)> = vec![
        ("state.redb".into(), std::fs::read(data.join("state.redb")).unwrap()),
        ("a state snapshot".into(), snapshot.to_vec()),
    ];
    let raft_files = files_under(&data.join("raft"));
    assert!(!raft_files.is_empty(), "the node wrote no raft log under {}", data.display());
    stored.extend(raft_files.into_iter().map(|(path, bytes)| (path.display().to_string(), bytes)));

    let master_key = std::fs::read(layout.dir.join("shared/master.key")).unwrap();
    let actor_part = sha256(&layout.tls.operator.cert_der);
    // The search finds a request fingerprint where one is stored: the change-PIN request's
    // own (without PINs) is in the state file, the snapshot and the log.
    let control = kyso::service::fingerprint(&[&kyso::service::fingerprint(&[b"change-pin", signer.signer_id.as_bytes()]), &actor_part]);
    for (name, bytes) in &stored[..2] {
        assert!(contains(bytes, &control), "the search is blind: the change-pin fingerprint is not found in {name}");
    }
    assert!(stored[2..].iter().any(|(_, bytes)| contains(bytes, &control)), "the search is blind: no raft file holds the change-pin fingerprint");
    let suspects = pin_derived_values(&[TEST_PIN, NEW_PIN, WRONG_PIN, "một mã khác 99"], &signer.signer_id, &master_key, &actor_part);
    for (name, bytes) in &stored {
        for (what, value) in &suspects {
            assert!(!contains(bytes, value), "{name} holds {what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_key_without_a_pin_or_with_a_short_one_is_refused() {
    let fixture = fixture("");
    let issued = fixture.pki.issue(&signer_spec("Không PIN", KeyAlgorithm::EcdsaP256));
    for (pin, needle) in [("", "pin"), ("1234", "8-128 characters")] {
        let result = fixture
            .node
            .signing()
            .await
            .register_signer(pb::RegisterSignerRequest {
                request_id: format!("nopin-{}", pin.len()),
                name: "X".into(),
                title: "Y".into(),
                agency_ids: vec![AGENCY.into()],
                certificate_chain: issued.cert_pem().into_bytes(),
                private_key_pkcs8: issued.key_pem().as_bytes().to_vec(),
                pin: pin.into(),
            })
            .await;
        assert_status(result, Code::InvalidArgument, needle);
    }
}

// ----- client-side signing ---------------------------------------------------------------

fn openssl_sign(dir: &std::path::Path, signer: &IssuedCert, content: &[u8], name: &str) -> Vec<u8> {
    let (cert, key, doc, out) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")), dir.join(format!("{name}.doc")), dir.join(format!("{name}.p7s")));
    std::fs::write(&cert, signer.cert_pem()).unwrap();
    std::fs::write(&key, signer.key_pem().as_bytes()).unwrap();
    std::fs::write(&doc, content).unwrap();
    let output = Command::new("openssl")
        .args(["cms", "-sign", "-binary", "-cades", "-nosmimecap", "-md", "sha256", "-outform", "DER", "-in"])
        .arg(&doc)
        .arg("-signer")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .output()
        .expect("openssl is required: install it (apt-get install -y openssl) or run ./scripts/test.sh");
    assert!(output.status.success(), "openssl cms -sign failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::read(out).unwrap()
}

/// The CMS with its ECDSA P-256 signature (r, s) replaced by (r, n - s): the same
/// signature in other bytes.
fn with_negated_ecdsa_s(cms_der: &[u8]) -> Vec<u8> {
    use der::{Decode, Encode};
    const ORDER: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA, 0xAD,
        0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
    ];
    #[derive(der::Sequence)]
    struct EcdsaSignature<'a> {
        r: der::asn1::UintRef<'a>,
        s: der::asn1::UintRef<'a>,
    }
    let mut content_info = cms::content_info::ContentInfo::from_der(cms_der).unwrap();
    let mut signed_data: cms::signed_data::SignedData = content_info.content.decode_as().unwrap();
    let mut signer_infos = signed_data.signer_infos.0.into_vec();
    let value = signer_infos[0].signature.as_bytes().to_vec();
    let signature = EcdsaSignature::from_der(&value).unwrap();
    let mut s_value = [0u8; 32];
    s_value[32 - signature.s.as_bytes().len()..].copy_from_slice(signature.s.as_bytes());
    let mut negated = [0u8; 32];
    let mut borrow = 0i16;
    for index in (0..32).rev() {
        let difference = ORDER[index] as i16 - s_value[index] as i16 - borrow;
        borrow = i16::from(difference < 0);
        negated[index] = (difference + 256 * borrow) as u8;
    }
    let replaced = EcdsaSignature { r: signature.r, s: der::asn1::UintRef::new(&negated).unwrap() };
    signer_infos[0].signature = der::asn1::OctetString::new(replaced.to_der().unwrap()).unwrap();
    signed_data.signer_infos = cms::signed_data::SignerInfos::try_from(signer_infos).unwrap();
    content_info.content = der::Any::encode_from(&signed_data).unwrap();
    content_info.to_der().unwrap()
}

fn submit_request(request_id: &str, content: &[u8], signer_id: &str, cms_signature: Vec<u8>) -> pb::SubmitSignatureRequest {
    pb::SubmitSignatureRequest {
        request_id: request_id.into(),
        document_sha256: sha256(content),
        kind: pb::CertificationKind::Result as i32,
        agency_id: AGENCY.into(),
        signer_id: signer_id.into(),
        dossier_id: String::new(),
        cms_signature,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_signature_is_checked_then_recorded_and_forged_or_reused_ones_are_refused() {
    let fixture = fixture("");
    let node = &fixture.node;
    let token = fixture.pki.issue(&signer_spec("Ký Bằng Token", KeyAlgorithm::EcdsaP256));
    // The node holds no key for this signer: it signs only client-side.
    let signer = node
        .signing()
        .await
        .register_signer(pb::RegisterSignerRequest {
            request_id: "token-signer".into(),
            name: "Ký Bằng Token".into(),
            title: "Chủ tịch UBND xã".into(),
            agency_ids: vec![AGENCY.into()],
            certificate_chain: token.cert_pem().into_bytes(),
            private_key_pkcs8: vec![],
            pin: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!signer.has_server_key);
    let (content, other) = (document(40, 5000), document(41, 5000));
    upload(node, "d-token", AGENCY, &[("a.pdf", &content), ("b.pdf", &other)]).await.unwrap();
    let work = fixture.dir.path();
    let signature = openssl_sign(work, &token, &content, "good");
    let mut signing = node.signing().await;
    let recorded = signing.submit_signature(submit_request("s-1", &content, &signer.signer_id, signature.clone())).await.unwrap().into_inner();
    let answer = verify_hash(node, &content).await;
    assert_eq!(answer.certifications[0].summary, "valid");
    assert_eq!(answer.certifications[0].certification.as_ref().unwrap().lookup_code, recorded.lookup_code);

    // Re-used: the same signature again, under a new request id.
    assert_status(signing.submit_signature(submit_request("s-2", &content, &signer.signer_id, signature.clone())).await, Code::AlreadyExists, "already recorded");
    // The same signature with its ECDSA value made high-s: other bytes, still valid.
    let malleated = with_negated_ecdsa_s(&signature);
    assert_ne!(malleated, signature);
    kyso::crypto::verify_detached(&malleated, &content).expect("the malleated signature still verifies");
    assert_status(signing.submit_signature(submit_request("s-2b", &content, &signer.signer_id, malleated)).await, Code::AlreadyExists, "already records a signature");
    // A fresh signature of the first document, moved to another one.
    let moved = openssl_sign(work, &token, &content, "moved");
    assert_status(signing.submit_signature(submit_request("s-3", &other, &signer.signer_id, moved)).await, Code::InvalidArgument, "does not verify");
    // Forged: one byte of the signature value changed (the ECDSA signature is at the end).
    let mut forged = openssl_sign(work, &token, &other, "forged");
    let last = forged.len() - 3;
    forged[last] ^= 0x01;
    assert_status(signing.submit_signature(submit_request("s-4", &other, &signer.signer_id, forged)).await, Code::InvalidArgument, "does not verify");
    // Made with another (valid, trusted) certificate than the signer's registered one.
    let impostor = fixture.pki.issue(&signer_spec("Ký Bằng Token", KeyAlgorithm::EcdsaP256));
    let foreign = openssl_sign(work, &impostor, &other, "impostor");
    assert_status(signing.submit_signature(submit_request("s-5", &other, &signer.signer_id, foreign)).await, Code::InvalidArgument, "another certificate");
    // Garbage and truncated signatures.
    assert_status(signing.submit_signature(submit_request("s-6", &other, &signer.signer_id, b"not cms".to_vec())).await, Code::InvalidArgument, "does not verify");
    let truncated = signature[..signature.len() / 2].to_vec();
    assert_status(signing.submit_signature(submit_request("s-7", &content, &signer.signer_id, truncated)).await, Code::InvalidArgument, "does not verify");
    assert_eq!(verify_hash(node, &content).await.certifications.len(), 1, "nothing refused was recorded");
}

// ----- revocation by CRL -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_invalidates_signatures_made_after_its_revocation_time_only() {
    let fixture = fixture("");
    let node = &fixture.node;
    let issued = fixture.pki.issue(&signer_spec("Bị Thu Hồi", KeyAlgorithm::EcdsaP256));
    let signer = register_signer(node, &issued, &[AGENCY]).await.unwrap();
    let (before, after, later) = (document(50, 900), document(51, 900), document(52, 900));
    upload(node, "d-crl", AGENCY, &[("a.pdf", &before), ("b.pdf", &after), ("c.pdf", &later)]).await.unwrap();
    let mut signing = node.signing().await;
    let first = signing.certify(certify_request("c-before", &before, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = signing.certify(certify_request("c-after", &after, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let revoked_at = second.signed_at_unix - 1;
    assert!(first.signed_at_unix < revoked_at);

    let entry = CrlEntrySpec { certificate_der: issued.cert_der.clone(), revoked_at_unix: revoked_at, reason_code: Some(1) };
    let crl = devpki::issue_crl(&fixture.pki.ca, &[entry.clone()], now_unix(), 86_400).unwrap();
    // A CRL from another CA, and a truncated one, are refused.
    let other_ca = devpki::self_signed_ca(&ca_spec("kyso test CA")).unwrap();
    let forged = devpki::issue_crl(&other_ca, &[entry], now_unix(), 86_400).unwrap();
    assert_status(signing.import_crl(pb::ImportCrlRequest { request_id: "crl-forged".into(), crl: forged }).await, Code::FailedPrecondition, "no trusted ca");
    assert_status(signing.import_crl(pb::ImportCrlRequest { request_id: "crl-cut".into(), crl: crl[..crl.len() - 10].to_vec() }).await, Code::InvalidArgument, "malformed crl");
    let pem = pem::encode(&pem::Pem::new("X509 CRL", crl));
    let imported = signing.import_crl(pb::ImportCrlRequest { request_id: "crl-1".into(), crl: pem.into_bytes() }).await.unwrap().into_inner();
    assert_eq!(imported.revoked.len(), 1);
    assert_eq!(imported.revoked[0].signer_id, signer.signer_id);
    assert_eq!(imported.revoked[0].reason, "keyCompromise");

    let early = verify_hash(node, &before).await;
    let early = &early.certifications[0];
    assert!(early.summary.starts_with("valid: signed at") && early.summary.contains("keyCompromise"), "{}", early.summary);
    assert_eq!(early.signer_revocation.as_ref().unwrap().revoked_at_unix, revoked_at);
    let late = verify_hash(node, &after).await;
    let late = &late.certifications[0];
    assert!(late.summary.starts_with("invalid: the signer's certificate was revoked") && late.summary.contains("before this signature"), "{}", late.summary);

    assert_status(signing.certify(certify_request("c-later", &later, AGENCY, &signer.signer_id)).await, Code::PermissionDenied, "revoked");
    let log = leaves(node).await;
    assert!(log.iter().any(|leaf| matches!(&leaf.event, LogEvent::SignerCertificateRevoked(revocation) if revocation.signer_id == signer.signer_id)));
}

// ----- hostile input ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_upload_streams_are_cut_and_oversize_messages_refused() {
    let fixture = fixture("upload_stream_seconds_max = 2\nupload_chunk_size_bytes_max = 1024\ngrpc_message_size_bytes_max = 70000\nverify_message_size_bytes_max = 70000\nverify_stream_requests_max = 3\n");
    let node = &fixture.node;
    // An upload that trickles forever.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut messages = upload_messages("endless", AGENCY, &[("a.pdf", b"x")], 1);
    messages.truncate(2);
    for message in messages {
        sender.send(message).await.unwrap();
    }
    let trickle = tokio::spawn(async move {
        use pb::upload_dossier_request::Part;
        for _ in 0..600 {
            if sender.send(pb::UploadDossierRequest { part: Some(Part::Chunk(vec![7; 10])) }).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = std::time::Instant::now();
    let result = node.archive().await.upload_dossier(tokio_stream::wrappers::ReceiverStream::new(receiver)).await;
    assert_status(result, Code::DeadlineExceeded, "more than 2 s");
    assert!(started.elapsed() < Duration::from_secs(20), "cut after {:?}", started.elapsed());
    trickle.abort();
    // A Verify message over verify_message_size_bytes_max.
    let big = node
        .verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(Subject::File(vec![1; 100_000])), correlation_id: String::new(), ..Default::default() })
        .await;
    assert_status(big, Code::OutOfRange, "message length too large");
    // A VerifyStream longer than verify_stream_requests_max: three answers, then the stream ends.
    let requests: Vec<pb::VerifyRequest> = (0..5u8)
        .map(|index| pb::VerifyRequest { subject: Some(Subject::Sha256(vec![index; 32])), correlation_id: index.to_string(), ..Default::default() })
        .collect();
    let mut answers = node.verification().await.verify_stream(futures::stream::iter(requests)).await.unwrap().into_inner();
    for index in 0..3 {
        let answer = answers.message().await.unwrap().unwrap();
        assert_eq!(answer.correlation_id, index.to_string());
        assert_eq!(answer.error_code, Code::NotFound as i32, "each unknown document is answered in the stream");
    }
    assert_status(answers.message().await, Code::ResourceExhausted, "at most 3 documents");
    // An overlong correlation id.
    let long_id = node
        .verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(Subject::Sha256(vec![0; 32])), correlation_id: "x".repeat(200), ..Default::default() })
        .await;
    assert_status(long_id, Code::InvalidArgument, "correlation_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_characters_or_paths_and_self_signed_signers_are_refused() {
    let fixture = fixture("");
    let node = &fixture.node;
    let issued = fixture.pki.issue(&signer_spec("Tên Xấu", KeyAlgorithm::EcdsaP256));
    for (name, agency, needle) in [("Trần\u{7}Bình", AGENCY, "a control character (U+0007)"), ("Trần Bình", "../xa", "looks like a path")] {
        let result = node
            .signing()
            .await
            .register_signer(pb::RegisterSignerRequest {
                request_id: format!("bad-name-{}", name.len() + agency.len()),
                name: name.into(),
                title: "Y".into(),
                agency_ids: vec![agency.into()],
                certificate_chain: issued.cert_pem().into_bytes(),
                private_key_pkcs8: vec![],
                pin: String::new(),
            })
            .await;
        assert_status(result, Code::InvalidArgument, needle);
    }
    let traversal = upload(node, "trav-2", AGENCY, &[("..\\..\\windows\\system.ini", b"x")]).await;
    assert_status(traversal, Code::InvalidArgument, "path");
    let control = upload(node, "ctrl", AGENCY, &[("a\u{0}.pdf", b"x")]).await;
    assert_status(control, Code::InvalidArgument, "a control character (U+0000)");
    let mut spec = signer_spec("Tự Ký", KeyAlgorithm::EcdsaP256);
    spec.key_usage = kyso::crypto::devpki::KeyUsages::SIGNER;
    let self_signed = devpki::self_signed(&spec).unwrap();
    assert_status(register_signer(node, &self_signed, &[AGENCY]).await, Code::FailedPrecondition, "self-signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_request_rate_is_slowed_down() {
    let fixture = fixture("client_requests_per_second_max = 5\n");
    let node = &fixture.node;
    let mut access = pb::access_service_client::AccessServiceClient::new(node.channel().await);
    let mut refused = 0;
    for _ in 0..30 {
        if let Err(status) = access.who_am_i(pb::WhoAmIRequest {}).await {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(status.message().contains("requests per second"));
            refused += 1;
        }
    }
    assert!(refused >= 10, "only {refused} of 30 back-to-back calls were refused at 5 per second");
    let other = node.tls.issue_client("another desk");
    let mut separate = pb::access_service_client::AccessServiceClient::new(node.channel_as(&other).await);
    assert!(separate.who_am_i(pb::WhoAmIRequest {}).await.is_ok(), "each client has its own budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_master_key_reseals_each_signer_key_at_its_next_use() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node_dir = dir.path().join("node");
    let mut node = TestNode::start(&node_dir, &pki.ca_pem_path, "");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Xoay Khóa", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let documents: Vec<Vec<u8>> = (0..3).map(|index| document(60 + index, 800)).collect();
    let files: Vec<(&str, &[u8])> = documents.iter().map(|content| ("a.pdf", content.as_slice())).collect();
    upload(&node, "d-rotate", AGENCY, &files).await.unwrap();
    node.stop();
    let data = node_dir.join("data");
    std::fs::rename(data.join("master.key"), data.join("master.old.key")).unwrap();

    // A fresh master key alone cannot open the key, and says why (no PIN was counted).
    let mut node = TestNode::start(&node_dir, &pki.ca_pem_path, "");
    let refused = node.signing().await.certify(certify_request("c-rot-0", &documents[0], AGENCY, &signer.signer_id)).await;
    assert_status(refused, Code::FailedPrecondition, "another master key");
    node.stop();

    let mut node = TestNode::start_with(&node_dir, &pki.ca_pem_path, "previous_master_key_file = \"master.old.key\"", "");
    node.signing().await.certify(certify_request("c-rot-1", &documents[1], AGENCY, &signer.signer_id)).await.unwrap();
    assert!(leaves(&node).await.iter().any(|leaf| matches!(&leaf.event, LogEvent::SignerKeyReplaced { signer_id } if *signer_id == signer.signer_id)));
    node.stop();

    std::fs::remove_file(data.join("master.old.key")).unwrap();
    let node = TestNode::start(&node_dir, &pki.ca_pem_path, "");
    node.signing().await.certify(certify_request("c-rot-2", &documents[2], AGENCY, &signer.signer_id)).await.unwrap();
}

/// Certify signs and verify checks from the document's SHA-256 for ECDSA and RSA signers;
/// an Ed25519 signer digests with SHA-512, so both go over the bytes. Each kind certifies
/// and verifies as valid; openssl accepts the ECDSA CMS (OpenSSL 3.0's CMS verify refuses
/// every Ed25519 signature: "eddsa_digest_signverify_init: invalid digest").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signers_of_every_key_kind_certify_and_verify_whether_or_not_their_digest_is_sha256() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    for (index, (name, algorithm)) in [("Khóa Ed", KeyAlgorithm::Ed25519), ("Khóa Ec", KeyAlgorithm::EcdsaP256)].into_iter().enumerate() {
        let issued = pki.issue(&signer_spec(name, algorithm));
        let signer = register_signer(&node, &issued, &[AGENCY]).await.unwrap();
        let content = document(60 + index as u8, 3_000);
        upload(&node, &format!("d-kind-{index}"), AGENCY, &[("a.bin", &content)]).await.unwrap();
        let certified = node.signing().await.certify(certify_request(&format!("c-kind-{index}"), &content, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
        let answer = verify_hash(&node, &content).await;
        assert_eq!(answer.certifications.len(), 1, "{algorithm:?}");
        assert_eq!(answer.certifications[0].summary, "valid", "{algorithm:?}: {:?}", answer.certifications[0]);
        if algorithm == KeyAlgorithm::Ed25519 {
            continue;
        }
        let (cms_path, content_path) = (dir.path().join(format!("kind-{index}.p7s")), dir.path().join(format!("kind-{index}.bin")));
        std::fs::write(&cms_path, &certified.cms_signature).unwrap();
        std::fs::write(&content_path, &content).unwrap();
        let (ok, output) = tool_with_env(
            "openssl",
            &["cms", "-verify", "-binary", "-inform", "DER", "-in", cms_path.to_str().unwrap(), "-content", content_path.to_str().unwrap(), "-CAfile", pki.ca_pem_path.to_str().unwrap(), "-purpose", "any", "-out", "/dev/null"],
            &[],
        );
        assert!(ok && output.contains("Verification successful"), "{algorithm:?}: openssl cms -verify:\n{output}");
    }
}

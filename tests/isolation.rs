//! Agencies kept apart and nodes kept in their lane (issue 22), each attack tried on real
//! `kyso node` processes: cross-agency reads and certifications, node certificates that
//! are not bound to a member, forged forwarded commands, slow clients holding upload slots
//! or the HTTP port, request ids answered to another caller, loose key files, and a CRL of
//! a CA that merely shares the signer's issuer name.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kyso::access::{Actor, Principal, Role};
use kyso::crypto::devpki::{self, CrlEntrySpec, IssuedCert};
use kyso::crypto::KeyAlgorithm;
use kyso::state::command::COMMAND_VERSION;
use kyso::state::{Command as StateCommand, CommandEnvelope, LogEvent, LogLeaf};
use kyso_proto::v1 as pb;
use tonic::Code;

const AGENCY_A: &str = "xa-an-binh";
const AGENCY_B: &str = "xa-binh-an";

async fn get_blob_as(node: &TestNode, client: &IssuedCert, content: &[u8]) -> Result<Vec<u8>, tonic::Status> {
    let mut archive = pb::archive_service_client::ArchiveServiceClient::new(node.channel_as(client).await);
    let mut stream = archive.get_blob(pb::GetBlobRequest { sha256: sha256(content) }).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes)
}

async fn leaves(node: &TestNode) -> Vec<LogLeaf> {
    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let size = log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner().tree_size;
    let entries = log.get_entries(pb::GetEntriesRequest { start: 0, end: size }).await.unwrap().into_inner().entries;
    entries.iter().map(|entry| LogLeaf::decode(&entry.leaf_data).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_read_and_certify_only_their_own_documents() {
    let fixture = fixture("");
    let node = &fixture.node;
    let signer_a = register_signer(node, &fixture.pki.issue(&signer_spec("Người Ký A", KeyAlgorithm::EcdsaP256)), &[AGENCY_A]).await.unwrap();
    let file_a = document(1, 3000);
    let file_b = document(2, 3000);
    upload(node, "dossier-a", AGENCY_A, &[("a.pdf", &file_a)]).await.unwrap();
    let dossier_b = upload(node, "dossier-b", AGENCY_B, &[("b.pdf", &file_b)]).await.unwrap();

    // A clerk of agency A reads A's file, never B's (whose hash is public in the log).
    let clerk_a = node.tls.issue_client("clerk A");
    grant(node, &clerk_a, &["clerk"], &[AGENCY_A], &[]).await;
    assert_eq!(get_blob_as(node, &clerk_a, &file_a).await.unwrap(), file_a);
    assert_status(get_blob_as(node, &clerk_a, &file_b).await, Code::PermissionDenied, "only documents of its own agencies");

    // A signer of agency A reads what its agency archived, not B's; a verifier granted
    // agency B reads B's files only.
    let signer_client = node.tls.issue_client("chủ tịch xã A");
    grant(node, &signer_client, &["signer"], &[], &[&signer_a.signer_id]).await;
    assert_eq!(get_blob_as(node, &signer_client, &file_a).await.unwrap(), file_a);
    assert_status(get_blob_as(node, &signer_client, &file_b).await, Code::PermissionDenied, "only documents of its own agencies");
    let verifier_b = node.tls.issue_client("verifier B");
    grant(node, &verifier_b, &["verifier"], &[AGENCY_B], &[]).await;
    assert_eq!(get_blob_as(node, &verifier_b, &file_b).await.unwrap(), file_b);
    assert_status(get_blob_as(node, &verifier_b, &file_a).await, Code::PermissionDenied, "only documents of its own agencies");

    // The signer of agency A cannot certify B's file under A, by hash or naming B's dossier.
    let mut signing = pb::signing_service_client::SigningServiceClient::new(node.channel_as(&signer_client).await);
    let by_hash = signing.certify(certify_request("cross-hash", &file_b, AGENCY_A, &signer_a.signer_id)).await;
    assert_status(by_hash, Code::PermissionDenied, "not a file of any dossier of agency xa-an-binh");
    let mut naming_dossier = certify_request("cross-dossier", &file_b, AGENCY_A, &signer_a.signer_id);
    naming_dossier.dossier_id = dossier_b.dossier_id.clone();
    assert_status(signing.certify(naming_dossier).await, Code::PermissionDenied, "not a file of dossier");
    // Its own agency's file certifies, and nothing of B reached the log.
    signing.certify(certify_request("own", &file_a, AGENCY_A, &signer_a.signer_id)).await.unwrap();
    let certified: Vec<Vec<u8>> = leaves(node)
        .await
        .into_iter()
        .filter_map(|leaf| match leaf.event {
            LogEvent::Certification(certification) => Some(certification.document_sha256.0.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(certified, vec![sha256(&file_a)], "only agency A's own file was certified");
    // Once a signer certified B's file for B (a signer of both), a signer of A still cannot read it.
    let signer_b = register_signer(node, &fixture.pki.issue(&signer_spec("Người Ký B", KeyAlgorithm::EcdsaP256)), &[AGENCY_B]).await.unwrap();
    node.signing().await.certify(certify_request("b-own", &file_b, AGENCY_B, &signer_b.signer_id)).await.unwrap();
    assert_status(get_blob_as(node, &signer_client, &file_b).await, Code::PermissionDenied, "only documents of its own agencies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_pdfs_and_registers_stay_within_their_agency() {
    let fixture = fixture("");
    let node = &fixture.node;
    let signer_a = register_signer(node, &fixture.pki.issue(&signer_spec("Người Ký A", KeyAlgorithm::EcdsaP256)), &[AGENCY_A]).await.unwrap();
    let scan = kyso::cli::dev::sample_pdf("giấy khai sinh");
    upload(node, "dossier-a", AGENCY_A, &[("a.pdf", &scan)]).await.unwrap();
    let certified = node.signing().await.certify(certify_request("pdf-a", &scan, AGENCY_A, &signer_a.signer_id)).await.unwrap().into_inner();
    assert_eq!(certified.register_number, 1, "the scan became a numbered certified pdf");
    let delivered = certified.delivered_pdf_sha256.clone();

    // The delivered PDF is agency A's document: its clerk reads it, B's clerk does not.
    let clerk_a = node.tls.issue_client("clerk A");
    grant(node, &clerk_a, &["clerk"], &[AGENCY_A], &[]).await;
    let clerk_b = node.tls.issue_client("clerk B");
    grant(node, &clerk_b, &["clerk"], &[AGENCY_B], &[]).await;
    let read = |client: &IssuedCert| {
        let (node, client, delivered) = (node, client.clone(), delivered.clone());
        async move {
            let mut archive = pb::archive_service_client::ArchiveServiceClient::new(node.channel_as(&client).await);
            let mut stream = archive.get_blob(pb::GetBlobRequest { sha256: delivered }).await?.into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.message().await? {
                bytes.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(bytes)
        }
    };
    assert!(read(&clerk_a).await.unwrap().starts_with(&scan), "agency A's clerk reads its delivered pdf");
    assert_status(read(&clerk_b).await, Code::PermissionDenied, "only documents of its own agencies");

    // A register lists citizens' documents: a verifier of B cannot page through A's.
    let verifier_b = node.tls.issue_client("verifier B");
    grant(node, &verifier_b, &["verifier"], &[AGENCY_B], &[]).await;
    let year = certified.register_year;
    let register = |client: &IssuedCert, agency: &'static str| {
        let (node, client) = (node, client.clone());
        async move {
            let mut verification = pb::verification_service_client::VerificationServiceClient::new(node.channel_as(&client).await);
            verification.list_register(pb::ListRegisterRequest { agency_id: agency.into(), year, after_number: 0, page_size: 0 }).await
        }
    };
    assert_status(register(&verifier_b, AGENCY_A).await, Code::PermissionDenied, "only the registers of its own agencies");
    let verifier_a = node.tls.issue_client("verifier A");
    grant(node, &verifier_a, &["verifier"], &[AGENCY_A], &[]).await;
    let page = register(&verifier_a, AGENCY_A).await.unwrap().into_inner();
    assert_eq!(page.entries.len(), 1, "A's verifier reads A's register");
}

/// Starts `kyso node --config config` and expects it to refuse to start within the
/// deadline; returns what it printed.
fn refused_start(config: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyso"))
        .args(["node", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut output = String::new();
            child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut output).unwrap();
            assert!(!status.success(), "the node exited successfully: {output}");
            return output;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started although it should have refused to");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn one_member_cluster_config(pki: &TestPki, tls: &TestTls, grpc: u16, raft: u16, tls_toml: &str) -> String {
    format!(
        "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:{grpc}\"\nhttp_addr = \"127.0.0.1:0\"\ntrust_anchor_files = [{:?}]\n{}[limits]\n{TEST_LIMITS}\n\
         [cluster]\nnode_id = 1\nraft_addr = \"127.0.0.1:{raft}\"\ntick_interval_milliseconds = 50\n\
         members = [{{ id = 1, raft_addr = \"127.0.0.1:{raft}\", client_addr = \"127.0.0.1:{grpc}\" }}]\n",
        pki.ca_pem_path.display().to_string(),
        if tls_toml.is_empty() { tls.toml() } else { tls_toml.to_string() },
    )
}

fn forged(actor: Actor, command: StateCommand) -> Vec<u8> {
    CommandEnvelope {
        version: COMMAND_VERSION,
        request_id: format!("forged-{}", now_unix()),
        request_fingerprint: [7; 32],
        issued_at_unix: now_unix(),
        command,
        actor,
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stay_in_their_lane() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let tls = tls_beside(&pki.ca_pem_path);
    let (grpc, raft) = (free_port(), free_port());
    let node = TestNode::start_config(&dir.path().join("node"), &one_member_cluster_config(&pki, &tls, grpc, raft, ""), &tls);
    wait_for_leader(std::slice::from_ref(&node), Duration::from_secs(60)).await;
    let peer_url = format!("https://127.0.0.1:{raft}");
    let forward = |channel: tonic::transport::Channel, command: Vec<u8>| async move {
        pb::node_internal_service_client::NodeInternalServiceClient::new(channel)
            .forward_command(pb::ForwardCommandRequest { command })
            .await
            .map(|response| response.into_inner())
    };
    let probe = forged(Actor::anonymous(), StateCommand::UnlockSigner { signer_id: "x".into() });

    // A cluster-CA certificate that names no node id is no member.
    let now = now_unix();
    let unbound = devpki::issue_tls("no node id", &["127.0.0.1".into()], devpki::TlsUsage::ServerAndClient, now - 60, now + 3600, &tls.cluster_ca).unwrap();
    let channel = tls.channel_as(&peer_url, &unbound).await.unwrap();
    assert_status(forward(channel, probe.clone()).await, Code::PermissionDenied, "needs the role node");
    // A leaf under an intermediate of the cluster CA passes TLS but is no member either.
    let intermediate = devpki::issue(&ca_spec("kyso test cluster intermediate"), &tls.cluster_ca).unwrap();
    let under = devpki::issue_node_tls(1, "under an intermediate", &["127.0.0.1".into()], now - 60, now + 3600, &intermediate).unwrap();
    let chain = format!("{}{}", under.cert_pem(), intermediate.cert_pem());
    let config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(tls.cluster_ca.cert_pem()))
        .identity(tonic::transport::Identity::from_pem(chain, under.key_pem().as_bytes()));
    let channel = tonic::transport::Channel::from_shared(peer_url.clone()).unwrap().tls_config(config).unwrap().connect().await.unwrap();
    assert_status(forward(channel, probe.clone()).await, Code::PermissionDenied, "needs the role node");

    // A member's certificate speaks for that member only: node 2's certificate cannot send
    // Raft traffic as node 3.
    let node_two = node_leaf(2, &tls.cluster_ca);
    let mut raft_client = kyso_cluster::raft::codec::pb::raft_peer_client::RaftPeerClient::new(tls.channel_as(&peer_url, &node_two).await.unwrap());
    let spoofed = kyso_cluster::raft::codec::pb::MessageBatch {
        from: Some(kyso_cluster::raft::codec::pb::PeerAddress { id: 3, raft_addr: "127.0.0.1:1".into(), client_addr: "127.0.0.1:1".into() }),
        to: 1,
        messages: Vec::new(),
    };
    assert_status(raft_client.send(spoofed).await, Code::PermissionDenied, "arrived with node 2's certificate");
    // Node 2 is no member of this cluster: it may not forward commands.
    assert_status(forward(tls.channel_as(&peer_url, &node_two).await.unwrap(), probe.clone()).await, Code::PermissionDenied, "not a member");

    // The member itself forwards only what a grant holder may do, and is named in the log.
    let member = || async { tls.channel_as(&peer_url, &tls.node).await.unwrap() };
    assert_status(forward(member().await, probe).await, Code::PermissionDenied, "only callers with a client certificate");
    let node_actor = Actor { name: "CN=kyso test node 1".into(), certificate_sha256: Some(kyso::domain::Sha256::digest(&tls.node.cert_der)) };
    let stranger = tls.issue_client("stranger");
    let self_grant = StateCommand::SetAccess(Principal {
        certificate_sha256: kyso::domain::Sha256::digest(&stranger.cert_der),
        name: "stranger".into(),
        roles: vec![Role::Admin],
        agency_ids: vec!["*".into()],
        signer_ids: vec!["*".into()],
    });
    assert_status(forward(member().await, forged(node_actor.clone(), self_grant.clone())).await, Code::PermissionDenied, "holds no grant");
    let clerk = tls.issue_client("clerk");
    grant(&node, &clerk, &["clerk"], &["xa-a"], &[]).await;
    let clerk_actor = Actor { name: "CN=clerk".into(), certificate_sha256: Some(kyso::domain::Sha256::digest(&clerk.cert_der)) };
    assert_status(forward(member().await, forged(clerk_actor, self_grant.clone())).await, Code::PermissionDenied, "does not cover");
    let operator_actor = Actor { name: "CN=kyso test operator".into(), certificate_sha256: Some(kyso::domain::Sha256::digest(&tls.operator.cert_der)) };
    forward(member().await, forged(operator_actor, self_grant)).await.expect("an admin's command forwarded by a member is accepted");
    let recorded = leaves(&node).await;
    let forwarded_grant = recorded.iter().find(|leaf| matches!(&leaf.event, LogEvent::AccessChanged(principal) if principal.name == "stranger")).unwrap();
    assert!(forwarded_grant.actor.name.ends_with("[forwarded by node 1]"), "{}", forwarded_grant.actor.name);

    // A membership call made with a node certificate is a log entry too.
    let mut cluster = pb::cluster_service_client::ClusterServiceClient::new(node.channel_as(&tls.node).await);
    cluster.transfer_leader(pb::TransferLeaderRequest { id: 1 }).await.unwrap();
    let changes: Vec<LogLeaf> = leaves(&node).await.into_iter().filter(|leaf| matches!(leaf.event, LogEvent::ClusterChanged { .. })).collect();
    assert!(changes.iter().any(|leaf| leaf.actor.name.contains("kyso test node 1")), "{changes:?}");
    drop(node);

    // A client CA inside the cluster CA's tree (here: the cluster CA itself) is refused at start.
    let overlapping = tls.toml().replace(&format!("client_ca_files = [{:?}]", tls.path("client-ca.pem")), &format!("client_ca_files = [{:?}]", tls.path("cluster-ca.pem")));
    assert!(overlapping.contains("cluster-ca.pem\"]"), "{overlapping}");
    let config_path = dir.path().join("overlap.toml");
    std::fs::write(&config_path, one_member_cluster_config(&pki, &tls, free_port(), free_port(), &overlapping)).unwrap();
    let printed = refused_start(&config_path);
    assert!(printed.contains("overlap"), "{printed}");
    // Node 2's certificate configured as node 1 is refused at start.
    let as_two = tls.toml_for_node(2).replace("[tls]", "[tls]");
    let config_path = dir.path().join("wrong-id.toml");
    std::fs::write(&config_path, one_member_cluster_config(&pki, &tls, free_port(), free_port(), &as_two)).unwrap();
    let printed = refused_start(&config_path);
    assert!(printed.contains("is node 2's certificate but cluster.node_id is 1"), "{printed}");
}

/// An upload stream that sends its metadata and then nothing, until dropped.
async fn stalled_upload(node: &TestNode, client: &IssuedCert, request_id: &str) -> (tokio::task::JoinHandle<Result<tonic::Response<pb::UploadDossierResponse>, tonic::Status>>, tokio::sync::mpsc::Sender<pb::UploadDossierRequest>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut messages = upload_messages(request_id, AGENCY_A, &[("a.pdf", b"x")], 1);
    messages.truncate(2);
    for message in messages {
        sender.send(message).await.unwrap();
    }
    let channel = node.channel_as(client).await;
    let call = tokio::spawn(async move {
        pb::archive_service_client::ArchiveServiceClient::new(channel).upload_dossier(tokio_stream::wrappers::ReceiverStream::new(receiver)).await
    });
    (call, sender)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploaders_give_their_slots_back_and_cannot_take_every_slot() {
    let fixture = fixture("uploads_per_client_max = 2\nupload_grace_seconds = 2\nupload_throughput_bytes_per_second_min = 2000\n");
    let node = &fixture.node;
    let slow = node.tls.issue_client("slow clerk");
    grant(node, &slow, &["clerk"], &[AGENCY_A], &[]).await;
    let started = Instant::now();
    let (first, _keep_first) = stalled_upload(node, &slow, "slow-1").await;
    let (second, _keep_second) = stalled_upload(node, &slow, "slow-2").await;
    // Both slots are the slow clerk's own: wait until the node counts them, then a third is refused at once.
    let mut third = None;
    for _ in 0..100 {
        let (call, _sender) = stalled_upload(node, &slow, "slow-3").await;
        let result = call.await.unwrap();
        if let Err(status) = &result {
            if status.message().contains("uploads in progress") {
                third = Some(result);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_status(third.expect("a third upload is refused while two are held"), Code::ResourceExhausted, "already has 2 uploads in progress");
    // Someone else uploads meanwhile.
    upload(node, "other-clerk", AGENCY_A, &[("b.pdf", &document(9, 50_000))]).await.expect("another client's upload is not blocked");
    // The stalled streams fall below the minimum pace and are cut soon after the grace period.
    assert_status(first.await.unwrap(), Code::ResourceExhausted, "slower than the minimum of 2000 bytes/s");
    assert_status(second.await.unwrap(), Code::ResourceExhausted, "slower than the minimum of 2000 bytes/s");
    assert!(started.elapsed() < Duration::from_secs(40), "cut after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_capped_per_client_certificate() {
    let fixture = fixture("uploads_per_client_max = 8
upload_grace_seconds = 3
calls_in_flight_per_client_max = 2
");
    let node = &fixture.node;
    let slow = node.tls.issue_client("busy clerk");
    grant(node, &slow, &["clerk"], &[AGENCY_A], &[]).await;
    // Two uploads held open: a third call of the same certificate is refused.
    let (held_one, _a) = stalled_upload(node, &slow, "held-1").await;
    let (held_two, _b) = stalled_upload(node, &slow, "held-2").await;
    let mut access = pb::access_service_client::AccessServiceClient::new(node.channel_as(&slow).await);
    let mut refused = None;
    for _ in 0..100 {
        match access.who_am_i(pb::WhoAmIRequest {}).await {
            Err(status) if status.message().contains("calls in flight") => {
                refused = Some(status);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let refused = refused.expect("a call over calls_in_flight_per_client_max is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Another certificate is not affected.
    pb::access_service_client::AccessServiceClient::new(node.channel().await).who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    for held in [held_one, held_two] {
        let _ = held.await;
    }
    access.who_am_i(pb::WhoAmIRequest {}).await.expect("calls are admitted again once the held ones ended");
}

/// Opens a TCP connection to `http_url`'s port.
fn connect(http_url: &str) -> TcpStream {
    let address = http_url.trim_start_matches("http://");
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

/// Reads until the server closes the connection (or the read timeout); returns how long
/// that took and what arrived.
fn wait_closed(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (started.elapsed(), received),
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) if matches!(error.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                return (started.elapsed(), received)
            }
            Err(error) => panic!("the connection was still open after {:?}: {error}", started.elapsed()),
        }
    }
}

fn http_get(http_url: &str, path: &str, forwarded_for: Option<&str>) -> (u16, String) {
    let mut stream = connect(http_url);
    let extra = forwarded_for.map(|address| format!("X-Forwarded-For: {address}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: kyso\r\nConnection: close\r\n{extra}\r\n").unwrap();
    let (_, received) = wait_closed(&mut stream);
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_cannot_hold_the_public_port() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start_with(
        &dir.path().join("node"),
        &pki.ca_pem_path,
        "trusted_proxies = [\"127.0.0.1\"]",
        "http_connections_max = 4\nhttp_header_read_timeout_seconds = 3\nhttp_idle_timeout_seconds = 4\npublic_request_burst_max = 3\npublic_requests_per_minute_max = 1\n",
    );
    let url = node.http_url.clone();
    tokio::task::spawn_blocking(move || {
        // Four silent connections fill the port; a fifth is closed at once.
        let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&url)).collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut fifth = connect(&url);
        let (closed_after, _) = wait_closed(&mut fifth);
        assert!(closed_after < Duration::from_secs(2), "the fifth connection stayed {closed_after:?}");
        // The silent ones are closed by the header or idle timeout.
        for stream in &mut held {
            let (closed_after, _) = wait_closed(stream);
            assert!(closed_after < Duration::from_secs(15), "a silent connection stayed {closed_after:?}");
        }
        // A client trickling its headers byte by byte is cut by the header-read timeout.
        let mut trickle = connect(&url);
        trickle.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let started = Instant::now();
        let mut closed = false;
        for byte in b"GET /healthz HTTP/1.1\r\nHost: kyso\r\nX-Slow: 0123456789012345678901234567890123456789\r\n".iter().take(40) {
            if trickle.write_all(&[*byte]).is_err() {
                closed = true;
                break;
            }
            let mut buffer = [0u8; 64];
            match trickle.read(&mut buffer) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Err(error) if error.kind() != std::io::ErrorKind::WouldBlock && error.kind() != std::io::ErrorKind::TimedOut => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(closed, "a trickling client kept its connection for {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(15), "cut after {:?}", started.elapsed());

        // Every route is rate limited, health and checkpoint included; behind a trusted
        // proxy each forwarded client has its own bucket.
        for _ in 0..3 {
            assert_eq!(http_get(&url, "/healthz", Some("198.51.100.7")).0, 200);
        }
        assert_eq!(http_get(&url, "/healthz", Some("198.51.100.7")).0, 429);
        assert_eq!(http_get(&url, "/checkpoint", Some("198.51.100.7")).0, 429);
        assert_eq!(http_get(&url, "/healthz", Some("198.51.100.8")).0, 200, "another client behind the proxy");
        // A client cannot pick its bucket: only the rightmost, proxy-added address counts.
        assert_eq!(http_get(&url, "/healthz", Some("203.0.113.1, 198.51.100.7")).0, 429);
        // The 429 page links only to this site's canonical paths.
        let (status, page) = http_get(&url, "//evil.example/x", Some("198.51.100.7"));
        assert_eq!(status, 429, "{page}");
        assert!(!page.contains("evil.example"), "the error page echoes the requested path: {page}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_belong_to_their_caller() {
    let fixture = fixture("");
    let node = &fixture.node;
    let first = node.tls.issue_client("clerk one");
    let second = node.tls.issue_client("clerk two");
    grant(node, &first, &["clerk"], &[AGENCY_A], &[]).await;
    grant(node, &second, &["clerk"], &[AGENCY_A], &[]).await;
    let upload_as = |client: &IssuedCert, content: Vec<u8>| {
        let client = client.clone();
        async move {
            let messages = upload_messages("shared-id", AGENCY_A, &[("a.pdf", &content)], 64 * 1024);
            pb::archive_service_client::ArchiveServiceClient::new(node.channel_as(&client).await)
                .upload_dossier(futures::stream::iter(messages))
                .await
                .map(|response| response.into_inner())
        }
    };
    let mine = upload_as(&first, document(1, 500)).await.unwrap();
    // Another caller's use of the same id is its own request: no ALREADY_EXISTS oracle.
    let theirs = upload_as(&second, document(2, 500)).await.unwrap();
    assert_ne!(mine.dossier_id, theirs.dossier_id);
    // A retry by the first caller still gets its own answer, and a different request under
    // its id is refused.
    assert_eq!(upload_as(&first, document(1, 500)).await.unwrap().dossier_id, mine.dossier_id);
    assert_status(upload_as(&first, document(3, 500)).await, Code::AlreadyExists, "request id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_and_loose_key_files_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let fixture = fixture("");
    let mut node = fixture.node;
    let data = node.dir.join("data");
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    node.stop();
    for (file, what) in [(data.join("log.key"), "the log key"), (data.join("master.key"), "the master key"), (node.tls.dir.join("node.key"), "tls.key_file")] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let printed = refused_start(&node.config_path);
        assert!(printed.contains(what) && printed.contains("readable by other users"), "{what}: {printed}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // A data directory opened to others is closed again at start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    node.start_again();
    node.archive().await;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_revokes_only_certificates_its_own_key_issued() {
    let dir = tempdir();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    // Two trusted CAs with the same subject name and different keys.
    let twin_one = devpki::self_signed_ca(&ca_spec("kyso twin CA")).unwrap();
    let twin_two = devpki::self_signed_ca(&ca_spec("kyso twin CA")).unwrap();
    let anchors = pki_dir.join("ca.pem");
    std::fs::write(&anchors, format!("{}{}", twin_one.cert_pem(), twin_two.cert_pem())).unwrap();
    let node = TestNode::start(&dir.path().join("node"), &anchors, "");
    let signer_cert = devpki::issue(&signer_spec("Người Ký Sinh Đôi", KeyAlgorithm::EcdsaP256), &twin_one).unwrap();
    let signer = register_signer(&node, &signer_cert, &[AGENCY_A]).await.unwrap();
    let entry = CrlEntrySpec { certificate_der: signer_cert.cert_der.clone(), revoked_at_unix: now_unix() - 60, reason_code: Some(1) };
    let import = |crl: Vec<u8>, id: &'static str| {
        let node = &node;
        async move {
            node.signing().await.import_crl(pb::ImportCrlRequest { request_id: id.into(), crl }).await.map(|response| response.into_inner())
        }
    };
    // The other twin's CRL names the signer's serial under the same issuer name: it verifies
    // (the twin is trusted) but revokes nothing.
    let foreign = devpki::issue_crl(&twin_two, std::slice::from_ref(&entry), now_unix() - 30, 86_400).unwrap();
    assert!(import(foreign, "crl-twin").await.unwrap().revoked.is_empty(), "another CA's CRL revoked the signer");
    let content = document(4, 800);
    upload(&node, "d-crl", AGENCY_A, &[("a.pdf", &content)]).await.unwrap();
    node.signing().await.certify(certify_request("still-valid", &content, AGENCY_A, &signer.signer_id)).await.expect("the signer still signs");
    // Its own issuer's CRL revokes it.
    let own = devpki::issue_crl(&twin_one, &[entry], now_unix() - 30, 86_400).unwrap();
    let revoked = import(own, "crl-own").await.unwrap().revoked;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].signer_id, signer.signer_id);
}

//! A real 3-node cluster of `kyso node` processes on 127.0.0.1: writes through a
//! follower, a leader killed mid-stream, a full restart, a fourth node catching up through
//! a snapshot after compaction, and a node removed; a token signature prepared on one
//! member completes only there.

mod common;

use std::time::Duration;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use tonic::Code;

const AGENCY: &str = "xa-cum";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
const CONVERGE_DEADLINE: Duration = Duration::from_secs(90);

async fn verify_code(node: &TestNode, code: &str) -> Result<pb::VerifyResponse, tonic::Status> {
    node.verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(code.into())), correlation_id: String::new(), ..Default::default() })
        .await
        .map(|response| response.into_inner())
}

fn follower(leader: usize, nodes: usize) -> usize {
    (leader + 1) % nodes
}

/// Retries a write while the cluster elects a leader; same request id, so at most once.
async fn certify_with_retry(node: &TestNode, request: pb::CertifyRequest) -> pb::Certification {
    let deadline = std::time::Instant::now() + ELECTION_DEADLINE;
    loop {
        match node.signing().await.certify(request.clone()).await {
            Ok(response) => return response.into_inner(),
            Err(status) if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::ResourceExhausted) => {
                assert!(std::time::Instant::now() < deadline, "certify kept failing: {status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("certify failed: {status:?}"),
        }
    }
}

async fn prepare(node: &TestNode, layout: &ClusterLayout, documents: &[Vec<u8>]) -> String {
    let signer = register_signer(node, &layout.pki.issue(&signer_spec("Vũ Thị Em", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let files: Vec<(&str, &[u8])> = documents.iter().map(|content| ("scan.pdf", content.as_slice())).collect();
    upload(node, "dossier", AGENCY, &files).await.unwrap();
    signer.signer_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_are_read_on_every_node() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let via = &nodes[follower(leader, 3)];
    let content = document(1, 30_000);
    let signer_id = prepare(via, &layout, std::slice::from_ref(&content)).await;
    let certification = via.signing().await.certify(certify_request("c1", &content, AGENCY, &signer_id)).await.unwrap().into_inner();
    for node in &nodes {
        let answer = verify_code(node, &certification.lookup_code).await.unwrap();
        assert_eq!(answer.certifications[0].summary, "valid", "on {}", node.grpc_url);
    }
    let digest = wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
    assert_eq!(digest.log_tree_size, 2, "signer registration and certification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_stream_loses_no_acknowledged_certification() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let mut nodes = layout.start_all();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let via_position = follower(leader, 3);
    let documents: Vec<Vec<u8>> = (0..24).map(|seed| document(100 + seed, 2_000)).collect();
    let signer_id = prepare(&nodes[via_position], &layout, &documents).await;

    let mut acknowledged = Vec::new();
    for (index, content) in documents.iter().enumerate() {
        if index == 8 {
            nodes[leader].kill();
        }
        let request = certify_request(&format!("kill-{index}"), content, AGENCY, &signer_id);
        acknowledged.push(certify_with_retry(&nodes[via_position], request).await);
    }
    let new_leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    assert_ne!(new_leader, leader);
    for node in nodes.iter().filter(|node| node.is_running()) {
        for certification in &acknowledged {
            let answer = verify_code(node, &certification.lookup_code).await.unwrap();
            assert_eq!(answer.certifications.len(), 1);
            assert_eq!(answer.certifications[0].summary, "valid");
            assert_eq!(answer.certifications[0].certification.as_ref().unwrap().cms_signature, certification.cms_signature);
        }
    }
    nodes[leader].start_again();
    let digest = wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
    assert_eq!(digest.log_tree_size, 1 + documents.len() as u64, "each certification is in the log exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_keeps_identical_state() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let mut nodes = layout.start_all();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let documents: Vec<Vec<u8>> = (0..5).map(|seed| document(50 + seed, 1_000)).collect();
    let signer_id = prepare(&nodes[leader], &layout, &documents).await;
    for (index, content) in documents.iter().enumerate() {
        nodes[index % 3].signing().await.certify(certify_request(&format!("r-{index}"), content, AGENCY, &signer_id)).await.unwrap();
    }
    let before = wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
    for node in nodes.iter_mut() {
        node.stop();
    }
    for node in nodes.iter_mut() {
        node.start_again();
    }
    wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let after = wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
    assert_eq!(after.sha256, before.sha256, "state after a full restart equals the state before");
    assert!(after.applied_index >= before.applied_index);
    assert_eq!(after.log_root_hash, before.log_root_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_catches_up_through_a_snapshot_and_a_node_can_be_removed() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "compaction_interval_entries = 10\nlog_retained_entries = 2");
    let mut nodes = layout.start_all();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let documents: Vec<Vec<u8>> = (0..30).map(|seed| document(seed, 500)).collect();
    let signer_id = prepare(&nodes[leader], &layout, &documents).await;
    let mut codes = Vec::new();
    for (index, content) in documents.iter().enumerate() {
        let certification = nodes[leader].signing().await.certify(certify_request(&format!("s-{index}"), content, AGENCY, &signer_id)).await.unwrap();
        codes.push(certification.into_inner().lookup_code);
    }
    let status = nodes[leader].cluster().await.status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    assert!(status.first_log_index > 10, "the leader compacted its log: {status:?}");

    let (grpc, raft) = (free_port(), free_port());
    let fourth = TestNode::start_config(&dir.path().join("node4"), &layout.config(4, grpc, raft, true), &layout.tls);
    let via = &nodes[follower(leader, 3)];
    let added = via
        .cluster()
        .await
        .add_node(pb::AddNodeRequest { id: 4, raft_addr: format!("127.0.0.1:{raft}"), client_addr: format!("127.0.0.1:{grpc}") })
        .await
        .unwrap()
        .into_inner();
    assert!(added.members.iter().any(|member| member.id == 4 && member.role == "voter"), "{added:?}");
    nodes.push(fourth);
    wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
    let answer = verify_code(&nodes[3], codes.last().unwrap()).await.unwrap();
    assert_eq!(answer.certifications[0].summary, "valid", "the new node verifies, fetching the blob from a peer");

    let removed = nodes[leader].cluster().await.remove_node(pb::RemoveNodeRequest { id: 4 }).await.unwrap().into_inner();
    assert!(!removed.members.iter().any(|member| member.id == 4), "{removed:?}");
    nodes[3].stop();
    let content = &documents[0];
    let again = nodes[leader].signing().await.certify(certify_request("after-remove", content, AGENCY, &signer_id)).await.unwrap();
    assert_eq!(again.into_inner().document_sha256, sha256(content), "the three remaining voters still commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_side_cannot_commit_while_the_majority_can_and_healing_converges() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all_with(|_| "fault_injection = true
".to_string());
    let old_leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let documents: Vec<Vec<u8>> = (0..2).map(|seed| document(200 + seed, 1_000)).collect();
    let signer_id = prepare(&nodes[old_leader], &layout, &documents).await;
    wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;

    let id_of = |position: usize| layout.members[position].0;
    let others: Vec<usize> = (0..3).filter(|&position| position != old_leader).collect();
    nodes[old_leader].cluster().await.inject_fault(pb::InjectFaultRequest { isolate_from: others.iter().map(|&p| id_of(p)).collect(), ..Default::default() }).await.unwrap();
    for &position in &others {
        nodes[position].cluster().await.inject_fault(pb::InjectFaultRequest { isolate_from: vec![id_of(old_leader)], ..Default::default() }).await.unwrap();
    }

    // The isolated old leader cannot commit.
    let minority = tokio::time::timeout(
        Duration::from_secs(60),
        nodes[old_leader].signing().await.certify(certify_request("minority", &documents[0], AGENCY, &signer_id)),
    )
    .await;
    let minority_code = match minority {
        Ok(Ok(response)) => panic!("the minority side committed {:?}", response.into_inner().lookup_code),
        Ok(Err(status)) => status.code(),
        Err(_) => Code::DeadlineExceeded,
    };
    assert!(matches!(minority_code, Code::Unavailable | Code::Unknown | Code::DeadlineExceeded), "{minority_code:?}");

    // The majority elects a leader and commits.
    let majority = certify_with_retry(&nodes[others[0]], certify_request("majority", &documents[1], AGENCY, &signer_id)).await;

    for position in 0..3 {
        nodes[position].cluster().await.inject_fault(pb::InjectFaultRequest { isolate_from: vec![], ..Default::default() }).await.unwrap();
    }
    let healed = wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
    assert_eq!(healed.log_tree_size, 2, "signer and the majority's certification; the minority's write is gone");
    for node in &nodes {
        let answer = verify_code(node, &majority.lookup_code).await.unwrap();
        assert_eq!(answer.certifications[0].summary, "valid");
        let minority_document = node
            .verification()
            .await
            .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(sha256(&documents[0]))), correlation_id: String::new(), ..Default::default() })
            .await;
        assert_eq!(minority_document.unwrap_err().code(), Code::NotFound, "the minority's certification never committed");
    }
}

/// Found by the 5-node soak: replacing members one after another (remove, wipe, add back
/// under a new id) dropped their blob copies for good, until no node held the documents.
/// A new member now fetches every archived blob before AddNode promotes it; here every
/// member is replaced in turn, and the document is still there at the end, on every
/// node's own disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_every_member_in_turn_keeps_every_document() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let mut nodes = layout.start_all();
    let mut ids: Vec<u64> = layout.members.iter().map(|&(id, _, _)| id).collect();
    let ports: Vec<(u16, u16)> = layout.members.iter().map(|&(_, grpc, raft)| (grpc, raft)).collect();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let content = document(7, 20_000);
    let signer_id = prepare(&nodes[leader], &layout, std::slice::from_ref(&content)).await;
    let blob = |node: &TestNode| node.dir.join("data/blobs").join(kyso::archive::blob_key(&kyso::domain::Sha256::digest(&content)).as_ref());
    for position in 0..3 {
        let mut leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
        if leader == position {
            let to = ids[(position + 1) % 3];
            nodes[leader].cluster().await.transfer_leader(pb::TransferLeaderRequest { id: to }).await.unwrap();
            leader = (position + 1) % 3;
            while wait_for_leader(&nodes, ELECTION_DEADLINE).await != leader {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        nodes[leader].cluster().await.remove_node(pb::RemoveNodeRequest { id: ids[position] }).await.unwrap();
        nodes[position].kill();
        std::fs::remove_dir_all(nodes[position].dir.join("data")).unwrap();
        let new_id = 4 + position as u64;
        let (grpc, raft) = ports[position];
        let dir = nodes[position].dir.clone();
        nodes[position] = TestNode::start_config(&dir, &layout.config(new_id, grpc, raft, true), &layout.tls);
        ids[position] = new_id;
        let request = pb::AddNodeRequest { id: new_id, raft_addr: format!("127.0.0.1:{raft}"), client_addr: format!("127.0.0.1:{grpc}") };
        nodes[leader].cluster().await.add_node(request).await.unwrap();
        // AddNode promotes a member only once it holds every archived document, so it must
        // be on its disk now. Nothing here reads the document through it (a read would
        // fetch it on demand and hide a missing refill).
        assert!(blob(&nodes[position]).exists(), "member {new_id} was promoted without the document");
    }
    for node in &nodes {
        assert_eq!(std::fs::read(blob(node)).unwrap(), content, "{} holds the document", node.grpc_url);
    }
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let certification = certify_with_retry(&nodes[leader], certify_request("after-replacements", &content, AGENCY, &signer_id)).await;
    assert_eq!(certification.document_sha256, sha256(&content));
}

async fn isolate(node: &TestNode, from: Vec<u64>) {
    node.cluster().await.inject_fault(pb::InjectFaultRequest { isolate_from: from, ..Default::default() }).await.unwrap();
}

/// Cuts the member at `position` off from every other, both ways.
async fn cut_off(nodes: &[TestNode], ids: &[u64], position: usize) {
    for (other, node) in nodes.iter().enumerate() {
        let from = if other == position { ids.iter().copied().filter(|&id| id != ids[position]).collect() } else { vec![ids[position]] };
        isolate(node, from).await;
    }
}

/// Found by the 5-node soak: a member was removed (and its disk wiped) while the members
/// that stayed had not fetched their copies of recent documents yet, so the removal took
/// the last copies with it. The leader now removes a voter only when a majority of the
/// voters that remain hold every archived document; asking them makes them fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_is_removed_only_while_a_majority_of_the_rest_hold_every_document() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all_with(|_| "fault_injection = true\n".to_string());
    let ids: Vec<u64> = layout.members.iter().map(|&(id, _, _)| id).collect();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let (kept, lagging) = (follower(leader, 3), (leader + 2) % 3);
    prepare(&nodes[leader], &layout, &[document(1, 1_000)]).await;

    // The lagging member is cut off while a document is archived: the leader and the
    // other follower hold it, the lagging member does not.
    cut_off(&nodes, &ids, lagging).await;
    let content = document(2, 30_000);
    upload(&nodes[leader], "while-cut-off", AGENCY, &[("scan.pdf", content.as_slice())]).await.unwrap();
    let blob = |node: &TestNode| node.dir.join("data/blobs").join(kyso::archive::blob_key(&kyso::domain::Sha256::digest(&content)).as_ref());
    assert!(blob(&nodes[kept]).exists() && !blob(&nodes[lagging]).exists());

    let refused = nodes[leader].cluster().await.remove_node(pb::RemoveNodeRequest { id: ids[kept] }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("fewer than a majority"), "{}", refused.message());
    assert!(nodes[leader].cluster().await.status(pb::ClusterStatusRequest {}).await.unwrap().into_inner().members.len() == 3);

    for node in &nodes {
        isolate(node, Vec::new()).await;
    }
    // Once the lagging member caught up with the log, the leader's check makes it fetch
    // the document, and the removal goes through.
    let deadline = std::time::Instant::now() + CONVERGE_DEADLINE;
    loop {
        match nodes[leader].cluster().await.remove_node(pb::RemoveNodeRequest { id: ids[kept] }).await {
            Ok(_) => break,
            // Refused until the lagging member caught up; an election after healing answers
            // UNAVAILABLE for a moment.
            Err(status)
                if matches!(status.code(), Code::FailedPrecondition | Code::Unavailable | Code::DeadlineExceeded)
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(status) => panic!("removal still refused after healing: {status:?}"),
        }
    }
    assert_eq!(std::fs::read(blob(&nodes[lagging])).unwrap(), content, "the remaining follower holds the document");
}

/// Issue 16: a refill pass looks at the blobs that arrived since the node last held every
/// earlier one, not at the whole archive; a member cut off while documents arrived still
/// gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_pass_checks_only_what_arrived_since_the_last_and_still_fills_gaps() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all_with(|_| "fault_injection = true\n".to_string());
    let ids: Vec<u64> = layout.members.iter().map(|&(id, _, _)| id).collect();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let (kept, lagging) = (follower(leader, 3), (leader + 2) % 3);
    let documents: Vec<Vec<u8>> = (0..12).map(|index| document(100 + index, 2_000)).collect();
    let files: Vec<(String, &[u8])> = documents.iter().enumerate().map(|(index, content)| (format!("{index}.pdf"), content.as_slice())).collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(name, content)| (name.as_str(), *content)).collect();
    upload(&nodes[leader], "refill-many", AGENCY, &files).await.unwrap();
    let fill = |position: usize| {
        let (tls, port) = (&layout.tls, layout.members[position].2);
        async move {
            let channel = tls.channel_as(&format!("https://127.0.0.1:{port}"), &tls.node).await.expect("a node certificate reaches the peer port");
            pb::node_internal_service_client::NodeInternalServiceClient::new(channel).fill_blobs(pb::FillBlobsRequest {}).await.unwrap().into_inner()
        }
    };
    // Once a pass found everything held, the next looks at nothing, though 12 are archived.
    let first = fill(kept).await;
    assert!(first.complete && first.missing_blobs == 0 && first.archived_blobs >= 12, "{first:?}");
    let second = fill(kept).await;
    assert!(second.complete && second.archived_blobs >= 12, "{second:?}");
    assert_eq!(second.checked_blobs, 0, "a pass after a complete one re-checked the archive: {second:?}");

    // Cut off while two documents arrive, the lagging member lacks them; after healing its
    // passes fetch them, looking at no more than what arrived since.
    assert_eq!(fill(lagging).await.missing_blobs, 0);
    cut_off(&nodes, &ids, lagging).await;
    let late = [document(200, 3_000), document(201, 3_000)];
    upload(&nodes[leader], "refill-late", AGENCY, &[("a.pdf", late[0].as_slice()), ("b.pdf", late[1].as_slice())]).await.unwrap();
    let blob = |node: &TestNode, content: &[u8]| node.dir.join("data/blobs").join(kyso::archive::blob_key(&kyso::domain::Sha256::digest(content)).as_ref());
    assert!(!blob(&nodes[lagging], &late[0]).exists() && !blob(&nodes[lagging], &late[1]).exists());
    for node in &nodes {
        isolate(node, Vec::new()).await;
    }
    let deadline = std::time::Instant::now() + CONVERGE_DEADLINE;
    loop {
        let pass = fill(lagging).await;
        // Its passes look at the two new arrivals at most, never at the 12 before.
        assert!(pass.checked_blobs <= 2, "{pass:?}");
        if pass.complete && pass.missing_blobs == 0 && pass.archived_blobs >= 14 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lagging member never got the documents: {pass:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for content in &late {
        assert_eq!(std::fs::read(blob(&nodes[lagging], content)).unwrap(), *content);
    }
}

/// The register (sổ chứng thực): certifications of PDF scans made concurrently through two
/// nodes, then through a survivor after the leader is killed, get the numbers 1..=N of
/// their agency-year, each once and without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_numbers_have_no_gap_or_repeat_across_nodes_and_a_leader_change() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    // One TSA certificate on every member, as deploy/local/cluster.sh does.
    let tsa = layout.pki.tsa_toml(&dir.path().join("tsa"), "tsa");
    let mut nodes = layout.start_all_with(|_| tsa.clone());
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let scans: Vec<Vec<u8>> = (0..12).map(|seed| kyso::cli::dev::sample_pdf(&format!("register scan {seed}"))).collect();
    let signer_id = prepare(&nodes[leader], &layout, &scans).await;
    let (first, second) = (follower(leader, 3), (leader + 2) % 3);
    let concurrent = futures::future::join_all(scans[..8].iter().enumerate().map(|(index, scan)| {
        let via = &nodes[if index % 2 == 0 { first } else { second }];
        certify_with_retry(via, certify_request(&format!("register-{index}"), scan, AGENCY, &signer_id))
    }))
    .await;
    nodes[leader].kill();
    let mut certifications = concurrent;
    for (index, scan) in scans.iter().enumerate().skip(8) {
        certifications.push(certify_with_retry(&nodes[first], certify_request(&format!("register-{index}"), scan, AGENCY, &signer_id)).await);
    }
    let mut numbers: Vec<u64> = certifications.iter().map(|certification| certification.register_number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=scans.len() as u64).collect::<Vec<_>>(), "register numbers of {certifications:?}");
    let year = certifications[0].register_year;
    assert!(certifications.iter().all(|certification| certification.register_year == year && certification.delivered_pdf_sha256.len() == 32));
    // Each signature was stamped by the member that signed it: the token's serial carries
    // that member's id in its high 64 bits, so members sharing one TSA certificate never
    // issue the same serial.
    let serials: std::collections::BTreeSet<u128> = certifications
        .iter()
        .map(|certification| {
            let token = kyso::crypto::cms::signature_timestamp_token(&certification.cms_signature).unwrap().expect("a signature-time-stamp");
            let serial = kyso::crypto::tsa::token_info(&token).unwrap().serial_number;
            serial.as_bytes().iter().fold(0u128, |value, byte| (value << 8) | u128::from(*byte))
        })
        .collect();
    assert_eq!(serials.len(), certifications.len(), "no serial repeats");
    let signing_nodes: std::collections::BTreeSet<u64> = serials.iter().map(|serial| (serial >> 64) as u64).collect();
    let expected: std::collections::BTreeSet<u64> = [first as u64 + 1, second as u64 + 1].into();
    assert_eq!(signing_nodes, expected, "the two members that took the requests stamped them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signature_prepared_on_a_follower_completes_there_and_only_there() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let tsa = layout.pki.tsa_toml(&dir.path().join("tsa"), "tsa");
    let nodes = layout.start_all_with(|_| tsa.clone());
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let (preparing, other) = (follower(leader, 3), (leader + 2) % 3);
    let performer = layout.pki.issue(&signer_spec("Phạm Minh Châu", KeyAlgorithm::EcdsaP256));
    let signer = register_token_signer(&nodes[preparing], &performer.cert_pem(), AGENCY).await;
    let scan = kyso::cli::dev::sample_pdf("giấy khai sinh, bản chính, cụm");
    upload(&nodes[preparing], "dossier-token", AGENCY, &[("khai-sinh.pdf", &scan)]).await.unwrap();

    let prepared = nodes[preparing].signing().await.prepare_token_signature(token_prepare_request(AGENCY, &scan, &signer.signer_id)).await.unwrap().into_inner();
    let preparing_id = preparing as u64 + 1;
    assert!(prepared.prepared_id.starts_with(&format!("n{preparing_id}-")), "the prepared id names the follower: {}", prepared.prepared_id);
    assert_eq!(prepared.node_id, preparing_id);
    // The token's part, done here with the same key.
    let signature_value = performer.signing_key().unwrap().sign(&prepared.signed_attributes_der).unwrap();
    let complete = |request_id: &str| pb::CompleteTokenSignatureRequest {
        request_id: request_id.into(),
        prepared_id: prepared.prepared_id.clone(),
        signature_value: signature_value.clone(),
    };
    for elsewhere in [leader, other] {
        let refused = nodes[elsewhere].signing().await.complete_token_signature(complete(&format!("complete-on-{elsewhere}"))).await;
        assert_status(refused, Code::FailedPrecondition, &format!("call CompleteTokenSignature on node {preparing_id}"));
    }
    let recorded = nodes[preparing].signing().await.complete_token_signature(complete("complete-here")).await.expect("complete on the preparing follower").into_inner();
    assert_eq!(recorded.lookup_code, prepared.lookup_code);
    assert_eq!(recorded.register_number, 1);
    for node in &nodes {
        let answer = verify_code(node, &recorded.lookup_code).await.unwrap();
        assert_eq!(answer.certifications[0].summary, "valid", "on {}", node.grpc_url);
    }
    wait_for_identical_state(&nodes, CONVERGE_DEADLINE).await;
}

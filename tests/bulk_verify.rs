//! Bulk verification at its documented size (issue 21): 100,000 VerifyStream requests sent
//! without waiting for answers, on a single node and through a follower of a 3-node
//! cluster, are all answered in order on one connection, which stays usable. Before, the
//! HTTP/2 layer closed the connection (GOAWAY ENHANCE_YOUR_CALM) after a few hundred.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt as _;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use pb::verify_request::Subject;
use tonic::Code;

const AGENCY: &str = "xa-kiem-tra";
const REQUESTS: usize = 100_000;
/// One request in this many names a certified document (a full answer of a few KB); the
/// others name unknown documents (a short NOT_FOUND answer).
const CERTIFIED_EVERY: usize = 1_000;
/// Generous bound on the whole bulk check (it takes seconds; a stream that stalls fails).
const BULK_DEADLINE: Duration = Duration::from_secs(300);

/// Sends every request at once (the stream yields them as fast as HTTP/2 takes them),
/// reads the answers, and checks each one; returns the throughput in answers per second.
async fn verify_in_bulk(channel: tonic::transport::Channel, certified: &[Vec<u8>]) -> f64 {
    let certified_hashes: Vec<Vec<u8>> = certified.to_vec();
    // Each request yields once before it is ready, so the client's encoder cannot gather
    // several into one HTTP/2 DATA frame: one small frame per request, as clients that
    // write message by message (grpcio, a producer task) send them.
    let requests = futures::stream::iter(0..REQUESTS).then(|index| async move {
        tokio::task::yield_now().await;
        index
    });
    let requests = requests.map(move |index| {
        let subject = if index % CERTIFIED_EVERY == 0 {
            Subject::Sha256(certified_hashes[(index / CERTIFIED_EVERY) % certified_hashes.len()].clone())
        } else {
            let mut unknown = [0u8; 32];
            unknown[..8].copy_from_slice(&(index as u64).to_be_bytes());
            unknown[31] = 0xee;
            Subject::Sha256(unknown.to_vec())
        };
        pb::VerifyRequest { subject: Some(subject), correlation_id: index.to_string(), ..Default::default() }
    });
    let mut client = pb::verification_service_client::VerificationServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20);
    let started = Instant::now();
    let mut answers = client.verify_stream(requests).await.unwrap().into_inner();
    let deadline = started + BULK_DEADLINE;
    for index in 0..REQUESTS {
        assert!(Instant::now() < deadline, "only {index} of {REQUESTS} answers within {BULK_DEADLINE:?}");
        let answer = answers.message().await.unwrap_or_else(|status| panic!("answer {index}: {status:?}")).expect("the stream ended early");
        assert_eq!(answer.correlation_id, index.to_string(), "answers come in request order");
        if index % CERTIFIED_EVERY == 0 {
            assert_eq!(answer.error_code, 0, "{}", answer.error_message);
            assert!(answer.certifications.iter().all(|certification| certification.summary == "valid"), "{answer:?}");
        } else {
            assert_eq!(answer.error_code, Code::NotFound as i32, "{}", answer.error_message);
        }
    }
    assert!(answers.message().await.unwrap().is_none(), "nothing after the last answer");
    let rate = REQUESTS as f64 / started.elapsed().as_secs_f64();
    // The connection is still open and serves the next call.
    let again = pb::verification_service_client::VerificationServiceClient::new(channel)
        .verify(pb::VerifyRequest { subject: Some(Subject::Sha256(certified[0].clone())), correlation_id: "after".into(), ..Default::default() })
        .await;
    assert!(again.is_ok(), "the channel survived: {again:?}");
    rate
}

async fn certify_some(node: &TestNode, pki: &TestPki) -> Vec<Vec<u8>> {
    let signer = register_signer(node, &pki.issue(&signer_spec("Người Ký Hàng Loạt", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let mut hashes = Vec::new();
    for seed in 0..3u8 {
        let content = document(seed, 2000);
        upload(node, &format!("d-{seed}"), AGENCY, &[("a.pdf", &content)]).await.unwrap();
        node.signing().await.certify(certify_request(&format!("c-{seed}"), &content, AGENCY, &signer.signer_id)).await.unwrap();
        hashes.push(sha256(&content));
    }
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_requests_sent_at_once_are_all_answered_on_one_node() {
    let fixture = fixture("");
    let certified = certify_some(&fixture.node, &fixture.pki).await;
    let rate = verify_in_bulk(fixture.node.channel().await, &certified).await;
    println!("VerifyStream, one node: {REQUESTS} answers at {rate:.0}/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_requests_sent_at_once_are_all_answered_through_a_follower() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all();
    let leader = wait_for_leader(&nodes, Duration::from_secs(90)).await;
    let certified = certify_some(&nodes[leader], &layout.pki).await;
    let follower = &nodes[(leader + 1) % nodes.len()];
    let rate = verify_in_bulk(follower.channel().await, &certified).await;
    println!("VerifyStream through a follower of three: {REQUESTS} answers at {rate:.0}/s");
}

/// The summary view (VERIFY_VIEW_SUMMARY) answers with the full view's verdict, by hash and
/// by code, for Verify and VerifyStream, a revoked certification included; it leaves out
/// the CMS, the signer's chain and the inclusion proof, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_view_gives_the_full_answers_verdict_without_its_evidence() {
    let fixture = fixture("");
    let node = &fixture.node;
    let certified = certify_some(node, &fixture.pki).await;
    let mut verification = node.verification().await;
    let code_of = |answer: &pb::VerifyResponse| answer.certifications[0].certification.as_ref().unwrap().lookup_code.clone();
    let full = |subject: Subject| pb::VerifyRequest { subject: Some(subject), view: pb::VerifyView::Full as i32, ..Default::default() };
    let first = verification.verify(full(Subject::Sha256(certified[0].clone()))).await.unwrap().into_inner();
    node.signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest { request_id: "r-view".into(), lookup_code: code_of(&first), reason: "cấp nhầm".into() })
        .await
        .unwrap();
    let mut subjects: Vec<Subject> = certified.iter().map(|hash| Subject::Sha256(hash.clone())).collect();
    subjects.push(Subject::LookupCode(code_of(&first)));
    for subject in subjects {
        let full_answer = verification.verify(full(subject.clone())).await.unwrap().into_inner();
        let mut summary_request = full(subject.clone());
        summary_request.view = pb::VerifyView::Summary as i32;
        let summary = verification.verify(summary_request.clone()).await.unwrap().into_inner();
        let streamed = verification
            .verify_stream(futures::stream::iter([summary_request]))
            .await
            .unwrap()
            .into_inner()
            .collect::<Vec<_>>()
            .await;
        let [Ok(streamed)] = streamed.as_slice() else { panic!("one streamed answer: {streamed:?}") };
        assert_eq!(streamed, &summary, "VerifyStream answers as Verify does");
        let [full_one] = full_answer.certifications.as_slice() else { panic!("{full_answer:?}") };
        assert!(full_one.inclusion.is_some(), "the full view carries the proof");
        assert!(!full_one.certification.as_ref().unwrap().cms_signature.is_empty());
        assert!(!full_one.signer.as_ref().unwrap().certificate_chain_der.is_empty());
        // The full answer less its evidence is the summary answer, field for field.
        let mut expected = full_answer.clone();
        let evidence = &mut expected.certifications[0];
        evidence.inclusion = None;
        evidence.certification.as_mut().unwrap().cms_signature.clear();
        evidence.signer.as_mut().unwrap().certificate_chain_der.clear();
        assert_eq!(summary, expected);
        let (summary_bytes, full_bytes) = (prost::Message::encoded_len(&summary), prost::Message::encoded_len(&full_answer));
        println!("answer bytes: summary {summary_bytes}, full {full_bytes}");
        assert!(summary_bytes * 5 < full_bytes, "the summary is under a fifth of the full answer: {summary_bytes} against {full_bytes}");
    }
    let revoked = verification.verify(pb::VerifyRequest { subject: Some(Subject::Sha256(certified[0].clone())), view: pb::VerifyView::Summary as i32, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(revoked.certifications[0].summary, "revoked: cấp nhầm");
    assert_eq!(revoked.certifications[0].certification.as_ref().unwrap().status, pb::CertificationStatus::Revoked as i32);
}

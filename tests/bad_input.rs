//! Each bad input gets its precise gRPC status and a message a person can act on, and
//! leaves nothing half-written.

mod common;

use common::*;
use kyso::crypto::devpki::KeyUsages;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use tonic::Code;

const AGENCY: &str = "xa-a";

async fn register_spec(fixture: &Fixture, spec: kyso::crypto::devpki::CertSpec) -> Result<pb::Signer, tonic::Status> {
    register_signer(&fixture.node, &fixture.pki.issue(&spec), &[AGENCY]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_certificate_is_invalid_argument() {
    let fixture = fixture("");
    let result = fixture
        .node
        .signing()
        .await
        .register_signer(pb::RegisterSignerRequest {
            request_id: "bad-cert".into(),
            name: "X".into(),
            title: "Y".into(),
            agency_ids: vec![AGENCY.into()],
            certificate_chain: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            private_key_pkcs8: vec![],
            pin: String::new(),
        })
        .await;
    assert_status(result, Code::InvalidArgument, "certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_certificate_is_invalid_argument() {
    let fixture = fixture("");
    let issued = fixture.pki.issue(&signer_spec("Cắt Cụt", KeyAlgorithm::EcdsaP256));
    let result = fixture
        .node
        .signing()
        .await
        .register_signer(pb::RegisterSignerRequest {
            request_id: "truncated-cert".into(),
            name: "X".into(),
            title: "Y".into(),
            agency_ids: vec![AGENCY.into()],
            certificate_chain: issued.cert_der[..issued.cert_der.len() / 2].to_vec(),
            private_key_pkcs8: vec![],
            pin: String::new(),
        })
        .await;
    assert_status(result, Code::InvalidArgument, "certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_failed_precondition() {
    let fixture = fixture("");
    let mut spec = signer_spec("Hết Hạn", KeyAlgorithm::EcdsaP256);
    spec.not_before_unix = now_unix() - 3 * 86_400;
    spec.not_after_unix = now_unix() - 86_400;
    assert_status(register_spec(&fixture, spec).await, Code::FailedPrecondition, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_certificate_is_failed_precondition() {
    let fixture = fixture("");
    let mut spec = signer_spec("Chưa Hiệu Lực", KeyAlgorithm::EcdsaP256);
    spec.not_before_unix = now_unix() + 86_400;
    spec.not_after_unix = now_unix() + 2 * 86_400;
    assert_status(register_spec(&fixture, spec).await, Code::FailedPrecondition, "not valid before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_failed_precondition() {
    let fixture = fixture("");
    let other_ca = kyso::crypto::devpki::self_signed_ca(&ca_spec("some other CA")).unwrap();
    let issued = kyso::crypto::devpki::issue(&signer_spec("Lạ", KeyAlgorithm::EcdsaP256), &other_ca).unwrap();
    assert_status(register_signer(&fixture.node, &issued, &[AGENCY]).await, Code::FailedPrecondition, "trust anchor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_usage_certificate_is_invalid_argument() {
    let fixture = fixture("");
    let mut spec = signer_spec("Sai Mục Đích", KeyAlgorithm::EcdsaP256);
    spec.key_usage = KeyUsages { key_cert_sign: false, crl_sign: true, ..KeyUsages::default() };
    assert_status(register_spec(&fixture, spec).await, Code::InvalidArgument, "digitalSignature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_that_does_not_match_the_certificate_is_invalid_argument() {
    let fixture = fixture("");
    let issued = fixture.pki.issue(&signer_spec("Khóa A", KeyAlgorithm::EcdsaP256));
    let other = fixture.pki.issue(&signer_spec("Khóa B", KeyAlgorithm::EcdsaP256));
    let result = fixture
        .node
        .signing()
        .await
        .register_signer(pb::RegisterSignerRequest {
            request_id: "mismatch".into(),
            name: "X".into(),
            title: "Y".into(),
            agency_ids: vec![AGENCY.into()],
            certificate_chain: issued.cert_pem().into_bytes(),
            private_key_pkcs8: other.key_pem().as_bytes().to_vec(),
            pin: TEST_PIN.into(),
        })
        .await;
    assert_status(result, Code::InvalidArgument, "does not match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hash_and_code_are_not_found() {
    let fixture = fixture("");
    let signer = register_spec(&fixture, signer_spec("Ký", KeyAlgorithm::EcdsaP256)).await.unwrap();
    let never_archived = document(40, 100);
    let certify = fixture.node.signing().await.certify(certify_request("c-unknown", &never_archived, AGENCY, &signer.signer_id)).await;
    assert_status(certify, Code::NotFound, "not archived");
    let mut verification = fixture.node.verification().await;
    let by_hash = verification
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(sha256(&never_archived))), correlation_id: String::new(), ..Default::default() })
        .await;
    assert_status(by_hash, Code::NotFound, "no certification");
    let by_code = verification
        .verify(pb::VerifyRequest {
            subject: Some(pb::verify_request::Subject::LookupCode("ABCD-EFGH-JKMN-PQRS".into())),
            correlation_id: String::new(),
            ..Default::default()
        })
        .await;
    assert_status(by_code, Code::NotFound, "lookup code");
    let malformed_code = verification
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode("ABC!".into())), correlation_id: String::new(), ..Default::default() })
        .await;
    assert_status(malformed_code, Code::InvalidArgument, "lookup code");
    let short_hash = verification
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(vec![1, 2, 3])), correlation_id: String::new(), ..Default::default() })
        .await;
    assert_status(short_hash, Code::InvalidArgument, "32 bytes");
}

/// A verify view the enum does not name is refused before any lookup (an unknown document
/// would otherwise answer NOT_FOUND), in Verify and as a VerifyStream item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_verify_view_is_invalid_argument() {
    let fixture = fixture("");
    let mut verification = fixture.node.verification().await;
    let request = pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(sha256(&document(41, 100)))), view: 9, ..Default::default() };
    let unknown_view = verification.verify(request.clone()).await;
    assert_status(unknown_view, Code::InvalidArgument, "view 9 is not a verify view; leave it unset");
    let streamed = verification.verify_stream(futures::stream::iter([request])).await.unwrap().into_inner().message().await.unwrap().unwrap();
    assert_eq!(streamed.error_code, Code::InvalidArgument as i32, "{streamed:?}");
    assert!(streamed.error_message.contains("view 9 is not a verify view"), "{}", streamed.error_message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_file_is_resource_exhausted_and_leaves_no_dossier() {
    let fixture = fixture("file_size_bytes_max = 100000");
    let too_big = document(41, 100_001);
    assert_status(upload(&fixture.node, "big", AGENCY, &[("big.pdf", &too_big)]).await, Code::ResourceExhausted, "limit");
    // The same request id then succeeds with a file inside the limit: nothing was recorded.
    let fine = document(41, 100_000);
    upload(&fixture.node, "big", AGENCY, &[("fine.pdf", &fine)]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_files_is_resource_exhausted() {
    let fixture = fixture("dossier_files_max = 3");
    let files: Vec<Vec<u8>> = (0..4).map(|index| document(50 + index, 10)).collect();
    let named: Vec<(&str, &[u8])> = files.iter().map(|content| ("f.pdf", content.as_slice())).collect();
    assert_status(upload(&fixture.node, "many", AGENCY, &named).await, Code::ResourceExhausted, "at most 3 files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_stream_leaves_no_dossier_and_no_orphan_that_trips_a_retry() {
    let fixture = fixture("");
    let content = document(60, 200_000);
    // A stream that ends before the declared size arrived.
    let mut messages = upload_messages("cut", AGENCY, &[("a.pdf", &content)], 50_000);
    messages.truncate(messages.len() - 2);
    let cut = fixture.node.archive().await.upload_dossier(futures::stream::iter(messages)).await;
    assert_status(cut, Code::InvalidArgument, "cut short");
    // A stream whose client vanishes mid-file: the server drops it.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut client = fixture.node.archive().await;
    let call = tokio::spawn(async move { client.upload_dossier(tokio_stream::wrappers::ReceiverStream::new(receiver)).await });
    for message in upload_messages("vanish", AGENCY, &[("a.pdf", &content)], 50_000).into_iter().take(3) {
        sender.send(message).await.unwrap();
    }
    call.abort();
    drop(sender);
    // Neither left a record: a retry with each request id stores the dossier afresh.
    for request_id in ["cut", "vanish"] {
        let archived = upload(&fixture.node, request_id, AGENCY, &[("a.pdf", &content)]).await.unwrap();
        assert_eq!(archived.files[0].sha256, sha256(&content));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_without_metadata_first_is_invalid_argument() {
    let fixture = fixture("");
    let mut messages = upload_messages("nometa", AGENCY, &[("a.pdf", b"abc")], 10);
    messages.remove(0);
    let result = fixture.node.archive().await.upload_dossier(futures::stream::iter(messages)).await;
    assert_status(result, Code::InvalidArgument, "first message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_in_file_name_is_invalid_argument() {
    let fixture = fixture("");
    let result = upload(&fixture.node, "trav", AGENCY, &[("../../etc/passwd", b"x")]).await;
    assert_status(result, Code::InvalidArgument, "path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_request_id_replays_the_same_answer_or_is_already_exists() {
    let fixture = fixture("");
    let signer = register_spec(&fixture, signer_spec("Ký", KeyAlgorithm::EcdsaP256)).await.unwrap();
    let first = document(70, 1000);
    let second = document(71, 1000);
    upload(&fixture.node, "d-rep", AGENCY, &[("a.pdf", &first), ("b.pdf", &second)]).await.unwrap();
    let mut signing = fixture.node.signing().await;
    let original = signing.certify(certify_request("same-id", &first, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let retried = signing.certify(certify_request("same-id", &first, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    assert_eq!(original, retried, "a retry returns the first outcome instead of signing twice");
    let reused = signing.certify(certify_request("same-id", &second, AGENCY, &signer.signer_id)).await;
    assert_status(reused, Code::AlreadyExists, "request id");
    let answer = fixture
        .node
        .verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(sha256(&first))), correlation_id: String::new(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.certifications.len(), 1, "the retry did not create a second certification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_acting_for_another_agency_is_permission_denied() {
    let fixture = fixture("");
    let signer = register_spec(&fixture, signer_spec("Ký", KeyAlgorithm::EcdsaP256)).await.unwrap();
    let content = document(80, 1000);
    upload(&fixture.node, "d-other", "xa-b", &[("a.pdf", &content)]).await.unwrap();
    let result = fixture.node.signing().await.certify(certify_request("c-other", &content, "xa-b", &signer.signer_id)).await;
    assert_status(result, Code::PermissionDenied, "not registered for agency xa-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_batch_is_invalid_argument() {
    let fixture = fixture("certify_batch_items_max = 2");
    let items = (0..3).map(|index| certify_request("", &document(90 + index, 10), AGENCY, "x")).collect();
    let result = fixture.node.signing().await.certify_batch(pb::CertifyBatchRequest { request_id: "b".into(), items, pin: TEST_PIN.into() }).await;
    assert_status(result, Code::InvalidArgument, "1-2 documents");
}

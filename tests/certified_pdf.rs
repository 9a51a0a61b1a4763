//! The certified PDF through a real node: certify a PDF scan over gRPC, fetch the
//! delivered PDF as a blob, check it with qpdf, pdfsig and pyHanko, verify by its hash,
//! and see the register number each certification takes (a refused one takes none).

mod common;

use std::path::PathBuf;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-dong-hung";

fn artefacts() -> PathBuf {
    artefacts_dir("certified-pdf")
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_pdf_is_delivered_numbered_signed_and_verifiable_by_its_hash() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let top_level = format!(
        "public_base_url = \"https://tra-cuu.example.vn\"\n[agency_names]\n\"{AGENCY}\" = \"UBND xã Đông Hưng\"\n[certified_pdf.\"{AGENCY}\"]\nnumber_format = \"{{number}}/{{year}}-SCTĐT/BS\"\n{}",
        pki.tsa_toml(&dir.path().join("pki"), "tsa")
    );
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &top_level, "");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let agency_certificate = pki.issue(&signer_spec("UBND xã Đông Hưng", KeyAlgorithm::EcdsaP256));
    let (cert_path, key_path) = (dir.path().join("agency.pem"), dir.path().join("agency.key"));
    std::fs::write(&cert_path, agency_certificate.cert_pem()).unwrap();
    std::fs::write(&key_path, agency_certificate.key_pem().as_bytes()).unwrap();
    let (ok, stdout, stderr) = kyso_cli_for(
        &node,
        &["agency", "seal", "--server", &node.grpc_url, "--agency", AGENCY, "--org-cert", cert_path.to_str().unwrap(), "--org-key", key_path.to_str().unwrap()],
    );
    assert!(ok && stdout.contains("signs its certified pdfs"), "kyso agency seal: {stdout}{stderr}");
    let scans: Vec<Vec<u8>> = (0..2).map(|seed| kyso::cli::dev::sample_pdf(&format!("scan {seed}"))).collect();
    let other_file = document(7, 5_000);
    let encrypted_path = artefacts().join("encrypted-input.pdf");
    let plain_path = artefacts().join("plain-input.pdf");
    std::fs::write(&plain_path, kyso::cli::dev::sample_pdf("to be encrypted")).unwrap();
    tool("qpdf", &["--encrypt", "u", "o", "256", "--", plain_path.to_str().unwrap(), encrypted_path.to_str().unwrap()]);
    let encrypted = std::fs::read(&encrypted_path).expect("qpdf wrote the encrypted pdf");
    upload(&node, "dossier", AGENCY, &[("a.pdf", &scans[0]), ("b.pdf", &scans[1]), ("c.bin", &other_file), ("locked.pdf", &encrypted)]).await.unwrap();

    let first = node.signing().await.certify(certify_request("c-1", &scans[0], AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    assert_eq!(first.register_number, 1);
    assert_eq!(first.delivered_pdf_sha256.len(), 32);

    let refused = node.signing().await.certify(certify_request("c-locked", &encrypted, AGENCY, &signer.signer_id)).await;
    assert_status(refused, tonic::Code::FailedPrecondition, "encrypted");

    let other = node.signing().await.certify(certify_request("c-other", &other_file, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    assert!(other.delivered_pdf_sha256.is_empty() && other.register_number == 0, "a file that is not a scan keeps only its detached cms");

    let second = node.signing().await.certify(certify_request("c-2", &scans[1], AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    assert_eq!(second.register_number, 2, "the refused certification took no number");
    let again = node.signing().await.certify(certify_request("c-2", &scans[1], AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    assert_eq!(again.register_number, 2, "a retry with the same request id keeps its number");

    let delivered = get_blob(&node, &second.delivered_pdf_sha256).await.unwrap();
    assert!(delivered.starts_with(&scans[1]), "the scan's bytes are the delivered pdf's prefix");
    let path = artefacts().join("delivered.pdf");
    std::fs::write(&path, &delivered).unwrap();
    let qpdf = tool("qpdf", &["--check", path.to_str().unwrap()]);
    assert!(qpdf.contains("No syntax or stream encoding errors") && !qpdf.to_lowercase().contains("warning"), "qpdf:\n{qpdf}");

    let (_nss, database) = nss_database_trusting(&pki.ca_pem_path);
    let pdfsig = tool("pdfsig", &["-nssdir", &database, path.to_str().unwrap()]);
    assert_eq!(pdfsig.matches("Signature is Valid.").count(), 2, "the performer's and the agency's signatures:\n{pdfsig}");
    assert_eq!(pdfsig.matches("Certificate is Trusted.").count(), 2, "pdfsig:\n{pdfsig}");
    assert!(pdfsig.contains("kyso-performer") && pdfsig.contains("kyso-agency"), "pdfsig:\n{pdfsig}");
    assert!(pdfsig.contains("Số chứng thực") || pdfsig.contains("ETSI.CAdES.detached"), "pdfsig:\n{pdfsig}");
    let pyhanko = tool("pyhanko", &["sign", "validate", "--trust", pki.ca_pem_path.to_str().unwrap(), "--trust-replace", "--no-revocation-check", path.to_str().unwrap()]);
    println!("pyhanko sign validate (the node's own TSA):\n{}", pyhanko.trim());
    assert_eq!(pyhanko.matches(":INTACT:TRUSTED,TIMESTAMP_TOKEN<INTACT:TRUSTED>").count(), 2, "both signatures intact and trusted, each with a trusted time stamp (PAdES B-T); pyhanko:\n{pyhanko}");
    assert!(!first.delivered_pdf_sha256.is_empty());

    let year = second.register_year.to_string();
    let (ok, csv, stderr) = kyso_cli_for(&node, &["register", "--server", &node.grpc_url, "--agency", AGENCY, "--year", &year, "--csv"]);
    assert!(ok, "kyso register --csv: {stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two entries, the refused and the non-scan certifications absent:\n{csv}");
    assert!(lines[1].starts_with(&format!("1,01/{year}-SCTĐT/BS,{}", first.lookup_code)), "{csv}");
    assert!(lines[2].starts_with(&format!("2,02/{year}-SCTĐT/BS,{}", second.lookup_code)), "{csv}");
    let (ok, json, stderr) = kyso_cli_for(&node, &["register", "--server", &node.grpc_url, "--agency", AGENCY, "--year", &year, "--json"]);
    assert!(ok, "kyso register --json: {stderr}");
    let rows: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(rows[1]["delivered_pdf_sha256"], hex::encode(&second.delivered_pdf_sha256));

    for subject in [pb::verify_request::Subject::File(delivered.clone()), pb::verify_request::Subject::Sha256(second.delivered_pdf_sha256.clone())] {
        let answer = node.verification().await.verify(pb::VerifyRequest { subject: Some(subject), correlation_id: String::new() }).await.unwrap().into_inner();
        assert_eq!(answer.certifications.len(), 1);
        assert_eq!(answer.certifications[0].summary, "valid");
        assert_eq!(answer.document_sha256, sha256(&scans[1]), "answered with the scan the pdf was made from");
    }
}

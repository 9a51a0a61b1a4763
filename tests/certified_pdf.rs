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


/// A node with its own TSA and agency numbering, a registered ECDSA signer, and the
/// agency's seal registered through `kyso agency seal`.
async fn node_with_agency_seal(dir: &std::path::Path, pki: &TestPki) -> (TestNode, pb::Signer) {
    let top_level = format!(
        "public_base_url = \"https://tra-cuu.example.vn\"\n[agency_names]\n\"{AGENCY}\" = \"UBND xã Đông Hưng\"\n[certified_pdf.\"{AGENCY}\"]\nnumber_format = \"{{number}}/{{year}}-SCTĐT/BS\"\n{}",
        pki.tsa_toml(&dir.join("pki"), "tsa")
    );
    let node = TestNode::start_with(&dir.join("node"), &pki.ca_pem_path, &top_level, "");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let agency_certificate = pki.issue(&signer_spec("UBND xã Đông Hưng", KeyAlgorithm::EcdsaP256));
    let (cert_path, key_path) = (dir.join("agency.pem"), dir.join("agency.key"));
    std::fs::write(&cert_path, agency_certificate.cert_pem()).unwrap();
    std::fs::write(&key_path, agency_certificate.key_pem().as_bytes()).unwrap();
    let (ok, stdout, stderr) = kyso_cli_for(
        &node,
        &["agency", "seal", "--server", &node.grpc_url, "--agency", AGENCY, "--org-cert", cert_path.to_str().unwrap(), "--org-key", key_path.to_str().unwrap()],
    );
    assert!(ok && stdout.contains("signs its certified pdfs"), "kyso agency seal: {stdout}{stderr}");
    (node, signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_pdf_is_delivered_numbered_signed_and_verifiable_by_its_hash() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let (node, signer) = node_with_agency_seal(dir.path(), &pki).await;
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
        let answer = node.verification().await.verify(pb::VerifyRequest { subject: Some(subject), correlation_id: String::new(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(answer.certifications.len(), 1);
        assert_eq!(answer.certifications[0].summary, "valid");
        assert_eq!(answer.document_sha256, sha256(&scans[1]), "answered with the scan the pdf was made from");
    }

    // The delivered PDF certified in its turn, as a document of its own: its lookup code
    // answers with that certification, not with the scan the PDF was first made from.
    let of_pdf = node.signing().await.certify(certify_request("c-pdf", &delivered, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let subject = pb::verify_request::Subject::LookupCode(of_pdf.lookup_code.clone());
    let answer = node.verification().await.verify(pb::VerifyRequest { subject: Some(subject), correlation_id: String::new(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(answer.document_sha256, second.delivered_pdf_sha256, "answered for the document the code certifies");
    assert!(
        answer.certifications.iter().any(|verified| verified.certification.as_ref().is_some_and(|certification| certification.lookup_code == of_pdf.lookup_code)),
        "{answer:?}"
    );
}

/// The DSS of a PDF as pyHanko reads it: (certificates, CRLs), each a SHA-256 in hex.
fn dss_by_pyhanko(path: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let script = r#"
import sys, hashlib
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
with open(sys.argv[1], 'rb') as f:
    try:
        dss = DocumentSecurityStore.read_dss(PdfFileReader(f))
    except NoDSSFoundError:
        sys.exit(0)
    for cert in dss.certs.values(): print('cert', hashlib.sha256(cert.get_object().data).hexdigest())
    for crl in dss.crls: print('crl', hashlib.sha256(crl.get_object().data).hexdigest())
"#;
    let (ok, output) = tool_with_env("python3", &["-c", script, path.to_str().unwrap()], &[]);
    assert!(ok, "pyhanko could not read the dss:\n{output}");
    let pick = |kind: &str| output.lines().filter_map(|line| line.strip_prefix(kind)).map(|hash| hash.trim().to_string()).collect::<Vec<_>>();
    (pick("cert "), pick("crl "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certified_pdf_embeds_the_crls_kyso_holds_in_its_dss_pades_b_lt() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let (node, signer) = node_with_agency_seal(dir.path(), &pki).await;
    let scans: Vec<Vec<u8>> = (0..3).map(|seed| kyso::cli::dev::sample_pdf(&format!("b-lt scan {seed}"))).collect();
    upload(&node, "dossier-lt", AGENCY, &[("a.pdf", &scans[0]), ("b.pdf", &scans[1]), ("c.pdf", &scans[2])]).await.unwrap();
    let delivered = |name: &str, pdf: Vec<u8>| {
        let path = artefacts().join(name);
        std::fs::write(&path, pdf).unwrap();
        path
    };

    // No CRL held: the PDF stays B-T, without a DSS.
    let plain = node.signing().await.certify(certify_request("lt-0", &scans[0], AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let plain_path = delivered("b-t.pdf", get_blob(&node, &plain.delivered_pdf_sha256).await.unwrap());
    assert_eq!(dss_by_pyhanko(&plain_path), (vec![], vec![]), "no crl held, no dss");

    let older = kyso::crypto::devpki::issue_crl(&pki.ca, &[], now_unix() - 7_200, 30 * 86_400).unwrap();
    let newer = kyso::crypto::devpki::issue_crl(&pki.ca, &[], now_unix() - 60, 30 * 86_400).unwrap();
    // The newer one through the CLI, which says it will be embedded; the older one (imported
    // after it) over gRPC.
    let newer_path = dir.path().join("newer.crl");
    std::fs::write(&newer_path, &newer).unwrap();
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["crl", "import", "--server", &node.grpc_url, newer_path.to_str().unwrap()]);
    assert!(ok && stdout.contains("certified pdfs whose chains its issuer issued now carry it (pades b-lt)"), "kyso crl import:\n{stdout}{stderr}");
    let imported = node.signing().await.import_crl(pb::ImportCrlRequest { request_id: "crl-older".into(), crl: older.clone() }).await.unwrap().into_inner();
    assert!(imported.embedded_in_certified_pdfs, "small enough to embed (but older than the one kept)");
    let lt = node.signing().await.certify(certify_request("lt-1", &scans[1], AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let lt_pdf = get_blob(&node, &lt.delivered_pdf_sha256).await.unwrap();
    assert!(lt_pdf.starts_with(&scans[1]), "the scan's bytes stay the prefix");
    let lt_path = delivered("b-lt.pdf", lt_pdf);
    let (certificates, crls) = dss_by_pyhanko(&lt_path);
    assert_eq!(crls, vec![hex::encode(sha256(&newer))], "the newest crl of the issuer, imported first, is kept; the older one imported later does not replace it");
    let tsa_pem = std::fs::read(dir.path().join("pki/tsa.pem")).unwrap();
    let tsa_der = pem::parse_many(&tsa_pem).unwrap()[0].contents().to_vec();
    for (what, der) in [("ca", &pki.ca.cert_der), ("tsa", &tsa_der)] {
        assert!(certificates.contains(&hex::encode(sha256(der))), "the {what} certificate is in the dss: {certificates:?}");
    }
    assert_eq!(certificates.len(), 4, "performer, agency, tsa and ca certificates, each once: {certificates:?}");

    let qpdf = tool("qpdf", &["--check", lt_path.to_str().unwrap()]);
    assert!(qpdf.contains("No syntax or stream encoding errors") && !qpdf.to_lowercase().contains("warning"), "qpdf:\n{qpdf}");
    let (_nss, database) = nss_database_trusting(&pki.ca_pem_path);
    let pdfsig = tool("pdfsig", &["-nssdir", &database, lt_path.to_str().unwrap()]);
    assert_eq!(pdfsig.matches("Signature is Valid.").count(), 2, "pdfsig:\n{pdfsig}");
    assert_eq!(pdfsig.matches("Total document signed").count(), 1, "nothing follows the agency's signature:\n{pdfsig}");
    // pyHanko's AdES validation checks revocation and fetches nothing here (the test
    // certificates name no CRL distribution point): without the DSS it cannot tell
    // whether the signers were revoked; with it, it can.
    let adesverify = |path: &std::path::Path| {
        tool_with_env("pyhanko", &["sign", "adesverify", "--trust", pki.ca_pem_path.to_str().unwrap(), "--trust-replace", path.to_str().unwrap()], &[])
    };
    let (ok, b_t) = adesverify(&plain_path);
    assert!(!ok && b_t.matches(":INTACT:UNTRUSTED").count() == 2 && b_t.contains("no revocation information"), "without a dss pyhanko cannot check revocation:\n{b_t}");
    // Offline, the certified PDF checks against the bundle too: the performer's PDF
    // signature over its ranges, and the log leaf that names the PDF's hash.
    let offline = offline_bundle(&node, &pki.ca_pem_path, &lt.lookup_code);
    let (ok, output) = offline(&lt_path);
    assert!(ok && output.contains("verified offline"), "kyso verify --offline with the certified pdf:\n{output}");
    let scan_path = artefacts().join("b-lt-scan.pdf");
    std::fs::write(&scan_path, &scans[1]).unwrap();
    let (ok, output) = offline(&scan_path);
    assert!(ok && output.contains("verified offline"), "kyso verify --offline with the scan:\n{output}");
    let (ok, output) = offline(&plain_path);
    assert!(!ok && output.contains("not the certified document"), "another certification's pdf:\n{output}");

    let (ok, b_lt) = adesverify(&lt_path);
    println!("pyhanko sign adesverify on the B-LT pdf:\n{}", b_lt.trim());
    assert!(ok, "pyhanko adesverify:\n{b_lt}");
    assert_eq!(b_lt.matches(":INTACT:TRUSTED,TIMESTAMP_TOKEN<INTACT:TRUSTED>").count(), 2, "both signatures trusted with revocation checked from the dss:\n{b_lt}");
}

/// A CRL over 256 KiB (10,000 entries, made by `openssl ca -gencrl`) still revokes the
/// signer it lists, but is not kept: the CLI says so and the next certified PDF has no DSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_too_large_to_embed_still_revokes_and_certified_pdfs_stay_b_t() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let (node, signer) = node_with_agency_seal(dir.path(), &pki).await;
    let revoked_issued = pki.issue(&signer_spec("Bị Thu Hồi", KeyAlgorithm::EcdsaP256));
    let revoked = register_signer(&node, &revoked_issued, &[AGENCY]).await.unwrap();

    let ca_dir = dir.path().join("openssl-ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let (ca_cert, ca_key) = (ca_dir.join("ca.pem"), ca_dir.join("ca.key"));
    std::fs::write(&ca_cert, pki.ca.cert_pem()).unwrap();
    std::fs::write(&ca_key, pki.ca.key_pem().as_bytes()).unwrap();
    let mut index = String::new();
    for serial in 1..=10_000u32 {
        index.push_str(&format!("R\t491231000000Z\t250101000000Z\t{:032X}\tunknown\t/CN=revoked {serial}\n", u128::from(serial) << 64));
    }
    index.push_str(&format!("R\t491231000000Z\t250101000000Z\t{}\tunknown\t/CN=Bi Thu Hoi\n", revoked.serial_hex.to_uppercase()));
    std::fs::write(ca_dir.join("index.txt"), index).unwrap();
    std::fs::write(ca_dir.join("crlnumber"), "01\n").unwrap();
    let config = ca_dir.join("ca.cnf");
    std::fs::write(&config, format!("[ca]\ndefault_ca = kyso\n[kyso]\ndatabase = {}\ncrlnumber = {}\ndefault_md = sha256\ndefault_crl_days = 30\n", ca_dir.join("index.txt").display(), ca_dir.join("crlnumber").display())).unwrap();
    let big = ca_dir.join("big.crl");
    let (ok, output) = tool_with_env(
        "openssl",
        &["ca", "-batch", "-config", config.to_str().unwrap(), "-gencrl", "-keyfile", ca_key.to_str().unwrap(), "-cert", ca_cert.to_str().unwrap(), "-out", big.to_str().unwrap()],
        &[],
    );
    assert!(ok, "openssl ca -gencrl:\n{output}");
    let der_bytes = kyso::crypto::crl::crl_der(&std::fs::read(&big).unwrap()).unwrap().len();
    assert!(der_bytes > kyso::domain::KEPT_CRL_SIZE_BYTES_MAX, "the crl is {der_bytes} bytes");

    let (ok, stdout, stderr) = kyso_cli_for(&node, &["crl", "import", "--server", &node.grpc_url, big.to_str().unwrap()]);
    assert!(ok, "kyso crl import:\n{stdout}{stderr}");
    assert!(stdout.contains("1 registered signer(s) newly revoked") && stdout.contains(&revoked.signer_id), "it still revokes:\n{stdout}");
    assert!(stdout.contains("larger than 256 KiB: it revokes, but certified pdfs do not embed it"), "kyso crl import:\n{stdout}");

    let scan = kyso::cli::dev::sample_pdf("b-t after a large crl");
    upload(&node, "dossier-big-crl", AGENCY, &[("a.pdf", &scan)]).await.unwrap();
    let certified = node.signing().await.certify(certify_request("big-crl-1", &scan, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let path = artefacts().join("b-t-big-crl.pdf");
    std::fs::write(&path, get_blob(&node, &certified.delivered_pdf_sha256).await.unwrap()).unwrap();
    assert_eq!(dss_by_pyhanko(&path), (vec![], vec![]), "no crl kept, so no dss");
}

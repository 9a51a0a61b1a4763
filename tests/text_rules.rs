//! Text that cannot deceive (issue 21), on a real `kyso node`: names and identifiers arrive
//! in NFC, bidi controls, C1 controls and look-alike names are refused with the reason and
//! the look-alike named, identifiers stay in one script, and text from certificates (kept
//! as signed) reaches terminals, JSON and error messages escaped.

mod common;
mod public_fixture;

use common::*;
use public_fixture::get;
use kyso::crypto::devpki::{self, CertSpec, IssuedCert};
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use tonic::Code;

/// Characters that reorder or hide text, or drive a terminal.
const UNSAFE: [char; 5] = ['\u{202E}', '\u{2067}', '\u{2069}', '\u{0085}', '\u{009B}'];

fn register_request(issued: &IssuedCert, name: &str, title: &str, agencies: &[&str]) -> pb::RegisterSignerRequest {
    pb::RegisterSignerRequest {
        request_id: format!("signer-{}", hex::encode(&issued.cert_der[issued.cert_der.len() - 8..])),
        name: name.into(),
        title: title.into(),
        agency_ids: agencies.iter().map(|agency| agency.to_string()).collect(),
        certificate_chain: issued.cert_pem().into_bytes(),
        private_key_pkcs8: issued.key_pem().as_bytes().to_vec(),
        pin: TEST_PIN.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_ids_arrive_in_nfc_and_spoofing_text_is_refused() {
    let fixture = fixture("");
    let node = &fixture.node;
    let mut signing = node.signing().await;
    let issue = |name: &str| fixture.pki.issue(&signer_spec(name, KeyAlgorithm::EcdsaP256));

    // Decomposed Vietnamese (NFD) is stored composed (NFC), names and agency ids alike.
    let nfd_name = "Nguye\u{0302}\u{0303}n Va\u{0306}n An";
    let nfd_agency = "xa\u{0303}-demo";
    let first = signing.register_signer(register_request(&issue("Một"), nfd_name, "Chu\u{0309} ti\u{0323}ch", &[nfd_agency])).await.unwrap().into_inner();
    assert_eq!(first.name, "Nguyễn Văn An");
    assert_eq!(first.title, "Chủ tịch");
    assert_eq!(first.agency_ids, vec!["xã-demo".to_string()]);
    // A dossier archived under the NFD id belongs to the same agency, and certifies there.
    let content = document(1, 1500);
    let dossier = upload(node, "d-nfd", nfd_agency, &[("a.pdf", &content)]).await.unwrap();
    assert!(!dossier.dossier_id.is_empty());
    signing.certify(certify_request("c-nfc", &content, "xã-demo", &first.signer_id)).await.expect("the NFD-archived file certifies under the NFC id");

    // Bidi overrides and isolates, C1 controls and invisible characters are refused, named.
    for (name, title, expected) in [
        ("Nguyễn Văn An\u{202E}fdp.exe", "Chủ tịch", "U+202E"),
        ("Trần Thị Bình", "Chủ tịch \u{2067}UBND\u{2069}", "U+2067"),
        ("Lê\u{0085}Văn", "Chủ tịch", "U+0085"),
        ("Lê\u{200B}Văn", "Chủ tịch", "U+200B"),
    ] {
        let refused = signing.register_signer(register_request(&issue("Bị Từ Chối"), name, title, &["xã-demo"])).await;
        assert_status(refused, Code::InvalidArgument, expected);
    }
    // An agency id with a Cyrillic look-alike letter is refused, and says which script.
    let cyrillic = signing.register_signer(register_request(&issue("Giả Mạo"), "Phạm Văn Dũng", "Chủ tịch", &["UBND-\u{0445}\u{00E3}-demo"])).await;
    assert_status(cyrillic, Code::InvalidArgument, "Cyrillic");
    // A name a reader could mistake for a registered signer's (Cyrillic А in "An") is refused, naming it.
    let look_alike = signing.register_signer(register_request(&issue("Giống Hệt"), "Nguyễn Văn \u{0410}n", "Chủ tịch", &["xã-demo"])).await;
    assert_status(look_alike, Code::InvalidArgument, "can be mistaken for the existing \"Nguyễn Văn An\"");
    // An agency id that reads like a known one ("rn" for "m") is refused at archive time.
    grant(node, &node.tls.issue_client("clerk xa-moc"), &["clerk"], &["xa-moc"], &[]).await;
    let confusable = upload(node, "d-rn", "xa-rnoc", &[("b.pdf", &document(2, 100))]).await;
    assert_status(confusable, Code::InvalidArgument, "can be mistaken for the existing \"xa-moc\"");
}

/// A signer certificate whose subject carries a bidi override and a C1 control sequence
/// introducer (CSI, which terminals obey like ESC [).
fn hostile_certificate(pki: &TestPki) -> IssuedCert {
    let spec = CertSpec { common_name: "Người Ký\u{202E}fdp.exe\u{009B}31m".into(), ..signer_spec("x", KeyAlgorithm::EcdsaP256) };
    devpki::issue(&spec, &pki.ca).unwrap()
}

fn assert_escaped(what: &str, text: &str) {
    assert!(!text.contains(UNSAFE), "{what} shows unsafe characters raw: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_text_reaches_terminals_and_errors_escaped() {
    let fixture = fixture("");
    let node = &fixture.node;
    let dir = tempdir();
    let issued = hostile_certificate(&fixture.pki);
    let (cert_path, key_path) = (dir.path().join("signer.pem"), dir.path().join("signer.key"));
    std::fs::write(&cert_path, issued.cert_pem()).unwrap();
    write_private(&key_path, issued.key_pem().as_bytes());
    // `kyso signer add --json`: the subject is in the JSON, escaped as \u202e and \u009b.
    let (ok, stdout, stderr) = kyso_cli_for(node, &[
        "signer", "add", "--server", &node.grpc_url, "--json", "--name", "Người Ký Thật", "--title", "Chủ tịch", "--agency", "xa-an",
        "--signer-cert", cert_path.to_str().unwrap(), "--private-key", key_path.to_str().unwrap(), "--pin", TEST_PIN,
    ]);
    assert!(ok, "{stderr}");
    assert_escaped("signer add --json", &stdout);
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let subject = parsed["subject"].as_str().unwrap();
    assert!(subject.contains("\\u{202E}") && subject.contains("\\u{009B}"), "the subject is shown with its escapes visible: {subject}");
    // The certificate itself is kept as signed: the registered chain still holds the raw name.
    let signer_id = parsed["signer_id"].as_str().unwrap();
    assert_eq!(signer_id, hex::encode(sha256(&issued.cert_der)), "the signer is its certificate, byte for byte");

    // A refusal that quotes the certificate (expired) escapes it in the gRPC message and on the terminal.
    let now = now_unix();
    let expired = devpki::issue(
        &CertSpec { not_before_unix: now - 7200, not_after_unix: now - 3600, ..CertSpec { common_name: "Hết Hạn\u{202E}gpj.exe\u{009B}2J".into(), ..signer_spec("x", KeyAlgorithm::EcdsaP256) } },
        &fixture.pki.ca,
    )
    .unwrap();
    let refused = node.signing().await.register_signer(register_request(&expired, "Hết Hạn", "Chủ tịch", &["xa-an"])).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_escaped("the FAILED_PRECONDITION message", refused.message());
    assert!(refused.message().contains("\\u{202E}"), "{}", refused.message());
    let (expired_cert, expired_key) = (dir.path().join("expired.pem"), dir.path().join("expired.key"));
    std::fs::write(&expired_cert, expired.cert_pem()).unwrap();
    write_private(&expired_key, expired.key_pem().as_bytes());
    let (ok, stdout, stderr) = kyso_cli_for(node, &[
        "signer", "add", "--server", &node.grpc_url, "--name", "Hết Hạn", "--title", "Chủ tịch", "--agency", "xa-an",
        "--signer-cert", expired_cert.to_str().unwrap(), "--private-key", expired_key.to_str().unwrap(), "--pin", TEST_PIN,
    ]);
    assert!(!ok, "{stdout}");
    assert_escaped("the CLI's error", &stderr);
    assert!(stderr.contains("expired"), "{stderr}");
}

/// Text stored before the rule existed (written here straight into a stopped node's state,
/// as an older release could have) is shown escaped on the public page and in its JSON;
/// a headless browser's rendering of the page is kept under
/// `<target>/test-artifacts/text-rules/` to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_recorded_before_the_rule_is_shown_escaped_on_the_public_page() {
    use kyso::access::Actor;
    use kyso::domain::{ArchivedFile, Certification, CertificationKind, Dossier, Sha256, Signer};
    use kyso::state::command::COMMAND_VERSION;
    use kyso::state::{Command as StateCommand, CommandEnvelope, StateStore};
    use kyso_cluster::StateMachine as _;

    let fixture = fixture("");
    let mut node = fixture.node;
    node.archive().await;
    node.stop();
    let store = StateStore::open(&node.dir.join("data/state.redb")).unwrap();
    let content = b"scan recorded by an older release";
    let signer = Signer {
        id: "legacy-signer".into(),
        name: "Nguyễn Văn An\u{202E}fdp.exe".into(),
        title: "Chủ tịch \u{2067}UBND\u{2069}".into(),
        agency_ids: vec!["xa-cu".into()],
        subject: "CN=legacy".into(),
        issuer: "CN=legacy CA".into(),
        serial_hex: "01".into(),
        not_before_unix: 0,
        not_after_unix: i64::MAX,
        key_algorithm: "ecdsa-p256".into(),
        chain_der: Vec::new(),
        sealed_key: None,
        registered_at_unix: 0,
    };
    let dossier = Dossier {
        id: "legacy-dossier".into(),
        agency_id: "xa-cu".into(),
        procedure_code: "1.001193".into(),
        dossier_number: "HS-1".into(),
        received_date: "2026-01-02".into(),
        private_fields: Vec::new(),
        files: vec![ArchivedFile { name: "a.pdf".into(), content_type: "application/pdf".into(), size_bytes: content.len() as u64, sha256: Sha256::digest(content) }],
        archived_at_unix: 0,
    };
    let code = kyso::lookup::LookupCode::generate(&ring::rand::SystemRandom::new()).unwrap();
    let certification = Certification {
        version: kyso::domain::CERTIFICATION_RECORD_VERSION,
        lookup_code: code.clone(),
        document_sha256: Sha256::digest(content),
        kind: CertificationKind::CertifiedCopy,
        agency_id: "xa-cu".into(),
        signer_id: "legacy-signer".into(),
        dossier_id: String::new(),
        signed_at_unix: now_unix(),
        cms_der: vec![0x30, 0x00],
        delivered_pdf: None,
        revocation: None,
    };
    let first = store.applied_index().unwrap() + 1;
    let entries: Vec<kyso_cluster::Entry> = [StateCommand::RegisterSigner(signer), StateCommand::ArchiveDossier(dossier), StateCommand::Certify(vec![certification])]
        .into_iter()
        .enumerate()
        .map(|(offset, command)| {
            let envelope = CommandEnvelope { version: COMMAND_VERSION, request_id: format!("legacy-{offset}"), request_fingerprint: [0; 32], issued_at_unix: now_unix(), command, actor: Actor::local("older release") };
            kyso_cluster::Entry { index: first + offset as u64, term: 1, data: envelope.encode().into() }
        })
        .collect();
    let outcomes = store.apply(&entries).unwrap();
    let applied = kyso::state::Outcome::decode(&outcomes[2]).unwrap();
    assert!(matches!(applied, kyso::state::Outcome::Certifications(_)), "{applied:?}");
    drop(store);
    node.start_again();
    node.archive().await;

    let page = get(&node.http_url, &format!("/v/{code}"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_escaped("the lookup page", &page.body);
    assert!(page.body.contains("Nguyễn Văn An\\u{202E}fdp.exe"), "the name is shown with its override visible");
    let json = get(&node.http_url, &format!("/api/v1/lookup/{code}"), &[]).await;
    assert_eq!(json.status, 200);
    assert_escaped("the lookup JSON", &json.body);
    let stamp = get(&node.http_url, &format!("/v/{code}/stamp.svg"), &[]).await;
    assert_escaped("the stamp", &stamp.body);

    let target_tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let artifacts = target_tmp.parent().unwrap_or(target_tmp).join("test-artifacts/text-rules");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("legacy-bidi-name.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempdir();
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|path| std::path::Path::new(path).exists())
        .expect("chromium is required for this test: apt-get install -y chromium (./scripts/test.sh installs it)");
    let status = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=800,1000")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("{}/v/{code}", node.http_url))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success() && screenshot.exists(), "chromium rendered no screenshot");
}

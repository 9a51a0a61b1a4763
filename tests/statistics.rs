//! Statistics against a workload whose counts the test knows: one real node, two agencies,
//! dossiers with known files and bytes, results and copies certified, some revoked,
//! verifications over gRPC and over the public page's JSON; then ReportService and
//! `kyso report --json/--csv` are checked against the numbers, the province's total
//! included, and the archive-to-signature quantiles within their stated precision.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kyso::crypto::devpki::IssuedCert;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use pb::verify_request::Subject;
use serde_json::Value;

const AN_BINH: &str = "xa-an-binh";
const BINH_MINH: &str = "xa-binh-minh";

/// What the test expects of one agency (or of the total).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    dossiers_archived: u64,
    files_archived: u64,
    bytes_archived: u64,
    results_signed: u64,
    copies_certified: u64,
    revocations: u64,
    verifications_grpc: u64,
    verifications_public_page: u64,
    /// Exact archive-to-signature delays, seconds.
    delays: Vec<i64>,
}

impl Expected {
    fn add(&mut self, other: &Expected) {
        self.dossiers_archived += other.dossiers_archived;
        self.files_archived += other.files_archived;
        self.bytes_archived += other.bytes_archived;
        self.results_signed += other.results_signed;
        self.copies_certified += other.copies_certified;
        self.revocations += other.revocations;
        self.verifications_grpc += other.verifications_grpc;
        self.verifications_public_page += other.verifications_public_page;
        self.delays.extend(&other.delays);
    }

    /// The exact nearest-rank quantile `numerator / denominator` of the delays.
    fn quantile(&self, numerator: usize, denominator: usize) -> i64 {
        let mut delays = self.delays.clone();
        delays.sort_unstable();
        let rank = (numerator * delays.len()).div_ceil(denominator).max(1);
        delays[rank - 1]
    }

    /// Checks a row given as JSON (the CLI's or the RPC's, converted).
    fn check(&self, what: &str, row: &Value) {
        let field = |key: &str| row[key].as_u64().unwrap_or_else(|| panic!("{what}: {key} missing in {row}"));
        let counts = [
            ("dossiers_archived", self.dossiers_archived),
            ("files_archived", self.files_archived),
            ("bytes_archived", self.bytes_archived),
            ("results_signed", self.results_signed),
            ("copies_certified", self.copies_certified),
            ("revocations", self.revocations),
            ("verifications_grpc", self.verifications_grpc),
            ("verifications_public_page", self.verifications_public_page),
            ("signature_delays", self.delays.len() as u64),
        ];
        for (key, expected) in counts {
            assert_eq!(field(key), expected, "{what}: {key} in {row}");
        }
        // The stated precision: above the exact value, below 2^(1/4) times (exact + 1).
        for (key, exact) in [("signature_delay_median_seconds", self.quantile(1, 2)), ("signature_delay_p90_seconds", self.quantile(9, 10))] {
            let reported = field(key) as f64;
            assert!(
                reported > exact as f64 && reported < (exact as f64 + 1.0) * 1.1893,
                "{what}: {key} is {reported}, the exact value is {exact}"
            );
        }
    }
}

fn row_json(row: &pb::AgencyStatistics) -> Value {
    serde_json::json!({
        "agency_id": row.agency_id,
        "dossiers_archived": row.dossiers_archived,
        "files_archived": row.files_archived,
        "bytes_archived": row.bytes_archived,
        "results_signed": row.results_signed,
        "copies_certified": row.copies_certified,
        "revocations": row.revocations,
        "verifications_grpc": row.verifications_grpc,
        "verifications_public_page": row.verifications_public_page,
        "signature_delays": row.signature_delays,
        "signature_delay_median_seconds": row.signature_delay_median_seconds,
        "signature_delay_p90_seconds": row.signature_delay_p90_seconds,
    })
}

struct Archived {
    dossier_id: String,
    archived_at_unix: i64,
    files: Vec<Vec<u8>>,
}

async fn archive(node: &TestNode, request_id: &str, agency: &str, sizes: &[usize], expected: &mut Expected) -> Archived {
    let files: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(index, size)| document(request_id.len() as u8 * 16 + index as u8, *size)).collect();
    let named: Vec<(String, &[u8])> = files.iter().enumerate().map(|(index, content)| (format!("scan-{index}.pdf"), content.as_slice())).collect();
    let named: Vec<(&str, &[u8])> = named.iter().map(|(name, content)| (name.as_str(), *content)).collect();
    let response = upload(node, request_id, agency, &named).await.unwrap();
    let dossier = node.archive().await.get_dossier(pb::GetDossierRequest { dossier_id: response.dossier_id.clone() }).await.unwrap().into_inner();
    expected.dossiers_archived += 1;
    expected.files_archived += files.len() as u64;
    expected.bytes_archived += sizes.iter().sum::<usize>() as u64;
    Archived { dossier_id: response.dossier_id, archived_at_unix: dossier.archived_at_unix, files }
}

async fn certify(
    node: &TestNode,
    request_id: &str,
    dossier: &Archived,
    file: usize,
    kind: pb::CertificationKind,
    agency: &str,
    signer_id: &str,
    expected: &mut Expected,
) -> pb::Certification {
    let mut request = certify_request(request_id, &dossier.files[file], agency, signer_id);
    request.kind = kind as i32;
    request.dossier_id = dossier.dossier_id.clone();
    let certification = node.signing().await.certify(request).await.unwrap().into_inner();
    match kind {
        pb::CertificationKind::Result => expected.results_signed += 1,
        _ => expected.copies_certified += 1,
    }
    expected.delays.push(certification.signed_at_unix - dossier.archived_at_unix);
    certification
}

async fn revoke(node: &TestNode, certification: &pb::Certification, expected: &mut Expected) {
    node.signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest {
            request_id: format!("revoke-{}", certification.lookup_code),
            lookup_code: certification.lookup_code.clone(),
            reason: "cấp nhầm".into(),
        })
        .await
        .unwrap();
    expected.revocations += 1;
}

async fn verify_over_grpc(node: &TestNode, subject: Subject) -> Result<pb::VerifyResponse, tonic::Status> {
    node.verification().await.verify(pb::VerifyRequest { subject: Some(subject), correlation_id: String::new(), ..Default::default() }).await.map(|response| response.into_inner())
}

async fn lookup_json(node: &TestNode, code: &str) -> String {
    http_get(&format!("{}/api/v1/lookup/{code}", node.http_url)).await
}

async fn statistics(node: &TestNode, client: &IssuedCert, agency: &str, from: &str, to: &str) -> Result<pb::GetStatisticsResponse, tonic::Status> {
    pb::report_service_client::ReportServiceClient::new(node.channel_as(client).await)
        .get_statistics(pb::GetStatisticsRequest { agency_id: agency.into(), from_date: from.into(), to_date: to.into() })
        .await
        .map(|response| response.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_match_a_workload_whose_counts_are_known() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    // Verifications reach the replicated state one tally interval after they are answered.
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "statistics_tally_interval_seconds = 1\n");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AN_BINH, BINH_MINH]).await.unwrap();
    let signer_id = signer.signer_id.as_str();
    let (mut an_binh, mut binh_minh) = (Expected::default(), Expected::default());

    // Archive: An Bình 3 dossiers (6 files), Bình Minh 2 dossiers (3 files).
    let a1 = archive(&node, "a1", AN_BINH, &[1_000, 2_000], &mut an_binh).await;
    let a2 = archive(&node, "a2-x", AN_BINH, &[500], &mut an_binh).await;
    let a3 = archive(&node, "a3-xx", AN_BINH, &[100, 200, 300], &mut an_binh).await;
    let b1 = archive(&node, "b1-xxx", BINH_MINH, &[4_000], &mut binh_minh).await;
    let b2 = archive(&node, "b2-xxxx", BINH_MINH, &[10, 20], &mut binh_minh).await;

    // Certify: An Bình 2 results and 1 copy; Bình Minh 1 result and 2 copies.
    use pb::CertificationKind::{CertifiedCopy, Result as SignedResult};
    let a1_result = certify(&node, "c-a1", &a1, 0, SignedResult, AN_BINH, signer_id, &mut an_binh).await;
    let a2_result = certify(&node, "c-a2", &a2, 0, SignedResult, AN_BINH, signer_id, &mut an_binh).await;
    let a3_copy = certify(&node, "c-a3", &a3, 1, CertifiedCopy, AN_BINH, signer_id, &mut an_binh).await;
    let b1_result = certify(&node, "c-b1", &b1, 0, SignedResult, BINH_MINH, signer_id, &mut binh_minh).await;
    let b2_copy = certify(&node, "c-b2-0", &b2, 0, CertifiedCopy, BINH_MINH, signer_id, &mut binh_minh).await;
    let _b2_copy_too = certify(&node, "c-b2-1", &b2, 1, CertifiedCopy, BINH_MINH, signer_id, &mut binh_minh).await;

    // Revoke one of each agency.
    revoke(&node, &a2_result, &mut an_binh).await;
    revoke(&node, &b2_copy, &mut binh_minh).await;

    // Verify over gRPC: An Bình's copy twice (by code, by file), Bình Minh's result once;
    // an unknown document counts for nobody.
    verify_over_grpc(&node, Subject::LookupCode(a3_copy.lookup_code.clone())).await.unwrap();
    verify_over_grpc(&node, Subject::File(a3.files[1].clone())).await.unwrap();
    an_binh.verifications_grpc += 2;
    verify_over_grpc(&node, Subject::Sha256(b1_result.document_sha256.clone())).await.unwrap();
    binh_minh.verifications_grpc += 1;
    assert_status(verify_over_grpc(&node, Subject::Sha256(sha256(b"never archived"))).await, tonic::Code::NotFound, "no certification");

    // Verify on the public page's JSON: An Bình's result once, Bình Minh's revoked copy twice;
    // an unknown code counts for nobody.
    for (code, times) in [(&a1_result.lookup_code, 1), (&b2_copy.lookup_code, 2)] {
        for _ in 0..times {
            let answer = lookup_json(&node, code).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
    an_binh.verifications_public_page += 1;
    binh_minh.verifications_public_page += 2;
    assert!(lookup_json(&node, "ZZZZ-ZZZZ-ZZZZ-ZZZZ").await.starts_with("HTTP/1.1 404"));

    let mut total = an_binh.clone();
    total.add(&binh_minh);
    // The workload ran today (Vietnam time); a period around it holds all of it even if
    // the test crossed a midnight.
    let today = kyso::statistics::vietnam_day(now_unix());
    let (from, to) = (kyso::statistics::format_day(today - 1), kyso::statistics::format_day(today + 1));
    let operator = node.tls.operator.clone();

    // The tallies arrive within a few intervals.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = statistics(&node, &operator, "", &from, &to).await.unwrap();
        let tallied = report.total.as_ref().map_or(0, |row| row.verifications_grpc + row.verifications_public_page);
        if tallied >= total.verifications_grpc + total.verifications_public_page {
            break report;
        }
        assert!(Instant::now() < deadline, "the verification tallies did not arrive within 30 s: {report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report.agencies.iter().map(|row| row.agency_id.as_str()).collect::<Vec<_>>(), vec![AN_BINH, BINH_MINH]);
    an_binh.check("rpc, An Bình", &row_json(&report.agencies[0]));
    binh_minh.check("rpc, Bình Minh", &row_json(&report.agencies[1]));
    total.check("rpc, province", &row_json(report.total.as_ref().unwrap()));
    assert_eq!((report.from_date.as_str(), report.to_date.as_str()), (from.as_str(), to.as_str()));

    // One agency: its row, and a total equal to it.
    let one = statistics(&node, &operator, BINH_MINH, &from, &to).await.unwrap();
    assert_eq!(one.agencies.len(), 1);
    binh_minh.check("rpc, Bình Minh alone", &row_json(&one.agencies[0]));
    binh_minh.check("rpc, total of Bình Minh alone", &row_json(one.total.as_ref().unwrap()));
    // A period before the workload is empty.
    let before = statistics(&node, &operator, "", "2025-01-01", "2025-12-31").await.unwrap();
    assert!(before.agencies.is_empty(), "{before:?}");
    assert_eq!(before.total.as_ref().unwrap().signature_delay_median_seconds, None);

    // The CLI: --json keeps raw values; --csv has a header, one row per agency and a total.
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["report", "--server", &node.grpc_url, "--from", &from, "--to", &to, "--json"]);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    an_binh.check("cli json, An Bình", &json["agencies"][0]);
    binh_minh.check("cli json, Bình Minh", &json["agencies"][1]);
    total.check("cli json, province", &json["total"]);
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["report", "--server", &node.grpc_url, "--from", &from, "--to", &to, "--csv"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&header[..4], ["row", "agency_id", "from_date", "to_date"]);
    for (line, (kind, agency, expected)) in lines[1..].iter().zip([("agency", AN_BINH, &an_binh), ("agency", BINH_MINH, &binh_minh), ("total", "", &total)]) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), header.len(), "{line}");
        assert_eq!(&fields[..4], [kind, agency, from.as_str(), to.as_str()]);
        let row: serde_json::Map<String, Value> = header[4..]
            .iter()
            .zip(&fields[4..])
            .map(|(key, value)| (key.to_string(), Value::from(value.parse::<u64>().unwrap())))
            .collect();
        expected.check(&format!("cli csv, {kind} {agency}"), &Value::Object(row));
    }
    let (ok, stdout, _) = kyso_cli_for(&node, &["report", "--server", &node.grpc_url, "--agency", AN_BINH, "--from", &from, "--to", &to]);
    assert!(ok && stdout.contains(AN_BINH) && stdout.contains("results signed      2"), "{stdout}");

    // Scope: a verifier of An Bình reads An Bình only; others are refused, precisely.
    let verifier = node.tls.issue_client("thanh tra An Bình");
    grant(&node, &verifier, &["verifier"], &[AN_BINH], &[]).await;
    let own = statistics(&node, &verifier, "", &from, &to).await.unwrap();
    assert_eq!(own.agencies.len(), 1);
    an_binh.check("verifier, own agencies", &row_json(&own.agencies[0]));
    an_binh.check("verifier, total of own agencies", &row_json(own.total.as_ref().unwrap()));
    assert_status(statistics(&node, &verifier, BINH_MINH, &from, &to).await, tonic::Code::PermissionDenied, "only the statistics of its own agencies");
    let stranger = node.tls.issue_client("người lạ");
    assert_status(statistics(&node, &stranger, "", &from, &to).await, tonic::Code::PermissionDenied, "");

    // Dates: precise INVALID_ARGUMENT.
    for (from, to, needle) in [
        ("2026-02-30", "2026-03-01", "from_date is not a calendar date"),
        ("2026-03-01", "01/03/2026", "to_date must be a date written YYYY-MM-DD"),
        ("2026-03-02", "2026-03-01", "is after to_date"),
        ("2020-01-01", "2026-01-01", "at most 1830 days"),
    ] {
        assert_status(statistics(&node, &operator, "", from, to).await, tonic::Code::InvalidArgument, needle);
    }
}

/// In a cluster every member counts the verifications it answered and adds them through
/// the leader (a follower's tally is forwarded): the statistics are the same on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_tallies_reach_every_replica_of_a_cluster() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes: Vec<TestNode> = layout
        .members
        .iter()
        .map(|&(id, grpc, raft)| {
            let config = layout.config(id, grpc, raft, false).replace("[limits]\n", "[limits]\nstatistics_tally_interval_seconds = 1\n");
            TestNode::start_config(&dir.path().join(format!("node{id}")), &config, &layout.tls)
        })
        .collect();
    let leader = wait_for_leader(&nodes, Duration::from_secs(60)).await;
    let followers: Vec<&TestNode> = nodes.iter().enumerate().filter(|(position, _)| *position != leader).map(|(_, node)| node).collect();
    let signer = register_signer(&nodes[leader], &layout.pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AN_BINH]).await.unwrap();
    let mut expected = Expected::default();
    let dossier = archive(&nodes[leader], "a1", AN_BINH, &[3_000, 7], &mut expected).await;
    let copy = certify(&nodes[leader], "c1", &dossier, 0, pb::CertificationKind::CertifiedCopy, AN_BINH, &signer.signer_id, &mut expected).await;
    // Two verifications over gRPC on one follower, three on the other's public page.
    for _ in 0..2 {
        verify_over_grpc(followers[0], Subject::LookupCode(copy.lookup_code.clone())).await.unwrap();
    }
    expected.verifications_grpc = 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..3 {
        // The public page reads the local replica: it answers once the follower applied.
        loop {
            if lookup_json(followers[1], &copy.lookup_code).await.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "the follower's public page never found the certification");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    expected.verifications_public_page = 3;
    let today = kyso::statistics::vietnam_day(now_unix());
    let (from, to) = (kyso::statistics::format_day(today - 1), kyso::statistics::format_day(today + 1));
    let operator = layout.tls.operator.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = statistics(&nodes[leader], &operator, "", &from, &to).await.unwrap();
        let total = report.total.clone().unwrap_or_default();
        if total.verifications_grpc + total.verifications_public_page >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the followers' tallies did not arrive within 30 s: {report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_identical_state(&nodes, Duration::from_secs(30)).await;
    for node in &nodes {
        let report = statistics(node, &operator, "", &from, &to).await.unwrap();
        assert_eq!(report.agencies.len(), 1);
        expected.check(&format!("node {}", node.grpc_url), &row_json(&report.agencies[0]));
        expected.check(&format!("province on node {}", node.grpc_url), &row_json(report.total.as_ref().unwrap()));
    }
}

/// A node that stops gracefully proposes the verifications it counted since its last
/// tally (here the interval is an hour, so only the stop can have proposed them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_the_verifications_counted_since_the_last_tally() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let mut node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "statistics_tally_interval_seconds = 3600\n");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AN_BINH]).await.unwrap();
    let mut expected = Expected::default();
    let dossier = archive(&node, "a1", AN_BINH, &[900], &mut expected).await;
    let result = certify(&node, "c1", &dossier, 0, pb::CertificationKind::Result, AN_BINH, &signer.signer_id, &mut expected).await;
    verify_over_grpc(&node, Subject::LookupCode(result.lookup_code.clone())).await.unwrap();
    assert!(lookup_json(&node, &result.lookup_code).await.starts_with("HTTP/1.1 200"));
    (expected.verifications_grpc, expected.verifications_public_page) = (1, 1);
    let today = kyso::statistics::vietnam_day(now_unix());
    let (from, to) = (kyso::statistics::format_day(today - 1), kyso::statistics::format_day(today + 1));
    let operator = node.tls.operator.clone();
    let before = statistics(&node, &operator, AN_BINH, &from, &to).await.unwrap();
    assert_eq!(before.agencies[0].verifications_grpc + before.agencies[0].verifications_public_page, 0, "not tallied before the stop");
    node.restart();
    let after = statistics(&node, &operator, AN_BINH, &from, &to).await.unwrap();
    expected.check("after a graceful restart", &row_json(&after.agencies[0]));
}

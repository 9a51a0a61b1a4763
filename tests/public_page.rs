//! The public lookup port of a real node, as a citizen's browser or an agency's script
//! reaches it: the page in Vietnamese and English, the JSON schema, QR codes and stamps,
//! identical 404s for malformed and unknown codes, rate limiting, security headers, and
//! the privacy rule (no planted personal value or internal id in any public response).

mod common;
mod public_fixture;

use common::*;
use kyso::api::public::i18n::Lang;
use public_fixture::*;

const VI_ACCEPT: (&str, &str) = ("Accept-Language", "vi-VN,vi;q=0.9");
const EN_ACCEPT: (&str, &str) = ("Accept-Language", "en-GB,en;q=0.9,vi;q=0.5");

fn assert_contains(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(haystack.contains(needle), "{needle:?} missing from:\n{haystack}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_page_shows_the_public_facts_in_vietnamese_by_default() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    let hash = kyso::domain::Sha256::digest(&fixture.valid_document).to_hex();
    for headers in [&[][..], &[VI_ACCEPT][..], &[("Accept-Language", "fr-FR")][..]] {
        let page = get(url, &format!("/v/{}", fixture.valid_code), headers).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(page.header("content-language"), Some("vi"));
        assert_contains(
            &page.body,
            &[
                "<html lang=\"vi\">",
                &fixture.valid_code,
                "Còn hiệu lực",
                "Bản sao chứng thực điện tử từ bản chính",
                AGENCY_NAME,
                "Trần Thị Bình",
                "Phó Chủ tịch UBND xã",
                "(giờ Việt Nam, UTC+7)",
                &hash[..8],
                &hash[56..],
                "data-sha256=\"",
                "<noscript>",
            ],
        );
    }
    // The lower-case, undashed form of the code finds the same page.
    let compact = fixture.valid_code.replace('-', "").to_lowercase();
    let page = get(url, &format!("/v/{compact}"), &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&fixture.valid_code));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_page_is_in_english_on_request_and_shows_revocations() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    let by_header = get(url, &format!("/v/{}", fixture.valid_code), &[EN_ACCEPT]).await;
    let by_query = get(url, &format!("/v/{}?lang=en", fixture.valid_code), &[VI_ACCEPT]).await;
    for page in [&by_header, &by_query] {
        assert_eq!(page.header("content-language"), Some("en"));
        assert_contains(&page.body, &["<html lang=\"en\">", "Valid", "Electronic copy certified from the original", "(Vietnam time, UTC+7)"]);
    }
    let forced_vietnamese = get(url, &format!("/v/{}?lang=vi", fixture.valid_code), &[EN_ACCEPT]).await;
    assert!(forced_vietnamese.body.contains("Còn hiệu lực"));

    let revoked = get(url, &format!("/v/{}", fixture.revoked_code), &[]).await;
    assert_eq!(revoked.status, 200);
    assert_contains(&revoked.body, &["Đã thu hồi", "Ngày thu hồi", "Lý do thu hồi", REVOCATION_REASON, "data-revoked=\"true\""]);
    assert!(!revoked.body.contains("Còn hiệu lực"));
    let revoked_english = get(url, &format!("/v/{}?lang=en", fixture.revoked_code), &[]).await;
    assert_contains(&revoked_english.body, &["Revoked", "Revoked on", REVOCATION_REASON]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lookup_has_exactly_the_documented_fields() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    let response = get(url, &format!("/api/v1/lookup/{}", fixture.revoked_code), &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "agency_id", "agency_name", "consistency", "document_sha256", "kind", "lookup_code", "page_url", "revocation_reason",
            "revoked_at", "revoked_at_unix", "signed_at", "signed_at_unix", "signer_name", "signer_title", "status",
        ]
    );
    assert_eq!(json["lookup_code"], fixture.revoked_code.as_str());
    assert_eq!(json["page_url"], format!("{PUBLIC_BASE_URL}/v/{}", fixture.revoked_code));
    assert_eq!(json["kind"], "certified-copy");
    assert_eq!(json["agency_id"], AGENCY);
    assert_eq!(json["agency_name"], AGENCY_NAME);
    assert_eq!(json["status"], "revoked");
    assert_eq!(json["revocation_reason"], REVOCATION_REASON);
    assert_eq!(json["document_sha256"], kyso::domain::Sha256::digest(&fixture.revoked_document).to_hex());
    assert_eq!(json["consistency"], "local");
    let signed_at = json["signed_at"].as_str().unwrap();
    assert!(signed_at.ends_with("+07:00") && signed_at.len() == 25, "{signed_at}");
    assert!((json["signed_at_unix"].as_i64().unwrap() - now_unix()).abs() < 3600);
    assert!(json["revoked_at_unix"].as_i64().unwrap() >= json["signed_at_unix"].as_i64().unwrap());

    let valid: serde_json::Value =
        serde_json::from_str(&get(url, &format!("/api/v1/lookup/{}", fixture.valid_code), &[]).await.body).unwrap();
    assert_eq!(valid["status"], "valid");
    assert!(valid["revocation_reason"].is_null() && valid["revoked_at"].is_null() && valid["revoked_at_unix"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_codes_get_the_same_vietnamese_404() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    // One character changed from a real code: same prefix, still unknown.
    let mut near = fixture.valid_code.clone().into_bytes();
    let last = near.len() - 1;
    near[last] = if near[last] == b'0' { b'1' } else { b'0' };
    let near = String::from_utf8(near).unwrap();
    let unknown = get(url, &format!("/v/{near}"), &[]).await;
    assert_eq!(unknown.status, 404);
    assert_contains(&unknown.body, &["<html lang=\"vi\">", Lang::Vi.texts().not_found_title, Lang::Vi.texts().not_found_explained]);
    assert!(!unknown.body.contains(&near[..4]), "the 404 page does not repeat the code");
    for malformed in ["/v/ABC", "/v/%3Cscript%3E", "/v/UUUU-UUUU-UUUU-UUUU", &format!("/v/{}", "7".repeat(200)), "/no-such-page"] {
        let response = get(url, malformed, &[]).await;
        assert_eq!(response.status, 404, "{malformed}");
        assert_eq!(response.body, unknown.body, "{malformed} must be answered like an unknown code");
    }
    let unknown_json = get(url, &format!("/api/v1/lookup/{near}"), &[]).await;
    let malformed_json = get(url, "/api/v1/lookup/not-a-code", &[]).await;
    assert_eq!((unknown_json.status, malformed_json.status), (404, 404));
    assert_eq!(unknown_json.body, malformed_json.body);
    for suffix in ["qr.svg", "stamp.svg"] {
        assert_eq!(get(url, &format!("/v/{near}/{suffix}"), &[]).await.body, unknown.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_code_stamp_and_search_form_lead_to_the_page() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    let page_url = format!("{PUBLIC_BASE_URL}/v/{}", fixture.valid_code);
    let qr = get(url, &format!("/v/{}/qr.svg", fixture.valid_code), &[]).await;
    assert_eq!(qr.status, 200);
    assert_eq!(qr.header("content-type"), Some("image/svg+xml"));
    assert_contains(&qr.body, &["<svg xmlns=\"http://www.w3.org/2000/svg\"", &format!("<title>{page_url}</title>"), "<path d=\"M"]);
    let stamp = get(url, &format!("/v/{}/stamp.svg", fixture.valid_code), &[]).await;
    assert_eq!(stamp.status, 200);
    assert_eq!(stamp.header("content-type"), Some("image/svg+xml"));
    assert_contains(&stamp.body, &["width=\"86mm\"", &fixture.valid_code, AGENCY_NAME, "BẢN SAO CHỨNG THỰC ĐIỆN TỬ", "Quét mã QR", "tracuu.example.gov.vn"]);

    let home = get(url, "/", &[]).await;
    assert_eq!(home.status, 200);
    assert_contains(&home.body, &["action=\"/v\"", "name=\"code\"", Lang::Vi.texts().search_button]);
    let typed = fixture.valid_code.replace('-', "+").to_lowercase();
    let redirect = get(url, &format!("/v?code={typed}&lang=vi"), &[]).await;
    assert_eq!(redirect.status, 303);
    assert_eq!(redirect.header("location"), Some(format!("/v/{}?lang=vi", fixture.valid_code).as_str()));
    assert_eq!(get(url, "/v?code=nonsense&lang=vi", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_response_carries_the_content_security_policy() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    let code = &fixture.valid_code;
    for path in [
        format!("/v/{code}"),
        format!("/api/v1/lookup/{code}"),
        format!("/v/{code}/qr.svg"),
        format!("/v/{code}/stamp.svg"),
        "/v/nothing".to_string(),
        "/".to_string(),
        "/static/lookup.js".to_string(),
        "/static/lookup.css".to_string(),
        "/healthz".to_string(),
    ] {
        let response = get(url, &path, &[]).await;
        let policy = response.header("content-security-policy").unwrap_or_else(|| panic!("no CSP on {path}"));
        assert_eq!(policy, kyso::api::public::CONTENT_SECURITY_POLICY, "{path}");
        assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'none'"), "{policy}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
    let page = get(url, &format!("/v/{code}"), &[]).await;
    // Nothing on the page points at another origin, and nothing is inline that the policy
    // would block.
    assert!(!page.body.contains("http://") && !page.body.contains("https://") && !page.body.contains("//cdn"), "{}", page.body);
    assert!(!page.body.contains(" style=") && !page.body.contains("<style") && !page.body.contains(" on"), "{}", page.body);
    assert!(page.body.contains("<script src=\"/static/lookup.js\" defer></script>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_public_response_carries_personal_data_or_internal_ids() {
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;
    let url = &fixture.node.http_url;
    let secrets = fixture.secrets();
    // Each path with the status it must answer: a privacy check of a 429 or a 500 would
    // prove nothing, so the pages that carry the dossier's facts must answer 200.
    let mut paths: Vec<(String, u16)> =
        vec![("/".into(), 200), ("/v/0000-0000-0000-0000".into(), 404), ("/v/ABC".into(), 404), ("/api/v1/lookup/ABC".into(), 404)];
    for code in [&fixture.valid_code, &fixture.revoked_code] {
        for suffix in ["", "?lang=en", "/qr.svg", "/stamp.svg"] {
            paths.push((format!("/v/{code}{suffix}"), 200));
        }
        paths.push((format!("/api/v1/lookup/{code}"), 200));
        paths.push((format!("/v?code={code}"), 303));
    }
    let mut checked = 0;
    for (path, status) in &paths {
        for headers in [&[][..], &[EN_ACCEPT][..]] {
            let response = get(url, path, headers).await;
            assert_eq!(response.status, *status, "{path} with {headers:?}: {}", response.body);
            let everything = format!("{:?}\n{}", response.headers, response.body);
            for secret in &secrets {
                assert!(!everything.contains(secret.as_str()), "{path} carries {secret:?}:\n{everything}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, paths.len() * 2);
    // The same dossier's values are on the node (the planting worked): the archive API,
    // which is not public, returns them.
    let dossier = fixture
        .node
        .archive()
        .await
        .get_dossier(kyso_proto::v1::GetDossierRequest { dossier_id: fixture.dossier_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dossier.dossier_number, DOSSIER_NUMBER);
    assert!(dossier.files.iter().any(|file| file.name == VALID_FILE_NAME));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_their_rate_get_429_with_retry_after() {
    let dir = tempdir();
    let fixture = start(dir.path(), "public_requests_per_minute_max = 1\npublic_request_burst_max = 3\n").await;
    let url = &fixture.node.http_url;
    let page_path = format!("/v/{}", fixture.valid_code);
    for _ in 0..3 {
        assert_eq!(get(url, &page_path, &[]).await.status, 200);
    }
    let limited = get(url, &page_path, &[]).await;
    assert_eq!(limited.status, 429);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_contains(&limited.body, &["<html lang=\"vi\">", Lang::Vi.texts().too_many_title]);
    let limited_json = get(url, &format!("/api/v1/lookup/{}", fixture.valid_code), &[]).await;
    assert_eq!(limited_json.status, 429);
    assert!(limited_json.body.contains("\"error\""), "{}", limited_json.body);
    assert!(limited_json.header("retry-after").is_some());
    // Every route counts: health and checkpoint too (each checkpoint costs a read barrier).
    assert_eq!(get(url, "/healthz", &[]).await.status, 429, "health checks are rate limited like every route");
    assert_eq!(get(url, "/checkpoint", &[]).await.status, 429, "checkpoints are rate limited like every route");
}

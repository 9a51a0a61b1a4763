//! HTML of the public pages (maud: every value from the state is escaped). The pages work
//! without JavaScript; `/static/lookup.js` only adds the local file check. Nothing here
//! loads from another origin: styles, script and icon are served by the node, as the
//! Content-Security-Policy set in `mod.rs` enforces.

use maud::{html, Markup, DOCTYPE};

use super::i18n::{Lang, Texts, VietnamTime};
use crate::service::lookup::PublicCertification;

/// What the lookup page shows, resolved for display.
pub struct LookupView<'a> {
    pub facts: &'a PublicCertification,
    pub agency_name: &'a str,
    /// Largest file the node archives: a bigger file cannot match, so the script says so
    /// without reading it.
    pub file_size_bytes_max: u64,
}

/// The frame of every page: header with the site name and the language switch, footer.
fn layout(lang: Lang, path: &str, title: &str, body: Markup) -> Markup {
    let path = canonical_path(path);
    let texts = lang.texts();
    let other = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                meta name="robots" content="noindex, nofollow";
                title { (title) " — " (texts.site_name) }
                link rel="stylesheet" href="/static/lookup.css";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
            }
            body {
                header.site {
                    div.site-inner {
                        a.brand href=(format!("/?lang={}", lang.code())) {
                            (emblem())
                            span.brand-text {
                                span.brand-name { (texts.site_name) }
                                span.brand-tagline { (texts.site_tagline) }
                            }
                        }
                        a.lang-switch href=(format!("{path}?lang={}", other.code())) hreflang=(other.code()) lang=(other.code()) {
                            (texts.switch_language)
                        }
                    }
                }
                main.content { (body) }
                footer.site {
                    p { (texts.privacy_note) }
                }
            }
        }
    }
}

/// A gold star on a red disc: an official look without loading an image.
fn emblem() -> Markup {
    html! {
        svg.emblem viewBox="0 0 40 40" aria-hidden="true" focusable="false" {
            circle cx="20" cy="20" r="19" fill="#c8102e" stroke="#f2c94c" stroke-width="2" {}
            path d="M20 7.5l3.1 9.4h9.9l-8 5.8 3.1 9.4-8.1-5.8-8.1 5.8 3.1-9.4-8-5.8h9.9z" fill="#ffde00" {}
        }
    }
}

fn check_icon() -> Markup {
    html! {
        svg.icon viewBox="0 0 48 48" aria-hidden="true" focusable="false" {
            circle cx="24" cy="24" r="22" fill="currentColor" {}
            path d="M13 25l7 7 15-16" fill="none" stroke="#ffffff" stroke-width="5" stroke-linecap="round" stroke-linejoin="round" {}
        }
    }
}

fn cross_icon() -> Markup {
    html! {
        svg.icon viewBox="0 0 48 48" aria-hidden="true" focusable="false" {
            circle cx="24" cy="24" r="22" fill="currentColor" {}
            path d="M16 16l16 16M32 16L16 32" fill="none" stroke="#ffffff" stroke-width="5" stroke-linecap="round" {}
        }
    }
}

/// The SHA-256 in groups of eight digits. The groups are spans without spaces between
/// them, so copying the value yields the 64 digits that `sha256sum` prints.
fn fingerprint(hex: &str) -> Markup {
    html! {
        code.fingerprint {
            @for group in hex.as_bytes().chunks(8) {
                span { (String::from_utf8_lossy(group)) }
            }
        }
    }
}

fn status_banner(texts: &Texts, lang: Lang, facts: &PublicCertification) -> Markup {
    match &facts.revocation {
        None => html! {
            div.verdict.verdict-valid id="status" data-status="valid" {
                (check_icon())
                div {
                    p.verdict-title { (texts.status_valid) }
                    p.verdict-text { (texts.status_valid_explained) }
                }
            }
        },
        Some(revocation) => html! {
            div.verdict.verdict-revoked id="status" data-status="revoked" {
                (cross_icon())
                div {
                    p.verdict-title { (texts.status_revoked) }
                    p.verdict-text { (texts.status_revoked_explained) }
                    dl.revocation {
                        dt { (texts.revoked_on) }
                        dd { (VietnamTime::from_unix(revocation.revoked_at_unix).date_time(lang)) }
                        dt { (texts.revocation_reason) }
                        dd { (revocation.reason) }
                    }
                }
            }
        },
    }
}

fn file_check(texts: &Texts, view: &LookupView<'_>) -> Markup {
    let facts = view.facts;
    html! {
        section.card.file-check id="file-check" hidden
            data-sha256=(facts.document_sha256.to_hex())
            data-sha256-pdf=(facts.delivered_pdf_sha256.map(|hash| hash.to_hex()).unwrap_or_default())
            data-revoked=(if facts.revocation.is_some() { "true" } else { "false" })
            data-size-max=(view.file_size_bytes_max)
            data-msg-working=(texts.check_working)
            data-msg-match=(texts.check_match)
            data-msg-match-revoked=(texts.check_match_revoked)
            data-msg-mismatch=(texts.check_mismatch)
            data-msg-mismatch-detail=(texts.check_mismatch_explained)
            data-msg-unsupported=(texts.check_unsupported)
            data-msg-failed=(texts.check_failed) {
            h2 { (texts.check_heading) }
            p { (texts.check_explained) }
            label.drop-zone id="drop-zone" for="file-input" {
                span.button { (texts.check_choose_file) }
                span.drop-hint { (texts.check_drop_hint) }
                input.visually-hidden id="file-input" type="file";
            }
            p.private-note { (texts.check_private) }
            div.file-result id="file-result" role="status" aria-live="polite" hidden {
                p.file-verdict id="file-verdict" {}
                p.file-detail id="file-detail" {}
                p.file-hash id="file-hash" hidden {
                    span.file-hash-label { (texts.check_file_hash) }
                    code id="file-hash-value" {}
                }
            }
        }
        noscript {
            section.card {
                h2 { (texts.check_heading) }
                p { (texts.check_without_javascript) }
            }
        }
    }
}

/// `/v/{code}`: the status, the facts, and the local file check.
pub fn lookup_page(lang: Lang, view: &LookupView<'_>) -> Markup {
    let texts = lang.texts();
    let facts = view.facts;
    let code = facts.lookup_code.to_string();
    let signed_at = VietnamTime::from_unix(facts.signed_at_unix);
    let body = html! {
        section.card.summary {
            p.code-label { (texts.lookup_code) }
            p.code id="lookup-code" { (code) }
            (status_banner(texts, lang, facts))
        }
        section.card {
            h2 { (texts.details_heading) }
            dl.facts {
                dt { (texts.kind) }
                dd id="kind" { (texts.kind(facts.kind)) }
                dt { (texts.agency) }
                dd id="agency" { (view.agency_name) }
                dt { (texts.signer) }
                dd id="signer-name" { (facts.signer_name) }
                dt { (texts.signer_title) }
                dd id="signer-title" { (facts.signer_title) }
                dt { (texts.signed_at) }
                dd id="signed-at" { time datetime=(signed_at.rfc3339()) { (signed_at.date_time(lang)) } }
                dt { (texts.fingerprint) }
                dd id="fingerprint" {
                    (fingerprint(&facts.document_sha256.to_hex()))
                    span.explained { (texts.fingerprint_explained) }
                }
            }
        }
        (file_check(texts, view))
        p.machine-readable {
            a href=(format!("/api/v1/lookup/{code}")) { (texts.machine_readable) }
        }
        script src="/static/lookup.js" defer {}
    };
    layout(lang, &format!("/v/{code}"), texts.page_title, body)
}

/// The form to type a lookup code, shown at `/` and under error messages.
fn search_form(texts: &Texts, lang: Lang) -> Markup {
    html! {
        form.search action="/v" method="get" {
            label for="code" { (texts.search_label) }
            div.search-row {
                input id="code" name="code" type="text" inputmode="text" autocomplete="off" autocapitalize="characters"
                    spellcheck="false" maxlength="40" placeholder="XXXX-XXXX-XXXX-XXXX" required;
                input type="hidden" name="lang" value=(lang.code());
                button type="submit" { (texts.search_button) }
            }
        }
    }
}

/// `/`: what this site is and a field for the code printed on a document.
pub fn home_page(lang: Lang) -> Markup {
    let texts = lang.texts();
    let body = html! {
        section.card {
            h1 { (texts.search_heading) }
            p { (texts.search_explained) }
            (search_form(texts, lang))
        }
        (pdf_check_form(texts, lang))
    };
    layout(lang, "/", texts.search_heading, body)
}

/// The form that sends a PDF to `/check` (works without JavaScript: a multipart POST).
fn pdf_check_form(texts: &Texts, lang: Lang) -> Markup {
    html! {
        section.card id="pdf-check" {
            h2 { (texts.pdf_check_heading) }
            p { (texts.pdf_check_explained) }
            form.pdf-check action=(format!("/check?lang={}", lang.code())) method="post" enctype="multipart/form-data" {
                input id="pdf-file" name="file" type="file" accept="application/pdf,.pdf" required;
                button type="submit" { (texts.pdf_check_button) }
            }
        }
    }
}

/// One signature of a checked PDF, resolved for display: only what the file itself shows
/// and a public lookup code.
pub struct SignatureRow<'a> {
    pub signer_name: &'a str,
    pub signed_at_unix: Option<i64>,
    pub timestamp_unix: Option<i64>,
    pub timestamp_trusted: bool,
    pub signer_trusted: bool,
    pub valid: bool,
    pub covers_whole_file: bool,
    pub changed_after_signature: bool,
    /// Why it is invalid, in Vietnamese.
    pub reason_vi: Option<&'static str>,
    pub lookup_code: Option<String>,
}

fn signature_row(texts: &Texts, lang: Lang, index: usize, row: &SignatureRow<'_>) -> Markup {
    let coverage = if row.changed_after_signature {
        texts.pdf_changed_after
    } else if row.covers_whole_file {
        texts.pdf_covers_whole_file
    } else {
        texts.pdf_covered_by_later
    };
    html! {
        section.card.signature data-valid=(row.valid) data-changed-after=(row.changed_after_signature) {
            h2 { (texts.pdf_signature) " " (index + 1) }
            @if row.valid {
                div.verdict.verdict-valid { (check_icon()) p.verdict-title { (texts.pdf_signature_valid) } }
            } @else {
                div.verdict.verdict-revoked {
                    (cross_icon())
                    div {
                        p.verdict-title { (texts.pdf_signature_invalid) }
                        @if let Some(reason) = row.reason_vi { p.verdict-text { (reason) } }
                    }
                }
            }
            dl.facts {
                dt { (texts.signer) }
                dd.signer { (row.signer_name) @if row.valid && !row.signer_trusted { span.explained { (texts.pdf_signer_untrusted) } } }
                @if let Some(signed_at) = row.signed_at_unix {
                    dt { (texts.signed_at) }
                    dd { (VietnamTime::from_unix(signed_at).date_time(lang)) }
                }
                dt { (texts.pdf_timestamp) }
                dd {
                    @match row.timestamp_unix {
                        Some(time) => { (VietnamTime::from_unix(time).date_time(lang)) @if !row.timestamp_trusted { " " (texts.pdf_timestamp_untrusted) } }
                        None => { (texts.pdf_timestamp_none) }
                    }
                }
                dt { (texts.pdf_coverage) }
                dd.coverage { (coverage) }
                @if let Some(code) = &row.lookup_code {
                    dt { (texts.pdf_certification) }
                    dd { a href=(format!("/v/{code}?lang={}", lang.code())) { (code) } }
                }
            }
        }
    }
}

/// `POST /check`: every signature of the uploaded PDF.
pub fn signatures_page(lang: Lang, rows: &[SignatureRow<'_>]) -> Markup {
    let texts = lang.texts();
    let body = html! {
        section.card { h1 id="message-title" { (texts.pdf_result_title) } @if rows.is_empty() { p { (texts.pdf_no_signature) } } }
        @for (index, row) in rows.iter().enumerate() { (signature_row(texts, lang, index, row)) }
        (pdf_check_form(texts, lang))
    };
    layout(lang, "/check", texts.pdf_result_title, body)
}

/// `path` when it is a plain absolute path of this site (letters, digits, `/ - . _`, no
/// empty segment), else `/`: a link built from it can never leave the site (`//host/x` and
/// `/\host` are links to another host in browsers).
pub fn canonical_path(path: &str) -> &str {
    let plain = path.starts_with('/')
        && !path.contains("//")
        && path.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'.' | b'_'));
    if plain { path } else { "/" }
}

/// An error page (not found, too many requests, unavailable). It never repeats the code
/// that was asked for, so it says nothing about which codes exist.
pub fn message_page(lang: Lang, path: &str, title: &str, explained: &str) -> Markup {
    let texts = lang.texts();
    let body = html! {
        section.card.message {
            h1 id="message-title" { (title) }
            p { (explained) }
            (search_form(texts, lang))
        }
    };
    layout(lang, path, title, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CertificationKind, Revocation, Sha256};
    use crate::lookup::LookupCode;

    fn facts(revocation: Option<Revocation>) -> PublicCertification {
        PublicCertification {
            lookup_code: LookupCode::parse("7K3M-Q9TX-2HRN-B4WD").unwrap(),
            kind: CertificationKind::CertifiedCopy,
            agency_id: "xa-demo".into(),
            signer_name: "<script>alert(1)</script>".into(),
            signer_title: "Chủ tịch \"UBND\" & xã".into(),
            signed_at_unix: 1_795_505_432,
            document_sha256: Sha256::digest(b"document"),
            delivered_pdf_sha256: None,
            revocation,
        }
    }

    #[test]
    fn values_from_the_state_are_escaped() {
        let revoked = facts(Some(Revocation { reason: "<img src=x onerror=alert(1)>".into(), revoked_at_unix: 1_795_600_000 }));
        let view = LookupView { facts: &revoked, agency_name: "UBND <b>xã</b>", file_size_bytes_max: 1 };
        let page = lookup_page(Lang::Vi, &view).into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(!page.contains("<b>xã"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("Chủ tịch &quot;UBND&quot; &amp; xã"));
    }

    #[test]
    fn the_page_shows_every_public_fact_in_vietnamese() {
        let valid = facts(None);
        let view = LookupView { facts: &valid, agency_name: "UBND xã Demo", file_size_bytes_max: 1 };
        let page = lookup_page(Lang::Vi, &view).into_string();
        for expected in [
            "lang=\"vi\"",
            "7K3M-Q9TX-2HRN-B4WD",
            "Còn hiệu lực",
            "Bản sao chứng thực điện tử từ bản chính",
            "UBND xã Demo",
            "14:30:32 ngày 24/11/2026 (giờ Việt Nam, UTC+7)",
            "datetime=\"2026-11-24T14:30:32+07:00\"",
            &Sha256::digest(b"document").to_hex()[..8],
        ] {
            assert!(page.contains(expected), "{expected:?} missing");
        }
        assert!(!page.contains("xa-demo"), "the agency id is replaced by its display name");
        assert!(!page.contains("style="), "inline styles would break the Content-Security-Policy");
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing loads from another origin");
    }

    #[test]
    fn a_checked_pdf_shows_each_signature_escaped_with_what_it_covers() {
        let row = |signer_name, covers_whole_file, changed_after_signature| SignatureRow {
            signer_name,
            signed_at_unix: Some(1_795_505_432),
            timestamp_unix: None,
            timestamp_trusted: false,
            signer_trusted: true,
            valid: true,
            covers_whole_file,
            changed_after_signature,
            reason_vi: None,
            lookup_code: Some("7K3M-Q9TX-2HRN-B4WD".into()),
        };
        let rows = [row("<script>alert(1)</script>", false, false), row("Trần Thị Bình", true, false), row("X", false, true)];
        let page = signatures_page(Lang::Vi, &rows).into_string();
        assert!(!page.contains("<script>alert") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        for expected in ["Ký phiên bản trước của tệp", "Toàn bộ tệp được ký", "Tệp đã bị thay đổi sau khi ký", "Không có dấu thời gian", "/v/7K3M-Q9TX-2HRN-B4WD?lang=vi", "14:30:32 ngày 24/11/2026"] {
            assert!(page.contains(expected), "{expected:?} missing");
        }
        assert!(!page.contains("style=") && !page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn a_revoked_certification_shows_reason_and_date() {
        let revoked = facts(Some(Revocation { reason: "cấp nhầm".into(), revoked_at_unix: 1_795_600_000 }));
        let view = LookupView { facts: &revoked, agency_name: "UBND xã Demo", file_size_bytes_max: 1 };
        let page = lookup_page(Lang::En, &view).into_string();
        assert!(page.contains("Revoked") && page.contains("cấp nhầm") && page.contains("25 November 2026"), "{page}");
        assert!(page.contains("data-revoked=\"true\""));
    }
}

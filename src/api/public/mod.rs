//! The citizens' side of the HTTP port: the lookup page `/v/{code}`, its JSON twin
//! `/api/v1/lookup/{code}`, QR codes and printable stamps, a form at `/` to type a code,
//! the file check `/check` (a PDF posted by a form: each of its signatures reported in
//! Vietnamese, never stored), and the page's own stylesheet and script.
//!
//! What it must never do: show anything but public facts (it reads only
//! [`PublicCertification`], which holds no applicant data, file names or internal ids);
//! tell a malformed code from an unknown one (both get the same 404); load anything from
//! another origin (the Content-Security-Policy forbids it); or serve a client beyond its
//! rate limit (429 with `Retry-After`).

pub mod i18n;
pub mod json;
pub mod page;
pub mod qr;
pub mod rate_limit;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Path, RawQuery, Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use kyso_cluster::Proposer;
use maud::Markup;

use self::i18n::Lang;
use self::rate_limit::{Decision, RateLimiter};
use crate::config::{Config, Limits};
use crate::lookup::LookupCode;
use crate::service::lookup::PublicCertification;
use crate::service::Kyso;

/// Everything may come from this node only; scripts may not send anything anywhere
/// (`connect-src 'none'`), so a file being checked cannot leave the page even by mistake.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// How long browsers may keep the stylesheet, script and icon, in seconds.
const STATIC_CACHE_SECONDS: u32 = 3600;
/// How long browsers may keep a QR code or stamp (they never change), in seconds.
const IMAGE_CACHE_SECONDS: u32 = 86_400;

/// What the public routes need from the node's configuration.
#[derive(Debug, Clone)]
pub struct PublicSettings {
    /// Base of the URLs printed in QR codes, without a trailing slash.
    pub base_url: String,
    pub agency_names: BTreeMap<String, String>,
    pub limits: Limits,
    /// Reverse proxies whose `X-Forwarded-For` names the client (config `trusted_proxies`).
    pub trusted_proxies: Vec<IpAddr>,
}

impl PublicSettings {
    pub fn from_config(config: &Config) -> PublicSettings {
        PublicSettings {
            base_url: config.public_base_url.trim_end_matches('/').to_string(),
            agency_names: config.agency_names.clone(),
            limits: config.limits.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    /// The name shown publicly for an agency: its configured display name, else its id.
    fn agency_name<'a>(&'a self, agency_id: &'a str) -> &'a str {
        self.agency_names.get(agency_id).map(String::as_str).unwrap_or(agency_id)
    }
}

struct Public<P: Proposer> {
    kyso: Arc<Kyso<P>>,
    settings: PublicSettings,
    limiter: RateLimiter,
}

/// Why a lookup has no page to show.
enum Missing {
    /// Malformed or unknown: the two are answered identically.
    NotFound,
    Unavailable,
}

impl<P: Proposer> Public<P> {
    fn find(&self, code: &str) -> Result<PublicCertification, Missing> {
        let code = LookupCode::parse(code).map_err(|_| Missing::NotFound)?;
        match self.kyso.public_lookup(&code) {
            Ok(Some(facts)) => Ok(facts),
            Ok(None) => Err(Missing::NotFound),
            Err(error) => {
                tracing::warn!(%error, "public lookup failed");
                Err(Missing::Unavailable)
            }
        }
    }

    /// [`Public::find`] for a citizen's lookup (page or JSON), counted as a verification
    /// on the public channel; QR codes and stamps are not.
    fn verify(&self, code: &str) -> Result<PublicCertification, Missing> {
        let found = self.find(code);
        let outcome = match &found {
            Ok(_) => "found",
            Err(Missing::NotFound) => "not_found",
            Err(Missing::Unavailable) => "error",
        };
        crate::metrics::record_verification(crate::metrics::Channel::PublicPage, outcome);
        if let Ok(certification) = &found {
            self.kyso.count_verification(crate::statistics::VerificationChannel::PublicPage, [certification.agency_id.as_str()]);
        }
        found
    }
}

/// The public routes and `operational` (health, checkpoint), every one of them rate
/// limited per client. Requests must carry `ConnectInfo<SocketAddr>` (as
/// `api::http_server` attaches it) so the limiter sees client addresses; without it every
/// client shares one bucket.
pub fn routes<P: Proposer>(kyso: Arc<Kyso<P>>, settings: PublicSettings, operational: Router) -> Router {
    let limiter = RateLimiter::new(&settings.limits);
    let check_body_limit = DefaultBodyLimit::max(check_body_size_bytes_max(&settings.limits));
    let public = Arc::new(Public { kyso, settings, limiter });
    Router::new()
        .route("/", get(home))
        .route("/v", get(search))
        .route("/v/{code}", get(lookup_page::<P>))
        .route("/v/{code}/qr.svg", get(qr_code::<P>))
        .route("/v/{code}/stamp.svg", get(stamp::<P>))
        .route("/api/v1/lookup/{code}", get(lookup_json::<P>))
        .route("/check", get(home).post(check_pdf::<P>).layer(check_body_limit))
        .route("/static/lookup.css", get(|| async { static_asset("text/css; charset=utf-8", include_str!("assets/lookup.css")) }))
        .route("/static/lookup.js", get(|| async { static_asset("text/javascript; charset=utf-8", include_str!("assets/lookup.js")) }))
        .route("/static/favicon.svg", get(|| async { static_asset("image/svg+xml", include_str!("assets/favicon.svg")) }))
        .fallback(not_found_fallback)
        .with_state(public.clone())
        .merge(operational)
        .layer(middleware::from_fn_with_state(public, limit_rate::<P>))
}

/// Headers on every response of the HTTP port: the Content-Security-Policy and friends.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    response
}

/// The language a request asks for (see [`Lang::negotiate`]).
struct Negotiated(Lang);

impl<S: Send + Sync> FromRequestParts<S> for Negotiated {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Negotiated(negotiate(parts.uri.query(), &parts.headers)))
    }
}

fn negotiate(query: Option<&str>, headers: &HeaderMap) -> Lang {
    let accept_language = headers.get(header::ACCEPT_LANGUAGE).and_then(|value| value.to_str().ok());
    Lang::negotiate(query, accept_language)
}

/// The address a request is counted under: the connection's, or, for a connection from a
/// trusted proxy, the rightmost `X-Forwarded-For` address that is not itself a trusted
/// proxy (the leftmost entries are the client's own claim and prove nothing).
fn client_address(request: &Request, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect();
    forwarded.into_iter().rev().find(|address| !trusted_proxies.contains(address)).unwrap_or(peer)
}

async fn limit_rate<P: Proposer>(State(public): State<Arc<Public<P>>>, request: Request, next: Next) -> Response {
    let client = client_address(&request, &public.settings.trusted_proxies);
    match public.limiter.check(client, Instant::now()) {
        Decision::Allowed => next.run(request).await,
        Decision::Limited { retry_after_seconds } => {
            let lang = negotiate(request.uri().query(), request.headers());
            let texts = lang.texts();
            let mut response = if request.uri().path().starts_with("/api/") {
                error_json(StatusCode::TOO_MANY_REQUESTS, "too many requests from this address; retry after Retry-After seconds")
            } else {
                // The language link leads home: a requested path is never echoed into a link.
                let page = page::message_page(lang, "/", texts.too_many_title, texts.too_many_explained);
                html(StatusCode::TOO_MANY_REQUESTS, lang, page)
            };
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            response
        }
    }
}

fn html(status: StatusCode, lang: Lang, markup: Markup) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code())),
        (header::VARY, HeaderValue::from_static("Accept-Language")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (status, headers, markup.into_string()).into_response()
}

fn error_json(status: StatusCode, message: &'static str) -> Response {
    let headers = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    (status, headers, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The page for a lookup that has nothing to show. It is the same for every code (its
/// language link leads home), so it cannot tell one missing code from another.
fn missing_page(lang: Lang, missing: Missing) -> Response {
    let texts = lang.texts();
    let path = "/";
    match missing {
        Missing::NotFound => html(StatusCode::NOT_FOUND, lang, page::message_page(lang, path, texts.not_found_title, texts.not_found_explained)),
        Missing::Unavailable => html(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            page::message_page(lang, path, texts.unavailable_title, texts.unavailable_explained),
        ),
    }
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    let cache = HeaderValue::from_str(&format!("public, max-age={STATIC_CACHE_SECONDS}")).unwrap_or(HeaderValue::from_static("no-cache"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CACHE_CONTROL, cache)], body).into_response()
}

fn svg(body: String) -> Response {
    let cache = HeaderValue::from_str(&format!("public, max-age={IMAGE_CACHE_SECONDS}")).unwrap_or(HeaderValue::from_static("no-cache"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")), (header::CACHE_CONTROL, cache)], body).into_response()
}

#[tracing::instrument(skip_all)]
async fn home(Negotiated(lang): Negotiated) -> Response {
    html(StatusCode::OK, lang, page::home_page(lang))
}

/// `/v?code=…`: the search form's target. A well-formed code is redirected to its page;
/// anything else gets the same 404 as an unknown code.
#[tracing::instrument(skip_all)]
async fn search(Negotiated(lang): Negotiated, RawQuery(query): RawQuery) -> Response {
    let Some(typed) = query.as_deref().and_then(|query| query_value(query, "code")) else {
        return html(StatusCode::OK, lang, page::home_page(lang));
    };
    match LookupCode::parse(&typed) {
        Ok(code) => Redirect::to(&format!("/v/{code}?lang={}", lang.code())).into_response(),
        Err(_) => missing_page(lang, Missing::NotFound),
    }
}

#[tracing::instrument(skip_all)]
async fn lookup_page<P: Proposer>(
    State(public): State<Arc<Public<P>>>,
    Negotiated(lang): Negotiated,
    Path(code): Path<String>,
) -> Response {
    match public.verify(&code) {
        Ok(facts) => {
            let view = page::LookupView {
                facts: &facts,
                agency_name: public.settings.agency_name(&facts.agency_id),
                file_size_bytes_max: public.settings.limits.file_size_bytes_max,
            };
            html(StatusCode::OK, lang, page::lookup_page(lang, &view))
        }
        Err(missing) => missing_page(lang, missing),
    }
}

#[tracing::instrument(skip_all)]
async fn lookup_json<P: Proposer>(State(public): State<Arc<Public<P>>>, Path(code): Path<String>) -> Response {
    match public.verify(&code) {
        Ok(facts) => {
            let page_url = qr::page_url(&public.settings.base_url, &facts.lookup_code);
            let body = json::PublicLookup::new(&facts, public.settings.agency_name(&facts.agency_id), page_url);
            ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response()
        }
        Err(Missing::NotFound) => error_json(StatusCode::NOT_FOUND, "không tìm thấy mã tra cứu (lookup code not found)"),
        Err(Missing::Unavailable) => error_json(StatusCode::SERVICE_UNAVAILABLE, "lookup is unavailable; retry later"),
    }
}

#[tracing::instrument(skip_all)]
async fn qr_code<P: Proposer>(
    State(public): State<Arc<Public<P>>>,
    Negotiated(lang): Negotiated,
    Path(code): Path<String>,
) -> Response {
    drawing(&public, lang, &code, |facts| qr::qr_svg(&qr::page_url(&public.settings.base_url, &facts.lookup_code)))
}

#[tracing::instrument(skip_all)]
async fn stamp<P: Proposer>(
    State(public): State<Arc<Public<P>>>,
    Negotiated(lang): Negotiated,
    Path(code): Path<String>,
) -> Response {
    drawing(&public, lang, &code, |facts| {
        let agency_name = public.settings.agency_name(&facts.agency_id);
        qr::stamp_svg(facts.kind, agency_name, &facts.lookup_code, &public.settings.base_url)
    })
}

/// An SVG drawn from a certification's public facts, or the page saying why not.
fn drawing<P: Proposer>(
    public: &Public<P>,
    lang: Lang,
    code: &str,
    draw: impl FnOnce(&PublicCertification) -> Result<String, qr::QrError>,
) -> Response {
    let facts = match public.find(code) {
        Ok(facts) => facts,
        Err(missing) => return missing_page(lang, missing),
    };
    match draw(&facts) {
        Ok(body) => svg(body),
        Err(error) => {
            tracing::warn!(%error, "cannot draw a QR code");
            missing_page(lang, Missing::Unavailable)
        }
    }
}

/// Room for a multipart envelope around the PDF in a `/check` body, in bytes.
const CHECK_ENVELOPE_BYTES_MAX: usize = 64 * 1024;
/// Multipart fields read from a `/check` body before giving up on finding the file.
const CHECK_FIELDS_MAX: usize = 8;

fn check_body_size_bytes_max(limits: &Limits) -> usize {
    limits.received_pdf_size_bytes_max() + CHECK_ENVELOPE_BYTES_MAX
}

/// Why a `/check` body holds no PDF to check.
enum Unreadable {
    TooLarge,
    NotPdf,
}

/// The PDF of a `/check` request: the `file` field of a multipart form, or the whole body
/// of any other request (e.g. `Content-Type: application/pdf` from a script).
async fn posted_file(request: Request, limit: usize) -> Result<bytes::Bytes, Unreadable> {
    let too_large = |status: StatusCode| if status == StatusCode::PAYLOAD_TOO_LARGE { Unreadable::TooLarge } else { Unreadable::NotPdf };
    let multipart = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| value.starts_with("multipart/form-data"));
    let file = if multipart {
        let mut form = Multipart::from_request(request, &()).await.map_err(|rejection| too_large(rejection.status()))?;
        let mut file = None;
        for _ in 0..CHECK_FIELDS_MAX {
            let Some(field) = form.next_field().await.map_err(|error| too_large(error.status()))? else { break };
            if field.name() == Some("file") {
                file = Some(field.bytes().await.map_err(|error| too_large(error.status()))?);
                break;
            }
        }
        file.ok_or(Unreadable::NotPdf)?
    } else {
        axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| Unreadable::TooLarge)?
    };
    if file.len() > limit {
        return Err(Unreadable::TooLarge);
    }
    Ok(file)
}

/// `POST /check`: the signatures of an uploaded PDF, checked on this replica without a
/// read barrier (like every public route); the file is never stored. 413 over the size
/// limit, 400 for anything that is not a readable PDF.
#[tracing::instrument(skip_all)]
async fn check_pdf<P: Proposer>(State(public): State<Arc<Public<P>>>, Negotiated(lang): Negotiated, request: Request) -> Response {
    let texts = lang.texts();
    let limit = public.settings.limits.received_pdf_size_bytes_max();
    let refused = |status, title, explained| html(status, lang, page::message_page(lang, "/check", title, explained));
    let file = match posted_file(request, limit).await {
        Ok(file) => file,
        Err(Unreadable::TooLarge) => return refused(StatusCode::PAYLOAD_TOO_LARGE, texts.pdf_too_large_title, texts.pdf_too_large_explained),
        Err(Unreadable::NotPdf) => return refused(StatusCode::BAD_REQUEST, texts.pdf_not_pdf_title, texts.pdf_not_pdf_explained),
    };
    let received = match public.kyso.received_pdf_signatures(file).await {
        Ok(received) => received,
        Err(crate::service::ServiceError::InvalidArgument(_)) => {
            return refused(StatusCode::BAD_REQUEST, texts.pdf_not_pdf_title, texts.pdf_not_pdf_explained);
        }
        Err(error) => {
            tracing::warn!(%error, "public pdf check failed");
            return missing_page(lang, Missing::Unavailable);
        }
    };
    crate::metrics::record_verification(crate::metrics::Channel::PublicPage, if received.certified_revision_sha256.is_some() { "found" } else { "not_found" });
    let rows: Vec<page::SignatureRow<'_>> = received
        .signatures
        .iter()
        .map(|signature| {
            let check = &signature.check;
            page::SignatureRow {
                signer_name: check.signer.as_ref().map_or("—", |signer| signer.common_name.as_str()),
                signed_at_unix: check.signing_time_unix,
                timestamp_unix: check.timestamp_unix,
                timestamp_trusted: check.timestamp_trusted,
                signer_trusted: check.signer_trusted,
                valid: check.cryptographically_valid,
                covers_whole_file: check.covers_whole_file,
                changed_after_signature: check.changed_after_signature,
                reason_vi: check.defect.as_ref().map(crate::pdf::SignatureDefect::vietnamese),
                lookup_code: signature.lookup_code.as_ref().map(ToString::to_string),
            }
        })
        .collect();
    html(StatusCode::OK, lang, page::signatures_page(lang, &rows))
}

async fn not_found_fallback(Negotiated(lang): Negotiated) -> Response {
    missing_page(lang, Missing::NotFound)
}

/// The decoded value of `key` in a query string (`+` is a space, `%HH` a byte).
fn query_value(query: &str, key: &str) -> Option<String> {
    let raw = query.split('&').filter_map(|pair| pair.split_once('=')).find(|(name, _)| *name == key)?.1;
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex_byte = bytes.get(index + 1..index + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[index], hex_byte) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agencies_without_a_display_name_are_shown_by_their_id() {
        let mut config = Config::with_data_dir("x");
        config.agency_names.insert("xa-demo".into(), "UBND xã Demo".into());
        let settings = PublicSettings::from_config(&config);
        assert_eq!(settings.agency_name("xa-demo"), "UBND xã Demo");
        assert_eq!(settings.agency_name("xa-khac"), "xa-khac");
    }

    #[test]
    fn query_values_are_decoded_like_a_form_sends_them() {
        assert_eq!(query_value("code=7k3m+q9tx%2D2HRN-B4WD&lang=vi", "code").as_deref(), Some("7k3m q9tx-2HRN-B4WD"));
        assert_eq!(query_value("lang=vi", "code"), None);
        assert_eq!(query_value("code=%zz%4", "code").as_deref(), Some("%zz%4"));
    }
}

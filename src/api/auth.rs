//! The one place where roles are enforced: a tower layer in front of every gRPC service
//! of a port. For each call it identifies the caller from its client certificate (mutual
//! TLS), applies the per-client rate limit, looks the RPC up in the role table below
//! (deny by default), and refuses with PERMISSION_DENIED when no role of the caller may
//! call it. Handlers then find the [`Caller`] in the request's extensions for the agency
//! and signer scopes their service checks.
//!
//! Every PERMISSION_DENIED leaving the port, the layer's own or a service's, is recorded
//! in the transparency log with the caller's identity, within a budget: at most
//! `refusal_audits_per_client_per_minute_max` entries per client and
//! `refusal_audits_per_minute_max` per node; refusals over the budget are counted and
//! the count rides on that client's next recorded entry (`suppressed_before`). So a flood
//! of refused calls grows the log by a bounded number of leaves per minute.
//!
//! This layer never reads a request body and never lets a call through on an error.
//!
//! It also opens the call's span (`request`: method, port, caller; the handler records
//! the request id through [`RequestSpan`]), continuing the trace an incoming `traceparent`
//! names, so a command a follower forwards is traced on the leader under the follower's
//! span. Raft's own messages (`/kyso.cluster.v1.RaftPeer/`) get no span: they are many and
//! belong to no request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::Instrument as _;
use tonic::{Code, Status};
use x509_parser::prelude::FromDer as _;

use crate::access::{Actor, Caller, Role};
use crate::consensus::Consensus;
use crate::domain::Sha256;
use crate::service::Kyso;

/// How long a refusal waits for its audit entry to be committed before answering anyway.
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients tracked by the rate and refusal limiters; beyond this the tables start afresh.
pub const TRACKED_CLIENTS_MAX: usize = 10_000;

/// Which port a layer guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The client gRPC port: agencies, operators, and nodes (GetBlob, forwarded admin).
    Client,
    /// The peer port: Raft messages and node-to-node calls, nodes only.
    Peer,
}

/// Who may call what, by gRPC path. An entry ending in `/` covers every method of the
/// service. A path without an entry is refused.
const CLIENT_PORT_RULES: &[(&str, &[Role])] = &[
    ("/kyso.v1.ArchiveService/UploadDossier", &[Role::Clerk]),
    ("/kyso.v1.ArchiveService/GetDossier", &[Role::Clerk]),
    ("/kyso.v1.ArchiveService/GetBlob", &[Role::Clerk, Role::Signer, Role::Verifier, Role::Node]),
    ("/kyso.v1.SigningService/RegisterSigner", &[Role::Admin]),
    ("/kyso.v1.SigningService/RegisterAgencySeal", &[Role::Admin]),
    ("/kyso.v1.SigningService/Certify", &[Role::Signer]),
    ("/kyso.v1.SigningService/CertifyBatch", &[Role::Signer]),
    ("/kyso.v1.SigningService/SubmitSignature", &[Role::Signer]),
    ("/kyso.v1.SigningService/RevokeCertification", &[Role::Admin, Role::Signer]),
    ("/kyso.v1.SigningService/ImportCrl", &[Role::Admin]),
    ("/kyso.v1.SigningService/UnlockSigner", &[Role::Admin]),
    ("/kyso.v1.SigningService/ChangeSignerPin", &[Role::Signer]),
    ("/kyso.v1.SigningService/PrepareTokenSignature", &[Role::Signer]),
    ("/kyso.v1.SigningService/CompleteTokenSignature", &[Role::Signer]),
    ("/kyso.v1.VerificationService/Verify", &[Role::Public]),
    ("/kyso.v1.VerificationService/VerifyStream", &[Role::Verifier, Role::Admin]),
    ("/kyso.v1.VerificationService/ListRegister", &[Role::Verifier, Role::Admin]),
    ("/kyso.v1.ReportService/GetStatistics", &[Role::Admin, Role::Verifier, Role::Clerk]),
    ("/kyso.v1.LogService/", &[Role::Public]),
    ("/kyso.v1.ClusterService/", &[Role::Admin, Role::Node]),
    ("/kyso.v1.AdminService/", &[Role::Admin]),
    ("/kyso.v1.AccessService/SetAccess", &[Role::Admin]),
    ("/kyso.v1.AccessService/WhoAmI", &[Role::Public]),
    ("/grpc.health.v1.Health/", &[Role::Public]),
    ("/grpc.reflection.v1.ServerReflection/", &[Role::Public]),
    ("/grpc.reflection.v1alpha.ServerReflection/", &[Role::Public]),
];

const PEER_PORT_RULES: &[(&str, &[Role])] =
    &[("/kyso.cluster.v1.RaftPeer/", &[Role::Node]), ("/kyso.v1.NodeInternalService/", &[Role::Node])];

/// The roles that may call `path` on `port`; `None` when no rule names it.
pub fn allowed_roles(port: Port, path: &str) -> Option<&'static [Role]> {
    let rules = match port {
        Port::Client => CLIENT_PORT_RULES,
        Port::Peer => PEER_PORT_RULES,
    };
    rules
        .iter()
        .find(|(rule, _)| *rule == path)
        .or_else(|| rules.iter().find(|(rule, _)| rule.ends_with('/') && path.starts_with(rule)))
        .map(|(_, roles)| *roles)
}

/// How a layer identifies callers.
pub struct AuthSettings {
    pub port: Port,
    /// The port serves plain text: callers carry no certificate. On the peer port this is
    /// the insecure-plaintext-peers mode, where every caller is taken for a node.
    pub plaintext: bool,
    /// DER of the cluster CA certificates: client certificates they issued are nodes.
    pub cluster_ca_der: Vec<Vec<u8>>,
}

/// The tower layer; cheap to clone.
#[derive(Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

struct Shared {
    kyso: Arc<Kyso<Consensus>>,
    settings: AuthSettings,
    rates: Mutex<RateLimiter>,
    refusals: Mutex<RefusalLimiter>,
    /// What a certificate says about its holder, by fingerprint: parsed and checked
    /// once, not on every request.
    certificates: Mutex<HashMap<Sha256, DescribedCertificate>>,
    /// Calls in flight per client (certificate fingerprint, or address without one).
    in_flight: crate::api::slots::PerClientSlots,
}

/// A client certificate as the layer understood it.
#[derive(Clone)]
struct DescribedCertificate {
    subject: String,
    /// The node id it is bound to, when a cluster CA issued it directly and it names one.
    node_id: Option<u64>,
}

impl AuthLayer {
    pub fn new(kyso: Arc<Kyso<Consensus>>, settings: AuthSettings) -> AuthLayer {
        let limits = kyso.limits().clone();
        AuthLayer {
            shared: Arc::new(Shared {
                kyso,
                settings,
                rates: Mutex::new(RateLimiter::new(limits.client_requests_per_second_max)),
                refusals: Mutex::new(RefusalLimiter::new(
                    limits.refusal_audits_per_minute_max,
                    limits.refusal_audits_per_client_per_minute_max,
                )),
                certificates: Mutex::new(HashMap::new()),
                in_flight: Default::default(),
            }),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, shared: self.shared.clone() }
    }
}

/// The layer's service around a port's routes.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for Auth<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<B>, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let started = Instant::now();
        let port = shared.settings.port;
        let path = request.uri().path().to_string();
        let span = request_span(port, &path, request.headers());
        request.extensions_mut().insert(RequestSpan(span.clone()));
        let request_span = span.clone();
        let answer = async move {
            let path = request.uri().path().to_string();
            let caller = shared.identify(request.extensions());
            request_span.record("caller", tracing::field::display(&caller.actor));
            if let Err(status) = shared.admit_rate(&caller, request.extensions()) {
                return Ok(status.into_http());
            }
            let _in_flight = match shared.admit_in_flight(&caller, request.extensions()) {
                Ok(slot) => slot,
                Err(status) => return Ok(status.into_http()),
            };
            if let Err(reason) = shared.authorize(&caller, &path) {
                shared.record_refusal(&caller, &path, &reason).await;
                return Ok(Status::permission_denied(reason).into_http());
            }
            if let Some(node_id) = caller.node_id {
                request.extensions_mut().insert(kyso_cluster::raft::AuthenticatedPeer(node_id));
            }
            request.extensions_mut().insert(caller.clone());
            let response = inner.call(request).await?;
            if let Some(reason) = permission_denied_message(response.headers()) {
                shared.record_refusal(&caller, &path, &reason).await;
            }
            Ok(response)
        };
        Box::pin(async move {
            let answered = answer.instrument(span).await;
            if let Ok(response) = &answered {
                record_call(port, &path, response.headers(), started.elapsed());
            }
            answered
        })
    }
}

/// The span of one call, in the request's extensions: handlers record the request id
/// into it ([`RequestSpan::record_request_id`]).
#[derive(Clone)]
pub struct RequestSpan(pub tracing::Span);

impl RequestSpan {
    /// Records the client's request id on the call's span.
    pub fn record_request_id(&self, request_id: &str) {
        self.0.record("request_id", tracing::field::display(crate::text::for_terminal(request_id)));
    }

    /// The call's span, from a request's extensions (a disabled span outside the layer).
    pub fn of(extensions: &http::Extensions) -> RequestSpan {
        extensions.get::<RequestSpan>().cloned().unwrap_or(RequestSpan(tracing::Span::none()))
    }
}

/// One span per call (none for Raft's own messages), a child of the caller's trace when
/// the call carries one.
fn request_span(port: Port, path: &str, headers: &http::HeaderMap) -> tracing::Span {
    if path.starts_with("/kyso.cluster.v1.RaftPeer/") {
        return tracing::Span::none();
    }
    let port = match port {
        Port::Client => "client",
        Port::Peer => "peer",
    };
    let span = tracing::info_span!(
        "request",
        otel.name = path,
        otel.kind = "server",
        rpc.method = path,
        port,
        caller = tracing::field::Empty,
        request_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace_from(&span, headers);
    span
}

/// Counts an answered call. The code is the one in the response headers (a refusal, or
/// an error answered before any message); a call whose headers carry none counts as OK,
/// so a stream that fails after its first message counts as OK here. A path outside the
/// role table, or one its service does not know, counts as `unknown`.
fn record_call(port: Port, path: &str, headers: &http::HeaderMap, elapsed: Duration) {
    let code = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok);
    let method = if allowed_roles(port, path).is_some() && code != Code::Unimplemented { path } else { "unknown" };
    let port = match port {
        Port::Client => "client",
        Port::Peer => "peer",
    };
    crate::metrics::record_grpc_call(port, method, code, elapsed);
}

impl Shared {
    fn identify(&self, extensions: &http::Extensions) -> Caller {
        let certificates = extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|info| info.peer_certs());
        let Some(leaf) = certificates.as_ref().and_then(|certificates| certificates.first()) else {
            if self.settings.port == Port::Peer && self.settings.plaintext {
                let actor = Actor { name: "unauthenticated peer (insecure_plaintext_peers)".into(), certificate_sha256: None };
                return Caller::node(actor, None);
            }
            return Caller::public(Actor::anonymous());
        };
        let leaf: &[u8] = leaf.as_ref();
        let hash = Sha256::digest(leaf);
        let described = self.describe_certificate(hash, leaf);
        let actor = Actor { name: described.subject, certificate_sha256: Some(hash) };
        if let Some(node_id) = described.node_id {
            return Caller::node(actor, Some(node_id));
        }
        if self.settings.port == Port::Peer {
            // TLS let it in (some chain to the cluster CA), but it is no member: refused by
            // the role table, and the refusal is recorded.
            return Caller::public(actor);
        }
        match self.kyso.principal(&hash) {
            Ok(Some(principal)) => Caller::from_principal(actor, &principal),
            Ok(None) => Caller::public(actor),
            Err(error) => {
                tracing::error!(%error, "cannot read grants; the caller gets the public role only");
                Caller::public(actor)
            }
        }
    }

    /// What a (TLS-verified) certificate says about its holder, remembered by fingerprint.
    fn describe_certificate(&self, hash: Sha256, leaf: &[u8]) -> DescribedCertificate {
        let mut known = self.certificates.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(described) = known.get(&hash) {
            return described.clone();
        }
        if known.len() >= TRACKED_CLIENTS_MAX {
            known.clear();
        }
        let node_id = if self.issued_by_cluster_ca(leaf) { crate::crypto::cert::node_id_of_certificate(leaf) } else { None };
        let described = DescribedCertificate { subject: subject_of(leaf), node_id };
        known.insert(hash, described.clone());
        described
    }

    /// Whether a cluster CA signed this (already TLS-verified) certificate itself: a leaf
    /// under an intermediate of the cluster CA is never a node.
    fn issued_by_cluster_ca(&self, leaf: &[u8]) -> bool {
        let Ok((_, certificate)) = x509_parser::certificate::X509Certificate::from_der(leaf) else { return false };
        self.settings.cluster_ca_der.iter().any(|ca_der| {
            let Ok((_, ca)) = x509_parser::certificate::X509Certificate::from_der(ca_der) else { return false };
            certificate.issuer().as_raw() == ca.subject().as_raw() && certificate.verify_signature(Some(ca.public_key())).is_ok()
        })
    }

    fn admit_rate(&self, caller: &Caller, extensions: &http::Extensions) -> Result<(), Status> {
        if caller.has(Role::Node) {
            return Ok(());
        }
        let key = match &caller.actor.certificate_sha256 {
            Some(hash) => hash.to_hex(),
            None => remote_address(extensions),
        };
        let mut rates = self.rates.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if rates.admit(&key, Instant::now()) {
            Ok(())
        } else {
            Err(Status::resource_exhausted(format!(
                "more than {} requests per second from {}; slow down and retry",
                rates.per_second, caller.actor
            )))
        }
    }

    /// One of the caller's `calls_in_flight_per_client_max` slots, held until the call's
    /// response is produced (for a stream: until its handler returned the stream). Nodes
    /// are not limited: their calls are the cluster's own traffic.
    fn admit_in_flight(&self, caller: &Caller, extensions: &http::Extensions) -> Result<Option<crate::api::slots::Slot>, Status> {
        if caller.has(Role::Node) {
            return Ok(None);
        }
        let key = match &caller.actor.certificate_sha256 {
            Some(hash) => hash.to_hex(),
            None => remote_address(extensions),
        };
        let limit = self.kyso.limits().calls_in_flight_per_client_max;
        match self.in_flight.take(key, limit) {
            Some(slot) => Ok(Some(slot)),
            None => Err(Status::resource_exhausted(format!(
                "{} has {limit} calls in flight on this node; wait for some to finish",
                caller.actor
            ))),
        }
    }

    fn authorize(&self, caller: &Caller, path: &str) -> Result<(), String> {
        let Some(roles) = allowed_roles(self.settings.port, path) else {
            return Err(format!("no role may call {path} on this port"));
        };
        if roles.iter().any(|role| caller.has(*role)) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        Err(format!(
            "{path} needs the role {}; {} has {}; ask an admin for a grant (kyso access set)",
            names.join(" or "),
            caller.actor,
            if caller.roles.is_empty() { "only the public role".to_string() } else { roles_text(&caller.roles) }
        ))
    }

    async fn record_refusal(&self, caller: &Caller, action: &str, reason: &str) {
        tracing::warn!(actor = %caller.actor, action, reason, "call refused");
        let key = caller.actor.certificate_sha256.map(|hash| hash.to_hex()).unwrap_or_else(|| caller.actor.name.clone());
        let admitted = self.refusals.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).admit(&key, Instant::now());
        let Some(suppressed_before) = admitted else { return };
        match tokio::time::timeout(AUDIT_TIMEOUT, self.kyso.audit_refusal(&caller.actor, action, reason, suppressed_before)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "cannot record a refused call in the log"),
            Err(_) => tracing::error!("recording a refused call in the log timed out"),
        }
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", ")
}

fn subject_of(der: &[u8]) -> String {
    match x509_parser::certificate::X509Certificate::from_der(der) {
        Ok((_, certificate)) => crate::crypto::cert::display_name(certificate.subject().as_raw()),
        Err(_) => "<unparsable certificate>".into(),
    }
}

fn remote_address(extensions: &http::Extensions) -> String {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .map(|address| address.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The message of a PERMISSION_DENIED answer (a trailers-only response carries the status
/// in its headers).
fn permission_denied_message(headers: &http::HeaderMap) -> Option<String> {
    let status = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    if Code::from(status) != Code::PermissionDenied {
        return None;
    }
    let message = headers.get("grpc-message").and_then(|value| value.to_str().ok()).unwrap_or_default();
    Some(percent_decode(message))
}

/// gRPC percent-encodes status messages (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token bucket per client: `per_second` tokens a second, at most `per_second` saved.
struct RateLimiter {
    per_second: u32,
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimiter {
    fn new(per_second: u32) -> RateLimiter {
        RateLimiter { per_second, buckets: HashMap::new() }
    }

    fn admit(&mut self, key: &str, now: Instant) -> bool {
        if self.buckets.len() >= TRACKED_CLIENTS_MAX && !self.buckets.contains_key(key) {
            self.buckets.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(1));
            if self.buckets.len() >= TRACKED_CLIENTS_MAX {
                self.buckets.clear();
            }
        }
        let capacity = f64::from(self.per_second);
        let (tokens, last) = self.buckets.entry(key.to_string()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * capacity).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-minute budgets for recording refused calls.
struct RefusalLimiter {
    per_minute: u32,
    per_client_per_minute: u32,
    window_start: Option<Instant>,
    recorded_in_window: u32,
    /// Per client: entries recorded in this window, refusals suppressed since its last entry.
    clients: HashMap<String, (u32, u64)>,
}

impl RefusalLimiter {
    fn new(per_minute: u32, per_client_per_minute: u32) -> RefusalLimiter {
        RefusalLimiter { per_minute, per_client_per_minute, window_start: None, recorded_in_window: 0, clients: HashMap::new() }
    }

    /// `Some(suppressed_before)` when this refusal may be recorded; `None` when it is only
    /// counted.
    fn admit(&mut self, key: &str, now: Instant) -> Option<u64> {
        let window_over = self.window_start.is_none_or(|start| now.duration_since(start) >= Duration::from_secs(60));
        if window_over {
            self.window_start = Some(now);
            self.recorded_in_window = 0;
            self.clients.retain(|_, (_, suppressed)| *suppressed > 0);
            for (recorded, _) in self.clients.values_mut() {
                *recorded = 0;
            }
        }
        if self.clients.len() >= TRACKED_CLIENTS_MAX && !self.clients.contains_key(key) {
            // Too many distinct refused clients this minute: count them together.
            return self.admit_counted("*");
        }
        self.admit_counted(key)
    }

    fn admit_counted(&mut self, key: &str) -> Option<u64> {
        let (recorded, suppressed) = self.clients.entry(key.to_string()).or_insert((0, 0));
        if *recorded >= self.per_client_per_minute || self.recorded_in_window >= self.per_minute {
            *suppressed += 1;
            return None;
        }
        *recorded += 1;
        self.recorded_in_window += 1;
        Some(std::mem::take(suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_every_service_has_a_role_rule_and_unknown_paths_have_none() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(kyso_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut checked = 0;
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                let port = if service.name() == "NodeInternalService" { Port::Peer } else { Port::Client };
                for method in &service.method {
                    let path = format!("/{full}/{}", method.name());
                    assert!(allowed_roles(port, &path).is_some(), "{path} has no role rule");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 25, "only {checked} methods found");
        assert_eq!(allowed_roles(Port::Client, "/kyso.v1.NodeInternalService/ForwardCommand"), None, "internal calls are not on the client port");
        assert_eq!(allowed_roles(Port::Client, "/kyso.v1.SigningService/Certif"), None);
        assert_eq!(allowed_roles(Port::Peer, "/kyso.v1.SigningService/Certify"), None);
    }

    #[test]
    fn rate_limiter_refuses_past_the_rate_and_refills() {
        let mut limiter = RateLimiter::new(3);
        let start = Instant::now();
        assert!((0..3).all(|_| limiter.admit("a", start)));
        assert!(!limiter.admit("a", start));
        assert!(limiter.admit("b", start), "clients have separate buckets");
        assert!(limiter.admit("a", start + Duration::from_millis(400)));
    }

    #[test]
    fn refusals_over_the_budget_are_counted_into_the_next_recorded_entry() {
        let mut limiter = RefusalLimiter::new(100, 2);
        let start = Instant::now();
        assert_eq!(limiter.admit("a", start), Some(0));
        assert_eq!(limiter.admit("a", start), Some(0));
        assert_eq!(limiter.admit("a", start), None);
        assert_eq!(limiter.admit("a", start), None);
        assert_eq!(limiter.admit("b", start), Some(0));
        assert_eq!(limiter.admit("a", start + Duration::from_secs(61)), Some(2), "the two suppressed refusals are reported");
        let mut global = RefusalLimiter::new(3, 3);
        let recorded = (0..100).filter(|index| global.admit(&format!("client-{index}"), start).is_some()).count();
        assert_eq!(recorded, 3, "the node-wide budget bounds entries whatever the number of clients");
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%C3%A1%"), "a bá%");
    }
}

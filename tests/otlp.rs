//! Logs and traces as an operator receives them: a 3-node cluster exports its spans over
//! OTLP/gRPC to a trace receiver this test runs (the collector's TraceService, from the
//! opentelemetry-proto definitions, served by tonic on 127.0.0.1), and a node configured
//! with `log_format = "json"` writes JSON lines.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kyso::crypto::KeyAlgorithm;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;

const AGENCY: &str = "xa-dong-son";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
const SPANS_DEADLINE: Duration = Duration::from_secs(30);

/// One span as the receiver got it, with its resource's instance id.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    instance: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// The OTLP trace receiver: keeps every span it is sent (bounded: a test exports few).
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

const RECEIVED_SPANS_MAX: usize = 100_000;

fn text_of(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|attribute| {
            let value = match attribute.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(Value::StringValue(text)) => text.clone(),
                Some(Value::IntValue(number)) => number.to_string(),
                Some(Value::BoolValue(flag)) => flag.to_string(),
                other => format!("{other:?}"),
            };
            (attribute.key.clone(), value)
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(&self, request: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = text_of(&resource_spans.resource.map(|resource| resource.attributes).unwrap_or_default());
            for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                assert!(spans.len() < RECEIVED_SPANS_MAX, "more spans than a test exports");
                spans.push(ReceivedSpan {
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    instance: resource.get("service.instance.id").cloned().unwrap_or_default(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: text_of(&span.attributes),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    /// Serves on a free 127.0.0.1 port for the rest of the test; returns its endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        format!("http://{address}")
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

/// The spans of the request `request_id` served by the follower, forwarded to the leader:
/// (follower's request span, follower's forward span, leader's request span), once all
/// three arrived.
fn forwarded_request(spans: &[ReceivedSpan], request_id: &str, follower: &str, leader: &str) -> Option<(ReceivedSpan, ReceivedSpan, ReceivedSpan)> {
    let request_span = |instance: &str, name: &str| {
        spans
            .iter()
            .find(|span| span.instance == instance && span.name == name && span.attributes.get("request_id").map(String::as_str) == Some(request_id))
            .cloned()
    };
    let on_follower = request_span(follower, "/kyso.v1.SigningService/Certify")?;
    let on_leader = request_span(leader, "/kyso.v1.NodeInternalService/ForwardCommand")?;
    let forward = spans.iter().find(|span| span.instance == follower && span.span_id == on_leader.parent_span_id)?.clone();
    Some((on_follower, forward, on_leader))
}

/// Whether `span` descends from `ancestor` through spans of the same process.
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let mut current = span.clone();
    for _ in 0..32 {
        if current.parent_span_id == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|candidate| candidate.instance == span.instance && candidate.span_id == current.parent_span_id) {
            Some(parent) => current = parent.clone(),
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certification_through_a_follower_is_one_trace_across_follower_and_leader() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let observability = format!(
        "[observability]\notlp_endpoint = {endpoint:?}\nservice_name = \"kyso-test\"\notlp_export_interval_milliseconds = 200\n"
    );
    let nodes = layout.start_all_with(|_| observability.clone());
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let follower = (leader + 1) % 3;
    let via = &nodes[follower];
    let content = document(11, 20_000);
    let signer = register_signer(via, &layout.pki.issue(&signer_spec("Đỗ Văn Hùng", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    upload(via, "otlp-dossier", AGENCY, &[("scan.pdf", content.as_slice())]).await.unwrap();
    let request_id = "otlp-certify-1";
    via.signing().await.certify(certify_request(request_id, &content, AGENCY, &signer.signer_id)).await.unwrap();

    let (follower_instance, leader_instance) = (format!("node-{}", follower + 1), format!("node-{}", leader + 1));
    let started = Instant::now();
    let (spans, (on_follower, forward, on_leader)) = loop {
        let spans = receiver.spans();
        if let Some(found) = forwarded_request(&spans, request_id, &follower_instance, &leader_instance) {
            break (spans, found);
        }
        assert!(
            started.elapsed() < SPANS_DEADLINE,
            "no follower → leader spans of {request_id} within {SPANS_DEADLINE:?}; received: {:#?}",
            spans.iter().map(|span| (&span.instance, &span.name, span.attributes.get("request_id"))).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(on_follower.service, "kyso-test");
    assert_eq!(on_leader.trace_id, on_follower.trace_id, "the leader continues the follower's trace");
    assert_eq!(forward.trace_id, on_follower.trace_id);
    assert_eq!(forward.name, "forward");
    assert!(descends_from(&spans, &forward, &on_follower), "the forward is part of the follower's request: {forward:?}");
    assert!(on_follower.attributes["caller"].contains("certificate sha256"), "{:?}", on_follower.attributes);
    assert!(
        on_leader.attributes["caller"].contains(&format!("[forwarded by node {}]", follower + 1)),
        "the leader's span names the client and the forwarding node: {:?}",
        on_leader.attributes
    );
    // Raft's own messages are not traced: every leader span belongs to a call.
    assert!(spans.iter().all(|span| !span.name.contains("RaftPeer")), "raft messages were traced");
}

#[test]
fn json_log_format_writes_one_json_object_a_line() {
    let dir = tempdir();
    let ca = TestPki::new(&dir.path().join("pki"));
    let mut node = TestNode::start_with(&dir.path().join("node"), &ca.ca_pem_path, "[observability]\nlog_format = \"json\"\n", "");
    node.stop();
    let (mut child, received) = spawn_node_reading_log(&node.config_path, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    let mut terminated = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                let ready = line.contains("node ready");
                lines.push(line);
                if ready && !terminated {
                    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
                    terminated = true;
                }
            }
            // stderr closed: the node exited.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the node did not get ready and stop within the deadline; it wrote: {lines:#?}");
            }
        }
    }
    let _ = child.wait();
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}")))
        .collect();
    for object in &objects {
        assert!(object["timestamp"].is_string() && object["level"].is_string() && object["target"].is_string(), "{object}");
        assert!(object["fields"]["message"].is_string(), "{object}");
    }
    let messages: Vec<&str> = objects.iter().filter_map(|object| object["fields"]["message"].as_str()).collect();
    assert!(messages.iter().any(|message| message.contains("node ready")), "{messages:?}");
    assert!(messages.contains(&"shutting down"), "{messages:?}");
}

//! Shared helpers for integration tests: a real `kyso node` process on 127.0.0.1 with
//! ephemeral ports, a test PKI, and gRPC clients. Waits use generous deadlines, never
//! fixed sleeps: the CI machine is slow and shared.
#![allow(dead_code)]

pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kyso::crypto::devpki::{self, CertSpec, IssuedCert, KeyUsages};
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use tonic::transport::Channel;

/// How long a node may take to print its listening line.
pub const NODE_START_DEADLINE: Duration = Duration::from_secs(90);

pub fn now_unix() -> i64 {
    kyso::service::now_unix()
}

/// A running `kyso node` process.
pub struct TestNode {
    child: Option<Child>,
    pub grpc_url: String,
    pub http_url: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    /// Extra environment variables of the node process (kept across restarts).
    env: Vec<(String, String)>,
}

impl TestNode {
    /// Starts a node in `dir` trusting `ca_pem`, with extra TOML appended to `[limits]`.
    pub fn start(dir: &Path, ca_pem: &Path, extra_limits: &str) -> TestNode {
        Self::start_with(dir, ca_pem, "", extra_limits)
    }

    /// Like [`TestNode::start`] with extra top-level TOML (before `[limits]`).
    pub fn start_with(dir: &Path, ca_pem: &Path, extra_top_level: &str, extra_limits: &str) -> TestNode {
        Self::start_with_env(dir, ca_pem, extra_top_level, extra_limits, Vec::new())
    }

    /// Like [`TestNode::start_with`], with extra environment variables for the process.
    pub fn start_with_env(
        dir: &Path,
        ca_pem: &Path,
        extra_top_level: &str,
        extra_limits: &str,
        env: Vec<(String, String)>,
    ) -> TestNode {
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join("kyso.toml");
        let config = format!(
            "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\ntrust_anchor_files = [{:?}]\n{}\n[limits]\n{}\n",
            ca_pem.display().to_string(),
            extra_top_level,
            extra_limits
        );
        std::fs::write(&config_path, config).unwrap();
        Self::spawn(dir, config_path, env)
    }

    /// Starts a node from a complete TOML config written to `dir/kyso.toml`.
    pub fn start_config(dir: &Path, config: &str) -> TestNode {
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join("kyso.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::spawn(dir, config_path, Vec::new())
    }

    /// SIGKILL: no shutdown, no flush beyond what was already durable.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a stopped node again on its directory and config.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "node is still running");
        *self = Self::spawn(&self.dir.clone(), self.config_path.clone(), self.env.clone());
    }

    pub async fn cluster(&self) -> pb::cluster_service_client::ClusterServiceClient<Channel> {
        pb::cluster_service_client::ClusterServiceClient::new(self.channel().await)
    }

    fn spawn(dir: &Path, config_path: PathBuf, env: Vec<(String, String)>) -> TestNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kyso"))
            .args(["node", "--config"])
            .arg(&config_path)
            .env("KYSO_LOG", "warn")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the kyso binary");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("kyso node listening") {
                    let _ = sender.send(line);
                }
            }
        });
        let line = match receiver.recv_timeout(NODE_START_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("node did not report its addresses within {NODE_START_DEADLINE:?}");
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .to_string()
        };
        TestNode {
            grpc_url: format!("http://{}", field("grpc")),
            http_url: format!("http://{}", field("http")),
            child: Some(child),
            dir: dir.to_path_buf(),
            config_path,
            env,
        }
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts the node on the same directory and config (new ports).
    pub fn restart(&mut self) {
        self.stop();
        let restarted = Self::spawn(&self.dir.clone(), self.config_path.clone(), self.env.clone());
        *self = restarted;
    }

    pub async fn channel(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Channel::from_shared(self.grpc_url.clone()).unwrap().connect().await {
                Ok(channel) => return channel,
                Err(error) if Instant::now() > deadline => panic!("cannot connect to {}: {error}", self.grpc_url),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn archive(&self) -> pb::archive_service_client::ArchiveServiceClient<Channel> {
        pb::archive_service_client::ArchiveServiceClient::new(self.channel().await)
            .max_decoding_message_size(128 << 20)
            .max_encoding_message_size(128 << 20)
    }

    pub async fn signing(&self) -> pb::signing_service_client::SigningServiceClient<Channel> {
        pb::signing_service_client::SigningServiceClient::new(self.channel().await)
    }

    pub async fn verification(&self) -> pb::verification_service_client::VerificationServiceClient<Channel> {
        pb::verification_service_client::VerificationServiceClient::new(self.channel().await)
            .max_decoding_message_size(128 << 20)
            .max_encoding_message_size(128 << 20)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CA and helpers to issue good and bad signer certificates.
pub struct TestPki {
    pub ca: IssuedCert,
    pub ca_pem_path: PathBuf,
}

pub fn signer_spec(name: &str, algorithm: KeyAlgorithm) -> CertSpec {
    let now = now_unix();
    CertSpec {
        common_name: name.to_string(),
        organization: Some("UBND xã Thử Nghiệm".into()),
        algorithm,
        not_before_unix: now - 3600,
        not_after_unix: now + 365 * 86_400,
        is_ca: false,
        path_length_max: None,
        key_usage: KeyUsages { digital_signature: true, non_repudiation: true, ..KeyUsages::default() },
    }
}

pub fn ca_spec(name: &str) -> CertSpec {
    let now = now_unix();
    CertSpec {
        common_name: name.to_string(),
        organization: Some("kyso tests".into()),
        algorithm: KeyAlgorithm::EcdsaP256,
        not_before_unix: now - 86_400,
        not_after_unix: now + 10 * 365 * 86_400,
        is_ca: true,
        path_length_max: None,
        key_usage: KeyUsages { key_cert_sign: true, crl_sign: true, ..KeyUsages::default() },
    }
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = devpki::self_signed_ca(&ca_spec("kyso test CA")).unwrap();
        let ca_pem_path = dir.join("ca.pem");
        std::fs::write(&ca_pem_path, ca.cert_pem()).unwrap();
        TestPki { ca, ca_pem_path }
    }

    pub fn issue(&self, spec: &CertSpec) -> IssuedCert {
        devpki::issue(spec, &self.ca).unwrap()
    }
}

/// An RSA-2048 PKCS#8 key made by the openssl CLI (rcgen cannot make RSA keys on ring).
pub fn openssl_rsa_key(dir: &Path) -> Vec<u8> {
    let pem_path = dir.join("rsa.pem");
    let der_path = dir.join("rsa.pk8");
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is required for this test: install it (apt-get install -y openssl) or run ./scripts/test.sh");
        assert!(output.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem_path.to_str().unwrap()]);
    run(&["pkcs8", "-topk8", "-nocrypt", "-in", pem_path.to_str().unwrap(), "-outform", "DER", "-out", der_path.to_str().unwrap()]);
    std::fs::read(der_path).unwrap()
}

pub async fn register_signer(
    node: &TestNode,
    issued: &IssuedCert,
    agencies: &[&str],
) -> Result<pb::Signer, tonic::Status> {
    node.signing()
        .await
        .register_signer(pb::RegisterSignerRequest {
            request_id: format!("signer-{}", hex::encode(&issued.cert_der[issued.cert_der.len() - 8..])),
            name: "Trần Thị Bình".into(),
            title: "Phó Chủ tịch UBND xã".into(),
            agency_ids: agencies.iter().map(|agency| agency.to_string()).collect(),
            certificate_chain: issued.cert_pem().into_bytes(),
            private_key_pkcs8: issued.key_pem().as_bytes().to_vec(),
        })
        .await
        .map(|response| response.into_inner())
}

/// Messages of an UploadDossier stream: metadata, then each file in chunks.
pub fn upload_messages(request_id: &str, agency: &str, files: &[(&str, &[u8])], chunk_size: usize) -> Vec<pb::UploadDossierRequest> {
    use pb::upload_dossier_request::Part;
    let mut messages = vec![pb::UploadDossierRequest {
        part: Some(Part::Metadata(pb::DossierMetadata {
            request_id: request_id.into(),
            agency_id: agency.into(),
            procedure_code: "1.001193".into(),
            dossier_number: "HS-2026-000123".into(),
            received_date: "2026-11-24".into(),
            private_fields: [("applicant_name".to_string(), "Lê Văn Cường".to_string())].into_iter().collect(),
        })),
    }];
    for (name, content) in files {
        messages.push(pb::UploadDossierRequest {
            part: Some(Part::FileStart(pb::FileStart {
                name: name.to_string(),
                content_type: "application/pdf".into(),
                declared_size_bytes: content.len() as u64,
            })),
        });
        for chunk in content.chunks(chunk_size) {
            messages.push(pb::UploadDossierRequest { part: Some(Part::Chunk(chunk.to_vec())) });
        }
    }
    messages
}

pub async fn upload(node: &TestNode, request_id: &str, agency: &str, files: &[(&str, &[u8])]) -> Result<pb::UploadDossierResponse, tonic::Status> {
    let messages = upload_messages(request_id, agency, files, 64 * 1024);
    node.archive().await.upload_dossier(futures::stream::iter(messages)).await.map(|response| response.into_inner())
}

/// Reads a blob with GetBlob, concatenating its chunks; a stream ending in an error is that error.
pub async fn get_blob(node: &TestNode, hash: &[u8]) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = node.archive().await.get_blob(pb::GetBlobRequest { sha256: hash.to_vec() }).await?.into_inner();
    let mut content = Vec::new();
    while let Some(chunk) = stream.message().await? {
        content.extend_from_slice(&chunk.data);
    }
    Ok(content)
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    kyso::domain::Sha256::digest(bytes).0.to_vec()
}

pub fn certify_request(request_id: &str, document: &[u8], agency: &str, signer_id: &str) -> pb::CertifyRequest {
    pb::CertifyRequest {
        request_id: request_id.into(),
        document_sha256: sha256(document),
        kind: pb::CertificationKind::CertifiedCopy as i32,
        agency_id: agency.into(),
        signer_id: signer_id.into(),
        dossier_id: String::new(),
    }
}

/// Deterministic pseudo-random document bytes of a given size.
pub fn document(seed: u8, size: usize) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("kyso-test-").tempdir().unwrap()
}

/// Runs the kyso binary with arguments; returns (success, stdout, stderr).
pub fn kyso_cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kyso")).args(args).env("KYSO_LOG", "warn").output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Ports tests hand out: below Linux's ephemeral range (32768-60999), so the source port of
/// some outgoing connection can never take one between choosing it and the node binding it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that is free now and that this test process has not handed out before. Nodes
/// whose peers must know their address up front (Raft members) get their ports here.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 ^ u64::from(std::process::id());
    let _ = STATE.compare_exchange(0, seed | 1, Ordering::SeqCst, Ordering::SeqCst);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..10_000 {
        let mut x = STATE.load(Ordering::SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        STATE.store(x, Ordering::SeqCst);
        let port = TEST_PORTS.start + (x % span) as u16;
        let mut given = GIVEN.lock().unwrap();
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?} after 10000 tries");
}

/// Ports and shared secrets of a local test cluster.
pub struct ClusterLayout {
    pub dir: PathBuf,
    pub pki: TestPki,
    /// (id, grpc port, raft port)
    pub members: Vec<(u64, u16, u16)>,
    pub extra_cluster_toml: String,
}

impl ClusterLayout {
    pub fn new(dir: &Path, nodes: u64, extra_cluster_toml: &str) -> ClusterLayout {
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        kyso::crypto::MasterKey::load_or_create(&shared.join("master.key")).unwrap();
        std::fs::write(shared.join("log.key"), kyso::tlog::LogSigner::generate().unwrap()).unwrap();
        ClusterLayout {
            pki: TestPki::new(&dir.join("pki")),
            dir: dir.to_path_buf(),
            members: (1..=nodes).map(|id| (id, free_port(), free_port())).collect(),
            extra_cluster_toml: extra_cluster_toml.to_string(),
        }
    }

    fn members_toml(&self) -> String {
        self.members
            .iter()
            .map(|(id, grpc, raft)| format!("{{ id = {id}, raft_addr = \"127.0.0.1:{raft}\", client_addr = \"127.0.0.1:{grpc}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The config of member `id`; `join` starts it empty, waiting to be added.
    pub fn config(&self, id: u64, grpc: u16, raft: u16, join: bool) -> String {
        let shared = self.dir.join("shared");
        let membership = if join { "join = true".to_string() } else { format!("members = [{}]", self.members_toml()) };
        format!(
            "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:{grpc}\"\nhttp_addr = \"127.0.0.1:0\"\n\
             master_key_file = {:?}\nlog_key_file = {:?}\ntrust_anchor_files = [{:?}]\n\
             [cluster]\nnode_id = {id}\nraft_addr = \"127.0.0.1:{raft}\"\ntick_interval_milliseconds = 50\n{}\n{membership}\n",
            shared.join("master.key").display().to_string(),
            shared.join("log.key").display().to_string(),
            self.pki.ca_pem_path.display().to_string(),
            self.extra_cluster_toml,
        )
    }

    pub fn start_all(&self) -> Vec<TestNode> {
        self.members
            .iter()
            .map(|&(id, grpc, raft)| TestNode::start_config(&self.dir.join(format!("node{id}")), &self.config(id, grpc, raft, false)))
            .collect()
    }
}

/// Waits until every running node names the same leader, and that leader says it leads.
/// Returns the leader's position in `nodes`.
pub async fn wait_for_leader(nodes: &[TestNode], deadline: Duration) -> usize {
    let start = Instant::now();
    loop {
        let mut views = Vec::new();
        for (position, node) in nodes.iter().enumerate().filter(|(_, node)| node.is_running()) {
            if let Ok(status) = node.cluster().await.status(pb::ClusterStatusRequest {}).await {
                views.push((position, status.into_inner()));
            }
        }
        let running = nodes.iter().filter(|node| node.is_running()).count();
        if views.len() == running && running > 0 {
            let leader = views[0].1.leader_id;
            let agreed = leader != 0 && views.iter().all(|(_, view)| view.leader_id == leader);
            if let (true, Some((position, _))) = (agreed, views.iter().find(|(_, view)| view.role == "leader" && view.node_id == leader)) {
                return *position;
            }
        }
        assert!(start.elapsed() < deadline, "no agreed leader within {deadline:?}: {views:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every running node reports the same state digest at the same applied index.
pub async fn wait_for_identical_state(nodes: &[TestNode], deadline: Duration) -> pb::StateDigestResponse {
    let start = Instant::now();
    loop {
        let mut digests = Vec::new();
        for node in nodes.iter().filter(|node| node.is_running()) {
            if let Ok(digest) = node.cluster().await.state_digest(pb::StateDigestRequest {}).await {
                digests.push(digest.into_inner());
            }
        }
        let running = nodes.iter().filter(|node| node.is_running()).count();
        if digests.len() == running && digests.windows(2).all(|pair| pair[0] == pair[1]) {
            return digests.remove(0);
        }
        assert!(start.elapsed() < deadline, "replicas did not converge within {deadline:?}: {digests:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! Shared helpers for integration tests: a real `kyso node` process on 127.0.0.1 with
//! ephemeral ports, a test PKI (signing CA, and TLS: a cluster CA, a client CA, the node's
//! certificate and an operator client certificate holding every role), and gRPC clients
//! over mutual TLS. Waits use generous deadlines, never fixed sleeps: the CI machine is
//! slow and shared.
#![allow(dead_code)]

pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kyso::crypto::devpki::{self, CertSpec, IssuedCert, KeyUsages, TlsUsage};
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The PIN every test signer's key is sealed under.
pub const TEST_PIN: &str = "test-pin-2468";
/// Limits every test node gets: the weakest PIN stretching allowed, to keep tests fast.
pub const TEST_LIMITS: &str = "pin_pbkdf2_iterations = 100000\n";
/// Cluster harnesses drive many simulated clients (and the final checks) through one
/// operator certificate: its per-client rate limit is lifted there.
const CLUSTER_TEST_LIMITS: &str = "client_requests_per_second_max = 1000000\n";

/// TLS material of a test deployment, in `dir` (created once, then read back).
#[derive(Clone)]
pub struct TestTls {
    pub dir: PathBuf,
    pub cluster_ca: IssuedCert,
    pub client_ca: IssuedCert,
    pub node: IssuedCert,
    /// Holds admin, clerk, signer and verifier for every agency and signer.
    pub operator: IssuedCert,
}

fn write_issued(dir: &Path, name: &str, issued: &IssuedCert) {
    std::fs::write(dir.join(format!("{name}.pem")), issued.cert_pem()).unwrap();
    write_private(&dir.join(format!("{name}.key")), issued.key_pem().as_bytes());
}

/// Writes a key file readable by its owner only (a node refuses looser key files).
pub fn write_private(path: &Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn read_issued(dir: &Path, name: &str) -> IssuedCert {
    let cert = pem::parse(std::fs::read(dir.join(format!("{name}.pem"))).unwrap()).unwrap().into_contents();
    let key = pem::parse(std::fs::read(dir.join(format!("{name}.key"))).unwrap()).unwrap().into_contents();
    IssuedCert { cert_der: cert, key_pkcs8_der: zeroize::Zeroizing::new(key) }
}

impl TestTls {
    pub fn ensure(dir: &Path) -> TestTls {
        if dir.join("operator.pem").exists() {
            return TestTls {
                dir: dir.to_path_buf(),
                cluster_ca: read_issued(dir, "cluster-ca"),
                client_ca: read_issued(dir, "client-ca"),
                node: read_issued(dir, "node"),
                operator: read_issued(dir, "operator"),
            };
        }
        std::fs::create_dir_all(dir).unwrap();
        let cluster_ca = devpki::self_signed_ca(&ca_spec("kyso test cluster CA")).unwrap();
        let client_ca = devpki::self_signed_ca(&ca_spec("kyso test client CA")).unwrap();
        let node = node_leaf(1, &cluster_ca);
        let operator = tls_leaf("kyso test operator", &[], TlsUsage::Client, &client_ca);
        for (name, issued) in [("cluster-ca", &cluster_ca), ("client-ca", &client_ca), ("node", &node), ("operator", &operator)] {
            write_issued(dir, name, issued);
        }
        TestTls { dir: dir.to_path_buf(), cluster_ca, client_ca, node, operator }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// The `[tls]` section and operator grant of cluster member `id`: its own certificate,
    /// bound to its node id (written once as `node-<id>.pem`).
    pub fn toml_for_node(&self, id: u64) -> String {
        let (cert, key) = (self.dir.join(format!("node-{id}.pem")), self.dir.join(format!("node-{id}.key")));
        if !cert.exists() {
            let node = node_leaf(id, &self.cluster_ca);
            // Written beside, then renamed: tests starting members at once never read half a file.
            let (cert_tmp, key_tmp) = (self.dir.join(format!("node-{id}.pem.{}", std::process::id())), self.dir.join(format!("node-{id}.key.{}", std::process::id())));
            write_private(&key_tmp, node.key_pem().as_bytes());
            std::fs::write(&cert_tmp, node.cert_pem()).unwrap();
            std::fs::rename(&key_tmp, &key).unwrap();
            std::fs::rename(&cert_tmp, &cert).unwrap();
        }
        self.toml().replace(&format!("{:?}", self.path("node.pem")), &format!("{:?}", cert.display().to_string())).replace(
            &format!("{:?}", self.path("node.key")),
            &format!("{:?}", key.display().to_string()),
        )
    }

    /// A client certificate from the client CA (no grants until some are given).
    pub fn issue_client(&self, name: &str) -> IssuedCert {
        tls_leaf(name, &[], TlsUsage::Client, &self.client_ca)
    }

    /// The `[tls]` section and the operator's grant, to append after top-level keys.
    pub fn toml(&self) -> String {
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_files = [{:?}]\ncluster_ca_file = {:?}\n\n\
             [[access.principals]]\ncertificate_sha256 = {:?}\nname = \"test operator\"\nroles = [\"admin\", \"clerk\", \"signer\", \"verifier\"]\n\
             agency_ids = [\"*\"]\nsigner_ids = [\"*\"]\n\n",
            self.path("node.pem"),
            self.path("node.key"),
            self.path("client-ca.pem"),
            self.path("cluster-ca.pem"),
            fingerprint(&self.operator),
        )
    }

    /// Client TLS trusting the cluster CA and presenting `client`.
    pub fn client_tls(&self, client: &IssuedCert) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.cluster_ca.cert_pem()))
            .identity(Identity::from_pem(client.cert_pem(), client.key_pem().as_bytes()))
    }

    /// A mutual-TLS channel to `url` presenting `client`.
    pub async fn channel_as(&self, url: &str, client: &IssuedCert) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(url.to_string()).unwrap().tls_config(self.client_tls(client))?.connect().await
    }

    /// Environment for the kyso CLI acting as the operator.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![("KYSO_CA", self.path("cluster-ca.pem")), ("KYSO_CERT", self.path("operator.pem")), ("KYSO_KEY", self.path("operator.key"))]
    }
}

fn tls_leaf(name: &str, hosts: &[String], usage: TlsUsage, issuer: &IssuedCert) -> IssuedCert {
    let now = now_unix();
    devpki::issue_tls(name, hosts, usage, now - 3600, now + 30 * 86_400, issuer).unwrap()
}

/// A node certificate of the cluster CA bound to node `id`.
pub fn node_leaf(id: u64, cluster_ca: &IssuedCert) -> IssuedCert {
    let now = now_unix();
    let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
    devpki::issue_node_tls(id, &format!("kyso test node {id}"), &hosts, now - 3600, now + 30 * 86_400, cluster_ca).unwrap()
}

/// Hex SHA-256 of a certificate's DER: what grants are keyed by.
pub fn fingerprint(issued: &IssuedCert) -> String {
    kyso::domain::Sha256::digest(&issued.cert_der).to_hex()
}

/// The TLS material of the PKI whose signing CA is `ca_pem` (see [`TestPki::new`]).
pub fn tls_beside(ca_pem: &Path) -> TestTls {
    TestTls::ensure(&ca_pem.parent().unwrap().join("tls"))
}

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
    pub tls: TestTls,
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
        let tls = tls_beside(ca_pem);
        let config = format!(
            "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\ntrust_anchor_files = [{:?}]\n{}\n{}[limits]\n{TEST_LIMITS}{}\n",
            ca_pem.display().to_string(),
            extra_top_level,
            tls.toml(),
            extra_limits
        );
        std::fs::write(&config_path, config).unwrap();
        Self::spawn(dir, config_path, tls, env)
    }

    /// Starts a node from a complete TOML config written to `dir/kyso.toml`; clients use
    /// `tls`.
    pub fn start_config(dir: &Path, config: &str, tls: &TestTls) -> TestNode {
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join("kyso.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::spawn(dir, config_path, tls.clone(), Vec::new())
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
        *self = Self::spawn(&self.dir.clone(), self.config_path.clone(), self.tls.clone(), self.env.clone());
    }

    pub async fn cluster(&self) -> pb::cluster_service_client::ClusterServiceClient<Channel> {
        pb::cluster_service_client::ClusterServiceClient::new(self.channel().await)
    }

    fn spawn(dir: &Path, config_path: PathBuf, tls: TestTls, env: Vec<(String, String)>) -> TestNode {
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
            grpc_url: format!("https://{}", field("grpc")),
            http_url: format!("http://{}", field("http")),
            child: Some(child),
            dir: dir.to_path_buf(),
            config_path,
            env,
            tls,
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
        let restarted = Self::spawn(&self.dir.clone(), self.config_path.clone(), self.tls.clone(), self.env.clone());
        *self = restarted;
    }

    /// A channel presenting the operator's certificate (every role).
    pub async fn channel(&self) -> Channel {
        self.channel_as(&self.tls.operator.clone()).await
    }

    /// A channel presenting `client`'s certificate.
    pub async fn channel_as(&self, client: &IssuedCert) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.tls.channel_as(&self.grpc_url, client).await {
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

/// One node on its own PKI in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub pki: TestPki,
    pub node: TestNode,
}

/// Starts a node with `extra_limits` appended to its `[limits]`.
pub fn fixture(extra_limits: &str) -> Fixture {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, extra_limits);
    Fixture { dir, pki, node }
}

/// The call failed with `code` and a message that mentions `needle`.
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, needle: &str) {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "wrong code for: {}", status.message());
    assert!(status.message().contains(needle), "message {:?} should mention {needle:?}", status.message());
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

    /// Issues a TSA certificate (extendedKeyUsage timeStamping, critical) from this CA,
    /// writes `name.pem` (TSA certificate, then the CA) and `name.key` into `dir`, and
    /// returns the `[tsa]` table that makes a node run it (put it after other tables).
    pub fn tsa_toml(&self, dir: &Path, name: &str) -> String {
        let now = now_unix();
        let tsa = devpki::issue_tsa(name, KeyAlgorithm::EcdsaP256, now - 3600, now + 30 * 86_400, &self.ca).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, format!("{}{}", tsa.cert_pem(), self.ca.cert_pem())).unwrap();
        write_private(&key, tsa.key_pem().as_bytes());
        format!("[tsa]\ncert_file = {:?}\nkey_file = {:?}\n", cert.display().to_string(), key.display().to_string())
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
            pin: TEST_PIN.into(),
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

/// Message size of a generated large upload (the node's default chunk limit).
pub const LARGE_CHUNK_BYTES: usize = 1024 * 1024;

/// Deterministic bytes of chunk `index` of a generated large file (fast enough for
/// 200 MiB in a debug build).
pub fn large_chunk(index: u64) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunk = vec![0u8; LARGE_CHUNK_BYTES];
    for word in chunk.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    chunk
}

/// Uploads a dossier of one generated file of `size_bytes` (a multiple of
/// [`LARGE_CHUNK_BYTES`]), made and hashed chunk by chunk as the stream sends it, so the
/// test process never holds the file. Returns the answer and the file's SHA-256.
pub async fn upload_generated(
    node: &TestNode,
    request_id: &str,
    agency: &str,
    size_bytes: u64,
) -> (Result<pb::UploadDossierResponse, tonic::Status>, Vec<u8>) {
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};
    assert_eq!(size_bytes % LARGE_CHUNK_BYTES as u64, 0, "a whole number of chunks");
    let hasher = Arc::new(Mutex::new(Some(ring::digest::Context::new(&ring::digest::SHA256))));
    let mut head = upload_messages(request_id, agency, &[], LARGE_CHUNK_BYTES);
    head.push(pb::UploadDossierRequest {
        part: Some(pb::upload_dossier_request::Part::FileStart(pb::FileStart {
            name: "ban-do-dia-chinh.tiff".into(),
            content_type: "image/tiff".into(),
            declared_size_bytes: size_bytes,
        })),
    });
    let body_hasher = hasher.clone();
    let body = futures::stream::iter(0..size_bytes / LARGE_CHUNK_BYTES as u64).map(move |index| {
        let chunk = large_chunk(index);
        body_hasher.lock().unwrap().as_mut().unwrap().update(&chunk);
        pb::UploadDossierRequest { part: Some(pb::upload_dossier_request::Part::Chunk(chunk)) }
    });
    let response = node.archive().await.upload_dossier(futures::stream::iter(head).chain(body)).await.map(tonic::Response::into_inner);
    let hash = hasher.lock().unwrap().take().unwrap().finish().as_ref().to_vec();
    (response, hash)
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
        pin: TEST_PIN.into(),
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

/// `target/test-artefacts/<name>`, created: files a test keeps for a person to look at.
pub fn artefacts_dir(name: &str) -> PathBuf {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts").join(name);
    std::fs::create_dir_all(&directory).expect("artefact directory");
    directory
}

/// Runs an independent tool that must be installed (scripts/test.sh installs them; a
/// missing one fails the test); returns its success and its stdout and stderr together.
pub fn tool_with_env(program: &str, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut command = Command::new(program);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap_or_else(|error| panic!("this test needs {program}: {error}; scripts/test.sh installs it"));
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

/// [`tool_with_env`]'s stdout and stderr.
pub fn tool(program: &str, args: &[&str]) -> String {
    tool_with_env(program, args, &[]).1
}

/// A fresh NSS database trusting `ca_pem`, for `pdfsig -nssdir`: the directory (keep it
/// alive while pdfsig runs) and the `sql:` name to pass.
pub fn nss_database_trusting(ca_pem: &Path) -> (tempfile::TempDir, String) {
    let directory = tempdir();
    let database = format!("sql:{}", directory.path().display());
    tool("certutil", &["-N", "-d", &database, "--empty-password"]);
    tool("certutil", &["-A", "-d", &database, "-n", "kyso-test-ca", "-t", "CT,C,C", "-i", ca_pem.to_str().unwrap()]);
    (directory, database)
}

/// Runs the kyso binary with arguments; returns (success, stdout, stderr).
pub fn kyso_cli(args: &[&str]) -> (bool, String, String) {
    kyso_cli_env(args, &[])
}

/// Runs the kyso binary as `node`'s operator (its CA, client certificate and key).
pub fn kyso_cli_for(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    kyso_cli_env(args, &node.tls.cli_env())
}

fn kyso_cli_env(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kyso"));
    command.args(args).env("KYSO_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Ports tests hand out: below Linux's ephemeral range (32768-60999), so the source port of
/// some outgoing connection can never take one between choosing it and the node binding it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that is free now and that no running test process has handed out before. Nodes
/// whose peers must know their address up front (Raft members) get their ports here, and
/// keep them across restarts: while such a node is down its port looks free, so ports are
/// also reserved across processes (a file per port naming the process that holds it, in
/// the temp directory) — two test runs at once, say a soak beside the suite, never take
/// each other's ports.
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
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve_port_across_processes(port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?} after 10000 tries");
}

/// Claims `port` for this process unless a live process claimed it first.
fn reserve_port_across_processes(port: u16) -> bool {
    let dir = std::env::temp_dir().join("kyso-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(port.to_string());
    let claim = || std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
    let mut file = match claim() {
        Ok(file) => file,
        Err(_) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let alive = holder.trim().parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return false;
            }
            // The holder has exited: its claim is stale. Whoever removes and re-creates the
            // file first wins; a loser sees create_new fail.
            let _ = std::fs::remove_file(&path);
            match claim() {
                Ok(file) => file,
                Err(_) => return false,
            }
        }
    };
    use std::io::Write;
    file.write_all(std::process::id().to_string().as_bytes()).unwrap();
    true
}

/// Ports and shared secrets of a local test cluster.
pub struct ClusterLayout {
    pub dir: PathBuf,
    pub pki: TestPki,
    pub tls: TestTls,
    /// (id, grpc port, raft port)
    pub members: Vec<(u64, u16, u16)>,
    pub extra_cluster_toml: String,
    /// The members' Raft tick (elections time out after 10 to 20 ticks); 50 ms unless a
    /// test needs slow elections.
    pub tick_interval_milliseconds: u64,
}

impl ClusterLayout {
    pub fn new(dir: &Path, nodes: u64, extra_cluster_toml: &str) -> ClusterLayout {
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        kyso::crypto::MasterKey::load_or_create(&shared.join("master.key")).unwrap();
        write_private(&shared.join("log.key"), &kyso::tlog::LogSigner::generate().unwrap());
        let pki = TestPki::new(&dir.join("pki"));
        ClusterLayout {
            tls: tls_beside(&pki.ca_pem_path),
            pki,
            dir: dir.to_path_buf(),
            members: (1..=nodes).map(|id| (id, free_port(), free_port())).collect(),
            extra_cluster_toml: extra_cluster_toml.to_string(),
            tick_interval_milliseconds: 50,
        }
    }

    fn members_toml(&self) -> String {
        self.members
            .iter()
            .map(|(id, grpc, raft)| format!("{{ id = {id}, raft_addr = \"127.0.0.1:{raft}\", client_addr = \"127.0.0.1:{grpc}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The config of member `id`; `join` starts it empty, waiting to be added. Peers talk
    /// mutual TLS with certificates of the cluster CA.
    pub fn config(&self, id: u64, grpc: u16, raft: u16, join: bool) -> String {
        self.config_with(id, grpc, raft, join, "")
    }

    /// Like [`ClusterLayout::config`] with `extra` TOML after the top-level keys (more
    /// top-level keys, or whole sections such as `[storage]`).
    pub fn config_with(&self, id: u64, grpc: u16, raft: u16, join: bool, extra: &str) -> String {
        let shared = self.dir.join("shared");
        let membership = if join { "join = true".to_string() } else { format!("members = [{}]", self.members_toml()) };
        format!(
            "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:{grpc}\"\nhttp_addr = \"127.0.0.1:0\"\n\
             master_key_file = {:?}\nlog_key_file = {:?}\ntrust_anchor_files = [{:?}]\n{extra}\n\
             {}[limits]\n{TEST_LIMITS}{CLUSTER_TEST_LIMITS}\n\
             [cluster]\nnode_id = {id}\nraft_addr = \"127.0.0.1:{raft}\"\ntick_interval_milliseconds = {}\n{}\n{membership}\n",
            shared.join("master.key").display().to_string(),
            shared.join("log.key").display().to_string(),
            self.pki.ca_pem_path.display().to_string(),
            self.tls.toml_for_node(id),
            self.tick_interval_milliseconds,
            self.extra_cluster_toml,
        )
    }

    pub fn start_all(&self) -> Vec<TestNode> {
        self.start_all_with(|_| String::new())
    }

    /// Starts every founding member in `dir/node<id>`, with `extra(id)` in its config (see
    /// [`ClusterLayout::config_with`]).
    pub fn start_all_with(&self, extra: impl Fn(u64) -> String) -> Vec<TestNode> {
        self.members
            .iter()
            .map(|&(id, grpc, raft)| {
                TestNode::start_config(&self.dir.join(format!("node{id}")), &self.config_with(id, grpc, raft, false, &extra(id)), &self.tls)
            })
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

/// Grants `client` roles through the operator (an admin), for `agencies` and `signers`.
pub async fn grant(node: &TestNode, client: &IssuedCert, roles: &[&str], agencies: &[&str], signers: &[&str]) {
    let mut access = pb::access_service_client::AccessServiceClient::new(node.channel().await);
    access
        .set_access(pb::SetAccessRequest {
            request_id: format!("grant-{}", fingerprint(client)),
            certificate_sha256: kyso::domain::Sha256::digest(&client.cert_der).0.to_vec(),
            name: "Lê Thị Thu, bộ phận một cửa".into(),
            roles: roles.iter().map(|role| role.to_string()).collect(),
            agency_ids: agencies.iter().map(|agency| agency.to_string()).collect(),
            signer_ids: signers.iter().map(|signer| signer.to_string()).collect(),
        })
        .await
        .unwrap();
}

/// A minimal HTTP GET over a TCP stream (keeps the test free of an HTTP client crate).
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let without_scheme = url.strip_prefix("http://").unwrap();
    let (host, path) = without_scheme.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.write_all(format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Exports the offline bundle of certification `code` from `node` (`kyso verify --bundle`)
/// and returns a checker that runs `kyso verify --offline` on it with `file`, trusting
/// `ca_pem` and the node's log key: (success, stdout and stderr).
pub fn offline_bundle(node: &TestNode, ca_pem: &Path, code: &str) -> impl Fn(&Path) -> (bool, String) {
    let bundle = node.dir.join(format!("bundle-{code}.json"));
    let (ok, stdout, stderr) = kyso_cli_for(node, &["verify", "--server", &node.grpc_url, "--code", code, "--bundle", bundle.to_str().unwrap()]);
    assert!(ok, "kyso verify --bundle: {stdout}{stderr}");
    let (log_key, ca_pem) = (node.dir.join("data/log.pub"), ca_pem.to_path_buf());
    move |file: &Path| {
        let (ok, stdout, stderr) = kyso_cli(&[
            "verify", "--offline", "--bundle", bundle.to_str().unwrap(), "--file", file.to_str().unwrap(),
            "--trust", ca_pem.to_str().unwrap(), "--log-key", log_key.to_str().unwrap(),
        ]);
        (ok, format!("{stdout}{stderr}"))
    }
}

/// Registers a signer whose key stays on a token: the node holds only its certificate.
pub async fn register_token_signer(node: &TestNode, certificate_pem: &str, agency: &str) -> pb::Signer {
    node.signing()
        .await
        .register_signer(pb::RegisterSignerRequest {
            request_id: "token-signer".into(),
            name: "Phạm Minh Châu".into(),
            title: "Công chức Tư pháp - Hộ tịch".into(),
            agency_ids: vec![agency.into()],
            certificate_chain: certificate_pem.as_bytes().to_vec(),
            private_key_pkcs8: Vec::new(),
            pin: String::new(),
        })
        .await
        .expect("register the token signer")
        .into_inner()
}

/// PrepareTokenSignature for a certified copy of `scan`.
pub fn token_prepare_request(agency: &str, scan: &[u8], signer_id: &str) -> pb::PrepareTokenSignatureRequest {
    pb::PrepareTokenSignatureRequest {
        document_sha256: sha256(scan),
        kind: pb::CertificationKind::CertifiedCopy as i32,
        agency_id: agency.into(),
        signer_id: signer_id.into(),
        dossier_id: String::new(),
    }
}

/// Starts `kyso node` on `config_path` at log level `level`, its stdout discarded, and
/// returns the process with a channel of its stderr lines (disconnected once it exits).
pub fn spawn_node_reading_log(config_path: &Path, level: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kyso"))
        .args(["node", "--config"])
        .arg(config_path)
        .env("KYSO_LOG", level)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the kyso binary");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

//! `kyso dev`: the embedded default. One node in ./kyso-data with local blob storage, a
//! generated development CA, one demo agency (`xa-demo`) and one demo signer whose key the
//! node holds under its demo PIN, and every TLS certificate it needs (`kyso-data/tls`: a
//! cluster CA and the node's certificate, a client CA and client certificates for an
//! operator, a clerk, a signer and a verifier, granted roles in the node's config). Nothing
//! here is fit for production: the CA keys sit beside the data.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::DevArgs;
use crate::access::{Caller, Role, ANY};
use crate::config::{Config, StaticPrincipal, TlsConfig};
use crate::crypto::devpki::{self, CertSpec, IssuedCert, KeyUsages, TlsUsage};
use crate::crypto::KeyAlgorithm;
use crate::node::Node;
use crate::service::signing::NewSigner;

pub const DEMO_AGENCY: &str = "xa-demo";
/// Display name of the demo agency on the public page (`[agency_names]` in a config file).
pub const DEMO_AGENCY_NAME: &str = "UBND xã Demo";
const DEMO_SIGNER_NAME: &str = "Nguyễn Văn An";
const DEMO_SIGNER_TITLE: &str = "Chủ tịch UBND xã Demo";
/// The demo signer's PIN: a development convenience, printed at start.
pub const DEMO_PIN: &str = "12345678";
/// Validity of generated development certificates.
const DEV_CERT_VALIDITY_SECONDS: i64 = 2 * 365 * 86_400;

/// The generated TLS files of a development node or local cluster.
pub struct DevTls {
    /// The cluster CA: issues node certificates; clients trust it (`--ca`).
    pub ca_pem: PathBuf,
    pub node_pem: PathBuf,
    pub node_key: PathBuf,
    /// The client CA: issues the client certificates below.
    pub client_ca_pem: PathBuf,
    /// (name, certificate, key) of each client: `client` (operator), `clerk`, `signer`,
    /// `verifier`.
    pub clients: Vec<(&'static str, PathBuf, PathBuf)>,
}

impl DevTls {
    pub fn client(&self, name: &str) -> (&PathBuf, &PathBuf) {
        let (_, cert, key) = self.clients.iter().find(|(client, _, _)| *client == name).expect("dev clients are fixed");
        (cert, key)
    }

    /// The node's TLS section.
    pub fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert_file: Some(self.node_pem.clone()),
            key_file: Some(self.node_key.clone()),
            client_ca_files: vec![self.client_ca_pem.clone()],
            cluster_ca_file: Some(self.ca_pem.clone()),
            ..TlsConfig::default()
        }
    }

    /// Grants for the development clients: the operator holds every role everywhere, the
    /// others one role each, for the demo agency and `signer_ids`.
    pub fn principals(&self, signer_ids: &[String]) -> anyhow::Result<Vec<StaticPrincipal>> {
        let grant = |name: &str, roles: Vec<Role>, agencies: Vec<String>, signers: Vec<String>| -> anyhow::Result<StaticPrincipal> {
            let (cert, _) = self.client(name);
            Ok(StaticPrincipal {
                certificate_sha256: super::security::certificate_fingerprint(cert)?.to_hex(),
                name: format!("kyso dev {name}"),
                roles,
                agency_ids: agencies,
                signer_ids: signers,
            })
        };
        Ok(vec![
            grant("client", vec![Role::Admin, Role::Clerk, Role::Signer, Role::Verifier], vec![ANY.into()], vec![ANY.into()])?,
            grant("clerk", vec![Role::Clerk], vec![DEMO_AGENCY.into()], vec![])?,
            grant("signer", vec![Role::Signer], vec![], signer_ids.to_vec())?,
            grant("verifier", vec![Role::Verifier], vec![], vec![])?,
        ])
    }
}

/// Creates the development TLS CAs and certificates under `dir` unless they exist. The
/// node certificate names `localhost`, `127.0.0.1` and `::1`.
pub fn ensure_dev_tls(dir: &Path) -> anyhow::Result<DevTls> {
    let path = |name: &str| dir.join(name);
    let clients = ["client", "clerk", "signer", "verifier"];
    let tls = DevTls {
        ca_pem: path("ca.pem"),
        node_pem: path("node.pem"),
        node_key: path("node.key"),
        client_ca_pem: path("client-ca.pem"),
        clients: clients.iter().map(|name| (*name, path(&format!("{name}.pem")), path(&format!("{name}.key")))).collect(),
    };
    if tls.ca_pem.exists() && tls.clients.iter().all(|(_, cert, key)| cert.exists() && key.exists()) {
        return Ok(tls);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now = crate::service::now_unix();
    let (not_before, not_after) = (now - 3600, now + DEV_CERT_VALIDITY_SECONDS);
    let ca_spec = |name: &str| CertSpec {
        organization: Some("kyso dev".into()),
        path_length_max: Some(0),
        ..CertSpec::certificate_authority(name, KeyAlgorithm::EcdsaP256, not_before, not_after)
    };
    let cluster_ca = devpki::self_signed_ca(&ca_spec("kyso dev cluster CA"))?;
    let client_ca = devpki::self_signed_ca(&ca_spec("kyso dev client CA"))?;
    let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let node = devpki::issue_node_tls(1, "kyso dev node 1", &hosts, not_before, not_after, &cluster_ca)?;
    write_private(&path("ca.key"), cluster_ca.key_pem().as_bytes())?;
    write_private(&path("client-ca.key"), client_ca.key_pem().as_bytes())?;
    write_private(&tls.node_key, node.key_pem().as_bytes())?;
    std::fs::write(&tls.node_pem, node.cert_pem())?;
    std::fs::write(&tls.client_ca_pem, client_ca.cert_pem())?;
    for (name, cert, key) in &tls.clients {
        let client = devpki::issue_tls(&format!("kyso dev {name}"), &[], TlsUsage::Client, not_before, not_after, &client_ca)?;
        write_private(key, client.key_pem().as_bytes())?;
        std::fs::write(cert, client.cert_pem())?;
    }
    std::fs::write(&tls.ca_pem, cluster_ca.cert_pem())?;
    Ok(tls)
}

/// Paths of the generated development PKI.
pub struct DevPki {
    pub ca_pem: PathBuf,
    pub signer_pem: PathBuf,
    pub signer_key: PathBuf,
    /// The demo agency's organisation certificate and key (its signature on certified PDFs).
    pub agency_pem: PathBuf,
    pub agency_key: PathBuf,
    /// The time-stamping authority's certificate (extendedKeyUsage timeStamping, critical;
    /// issued by the dev CA) and key: `[tsa] cert_file`, `key_file` of the dev node.
    pub tsa_pem: PathBuf,
    pub tsa_key: PathBuf,
}

/// Creates the development CA and demo signer under `dir` unless they exist.
pub fn ensure_dev_pki(dir: &Path) -> anyhow::Result<DevPki> {
    let pki = DevPki {
        ca_pem: dir.join("ca.pem"),
        signer_pem: dir.join("signer.pem"),
        signer_key: dir.join("signer.key"),
        agency_pem: dir.join("agency.pem"),
        agency_key: dir.join("agency.key"),
        tsa_pem: dir.join("tsa.pem"),
        tsa_key: dir.join("tsa.key"),
    };
    if [&pki.ca_pem, &pki.signer_pem, &pki.signer_key, &pki.agency_pem, &pki.agency_key].iter().all(|path| path.exists()) {
        ensure_dev_tsa(&pki, dir)?;
        return Ok(pki);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now = crate::service::now_unix();
    let ca = devpki::self_signed_ca(&CertSpec {
        common_name: "kyso development CA".into(),
        organization: Some("kyso dev".into()),
        algorithm: KeyAlgorithm::EcdsaP256,
        not_before_unix: now - 3600,
        not_after_unix: now + DEV_CERT_VALIDITY_SECONDS,
        is_ca: true,
        path_length_max: Some(0),
        key_usage: KeyUsages { key_cert_sign: true, crl_sign: true, ..KeyUsages::default() },
    })?;
    let signer = devpki::issue(
        &CertSpec {
            common_name: DEMO_SIGNER_NAME.into(),
            organization: Some(DEMO_AGENCY_NAME.into()),
            algorithm: KeyAlgorithm::EcdsaP256,
            not_before_unix: now - 3600,
            not_after_unix: now + DEV_CERT_VALIDITY_SECONDS,
            is_ca: false,
            path_length_max: None,
            key_usage: KeyUsages { digital_signature: true, non_repudiation: true, ..KeyUsages::default() },
        },
        &ca,
    )?;
    // An organisation certificate: the agency's own signature on its certified PDFs
    // (pyHanko wants nonRepudiation on signing certificates).
    let agency = devpki::issue(
        &CertSpec {
            common_name: DEMO_AGENCY_NAME.into(),
            organization: Some(DEMO_AGENCY_NAME.into()),
            key_usage: KeyUsages { digital_signature: true, non_repudiation: true, ..KeyUsages::default() },
            ..CertSpec::signer(DEMO_AGENCY_NAME, KeyAlgorithm::EcdsaP256, now - 3600, now + DEV_CERT_VALIDITY_SECONDS)
        },
        &ca,
    )?;
    write_private(&pki.agency_key, agency.key_pem().as_bytes())?;
    std::fs::write(&pki.agency_pem, agency.cert_pem())?;
    write_private(&dir.join("ca.key"), ca.key_pem().as_bytes())?;
    write_private(&pki.signer_key, signer.key_pem().as_bytes())?;
    std::fs::write(&pki.signer_pem, signer.cert_pem())?;
    std::fs::write(&pki.ca_pem, ca.cert_pem())?;
    let _: &IssuedCert = &signer;
    ensure_dev_tsa(&pki, dir)?;
    Ok(pki)
}

/// Issues the dev TSA certificate from the dev CA unless it exists (a data directory from
/// before the TSA gets one without new CA or signer).
fn ensure_dev_tsa(pki: &DevPki, dir: &Path) -> anyhow::Result<()> {
    if pki.tsa_pem.exists() && pki.tsa_key.exists() {
        return Ok(());
    }
    let ca_cert = pem::parse(std::fs::read(&pki.ca_pem)?).context("dev-pki/ca.pem is not PEM")?.into_contents();
    let ca_key = pem::parse(std::fs::read(dir.join("ca.key"))?).context("dev-pki/ca.key is not PEM")?.into_contents();
    let ca = IssuedCert { cert_der: ca_cert, key_pkcs8_der: zeroize::Zeroizing::new(ca_key) };
    let now = crate::service::now_unix();
    let tsa = devpki::issue_tsa("kyso dev TSA", KeyAlgorithm::EcdsaP256, now - 3600, now + DEV_CERT_VALIDITY_SECONDS, &ca)?;
    write_private(&pki.tsa_key, tsa.key_pem().as_bytes())?;
    std::fs::write(&pki.tsa_pem, format!("{}{}", tsa.cert_pem(), ca.cert_pem()))?;
    Ok(())
}

fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    crate::node::write_private_file(path, content)
}

/// `kyso init-keys`: the secrets every node of one cluster must share, plus a dev PKI.
/// Existing files are kept, so running it twice is harmless.
pub fn init_keys(dir: &Path, log_origin: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let master = dir.join("master.key");
    if !master.exists() {
        crate::crypto::MasterKey::load_or_create(&master)?;
    }
    let log_key = dir.join("log.key");
    if !log_key.exists() {
        crate::node::write_private_file(&log_key, &crate::tlog::LogSigner::generate()?)?;
    }
    let signer = crate::tlog::LogSigner::from_pkcs8(log_origin, &std::fs::read(&log_key)?)?;
    std::fs::write(dir.join("log.pub"), format!("{}\n", signer.verifier()))?;
    let pki = ensure_dev_pki(&dir.join("dev-pki"))?;
    let tls = ensure_dev_tls(&dir.join("tls"))?;
    ensure_node_certificates(&dir.join("tls"), LOCAL_CLUSTER_NODES_MAX)?;
    println!("master key {}\nlog key    {}\nlog.pub    {}\ndev CA     {}", master.display(), log_key.display(), dir.join("log.pub").display(), pki.ca_pem.display());
    println!(
        "TLS        {} (cluster CA), {} (client CA), node-1.pem … node-{LOCAL_CLUSTER_NODES_MAX}.pem, client.pem",
        tls.ca_pem.display(),
        tls.client_ca_pem.display()
    );
    Ok(())
}

/// Node certificates `kyso init-keys` writes for a local cluster (`node-<id>.pem`).
pub const LOCAL_CLUSTER_NODES_MAX: u64 = 5;

/// Writes `node-<id>.pem` and `.key` for ids 1..=`count` under the TLS directory `dir`
/// (whose cluster CA `ensure_dev_tls` made), each bound to its node id: a cluster member
/// needs a certificate of its own.
fn ensure_node_certificates(dir: &Path, count: u64) -> anyhow::Result<()> {
    let ca_cert = pem::parse(std::fs::read(dir.join("ca.pem"))?).context("ca.pem is not PEM")?.into_contents();
    let ca_key = pem::parse(std::fs::read(dir.join("ca.key"))?).context("ca.key is not PEM")?.into_contents();
    let cluster_ca = IssuedCert { cert_der: ca_cert, key_pkcs8_der: zeroize::Zeroizing::new(ca_key) };
    let now = crate::service::now_unix();
    let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    for id in 1..=count {
        let (cert, key) = (dir.join(format!("node-{id}.pem")), dir.join(format!("node-{id}.key")));
        if cert.exists() && key.exists() {
            continue;
        }
        let node = devpki::issue_node_tls(id, &format!("kyso local node {id}"), &hosts, now - 3600, now + DEV_CERT_VALIDITY_SECONDS, &cluster_ca)?;
        write_private(&key, node.key_pem().as_bytes())?;
        std::fs::write(&cert, node.cert_pem())?;
    }
    Ok(())
}

/// A small, valid PDF to try the flow with.
fn ensure_sample(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("giay-khai-sinh.pdf");
    if !path.exists() {
        std::fs::write(&path, sample_pdf("kyso dev sample"))?;
    }
    Ok(path)
}

/// A one-page PDF with a correct cross-reference table; `note` (one line) goes into a
/// comment after the header, so that tests can make distinct documents.
pub fn sample_pdf(note: &str) -> Vec<u8> {
    let text = "BT /F1 18 Tf 72 720 Td (Giay khai sinh - ban sao mau) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{}\nendstream", text.len(), text),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut pdf = format!("%PDF-1.7\n% {}\n", note.replace(['\r', '\n'], " ")).into_bytes();
    let mut offsets = Vec::new();
    for (number, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{}\nendobj\n", number + 1, body).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{}\n%%EOF\n", objects.len() + 1, xref).as_bytes());
    pdf
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let pki = ensure_dev_pki(&args.data_dir.join("dev-pki"))?;
    let tls = ensure_dev_tls(&args.data_dir.join("tls"))?;
    let sample = ensure_sample(&args.data_dir.join("samples"))?;
    let demo_signer_id = super::security::certificate_fingerprint(&pki.signer_pem)?.to_hex();
    let mut config = Config::with_data_dir(&args.data_dir);
    config.grpc_addr = args.grpc_addr;
    config.http_addr = args.http_addr;
    config.trust_anchor_files = vec![pki.ca_pem.clone()];
    config.agency_names.insert(DEMO_AGENCY.into(), DEMO_AGENCY_NAME.into());
    config.public_base_url = format!("http://{}", args.http_addr);
    config.certified_pdf.insert(
        DEMO_AGENCY.into(),
        crate::config::AgencyPdfConfig { number_format: "{number}/{year}-SCTĐT/BS".into(), ..Default::default() },
    );
    config.tls = tls.tls_config();
    config.tsa.cert_file = Some(pki.tsa_pem.clone());
    config.tsa.key_file = Some(pki.tsa_key.clone());
    config.access.principals = tls.principals(std::slice::from_ref(&demo_signer_id))?;
    let mut node = Node::start(&config).await.context("dev node failed to start")?;
    node.public.base_url = format!("http://{}", node.http_addr);
    let signer = node
        .kyso
        .register_signer(
            &Caller::local_operator("kyso-dev"),
            NewSigner {
                request_id: "dev-demo-signer".into(),
                name: DEMO_SIGNER_NAME.into(),
                title: DEMO_SIGNER_TITLE.into(),
                agency_ids: vec![DEMO_AGENCY.into()],
                certificate_chain: std::fs::read(&pki.signer_pem)?,
                private_key: std::fs::read(&pki.signer_key)?,
                pin: DEMO_PIN.into(),
            },
        )
        .await
        .context("cannot register the demo signer")?;
    node.kyso
        .register_agency_seal(
            &Caller::local_operator("kyso-dev"),
            "dev-demo-agency-seal",
            DEMO_AGENCY,
            &std::fs::read(&pki.agency_pem)?,
            &std::fs::read(&pki.agency_key)?,
        )
        .await
        .context("cannot register the demo agency's organisation certificate")?;
    super::print_listening(&node);
    let exe = std::env::args().next().unwrap_or_else(|| "kyso".into());
    let server = format!("https://{}", node.grpc_addr);
    let (client_cert, client_key) = tls.client("client");
    let defaults = node.grpc_addr.port() == 7400 && args.data_dir == Path::new("kyso-data");
    let server_flag = if defaults {
        String::new()
    } else {
        format!(" --server {server} --ca {} --cert {} --key {}", tls.ca_pem.display(), client_cert.display(), client_key.display())
    };
    let sample = sample.display();
    println!();
    println!("kyso dev is running (single node, data in {})", args.data_dir.display());
    println!("  gRPC   {server}  (mutual TLS: CA {}, client certificates in {})", tls.ca_pem.display(), args.data_dir.join("tls").display());
    println!("  HTTP   http://{}  (health: /healthz; public lookup: /v/<CODE>)", node.http_addr);
    println!("  agency {DEMO_AGENCY}; signer {DEMO_SIGNER_NAME} ({DEMO_SIGNER_TITLE}), id {}, pin {DEMO_PIN}", signer.id);
    println!("  dev CA {}", pki.ca_pem.display());
    println!("  TSA    http://{}/tsa  (RFC 3161; certificate {}: openssl ts -query -data FILE -sha256 -cert)", node.http_addr, pki.tsa_pem.display());
    println!("  log key (verifier) {}  (also http://{}/log-key)", args.data_dir.join("log.pub").display(), node.http_addr);
    if let Ok(line) = std::fs::read_to_string(args.data_dir.join("log.pub")) {
        println!("    {}", line.trim());
    }
    println!();
    println!("Try, in another terminal:");
    println!("  {exe} archive{server_flag} --agency {DEMO_AGENCY} --procedure 1.001193 --number HS-0001 {sample}");
    println!("  {exe} certify{server_flag} --kind copy --agency {DEMO_AGENCY} --signer {} --pin {DEMO_PIN} --file {sample} --signature-dir sigs", signer.id);
    println!("  {exe} verify{server_flag} --file {sample}");
    println!("  the certified PDF (two signatures, the performer's and the agency's) is sigs/<CODE>.pdf; check it with");
    println!("  pdfsig sigs/<CODE>.pdf, or pyhanko sign validate --trust {} --trust-replace --no-revocation-check sigs/<CODE>.pdf", pki.ca_pem.display());
    println!("  then open http://{}/v/<CODE> with the lookup code certify printed", node.http_addr);
    println!();
    node.serve(crate::node::shutdown_signal()).await
}

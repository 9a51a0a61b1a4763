//! TLS material of a node, read once at start: the server configurations of the client and
//! peer ports (mutual TLS: client certificates are required) and the client configuration
//! the node uses toward other nodes (its own certificate, the cluster CA as the only root).
//!
//! Plain text exists only behind the explicit `tls.insecure_plaintext_*` flags, and each
//! one is announced loudly at start. Certificates are read at start: rotating one means
//! restarting the node (SECURITY.md says how to roll a cluster).

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::Config;

/// What the node's servers and node-to-node clients use.
#[derive(Clone)]
pub struct NodeTls {
    /// The client port's server TLS; `None` when it serves plain text.
    pub client_port: Option<ServerTlsConfig>,
    /// The peer port's server TLS (cluster CA client certificates only); `None` when plain.
    pub peer_port: Option<ServerTlsConfig>,
    /// TLS toward other nodes' client ports; `None` when they serve plain text.
    pub to_client_ports: Option<ClientTlsConfig>,
    /// TLS toward other nodes' peer ports; `None` when they serve plain text.
    pub to_peer_ports: Option<ClientTlsConfig>,
    /// DER of the cluster CA certificates, to recognise nodes among client-port callers.
    pub cluster_ca_der: Vec<Vec<u8>>,
}

impl NodeTls {
    /// Reads every file the TLS configuration names. Fails with the path that is wrong.
    pub fn load(config: &Config) -> anyhow::Result<NodeTls> {
        let tls = &config.tls;
        let timeout = std::time::Duration::from_secs(tls.handshake_timeout_seconds);
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(read_pem(cert, "CERTIFICATE")?, read_pem(key, "PRIVATE KEY")?)),
            _ => None,
        };
        let cluster_ca_pem = tls.cluster_ca_file.as_ref().map(|file| read_pem(file, "CERTIFICATE")).transpose()?;
        // Every certificate of the file: during a CA rotation it holds the old and the new CA.
        let cluster_ca_der = match &cluster_ca_pem {
            Some(pem_text) => pem::parse_many(pem_text)
                .context("tls.cluster_ca_file is not PEM")?
                .into_iter()
                .filter(|block| block.tag() == "CERTIFICATE")
                .map(|block| block.into_contents())
                .collect(),
            None => Vec::new(),
        };
        let mut client_ca_der = Vec::new();
        for file in &tls.client_ca_files {
            client_ca_der.extend(certificates_in(&read_pem(file, "CERTIFICATE")?, file)?);
        }
        refuse_overlapping_cas(&client_ca_der, &cluster_ca_der)?;
        if let (Some(cluster), Some(cert_file), false) = (&config.cluster, &tls.cert_file, tls.insecure_plaintext_peers) {
            check_node_certificate(cert_file, cluster.node_id)?;
        }
        let client_port = if tls.insecure_plaintext_clients {
            warn_plaintext("the client port serves PLAIN TEXT (tls.insecure_plaintext_clients = true): callers have no identity and only the public role");
            None
        } else {
            let identity = identity.clone().context("tls.cert_file and tls.key_file are required")?;
            let mut roots = Vec::new();
            for file in &tls.client_ca_files {
                roots.extend_from_slice(&read_pem(file, "CERTIFICATE")?);
                roots.push(b'\n');
            }
            if let Some(cluster_ca) = &cluster_ca_pem {
                roots.extend_from_slice(cluster_ca);
            }
            Some(ServerTlsConfig::new().identity(identity).client_ca_root(Certificate::from_pem(roots)).timeout(timeout))
        };
        let peers_plain = tls.insecure_plaintext_peers;
        if peers_plain && config.cluster.is_some() {
            warn_plaintext("the peer port serves and dials PLAIN TEXT (tls.insecure_plaintext_peers = true): anyone who reaches it can join the Raft conversation; use only on a trusted network");
        }
        let peer_port = match (&cluster_ca_pem, &identity, peers_plain) {
            (Some(cluster_ca), Some(identity), false) => Some(
                ServerTlsConfig::new()
                    .identity(identity.clone())
                    .client_ca_root(Certificate::from_pem(cluster_ca))
                    .timeout(timeout),
            ),
            _ => None,
        };
        let to_nodes = match (&cluster_ca_pem, &identity) {
            (Some(cluster_ca), Some(identity)) => Some(
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(cluster_ca)).identity(identity.clone()).timeout(timeout),
            ),
            _ => None,
        };
        Ok(NodeTls {
            to_client_ports: if tls.insecure_plaintext_clients { None } else { to_nodes.clone() },
            to_peer_ports: if peer_port.is_some() { to_nodes } else { None },
            client_port,
            peer_port,
            cluster_ca_der,
        })
    }
}

/// The DER of every certificate in a PEM text.
fn certificates_in(pem_text: &[u8], file: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(pem::parse_many(pem_text)
        .with_context(|| format!("{} is not PEM", file.display()))?
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .collect())
}

/// Refuses a client CA that is, or is issued by, a cluster CA (or the reverse): the peer
/// port and node recognition trust the cluster CA's certificates as cluster members, so a
/// client CA inside its tree could mint nodes, and one CA serving both makes every client
/// certificate look like a node's.
pub fn refuse_overlapping_cas(client_ca_der: &[Vec<u8>], cluster_ca_der: &[Vec<u8>]) -> anyhow::Result<()> {
    use x509_parser::prelude::FromDer as _;
    fn parse(der: &[u8]) -> Option<x509_parser::certificate::X509Certificate<'_>> {
        x509_parser::certificate::X509Certificate::from_der(der).map(|(_, certificate)| certificate).ok()
    }
    for client_der in client_ca_der {
        let Some(client) = parse(client_der) else { anyhow::bail!("tls.client_ca_files holds a certificate that cannot be parsed") };
        for cluster_der in cluster_ca_der {
            let Some(cluster) = parse(cluster_der) else { anyhow::bail!("tls.cluster_ca_file holds a certificate that cannot be parsed") };
            let same_key = client.public_key().raw == cluster.public_key().raw;
            let issued = |child: &x509_parser::certificate::X509Certificate, parent: &x509_parser::certificate::X509Certificate| {
                child.issuer().as_raw() == parent.subject().as_raw() && child.verify_signature(Some(parent.public_key())).is_ok()
            };
            if same_key || issued(&client, &cluster) || issued(&cluster, &client) {
                anyhow::bail!(
                    "the client CA {:?} and the cluster CA {:?} overlap (same key, or one issued the other): a client certificate could pass for a node; use a separate client CA",
                    crate::crypto::cert::display_name(client.subject().as_raw()),
                    crate::crypto::cert::display_name(cluster.subject().as_raw())
                );
            }
        }
    }
    Ok(())
}

/// A member's own certificate must be bound to its configured node id: peers take its
/// identity from the certificate and refuse messages it sends under any other id.
fn check_node_certificate(cert_file: &std::path::Path, node_id: u64) -> anyhow::Result<()> {
    let leaf = certificates_in(&read_pem(cert_file, "CERTIFICATE")?, cert_file)?
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no certificate", cert_file.display()))?;
    match crate::crypto::cert::node_id_of_certificate(&leaf) {
        Some(id) if id == node_id => Ok(()),
        Some(id) => anyhow::bail!(
            "tls.cert_file {} is node {id}'s certificate but cluster.node_id is {node_id}; give each node its own certificate",
            cert_file.display()
        ),
        None => anyhow::bail!(
            "tls.cert_file {} names no node id; a cluster member's certificate carries the URI subject alternative name {}{node_id} (kyso init-keys writes one per node)",
            cert_file.display(),
            crate::crypto::cert::NODE_ID_URI_PREFIX
        ),
    }
}

/// Reads a PEM file and checks it holds at least one block of `tag`.
fn read_pem(path: &std::path::Path, tag: &str) -> anyhow::Result<Vec<u8>> {
    let content = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let blocks = pem::parse_many(&content).with_context(|| format!("{} is not PEM", path.display()))?;
    if !blocks.iter().any(|block| block.tag() == tag) {
        anyhow::bail!("{} holds no \"{tag}\" PEM block", path.display());
    }
    Ok(content)
}

fn warn_plaintext(what: &str) {
    eprintln!("WARNING: INSECURE: {what}");
    tracing::warn!("INSECURE: {what}");
}

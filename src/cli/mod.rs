//! Command-line interface: `kyso dev`, `kyso node` and the client subcommands. Every client
//! command prints a human-readable answer, or JSON with `--json`.

/// Prints a line of human output: text that came from a server or a certificate never
/// reaches the terminal raw (`text::for_terminal_lines`).
macro_rules! out {
    ($($arg:tt)*) => {
        println!("{}", $crate::text::for_terminal_lines(&format!($($arg)*)))
    };
}

pub mod backup;
pub mod client;
pub mod cluster;
pub mod dev;
pub mod log;
pub mod report;
pub mod scrub;
pub mod security;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// A Unix time as people in Vietnam read it: RFC 3339 in UTC+7, e.g.
/// `2026-11-24T14:30:32+07:00`. Human output only; `--json` keeps the raw Unix seconds.
pub(crate) fn human_time(unix_seconds: i64) -> String {
    crate::api::public::i18n::VietnamTime::from_unix(unix_seconds).rfc3339()
}

#[derive(Debug, Parser)]
#[command(name = "kyso", version, about = "Distributed document signing and archive for local government")]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "KYSO_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a single development node with a generated PKI, a demo agency and a demo signer.
    Dev(DevArgs),
    /// Run a node from a TOML config file.
    Node(NodeArgs),
    /// Archive a dossier: upload its files with a progress bar.
    Archive(client::ArchiveArgs),
    /// Certify archived documents (several at once make one batch).
    Certify(client::CertifyArgs),
    /// Verify a document by file, SHA-256 or lookup code.
    Verify(client::VerifyArgs),
    /// An agency's register (sổ chứng thực) for one year, for an inspector.
    Register(client::RegisterArgs),
    /// Revoke a certification.
    Revoke(client::RevokeArgs),
    /// Statistics per agency and period, with the province's total (admin: every agency;
    /// verifier and clerk: their own).
    Report(report::ReportArgs),
    /// Create the keys a cluster shares (master key, log key) and a development PKI in a
    /// directory; for local clusters and tests.
    InitKeys(InitKeysArgs),
    /// Operate the Raft cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Witness the transparency log: check the latest checkpoint is consistent with a stored one.
    Audit(log::AuditArgs),
    /// Re-read and re-hash every archived blob on a node; report (and with --repair-from,
    /// repair) missing or corrupt copies. Exits non-zero while a bad copy remains.
    Scrub(scrub::ScrubArgs),
    /// Write a consistent backup of a running cluster to a new directory: its state as of
    /// one applied index, every archived blob (hash-checked) and a manifest (admin, and
    /// verifier or clerk for every agency, to read every document).
    Backup(backup::BackupArgs),
    /// Build a new data directory from a backup (standalone, or with --node-id the first
    /// member of a new cluster); refuses any missing or corrupt file.
    Restore(backup::RestoreArgs),
    /// Manage signers.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Agencies' organisation certificates.
    #[command(subcommand)]
    Agency(AgencyCommand),
    /// Grant client certificates roles; see your own.
    #[command(subcommand)]
    Access(security::AccessCommand),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(CrlCommand),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SignerCommand {
    /// Register a signer's certificate (and optionally its key, sealed under a PIN) for agencies.
    Add(client::SignerAddArgs),
    /// Clear a signer's wrong-PIN count after its key locked (admin).
    Unlock(security::SignerIdArgs),
    /// Re-seal your key under a new PIN (signer).
    ChangePin(security::ChangePinArgs),
    /// Record a detached CMS signature made with your own token (client-side signing).
    Submit(security::SubmitArgs),
    /// Certify an archived scan as a certified PDF signed with your own PKCS#11 token
    /// (USB token): kyso prepares, the token signs, kyso completes; writes the PDF.
    SignPdf(token::SignPdfArgs),
}

#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Register (or replace) an agency's organisation certificate and key: its signature
    /// on certified PDFs (admin).
    Seal(client::AgencySealArgs),
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Import a CRL (PEM or DER): registered signers it lists are revoked (admin).
    Import(security::CrlImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Print the SHA-256 fingerprint of a certificate (what grants are keyed by).
    Fingerprint { certificate: PathBuf },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = "kyso-data", env = "KYSO_DATA_DIR")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:7400", env = "KYSO_GRPC_ADDR")]
    pub grpc_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:7480", env = "KYSO_HTTP_ADDR")]
    pub http_addr: SocketAddr,
}

#[derive(Debug, Args)]
pub struct InitKeysArgs {
    /// Directory to write master.key, log.key, log.pub and dev-pki/ into.
    #[arg(long)]
    pub dir: PathBuf,
    /// Origin (and key name) of the transparency log.
    #[arg(long, default_value = "kyso.localhost/log")]
    pub log_origin: String,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML config file (see deploy/kyso.example.toml).
    #[arg(long, env = "KYSO_CONFIG")]
    pub config: PathBuf,
    /// Overrides `data_dir`.
    #[arg(long, env = "KYSO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Overrides `grpc_addr`.
    #[arg(long, env = "KYSO_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Overrides `http_addr`.
    #[arg(long, env = "KYSO_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// Output format of client commands.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Logs on stderr for every command but `kyso node`, which installs its telemetry once
/// its configuration is read (`[observability]`).
pub fn init_tracing(json: bool) {
    if let Err(error) = crate::telemetry::init(&crate::config::ObservabilityConfig::default(), json, "kyso") {
        eprintln!("warning: cannot set up logging: {error}");
    }
}

/// Whether the command sets up its own logging (from its configuration file).
pub fn sets_up_its_own_tracing(cli: &Cli) -> bool {
    matches!(cli.command, Command::Node(_))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Node(args) => run_node(args, cli.log_json).await,
        Command::Archive(args) => client::archive(args).await,
        Command::Certify(args) => client::certify(args).await,
        Command::Verify(args) => client::verify(args).await,
        Command::Register(args) => client::register(args).await,
        Command::Revoke(args) => client::revoke(args).await,
        Command::Report(args) => report::report(args).await,
        Command::Signer(SignerCommand::Add(args)) => client::signer_add(args).await,
        Command::Agency(AgencyCommand::Seal(args)) => client::agency_seal(args).await,
        Command::Signer(SignerCommand::Unlock(args)) => security::signer_unlock(args).await,
        Command::Signer(SignerCommand::ChangePin(args)) => security::signer_change_pin(args).await,
        Command::Signer(SignerCommand::Submit(args)) => security::signer_submit(args).await,
        Command::Signer(SignerCommand::SignPdf(args)) => token::sign_pdf(args).await,
        Command::Access(command) => security::access(command).await,
        Command::Crl(CrlCommand::Import(args)) => security::crl_import(args).await,
        Command::Tls(TlsCommand::Fingerprint { certificate }) => security::tls_fingerprint(&certificate),
        Command::Audit(args) => log::audit(args).await,
        Command::Cluster(command) => cluster::run(command).await,
        Command::InitKeys(args) => dev::init_keys(&args.dir, &args.log_origin),
        Command::Scrub(args) => scrub::scrub(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
    }
}

async fn run_node(args: NodeArgs, log_json: bool) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(addr) = args.grpc_addr {
        config.grpc_addr = addr;
    }
    if let Some(addr) = args.http_addr {
        config.http_addr = addr;
    }
    config.validate()?;
    let instance = match &config.cluster {
        Some(cluster) => format!("node-{}", cluster.node_id),
        None => config.grpc_addr.to_string(),
    };
    let telemetry = crate::telemetry::init(&config.observability, log_json, &instance).context("cannot set up logs and traces")?;
    let served = async {
        let node = crate::node::Node::start(&config).await.context("node failed to start")?;
        print_listening(&node);
        node.serve(crate::node::shutdown_signal()).await
    }
    .await;
    telemetry.shutdown();
    served
}

/// The line tests and scripts read to find the bound ports.
pub fn print_listening(node: &crate::node::Node) {
    let mut line = format!("kyso node listening grpc={} http={}", node.grpc_addr, node.http_addr);
    if let Some(raft) = node.raft_addr {
        line.push_str(&format!(" raft={raft}"));
    }
    if let Some(metrics) = node.metrics_addr {
        line.push_str(&format!(" metrics={metrics}"));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_output_shows_times_in_vietnam_as_rfc3339() {
        assert_eq!(super::human_time(1_795_000_000), "2026-11-18T18:06:40+07:00");
        assert_eq!(super::human_time(1_798_736_399), "2026-12-31T23:59:59+07:00");
    }

    /// clap checks a command's definition only when it is built: two arguments with one
    /// name (say a subcommand's --cert beside the connection's --cert) panic at run time in
    /// debug builds and silently shadow each other in release ones. Check them all here.
    #[test]
    fn every_subcommand_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

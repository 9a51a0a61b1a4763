//! Security commands: `kyso access set|whoami`, `kyso crl import`, `kyso signer
//! unlock|change-pin|submit` and `kyso tls fingerprint`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kyso_proto::v1 as pb;
use serde_json::json;

use super::client::{channel, new_request_id, print_json, status_error, CertificationArgs, Connection};
use crate::domain::Sha256;

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Grant a client certificate roles (no --role withdraws every grant).
    Set(AccessSetArgs),
    /// Show who the node takes you for and your roles.
    Whoami(Connection),
}

#[derive(Debug, Args)]
pub struct AccessSetArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The client certificate (PEM) to grant; or give --fingerprint.
    #[arg(long = "client-cert", conflicts_with = "fingerprint")]
    pub client_cert: Option<PathBuf>,
    /// Hex SHA-256 of the client certificate's DER (`kyso tls fingerprint FILE`).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Who this is, for the log.
    #[arg(long)]
    pub name: String,
    /// admin, clerk, signer, verifier or public; repeatable.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Agency the holder acts for as a clerk ("*" for all); repeatable.
    #[arg(long = "agency")]
    pub agencies: Vec<String>,
    /// Signer id the holder may sign as ("*" for all); repeatable.
    #[arg(long = "signer")]
    pub signers: Vec<String>,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct CrlImportArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The CRL, DER or PEM.
    pub crl: PathBuf,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignerIdArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub signer: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChangePinArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub signer: String,
    /// The current PIN.
    #[arg(long, env = "KYSO_PIN", hide_env_values = true)]
    pub pin: String,
    /// The new PIN, 8-128 characters.
    #[arg(long, env = "KYSO_NEW_PIN", hide_env_values = true)]
    pub new_pin: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The archived document the signature covers (hashed locally).
    #[arg(long)]
    pub file: PathBuf,
    /// The detached CMS signature (DER) made with the signer's own token.
    #[arg(long)]
    pub signature: PathBuf,
    #[command(flatten)]
    pub certification: CertificationArgs,
}

pub async fn access(command: AccessCommand) -> anyhow::Result<()> {
    match command {
        AccessCommand::Set(args) => {
            let fingerprint = match (&args.client_cert, &args.fingerprint) {
                (Some(path), None) => certificate_fingerprint(path)?,
                (None, Some(text)) => Sha256::from_hex(text).with_context(|| format!("{text:?} is not 64 hex digits"))?,
                _ => bail!("name the certificate with --client-cert FILE or --fingerprint HEX"),
            };
            let request = pb::SetAccessRequest {
                request_id: args.request_id.clone().unwrap_or_else(new_request_id),
                certificate_sha256: fingerprint.0.to_vec(),
                name: args.name.clone(),
                roles: args.roles.clone(),
                agency_ids: args.agencies.clone(),
                signer_ids: args.signers.clone(),
            };
            let mut client = pb::access_service_client::AccessServiceClient::new(channel(&args.connection).await?);
            let principal = client.set_access(request).await.map_err(status_error)?.into_inner();
            print_principal(&args.connection, &principal);
        }
        AccessCommand::Whoami(connection) => {
            let mut client = pb::access_service_client::AccessServiceClient::new(channel(&connection).await?);
            let principal = client.who_am_i(pb::WhoAmIRequest {}).await.map_err(status_error)?.into_inner();
            print_principal(&connection, &principal);
        }
    }
    Ok(())
}

fn print_principal(connection: &Connection, principal: &pb::Principal) {
    if connection.json {
        print_json(json!({
            "certificate_sha256": hex::encode(&principal.certificate_sha256), "name": principal.name,
            "roles": principal.roles, "agency_ids": principal.agency_ids, "signer_ids": principal.signer_ids,
        }));
    } else {
        out!(
            "{} ({})  roles: {}  agencies: {}  signers: {}",
            principal.name,
            hex::encode(&principal.certificate_sha256),
            if principal.roles.is_empty() { "public".to_string() } else { principal.roles.join(", ") },
            principal.agency_ids.join(", "),
            principal.signer_ids.join(", ")
        );
    }
}

pub async fn crl_import(args: CrlImportArgs) -> anyhow::Result<()> {
    let crl = std::fs::read(&args.crl).with_context(|| format!("cannot read {}", args.crl.display()))?;
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let request = pb::ImportCrlRequest { request_id: args.request_id.clone().unwrap_or_else(new_request_id), crl };
    let response = client.import_crl(request).await.map_err(status_error)?.into_inner();
    if args.connection.json {
        print_json(json!(response.revoked.iter().map(|revocation| json!({
            "signer_id": revocation.signer_id, "serial_hex": revocation.serial_hex, "issuer": revocation.issuer,
            "revoked_at_unix": revocation.revoked_at_unix, "reason": revocation.reason,
        })).collect::<Vec<_>>()));
    } else {
        out!("crl imported; {} registered signer(s) newly revoked", response.revoked.len());
        for revocation in &response.revoked {
            out!("  {}  serial {}  at {}  ({})", revocation.signer_id, revocation.serial_hex, super::human_time(revocation.revoked_at_unix), revocation.reason);
        }
        if response.embedded_in_certified_pdfs {
            out!("certified pdfs whose chains its issuer issued now carry it (pades b-lt), unless a newer crl of that issuer was imported");
        } else {
            out!("it is larger than 256 KiB: it revokes, but certified pdfs do not embed it (they stay pades b-t for its issuer)");
        }
    }
    Ok(())
}

pub async fn signer_unlock(args: SignerIdArgs) -> anyhow::Result<()> {
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let request = pb::UnlockSignerRequest { request_id: args.request_id.clone().unwrap_or_else(new_request_id), signer_id: args.signer.clone() };
    let signer = client.unlock_signer(request).await.map_err(status_error)?.into_inner();
    out!("unlocked the key of signer {} ({})", signer.signer_id, signer.name);
    Ok(())
}

pub async fn signer_change_pin(args: ChangePinArgs) -> anyhow::Result<()> {
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let request = pb::ChangeSignerPinRequest {
        request_id: args.request_id.clone().unwrap_or_else(new_request_id),
        signer_id: args.signer.clone(),
        pin: args.pin.clone(),
        new_pin: args.new_pin.clone(),
    };
    let signer = client.change_signer_pin(request).await.map_err(status_error)?.into_inner();
    out!("the key of signer {} is now sealed under the new pin", signer.signer_id);
    Ok(())
}

pub async fn signer_submit(args: SubmitArgs) -> anyhow::Result<()> {
    let document = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let cms_signature = std::fs::read(&args.signature).with_context(|| format!("cannot read {}", args.signature.display()))?;
    let target = &args.certification;
    let request = pb::SubmitSignatureRequest {
        request_id: target.request_id.clone().unwrap_or_else(new_request_id),
        document_sha256: Sha256::digest(&document).0.to_vec(),
        kind: target.kind.to_proto() as i32,
        agency_id: target.agency.clone(),
        signer_id: target.signer.clone(),
        dossier_id: target.dossier.clone(),
        cms_signature,
    };
    let mut client = pb::signing_service_client::SigningServiceClient::new(channel(&args.connection).await?);
    let certification = client.submit_signature(request).await.map_err(status_error)?.into_inner();
    if args.connection.json {
        print_json(json!({ "lookup_code": certification.lookup_code, "signed_at_unix": certification.signed_at_unix }));
    } else {
        out!("recorded the client-side signature; lookup code {}", certification.lookup_code);
    }
    Ok(())
}

/// SHA-256 of a PEM or DER certificate's DER: the key of its grants.
pub fn certificate_fingerprint(path: &std::path::Path) -> anyhow::Result<Sha256> {
    let content = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certificates = crate::crypto::parse_certificates(&content).with_context(|| format!("{} is not a certificate", path.display()))?;
    Ok(Sha256::digest(&certificates[0]))
}

pub fn tls_fingerprint(path: &std::path::Path) -> anyhow::Result<()> {
    out!("{}", certificate_fingerprint(path)?);
    Ok(())
}

//! Transparency-log commands: offline bundles (`kyso verify --bundle`, `--offline`) and
//! the witness (`kyso audit`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use clap::Args;
use kyso_proto::v1 as pb;
use serde_json::json;

use super::client::{channel, print_json, status_error, Connection, VerifyArgs};
use crate::bundle::{self, Bundle, BundledCertification};
use crate::crypto::TrustAnchors;
use crate::tlog::{self, LogVerifier};

/// Builds a bundle from an online verify answer.
pub fn bundle_from_response(response: &pb::VerifyResponse) -> anyhow::Result<Bundle> {
    let mut certifications = Vec::new();
    for verified in &response.certifications {
        let certification = verified.certification.clone().context("answer lacks the certification")?;
        let signer = verified.signer.clone().context("answer lacks the signer")?;
        let inclusion = verified.inclusion.clone().context("answer lacks the inclusion proof")?;
        let checkpoint = inclusion.checkpoint.clone().context("answer lacks the checkpoint")?;
        certifications.push(BundledCertification {
            lookup_code: certification.lookup_code,
            cms_signature: BASE64.encode(&certification.cms_signature),
            signer_chain: signer.certificate_chain_der.iter().map(|der| BASE64.encode(der)).collect(),
            signer_name: signer.name,
            signer_title: signer.title,
            leaf_index: inclusion.leaf_index,
            tree_size: inclusion.tree_size,
            leaf_data: BASE64.encode(&inclusion.leaf_data),
            inclusion_proof: inclusion.audit_path.iter().map(|hash| BASE64.encode(hash)).collect(),
            checkpoint: checkpoint.note,
            status_at_export: verified.summary.clone(),
        });
    }
    Ok(Bundle { format: bundle::BUNDLE_FORMAT.into(), document_sha256: hex::encode(&response.document_sha256), certifications })
}

fn read_log_key(path: &std::path::Path) -> anyhow::Result<LogVerifier> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read log key {}", path.display()))?;
    LogVerifier::parse(text.trim()).with_context(|| format!("{} is not a log verifier key (name+id+key)", path.display()))
}

/// `kyso verify --offline`: checks a bundle with no network.
pub fn verify_offline(args: &VerifyArgs) -> anyhow::Result<()> {
    let (Some(bundle_path), Some(file), Some(trust_path), Some(log_key_path)) = (&args.bundle, &args.file, &args.trust, &args.log_key) else {
        bail!("--offline needs --bundle, --file, --trust and --log-key");
    };
    let bundle_bytes = std::fs::read(bundle_path).with_context(|| format!("cannot read {}", bundle_path.display()))?;
    let bundle = Bundle::parse(&bundle_bytes)?;
    let content = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let trust_pem = std::fs::read(trust_path).with_context(|| format!("cannot read {}", trust_path.display()))?;
    let trust = TrustAnchors::from_pem(&trust_pem).context("trust anchors are not usable")?;
    let log_key = read_log_key(log_key_path)?;
    let checked = bundle::verify_bundle(&bundle, &content, &trust, &log_key).context("offline verification FAILED")?;
    if args.connection.json {
        print_json(json!({
            "document_sha256": bundle.document_sha256,
            "verified_offline": checked.iter().map(|item| json!({
                "lookup_code": item.lookup_code, "signer_subject": item.signer_subject, "signer_name": item.signer_name,
                "agency_id": item.agency_id, "signed_at_unix": item.signed_at_unix, "leaf_index": item.leaf_index,
                "tree_size": item.tree_size, "status_at_export": item.status_at_export,
            })).collect::<Vec<_>>(),
        }));
    } else {
        out!("document {} verified offline", bundle.document_sha256);
        for item in &checked {
            out!(
                "  {}  signature, chain and log inclusion OK: signed by {} for {} at {}; leaf {} of {}; status when exported: {}",
                item.lookup_code, item.signer_subject, item.agency_id, super::human_time(item.signed_at_unix), item.leaf_index, item.tree_size, item.status_at_export
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The witness's stored checkpoint (a signed note). Created on first use; replaced by
    /// the newer checkpoint once it is proven consistent.
    #[arg(long)]
    pub from: PathBuf,
    /// The log's verifier key file (data_dir/log.pub on a node).
    #[arg(long)]
    pub log_key: PathBuf,
}

/// `kyso audit`: fetches the latest checkpoint and proves it extends the stored one.
pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let log_key = read_log_key(&args.log_key)?;
    let mut client = pb::log_service_client::LogServiceClient::new(channel(&args.connection).await?);
    let latest = client.get_checkpoint(pb::GetCheckpointRequest {}).await.map_err(status_error)?.into_inner();
    let new = tlog::open_checkpoint(&latest.note, &log_key).context("the log's latest checkpoint is not signed by the pinned key")?;
    let old_note = match std::fs::read_to_string(&args.from) {
        Ok(note) => Some(note),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", args.from.display())),
    };
    let outcome = match old_note {
        None => format!("first checkpoint stored (trust on first use): size {}", new.size()),
        Some(note) => {
            let old = tlog::open_checkpoint(&note, &log_key).context("the stored checkpoint is not signed by the pinned key")?;
            if new.size() < old.size() {
                bail!("INCONSISTENT: the log shrank from {} to {} leaves: history was rewritten", old.size(), new.size());
            }
            if new.size() > old.size() && old.size() > 0 {
                let proof = client
                    .get_consistency_proof(pb::GetConsistencyProofRequest { first_size: old.size(), second_size: new.size() })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let path: Vec<[u8; 32]> = proof
                    .proof
                    .iter()
                    .map(|hash| <[u8; 32]>::try_from(hash.as_slice()).context("proof hash is not 32 bytes"))
                    .collect::<anyhow::Result<_>>()?;
                tlog::verify_consistency(old.size(), new.size(), old.root(), new.root(), &path)
                    .context("INCONSISTENT: the latest checkpoint does not extend the stored one; history was rewritten")?;
            } else if new.size() == old.size() && new.root() != old.root() {
                bail!("INCONSISTENT: two different roots for size {}", new.size());
            }
            format!("consistent: {} -> {} leaves", old.size(), new.size())
        }
    };
    std::fs::write(&args.from, &latest.note).with_context(|| format!("cannot store {}", args.from.display()))?;
    if args.connection.json {
        print_json(json!({ "outcome": outcome, "tree_size": new.size(), "root_hash": hex::encode(new.root()) }));
    } else {
        out!("{outcome}; stored checkpoint in {}", args.from.display());
    }
    Ok(())
}

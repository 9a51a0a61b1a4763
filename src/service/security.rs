//! Security use cases: grant access to client certificates, import CRLs that revoke signer
//! certificates, unlock a signer's key, change its PIN, and record audit entries (refused
//! calls, membership changes) in the transparency log.

use kyso_cluster::Proposer;

use super::signing::expect_signer;
use super::{fingerprint, now_unix, require_role, validate, Kyso, ServiceError};
use crate::access::{Actor, Caller, Principal, Role, ANY, PRINCIPAL_SCOPE_ENTRIES_MAX};
use crate::crypto;
use crate::domain::{KeptCrl, Sha256, Signer, SignerRevocation, KEPT_CRL_SIZE_BYTES_MAX};
use crate::state::command::AuditEvent;
use crate::state::{Command, Outcome};

/// Longest text recorded in a refusal audit entry, in characters.
pub const AUDIT_TEXT_CHARS_MAX: usize = 300;

impl<P: Proposer> Kyso<P> {
    /// Grants a client certificate roles and scopes (no roles withdraws access).
    #[tracing::instrument(skip(self, caller, principal), fields(request_id = %request_id))]
    pub async fn set_access(&self, caller: &Caller, request_id: &str, mut principal: Principal) -> Result<Principal, ServiceError> {
        require_role(caller, Role::Admin, "granting access")?;
        validate::request_id(request_id)?;
        principal.name = validate::text("name", &principal.name, self.limits.text_field_chars_max, true)?;
        for (field, values) in [("agency_ids", &mut principal.agency_ids), ("signer_ids", &mut principal.signer_ids)] {
            if values.len() > PRINCIPAL_SCOPE_ENTRIES_MAX {
                return Err(ServiceError::InvalidArgument(format!("{field} holds at most {PRINCIPAL_SCOPE_ENTRIES_MAX} entries")));
            }
            for value in values.iter_mut().filter(|value| value.as_str() != ANY) {
                *value = validate::identifier(field, value)?;
            }
        }
        for agency in principal.agency_ids.iter().filter(|agency| agency.as_str() != ANY) {
            self.check_agency_not_confusable(agency)?;
        }
        if principal.roles.contains(&Role::Node) {
            return Err(ServiceError::InvalidArgument("the node role comes from the cluster ca and cannot be granted".into()));
        }
        let parts: Vec<Vec<u8>> = vec![
            b"set-access".to_vec(),
            principal.certificate_sha256.0.to_vec(),
            principal.name.as_bytes().to_vec(),
            principal.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(",").into_bytes(),
            principal.agency_ids.join("\n").into_bytes(),
            principal.signer_ids.join("\n").into_bytes(),
        ];
        let request_fingerprint = fingerprint(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            return expect_principal(outcome);
        }
        expect_principal(self.propose(&caller.actor, request_id, request_fingerprint, Command::SetAccess(principal)).await?)
    }

    /// Imports a CRL: its signature must verify with a trust anchor or with a CA
    /// certificate of a registered signer's validated chain; every registered signer whose
    /// certificate it lists is recorded revoked from the entry's revocation date on. A CRL
    /// of at most [`KEPT_CRL_SIZE_BYTES_MAX`] is also kept for certified PDFs' DSS.
    #[tracing::instrument(skip(self, caller, crl), fields(request_id = %request_id))]
    pub async fn import_crl(&self, caller: &Caller, request_id: &str, crl: &[u8]) -> Result<ImportedCrl, ServiceError> {
        require_role(caller, Role::Admin, "importing a crl")?;
        validate::request_id(request_id)?;
        let request_fingerprint = fingerprint(&[b"import-crl", crl]);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            let embedded_in_certified_pdfs = crypto::crl::crl_der(crl).is_ok_and(|der| kept_for_certified_pdfs(der.len()));
            return Ok(ImportedCrl { revoked: expect_revocations(outcome)?, embedded_in_certified_pdfs });
        }
        let signers = self.state.signers()?;
        let mut issuers: Vec<Vec<u8>> = self.trust.certificates_der().to_vec();
        for signer in &signers {
            issuers.extend(signer.chain_der.iter().skip(1).cloned());
        }
        for seal in self.state.agency_seals()? {
            issuers.extend(seal.chain_der.iter().skip(1).cloned());
        }
        issuers.sort();
        issuers.dedup();
        let verified = crypto::verify_crl(crl, &issuers).map_err(|error| match error {
            crypto::CrlError::UntrustedIssuer { .. } => ServiceError::FailedPrecondition(error.to_string()),
            other => ServiceError::InvalidArgument(other.to_string()),
        })?;
        let crl_sha256 = Sha256(verified.sha256);
        let revocations: Vec<SignerRevocation> = signers
            .iter()
            .filter(|signer| signer.chain_der.first().is_some_and(|leaf| verified.covers(leaf)))
            .filter_map(|signer| {
                let entry = verified.entries.iter().find(|entry| entry.serial_hex == signer.serial_hex)?;
                Some(SignerRevocation {
                    signer_id: signer.id.clone(),
                    serial_hex: signer.serial_hex.clone(),
                    issuer: verified.issuer.clone(),
                    revoked_at_unix: entry.revoked_at_unix,
                    reason: entry.reason.clone(),
                    crl_sha256,
                })
            })
            .collect();
        let embedded_in_certified_pdfs = kept_for_certified_pdfs(verified.der.len());
        let kept = embedded_in_certified_pdfs.then(|| KeptCrl {
            issuer_name_sha256: KeptCrl::issuer_key(&verified.issuer_der),
            this_update_unix: verified.this_update_unix,
            der: verified.der,
        });
        let command = Command::ImportCrl { crl_sha256, issuer: verified.issuer, revocations, kept };
        let revoked = expect_revocations(self.propose(&caller.actor, request_id, request_fingerprint, command).await?)?;
        Ok(ImportedCrl { revoked, embedded_in_certified_pdfs })
    }

    /// Clears a signer's wrong-PIN count. The admin still cannot sign: that needs the PIN.
    pub async fn unlock_signer(&self, caller: &Caller, request_id: &str, signer_id: &str) -> Result<Signer, ServiceError> {
        require_role(caller, Role::Admin, "unlocking a signer's key")?;
        validate::request_id(request_id)?;
        let signer = self.registered_signer(signer_id)?;
        let request_fingerprint = fingerprint(&[b"unlock-signer", signer_id.as_bytes()]);
        if self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await?.is_none() {
            let outcome = self.propose(&caller.actor, request_id, request_fingerprint, Command::UnlockSigner { signer_id: signer_id.into() }).await?;
            if let Outcome::Rejected(rejection) = outcome {
                return Err(rejection.into());
            }
        }
        Ok(signer)
    }

    /// Re-seals a signer's key under a new PIN; only a caller acting as that signer who
    /// knows the current PIN may. Afterwards nobody else knows the PIN, however the key was
    /// first registered.
    pub async fn change_pin(&self, caller: &Caller, request_id: &str, signer_id: &str, old_pin: &str, new_pin: &str) -> Result<Signer, ServiceError> {
        require_role(caller, Role::Signer, "changing a pin")?;
        validate::request_id(request_id)?;
        if !caller.acts_as_signer(signer_id) {
            return Err(ServiceError::PermissionDenied(format!("{} may not act as signer {signer_id}", caller.actor)));
        }
        crypto::check_pin(new_pin).map_err(|error| ServiceError::InvalidArgument(format!("new pin: {error}")))?;
        let signer = self.registered_signer(signer_id)?;
        // No PIN, nor any hash of one, goes into the fingerprint: it is stored in replicated
        // state for good, where a hash would let a reader test PIN guesses without PBKDF2.
        let request_fingerprint = fingerprint(&[b"change-pin", signer_id.as_bytes()]);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            // A retry: it succeeded only if its new PIN is the one the key is sealed under
            // now; checked (and a wrong one counted) like any unlock.
            let current = self.registered_signer(signer_id)?;
            self.unseal_signer_pkcs8(caller, &current, new_pin).await?;
            return expect_signer(outcome);
        }
        let pkcs8 = self.unseal_signer_pkcs8(caller, &signer, old_pin).await?;
        let sealed_key = self.seal_with_pin(signer_id, new_pin, pkcs8).await?;
        let command = Command::ReplaceSignerKey { signer_id: signer_id.into(), sealed_key };
        expect_signer(self.propose(&caller.actor, request_id, request_fingerprint, command).await?)
    }

    /// Appends an audit entry for a refused call. The caller (the API's refusal limiter)
    /// bounds how often this runs.
    pub async fn audit_refusal(&self, actor: &Actor, action: &str, reason: &str, suppressed_before: u64) -> Result<u64, ServiceError> {
        let event = AuditEvent::Refused {
            action: truncate(action),
            reason: truncate(reason),
            suppressed_before,
        };
        self.audit(actor, event).await
    }

    /// Appends an audit entry for a cluster membership change.
    pub async fn audit_cluster_change(&self, actor: &Actor, change: &str) -> Result<u64, ServiceError> {
        self.audit(actor, AuditEvent::ClusterChanged { change: truncate(change) }).await
    }

    async fn audit(&self, actor: &Actor, event: AuditEvent) -> Result<u64, ServiceError> {
        let request_id = self.random_request_id("audit")?;
        let issued = now_unix().to_be_bytes();
        match self.propose(actor, &request_id, fingerprint(&[request_id.as_bytes(), &issued]), Command::Audit(event)).await? {
            Outcome::Audited(leaf_index) => Ok(leaf_index),
            Outcome::Rejected(rejection) => Err(rejection.into()),
            other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
        }
    }

    fn registered_signer(&self, signer_id: &str) -> Result<Signer, ServiceError> {
        let _ = validate::text("signer_id", signer_id, 64, true)?;
        self.state.signer(signer_id)?.ok_or_else(|| ServiceError::NotFound(format!("signer {signer_id:?} is not registered")))
    }
}

/// Whether the signer's leaf names `issuer_der` as its issuer.
fn truncate(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.chars().take(AUDIT_TEXT_CHARS_MAX).collect()
}

fn expect_principal(outcome: Outcome) -> Result<Principal, ServiceError> {
    match outcome {
        Outcome::Principal(principal) => Ok(principal),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}

/// What an imported CRL did.
#[derive(Debug, Clone)]
pub struct ImportedCrl {
    /// The registered signers it newly revoked.
    pub revoked: Vec<SignerRevocation>,
    /// Whether it is small enough to be kept for certified PDFs (unless a newer CRL of its
    /// issuer is kept already).
    pub embedded_in_certified_pdfs: bool,
}

/// Whether a CRL whose DER is `der_bytes` long is kept for certified PDFs' DSS.
fn kept_for_certified_pdfs(der_bytes: usize) -> bool {
    der_bytes <= KEPT_CRL_SIZE_BYTES_MAX
}

fn expect_revocations(outcome: Outcome) -> Result<Vec<SignerRevocation>, ServiceError> {
    match outcome {
        Outcome::SignerRevocations(revocations) => Ok(revocations),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}

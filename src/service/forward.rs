//! What a leader accepts from a follower that forwards a client's command
//! (`NodeInternalService.ForwardCommand`). A node certificate is not an admin: the leader
//! re-checks that the command's actor holds the role its kind needs (and the agency or
//! signer scope it names) in this leader's grants, refuses actors without a client
//! certificate (only the node itself acts without one, and never through a peer), and
//! records the forwarding node beside the actor in every log leaf the command appends.
//!
//! A compromised member can still forward in the name of a real grant holder; it can no
//! longer invent an admin, act outside a grant, or do either without its node id being in
//! the log.

use kyso_cluster::Proposer;

use super::{Kyso, ServiceError};
use crate::access::{Caller, Role};
use crate::state::command::AuditEvent;
use crate::state::{Command, CommandEnvelope};

/// A forwarded command the leader accepted, with what its trace records.
pub struct AdmittedCommand {
    /// The client's request id.
    pub request_id: String,
    /// The client, as the log will name it (with the forwarding node).
    pub actor: String,
    /// The command to propose.
    pub command: Vec<u8>,
}

impl<P: Proposer> Kyso<P> {
    /// Checks a forwarded command and returns it with the forwarding node recorded in its
    /// actor, ready to propose. `forwarder` is the authenticated node that sent it.
    pub fn admit_forwarded(&self, forwarder: &Caller, command: &[u8]) -> Result<AdmittedCommand, ServiceError> {
        if !forwarder.has(Role::Node) {
            return Err(ServiceError::PermissionDenied(format!("{} is not a cluster member", forwarder.actor)));
        }
        let mut envelope = CommandEnvelope::decode(command).map_err(|rejection| ServiceError::InvalidArgument(rejection.to_string()))?;
        self.check_forwarded_actor(forwarder, &envelope)?;
        let node = forwarder.node_id.map(|id| format!("node {id}")).unwrap_or_else(|| "an unauthenticated peer".into());
        envelope.actor.name = format!("{} [forwarded by {node}]", envelope.actor.name);
        Ok(AdmittedCommand { request_id: envelope.request_id.clone(), actor: envelope.actor.to_string(), command: envelope.encode() })
    }

    fn check_forwarded_actor(&self, forwarder: &Caller, envelope: &CommandEnvelope) -> Result<(), ServiceError> {
        let refuse = |why: String| {
            Err(ServiceError::PermissionDenied(format!(
                "node {} forwarded {} for {}: {why}",
                forwarder.node_id.map(|id| id.to_string()).unwrap_or_else(|| "?".into()),
                kind_name(&envelope.command),
                envelope.actor
            )))
        };
        // A refused call is recorded whoever made it, certificate or not; a node records
        // membership changes in its own name.
        match &envelope.command {
            Command::Audit(AuditEvent::Refused { .. }) => return Ok(()),
            Command::Audit(AuditEvent::ClusterChanged { .. }) if envelope.actor.certificate_sha256 == forwarder.actor.certificate_sha256 => {
                return Ok(());
            }
            // A member counts the verifications it answered: statistics, which a member
            // could inflate but which grant nothing.
            Command::TallyVerifications(_) => return Ok(()),
            _ => {}
        }
        let Some(certificate) = envelope.actor.certificate_sha256 else {
            return refuse("only callers with a client certificate act through another node".into());
        };
        let Some(principal) = self.principal(&certificate)? else {
            return refuse("that certificate holds no grant on this node".into());
        };
        let caller = Caller::from_principal(envelope.actor.clone(), &principal);
        let allowed = match &envelope.command {
            Command::RegisterSigner(_)
            | Command::SetAccess(_)
            | Command::RevokeSignerCertificates { .. }
            | Command::ImportCrl { .. }
            | Command::UnlockSigner { .. }
            | Command::RegisterAgencySeal(_)
            | Command::Audit(_) => caller.has(Role::Admin),
            Command::ArchiveDossier(dossier) => caller.has(Role::Clerk) && caller.acts_for_agency(&dossier.agency_id),
            Command::Certify(certifications) => {
                caller.has(Role::Signer) && certifications.iter().all(|certification| caller.acts_as_signer(&certification.signer_id))
            }
            Command::RevokeCertification { .. } => caller.has(Role::Admin) || caller.has(Role::Signer),
            Command::PinRejected { signer_id } | Command::ReplaceSignerKey { signer_id, .. } => {
                caller.has(Role::Signer) && caller.acts_as_signer(signer_id)
            }
            Command::TallyVerifications(_) => true,
        };
        if allowed {
            Ok(())
        } else {
            refuse("its grant does not cover this command".into())
        }
    }
}

fn kind_name(command: &Command) -> &'static str {
    match command {
        Command::RegisterSigner(_) => "RegisterSigner",
        Command::ArchiveDossier(_) => "ArchiveDossier",
        Command::Certify(_) => "Certify",
        Command::RevokeCertification { .. } => "RevokeCertification",
        Command::SetAccess(_) => "SetAccess",
        Command::Audit(_) => "Audit",
        Command::RevokeSignerCertificates { .. } => "RevokeSignerCertificates",
        Command::PinRejected { .. } => "PinRejected",
        Command::UnlockSigner { .. } => "UnlockSigner",
        Command::ReplaceSignerKey { .. } => "ReplaceSignerKey",
        Command::RegisterAgencySeal(_) => "RegisterAgencySeal",
        Command::TallyVerifications(_) => "TallyVerifications",
        Command::ImportCrl { .. } => "ImportCrl",
    }
}

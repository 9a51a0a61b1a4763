//! Who may do what: roles, the identity of a caller (the [`Actor`] recorded in every log
//! leaf), and principals (a client certificate's SHA-256 fingerprint mapped to roles,
//! agencies and signers).
//!
//! Identities come from client certificates (mutual TLS). Principals are looked up first
//! in the node's configuration (bootstrap operators, the same on every node) and then in
//! replicated state (grants made with `AccessService.SetAccess`, each a log leaf). Which
//! role may call which RPC is one table in `api::auth`; the agency and signer scopes below
//! are checked by the service that knows the request's agency or signer.
//!
//! This module knows nothing of TLS, gRPC or storage.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::Sha256;

/// Grants every agency (in `agency_ids`) or every signer (in `signer_ids`).
pub const ANY: &str = "*";
/// Most agencies or signers one principal may name.
pub const PRINCIPAL_SCOPE_ENTRIES_MAX: usize = 64;

/// What a caller may do. `Public` is everyone's; `Node` is a cluster member's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Registers signers, grants access, imports CRLs, unlocks keys, runs the cluster.
    Admin,
    /// Archives dossiers and reads them, for its agencies.
    Clerk,
    /// Signs (server-side with a PIN, or client-side) as its signers, for their agencies.
    Signer,
    /// Verifies in bulk (VerifyStream).
    Verifier,
    /// Anyone who reaches the port: verify one document, read the log, health.
    Public,
    /// Another node of the cluster (certificate from the cluster CA).
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clerk => "clerk",
            Role::Signer => "signer",
            Role::Verifier => "verifier",
            Role::Public => "public",
            Role::Node => "node",
        }
    }

    /// Parses a role a person may grant (never `node`).
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "clerk" => Some(Role::Clerk),
            "signer" => Some(Role::Signer),
            "verifier" => Some(Role::Verifier),
            "public" => Some(Role::Public),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Who did something, as recorded in commands and log leaves: the client certificate's
/// subject and fingerprint, or a named local actor (the node itself, `kyso dev`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub certificate_sha256: Option<Sha256>,
}

impl Actor {
    /// An actor inside the node process (no certificate), e.g. "local:kyso-dev".
    pub fn local(what: &str) -> Actor {
        Actor { name: format!("local:{what}"), certificate_sha256: None }
    }

    /// A caller without a certificate (only on an explicitly plaintext port).
    pub fn anonymous() -> Actor {
        Actor { name: "anonymous".into(), certificate_sha256: None }
    }

    /// Bytes that identify this actor in a request fingerprint.
    pub fn fingerprint_part(&self) -> Vec<u8> {
        match &self.certificate_sha256 {
            Some(hash) => hash.0.to_vec(),
            None => self.name.as_bytes().to_vec(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.certificate_sha256 {
            Some(hash) => write!(formatter, "{} (certificate sha256 {})", self.name, hash),
            None => formatter.write_str(&self.name),
        }
    }
}

/// A client certificate's grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// SHA-256 of the client certificate's DER.
    pub certificate_sha256: Sha256,
    /// Who this is, for people reading the log ("Nguyễn Văn A, one-stop desk").
    pub name: String,
    /// Roles; empty revokes every grant.
    pub roles: Vec<Role>,
    /// Agencies it acts for as a clerk; [`ANY`] for all.
    pub agency_ids: Vec<String>,
    /// Signer ids it may act as; [`ANY`] for all.
    pub signer_ids: Vec<String>,
}

/// An authenticated caller of one request, with its grants resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub roles: Vec<Role>,
    pub agency_ids: Vec<String>,
    pub signer_ids: Vec<String>,
    /// The cluster node id the caller's certificate is bound to (`urn:kyso:node:<id>`),
    /// for a node; `None` for everyone else (and for peers on an insecure plain-text peer
    /// port, which have no certificate).
    pub node_id: Option<u64>,
}

impl Caller {
    /// A caller with only the public role.
    pub fn public(actor: Actor) -> Caller {
        Caller { actor, roles: Vec::new(), agency_ids: Vec::new(), signer_ids: Vec::new(), node_id: None }
    }

    /// A caller holding a principal's grants.
    pub fn from_principal(actor: Actor, principal: &Principal) -> Caller {
        Caller {
            actor,
            roles: principal.roles.clone(),
            agency_ids: principal.agency_ids.clone(),
            signer_ids: principal.signer_ids.clone(),
            node_id: None,
        }
    }

    /// Another node of the cluster, `node_id` as its certificate binds it.
    pub fn node(actor: Actor, node_id: Option<u64>) -> Caller {
        Caller { actor, roles: vec![Role::Node], agency_ids: vec![ANY.into()], signer_ids: Vec::new(), node_id }
    }

    /// The node acting on its own behalf (in-process): every role but `Node`, every scope.
    /// Used by `kyso dev` to register its demo signer; never reachable from the network.
    pub fn local_operator(what: &str) -> Caller {
        Caller {
            actor: Actor::local(what),
            roles: vec![Role::Admin, Role::Clerk, Role::Signer, Role::Verifier],
            agency_ids: vec![ANY.into()],
            signer_ids: vec![ANY.into()],
            node_id: None,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        role == Role::Public || self.roles.contains(&role)
    }

    pub fn acts_for_agency(&self, agency_id: &str) -> bool {
        self.agency_ids.iter().any(|agency| agency == ANY || agency == agency_id)
    }

    pub fn acts_as_signer(&self, signer_id: &str) -> bool {
        self.signer_ids.iter().any(|signer| signer == ANY || signer == signer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_exactly_or_by_wildcard() {
        let principal = Principal {
            certificate_sha256: Sha256([1; 32]),
            name: "desk".into(),
            roles: vec![Role::Clerk],
            agency_ids: vec!["xa-a".into()],
            signer_ids: vec![],
        };
        let caller = Caller::from_principal(Actor::anonymous(), &principal);
        assert!(caller.has(Role::Clerk) && caller.has(Role::Public) && !caller.has(Role::Admin));
        assert!(caller.acts_for_agency("xa-a") && !caller.acts_for_agency("xa-b") && !caller.acts_for_agency("xa-a "));
        assert!(!caller.acts_as_signer("abc"));
        assert!(Caller::local_operator("test").acts_as_signer("anything"));
        assert_eq!(Role::parse("node"), None, "the node role cannot be granted");
    }
}

//! Time stamps: the node's RFC 3161 authority as a service (`POST /tsa`,
//! `LogService.Timestamp`), and the signature-time-stamp every signature kyso makes
//! receives before its certification is proposed (CAdES-T, PAdES B-T).
//!
//! The token is fetched while the command is prepared, never in apply: the certification
//! carries its CMS, token included, into the log, so apply stays deterministic. The node's
//! own TSA stamps by default; `[tsa] url` names another TSA instead.

use std::sync::Arc;

use kyso_cluster::Proposer;
use ring::rand::SecureRandom as _;

use super::{now_unix, Kyso, ServiceError};
use crate::crypto::tsa::{self, Issue, TimeStampAuthority, TsaError};
use crate::crypto;

/// Bytes reserved in a PDF signature's /Contents for an external TSA's token: its chain is
/// unknown until it answers (a token with a three-certificate RSA-4096 chain is ~7 KiB).
pub const EXTERNAL_TOKEN_ROOM_BYTES: usize = 16 * 1024;
/// Beyond the own TSA's chain: TSTInfo, signed attributes, signature, DER headers.
const OWN_TOKEN_MARGIN_BYTES: usize = 3 * 1024;

/// Where signatures get their time stamps.
#[derive(Clone, Default)]
pub enum StampSource {
    /// No time stamps (no `[tsa]` configured): CAdES-BES / PAdES B-B.
    #[default]
    None,
    /// The node's own authority.
    Own(Arc<TimeStampAuthority>),
    /// Another RFC 3161 TSA over HTTP.
    External { url: String, client: reqwest::Client },
}

impl std::fmt::Debug for StampSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StampSource::None => formatter.write_str("none"),
            StampSource::Own(_) => formatter.write_str("own"),
            StampSource::External { url, .. } => write!(formatter, "external {url}"),
        }
    }
}

/// The node's authority (what it serves) and the source of its signatures' time stamps.
#[derive(Clone, Debug, Default)]
pub struct Timestamps {
    pub authority: Option<Arc<TimeStampAuthority>>,
    pub source: StampSource,
}

impl Timestamps {
    /// Bytes a PDF signature must reserve for the token.
    pub fn token_room_bytes(&self) -> usize {
        match &self.source {
            StampSource::None => 0,
            StampSource::Own(authority) => authority.chain_der().iter().map(Vec::len).sum::<usize>() + OWN_TOKEN_MARGIN_BYTES,
            StampSource::External { .. } => EXTERNAL_TOKEN_ROOM_BYTES,
        }
    }
}

impl<P: Proposer> Kyso<P> {
    /// Uses `timestamps` for the authority this node serves and its signatures' stamps.
    pub fn with_timestamps(mut self, timestamps: Timestamps) -> Self {
        self.timestamps = timestamps;
        self
    }

    /// The time-stamping authority's answer to a DER TimeStampReq: a granted DER
    /// TimeStampResp (genTime from this node's clock), or INVALID_ARGUMENT saying what is
    /// wrong with the request, or NOT_FOUND when this node runs no authority.
    pub fn timestamp_reply(&self, query_der: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let authority = self.timestamps.authority.as_ref().ok_or_else(|| {
            ServiceError::NotFound("this node runs no time-stamping authority; its operator sets [tsa] cert_file and key_file".into())
        })?;
        authority.respond(query_der, self.issue()?).map_err(|error| match error {
            TsaError::Cms(_) | TsaError::TimeOutOfRange { .. } => ServiceError::Internal(format!("time stamp failed: {error}")),
            _ => ServiceError::InvalidArgument(error.to_string()),
        })
    }

    /// Adds a signature-time-stamp over `cms_der`'s SignatureValue, from the configured
    /// source; returns the CMS unchanged when no source is configured. The caller MUST
    /// verify the result before it enters the log.
    pub(crate) async fn stamp_cms(&self, cms_der: Vec<u8>) -> Result<Vec<u8>, ServiceError> {
        let token = match &self.timestamps.source {
            StampSource::None => return Ok(cms_der),
            StampSource::Own(authority) => return stamp_with_own(authority, cms_der, self.issue()?),
            StampSource::External { url, client } => self.external_token(url, client, &cms_der).await?,
        };
        add_token(&cms_der, &token)
    }

    /// How a signature made now gets its time stamp, with what only the async side holds.
    pub(crate) fn stamp_plan(&self) -> Result<StampPlan, ServiceError> {
        Ok(match &self.timestamps.source {
            StampSource::None => StampPlan::None,
            StampSource::Own(authority) => StampPlan::Own(authority.clone(), self.issue()?),
            StampSource::External { .. } => StampPlan::Fetch,
        })
    }

    async fn external_token(&self, url: &str, client: &reqwest::Client, cms_der: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let signature = crypto::signature_value(cms_der).map_err(|error| ServiceError::Internal(format!("fresh signature does not decode: {error}")))?;
        let nonce = self.random_u64()?;
        let query = tsa::request_for_signature(&signature, nonce).map_err(|error| ServiceError::Internal(error.to_string()))?;
        let unavailable = |reason: String| ServiceError::Unavailable(format!("the time-stamping authority {url} {reason}; the certification was not recorded, retry later"));
        let mut response = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/timestamp-query")
            .body(query)
            .send()
            .await
            .map_err(|error| unavailable(format!("cannot be reached: {error}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("answered HTTP {}", response.status())));
        }
        let mut reply = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| unavailable(format!("broke off its reply: {error}")))? {
            if reply.len() + chunk.len() > tsa::REPLY_SIZE_BYTES_MAX {
                return Err(unavailable(format!("sent a reply over {} bytes", tsa::REPLY_SIZE_BYTES_MAX)));
            }
            reply.extend_from_slice(&chunk);
        }
        tsa::token_from_reply(&reply, &signature, nonce).map_err(|error| unavailable(format!("sent an unusable reply: {error}")))
    }

    /// genTime from this node's clock and 64 random serial bits.
    fn issue(&self) -> Result<Issue, ServiceError> {
        Ok(Issue { gen_time_unix: now_unix(), serial_random: self.random_u64()? })
    }

    fn random_u64(&self) -> Result<u64, ServiceError> {
        let mut bytes = [0u8; 8];
        self.random.fill(&mut bytes).map_err(|_| ServiceError::Internal("the system random source failed".into()))?;
        Ok(u64::from_be_bytes(bytes))
    }
}

/// See [`Kyso::stamp_plan`].
pub(crate) enum StampPlan {
    /// No `[tsa]`: the CMS stays as signed.
    None,
    /// The own authority, with the serial and time of the token it will issue.
    Own(Arc<TimeStampAuthority>, Issue),
    /// Another TSA over HTTP: [`Kyso::stamp_cms`] fetches the token.
    Fetch,
}

/// Stamps `cms_der`'s signature with the node's own authority (synchronous: no network).
pub(crate) fn stamp_with_own(authority: &TimeStampAuthority, cms_der: Vec<u8>, issue: Issue) -> Result<Vec<u8>, ServiceError> {
    let signature = crypto::signature_value(&cms_der).map_err(|error| ServiceError::Internal(format!("fresh signature does not decode: {error}")))?;
    let token = authority.stamp_signature(&signature, issue).map_err(|error| ServiceError::Internal(format!("time stamp failed: {error}")))?;
    add_token(&cms_der, &token)
}

fn add_token(cms_der: &[u8], token: &[u8]) -> Result<Vec<u8>, ServiceError> {
    crypto::add_signature_timestamp(cms_der, token).map_err(|error| ServiceError::Internal(format!("cannot add the time stamp: {error}")))
}

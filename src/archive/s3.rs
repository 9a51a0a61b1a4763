//! Opening an S3-compatible bucket through `object_store`'s `AmazonS3` builder.
//!
//! Path-style requests unless configured otherwise, conditional PUT (`If-None-Match: *`)
//! for [`super::BlobStore::put`], short bounded retries so that an unreachable store turns
//! into UNAVAILABLE within `retry_timeout_seconds`. Credentials come from a file or the
//! environment, never from the config: this module reads them and never logs them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, Checksum, S3ConditionalPut};
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;

use super::ArchiveError;
use crate::config::S3Config;

/// Seconds to open a TCP connection to the store.
pub const CONNECT_TIMEOUT_SECONDS: u64 = 5;

/// The keys the store signs requests with.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("S3Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Reads `access_key_id`, `secret_access_key` and optionally `session_token` from a
    /// TOML file that only its owner may read.
    pub fn from_file(path: &Path) -> Result<S3Credentials, ArchiveError> {
        let refuse = |reason: String| ArchiveError::Unavailable(format!("storage.credentials_file {}: {reason}", path.display()));
        let metadata = std::fs::metadata(path).map_err(|error| refuse(format!("cannot read it ({error})")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if metadata.permissions().mode() & 0o077 != 0 {
                return Err(refuse("is readable by other users; run chmod 600 on it".into()));
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let text = std::fs::read_to_string(path).map_err(|error| refuse(format!("cannot read it ({error})")))?;
        let credentials: S3Credentials = toml::from_str(&text).map_err(|error| {
            refuse(format!("is not valid: {}; write access_key_id = \"…\" and secret_access_key = \"…\"", error.message()))
        })?;
        credentials.check().map_err(refuse)?;
        Ok(credentials)
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`.
    pub fn from_environment() -> Result<S3Credentials, ArchiveError> {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (variable("AWS_ACCESS_KEY_ID"), variable("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => {
                let credentials =
                    S3Credentials { access_key_id, secret_access_key, session_token: variable("AWS_SESSION_TOKEN") };
                credentials.check().map_err(|reason| ArchiveError::Unavailable(format!("S3 credentials in the environment: {reason}")))?;
                Ok(credentials)
            }
            _ => Err(ArchiveError::Unavailable(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the node, or name a file in storage.credentials_file"
                    .into(),
            )),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.access_key_id.trim().is_empty() || self.secret_access_key.trim().is_empty() {
            return Err("access_key_id and secret_access_key must not be empty".into());
        }
        Ok(())
    }
}

/// Opens the bucket. `data_dir` resolves a relative credentials file.
pub fn open(config: &S3Config, data_dir: &Path) -> Result<(Arc<dyn ObjectStore>, String), ArchiveError> {
    // reqwest's rustls has no bundled provider in this build: use ring's. Installing twice
    // (several stores, tests) is harmless, so the error of a second install is ignored.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let credentials = match config.credentials_path(data_dir) {
        Some(path) => S3Credentials::from_file(&path)?,
        None => S3Credentials::from_environment()?,
    };
    let retry = RetryConfig {
        max_retries: config.retries_max,
        retry_timeout: Duration::from_secs(config.retry_timeout_seconds),
        ..RetryConfig::default()
    };
    let client = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_timeout(Duration::from_secs(config.request_timeout_seconds))
        .with_connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECONDS));
    let mut builder = AmazonS3Builder::new()
        .with_endpoint(&config.endpoint)
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_allow_http(config.allow_http)
        .with_virtual_hosted_style_request(config.virtual_hosted_style)
        .with_access_key_id(&credentials.access_key_id)
        .with_secret_access_key(&credentials.secret_access_key)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        // The store checks every PUT and part against its SHA-256; Object Lock buckets
        // refuse uploads without such a checksum.
        .with_checksum_algorithm(Checksum::SHA256)
        .with_retry(retry)
        .with_client_options(client);
    if let Some(token) = &credentials.session_token {
        builder = builder.with_token(token);
    }
    let store = builder
        .build()
        .map_err(|error| ArchiveError::Unavailable(format!("cannot configure the S3 store: {error}; check [storage] in the config")))?;
    Ok((Arc::new(store), format!("s3 bucket {} at {}", config.bucket, config.endpoint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3.toml");
        std::fs::write(&path, "access_key_id = \"AK\"\nsecret_access_key = \"SK\"\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = S3Credentials::from_file(&path).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let credentials = S3Credentials::from_file(&path).unwrap();
        assert_eq!(credentials.access_key_id, "AK");
        assert!(!format!("{credentials:?}").contains("SK"), "the secret must not be printed");
    }
}

//! Signed tree heads in the C2SP tlog-checkpoint format
//! (<https://c2sp.org/tlog-checkpoint>).
//!
//! A checkpoint is a signed note whose text is exactly:
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <root hash, standard base64>
//! [extension lines, each non-empty]
//! ```
//!
//! Every line ends with a single newline and no line is empty. The log signs
//! one after every batch of appends; clients pin the log's verifier key and
//! open checkpoints to learn a root they can check proofs against.
//!
//! This module must never return a checkpoint whose signature by the expected
//! key did not verify, never accept a body that parses in more than one way
//! (sizes with leading zeros, non-canonical base64, blank lines), and never
//! sign a checkpoint the log has not computed from its own tree. It knows
//! nothing about where roots come from or how checkpoints are stored.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::note::{
    is_valid_key_name, open_note, sign_valid_text, LogSigner, LogVerifier, NoteError,
};
use super::proof::Hash;

/// Longest origin [`Checkpoint::new`] accepts.
pub const ORIGIN_SIZE_BYTES_MAX: usize = 1024;

/// Largest checkpoint body [`open_checkpoint`] accepts. A body of this size
/// signed under a name of at most `KEY_NAME_SIZE_BYTES_MAX` bytes stays far
/// below `NOTE_SIZE_BYTES_MAX`, so every opened checkpoint can be re-signed.
pub const CHECKPOINT_BODY_SIZE_BYTES_MAX: usize = 16 * 1024;

/// Fewest lines in a checkpoint body: origin, size and root.
const CHECKPOINT_LINES_MIN: usize = 3;

/// Why a checkpoint could not be built or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint note rejected")]
    Note(#[from] NoteError),
    #[error("checkpoint origin must be non-empty, at most {max_bytes} bytes, without spaces, plus signs or control characters")]
    OriginInvalid { max_bytes: usize },
    #[error("checkpoint body is {size_bytes} bytes, more than the {max_bytes} bytes accepted; refuse it")]
    BodyTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("checkpoint body needs at least origin, tree size and root hash lines, each non-empty and ending in one newline")]
    BodyMalformed,
    #[error("checkpoint tree size must be a decimal u64 without sign or leading zeros")]
    SizeMalformed,
    #[error("checkpoint root hash must be standard padded base64 of exactly 32 bytes")]
    RootMalformed,
}

/// A log's tree head: which log, how many leaves, and their root hash.
///
/// Built with [`Checkpoint::new`] by the log, or returned by
/// [`open_checkpoint`] to a client. A client MUST compare [`Checkpoint::origin`]
/// with the log it expects, and MUST check that a newer checkpoint is
/// consistent with the last one it trusted before replacing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extension_lines: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    ///
    /// The origin must be a valid signed-note key name (non-empty, no spaces,
    /// plus signs or control characters), since the log signs under a key
    /// named after its origin. The caller MUST pass a `root` computed from
    /// its own tree at `size`: the log must never sign a tree head it cannot
    /// later prove consistent.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if origin.len() > ORIGIN_SIZE_BYTES_MAX || !is_valid_key_name(origin) {
            return Err(CheckpointError::OriginInvalid {
                max_bytes: ORIGIN_SIZE_BYTES_MAX,
            });
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extension_lines: Vec::new(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines of an opened checkpoint, in order. The spec makes them
    /// opaque and NOT RECOMMENDED; kyso never writes them.
    pub fn extension_lines(&self) -> &[String] {
        &self.extension_lines
    }

    /// The note text: origin, size, root and extension lines, each followed
    /// by a newline.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extension_lines {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a note text that a verified signature covers.
    fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        if text.len() > CHECKPOINT_BODY_SIZE_BYTES_MAX {
            return Err(CheckpointError::BodyTooLarge {
                size_bytes: text.len(),
                max_bytes: CHECKPOINT_BODY_SIZE_BYTES_MAX,
            });
        }
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::BodyMalformed)?
            .split('\n')
            .collect();
        if lines.len() < CHECKPOINT_LINES_MIN || lines.iter().any(|line| line.is_empty()) {
            return Err(CheckpointError::BodyMalformed);
        }
        Ok(Self {
            origin: lines[0].to_owned(),
            size: parse_size(lines[1])?,
            root: parse_root(lines[2])?,
            extension_lines: lines[CHECKPOINT_LINES_MIN..]
                .iter()
                .map(|line| (*line).to_owned())
                .collect(),
        })
    }
}

/// ASCII decimal without sign or leading zeros ("0" alone is allowed).
fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let digits_only = line.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = line.len() > 1 && line.starts_with('0');
    if !digits_only || leading_zero {
        return Err(CheckpointError::SizeMalformed);
    }
    line.parse().map_err(|_| CheckpointError::SizeMalformed)
}

/// Canonical standard base64 of exactly 32 bytes.
fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let bytes = BASE64
        .decode(line)
        .map_err(|_| CheckpointError::RootMalformed)?;
    let root: Hash = bytes
        .try_into()
        .map_err(|_| CheckpointError::RootMalformed)?;
    // The engine rejects non-canonical padding and trailing bits; this makes
    // the single-encoding rule explicit rather than a property of a config.
    if BASE64.encode(root) != line {
        return Err(CheckpointError::RootMalformed);
    }
    Ok(root)
}

/// Signs `checkpoint` with `signer` and returns the signed note text.
///
/// The signer's name SHOULD equal the checkpoint origin (tlog-checkpoint
/// spec). The caller MUST have verified that the new tree is consistent with
/// every checkpoint it signed before: a log must never sign two inconsistent
/// checkpoints.
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &LogSigner) -> String {
    // The body is valid note text: it is non-empty, ends with a newline and
    // has no control characters, because its origin and extension lines were
    // either checked by `Checkpoint::new` (a key name, no extensions) or taken
    // from a verified note, and the other lines are digits and base64. Its
    // size is at most ORIGIN_SIZE_BYTES_MAX plus a few dozen bytes, or
    // CHECKPOINT_BODY_SIZE_BYTES_MAX when parsed, so the note stays within
    // NOTE_SIZE_BYTES_MAX.
    sign_valid_text(&checkpoint.body(), signer)
}

/// Verifies `note` with the log's `verifier` and parses the checkpoint in it.
///
/// Requires at least one signature by the verifier's key, rejects the note if
/// any signature by that key fails, and ignores signatures by other keys
/// (witness cosignatures, rotated keys). The body must follow the
/// tlog-checkpoint format exactly.
///
/// The caller MUST check the returned origin is the log it expects, and MUST
/// verify consistency with the last checkpoint it trusted before relying on
/// the new root.
pub fn open_checkpoint(note: &str, verifier: &LogVerifier) -> Result<Checkpoint, CheckpointError> {
    let text = open_note(note, verifier)?;
    Checkpoint::parse_body(text)
}

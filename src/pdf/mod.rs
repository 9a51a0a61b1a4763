//! The certified PDF a citizen receives: from an archived scan (a PDF, a JPEG or a PNG),
//! a document carrying the certification block on its last page (or on an appended page)
//! and PAdES signatures, each added as an incremental update.
//!
//! This module knows PDF syntax and layout only. It never reads the clock, the replicated
//! state or the network, and it never holds a private key: signing is split into
//! [`prepare_signature`] (the revision with its /Contents placeholder and the digest to
//! sign) and [`PreparedSignature::complete`] (the CMS written into the placeholder), so
//! that the CMS can be made by kyso's key store today and by a signer's token tomorrow.
//!
//! Every PDF it writes keeps the bytes it was given as a prefix: an earlier revision, and
//! with it an earlier signature, is never rewritten.
//!
//! [`signatures`] reads the other way: the signatures of a PDF received from elsewhere,
//! checked over their byte ranges (issue 15's verification of received PDFs).

mod block;
mod dss;
mod font;
mod image;
mod object;
mod revision;
mod sign;
pub mod signatures;

pub use block::{Block, BlockPlacement, BlockText};
pub use dss::{append_dss, ValidationData};
pub use sign::{prepare_signature, PreparedSignature, SignatureFields};
pub use signatures::{check_signatures, read_signatures, signature_ranges, SignatureCheck, SignatureDefect, PDF_SIGNATURES_COUNT_MAX};

/// The signature field of the performer in a certified PDF kyso delivers (the first
/// signature; the agency's seal, when there is one, follows in `AGENCY_FIELD_NAME`).
pub const PERFORMER_FIELD_NAME: &str = "kyso-performer";
/// The signature field of the agency's seal.
pub const AGENCY_FIELD_NAME: &str = "kyso-agency";

/// The largest PDF kyso reads, in bytes. The parser holds the whole file in memory (and
/// its objects once more), so this bounds a certification's memory.
pub const PDF_SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Pages in a PDF kyso certifies.
pub const PDF_PAGES_COUNT_MAX: usize = 2_000;
/// Objects in a PDF kyso certifies.
pub const PDF_OBJECTS_COUNT_MAX: usize = 2_000_000;
/// Pixels (width × height) of an image scan.
pub const IMAGE_PIXELS_MAX: u64 = 100_000_000;

/// What a scan is, told from its first bytes (never from a client's content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanFormat {
    Pdf,
    Jpeg,
    Png,
}

/// How many leading bytes [`ScanFormat::sniff`] looks at (a PDF header may follow up to
/// 1 KiB of junk, as readers accept).
pub const SNIFF_BYTES: u64 = 1024;

impl ScanFormat {
    /// The format kyso can deliver a certified PDF for, or `None` (other files keep only
    /// their detached CMS).
    pub fn sniff(bytes: &[u8]) -> Option<ScanFormat> {
        if bytes.starts_with(b"\xFF\xD8\xFF") {
            Some(ScanFormat::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ScanFormat::Png)
        } else if bytes[..bytes.len().min(SNIFF_BYTES as usize)].windows(5).any(|window| window == b"%PDF-") {
            Some(ScanFormat::Pdf)
        } else {
            None
        }
    }
}

/// Why a certified PDF could not be built. Messages are lowercase and say what the
/// caller can do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PdfError {
    #[error("the pdf is encrypted; kyso cannot add a certification to it: remove the password protection and archive the file again")]
    Encrypted,
    #[error("the pdf cannot be parsed ({0}); re-save it with a pdf tool and archive it again")]
    Unparseable(String),
    #[error("the pdf's cross-reference data is damaged ({0}); re-save it with a pdf tool and archive it again")]
    MalformedXref(String),
    #[error("the pdf carries {0}; kyso certifies only static documents: print it to a new pdf without scripts or actions and archive that")]
    ActiveContent(String),
    #[error("the pdf has no pages to certify")]
    NoPages,
    #[error("the {what} is {size} and the limit is {limit}; split the document or scan at a lower resolution")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("the image cannot be used ({0}); scan it again as a baseline jpeg or an 8-bit png")]
    Image(String),
    #[error("the signature is {needed_bytes} bytes, more than the {capacity_bytes} bytes reserved in the pdf")]
    SignatureTooLarge { needed_bytes: usize, capacity_bytes: usize },
    #[error("the font cannot be subset: {0}")]
    Font(String),
}

/// The year in Vietnam at `unix`: the year of the register a certification is numbered in.
pub fn vietnam_year(unix: i64) -> i64 {
    block::vietnam_date(unix).2
}

/// Builds the document a certification signs, before any signature: the scan as a PDF
/// (an image becomes an A4 page) with the certification block added as an incremental
/// update. A PDF scan's own bytes stay its prefix.
pub fn build_unsigned(scan: &[u8], block: &Block) -> Result<Vec<u8>, PdfError> {
    if scan.len() > PDF_SIZE_BYTES_MAX {
        return Err(PdfError::TooLarge { what: "scan in bytes", size: scan.len() as u64, limit: PDF_SIZE_BYTES_MAX as u64 });
    }
    let format = ScanFormat::sniff(scan).ok_or_else(|| PdfError::Unparseable("it is neither a pdf, a jpeg nor a png".into()))?;
    let base = match format {
        ScanFormat::Pdf => scan.to_vec(),
        ScanFormat::Jpeg | ScanFormat::Png => image::image_page_pdf(scan, format, block::BLOCK_RESERVED_HEIGHT_POINTS)?,
    };
    block::stamp(base, block)
}

#[cfg(test)]
mod tests;

//! Reading and checking the signatures of a PDF kyso did not necessarily make: a certified
//! copy an agency received by email, possibly signed or changed by other tools since.
//!
//! [`read_signatures`] finds every signature field's value (/V: /ByteRange, /Contents,
//! /SubFilter) through the form's field tree, and checks each /ByteRange against the raw
//! bytes: it starts at 0, its gap is exactly that dictionary's /Contents hex string, and it
//! stays inside the file. [`check_signatures`] then verifies each detached CMS over its two
//! ranges (`crypto::cms`; a document time stamp's token with `crypto::tsa`, its "signer"
//! being the authority), reads the signer, the signing time and the signature's time
//! stamp, judges the signer's and the time-stamping authority's chains against the trust
//! anchors it is given, and says whether the signature covers the whole file or bytes no
//! later valid signature covers were appended after it (an incremental update by another
//! tool).
//!
//! Everything here is outside input: every count and size is bounded, a malformed file is
//! a [`PdfError`], a malformed signature is a report saying why, and nothing panics. It
//! never reads the clock, the state or the network, and it never changes the bytes.

use lopdf::{Dictionary, Document, Object, ObjectId};
use ring::digest;

use super::revision::load;
use super::{PdfError, PDF_SIZE_BYTES_MAX};
use crate::crypto::cert::{subject_names, validate_chain, TrustAnchors};
use crate::crypto::cms::{self, CMS_SIZE_BYTES_MAX};
use crate::domain::Sha256;

/// Signatures read from one PDF; a file with more is refused.
pub const PDF_SIGNATURES_COUNT_MAX: usize = 32;
/// Form fields visited while looking for signatures (a field tree is outside input).
const FORM_FIELDS_VISITED_MAX: usize = 10_000;
/// Levels of /Kids below the form's /Fields.
const FORM_FIELD_DEPTH_MAX: usize = 32;
/// Characters of a field name or SubFilter kept for the report.
const NAME_CHARS_MAX: usize = 128;

/// The SubFilters whose /Contents is a detached CMS over the two byte ranges.
const DETACHED_CMS_SUB_FILTERS: [&str; 2] = ["ETSI.CAdES.detached", "adbe.pkcs7.detached"];
/// The SubFilter of a document time stamp (PAdES B-LTA): /Contents is an RFC 3161
/// TimeStampToken whose imprint covers the two byte ranges.
const DOCUMENT_TIMESTAMP_SUB_FILTER: &str = "ETSI.RFC3161";

/// Why one signature could not be checked or did not verify. The file may hold other,
/// valid signatures: a defect is reported per signature, never for the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureDefect {
    #[error("the signature's /ByteRange is malformed: {0}")]
    ByteRange(String),
    #[error("the signature's /Contents is malformed: {0}")]
    Contents(String),
    #[error("the signature's sub-filter {0} is not one kyso checks (ETSI.CAdES.detached, adbe.pkcs7.detached or ETSI.RFC3161)")]
    UnsupportedSubFilter(String),
    #[error("the signed bytes do not match the signature: the file was changed inside what was signed")]
    DigestMismatch,
    #[error("the signature does not verify: {0}")]
    Cms(String),
}

impl SignatureDefect {
    /// The reason in Vietnamese, for the public page.
    pub fn vietnamese(&self) -> &'static str {
        match self {
            SignatureDefect::ByteRange(_) | SignatureDefect::Contents(_) => "Cấu trúc chữ ký trong tệp bị hỏng.",
            SignatureDefect::UnsupportedSubFilter(_) => "Kiểu chữ ký này không được hệ thống hỗ trợ kiểm tra.",
            SignatureDefect::DigestMismatch => "Nội dung đã ký bị thay đổi: tệp không còn khớp với chữ ký.",
            SignatureDefect::Cms(_) => "Chữ ký số không hợp lệ.",
        }
    }
}

/// One signature field's value as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureField {
    /// The field's full name (/T of the field and its parents, joined by '.').
    pub field_name: String,
    /// /SubFilter, e.g. "ETSI.CAdES.detached".
    pub sub_filter: String,
    /// The signed bytes and the CMS, or why the dictionary does not describe them.
    pub signed: Result<SignedRanges, SignatureDefect>,
}

/// A well-formed /ByteRange and the CMS in its gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRanges {
    /// [0, gap start, gap end, length of the second range].
    pub byte_range: [usize; 4],
    /// The DER CMS from /Contents, without the zero padding after it.
    pub cms_der: Vec<u8>,
}

impl SignedRanges {
    /// Where the signed revision ends: the end of the second range.
    pub fn revision_end(&self) -> usize {
        self.byte_range[2] + self.byte_range[3]
    }

    /// The two signed parts of `pdf` (the file these ranges were read from).
    pub fn parts<'a>(&self, pdf: &'a [u8]) -> [&'a [u8]; 2] {
        [&pdf[..self.byte_range[1]], &pdf[self.byte_range[2]..self.revision_end()]]
    }
}

/// The signer as its certificate names it. Claimed by the certificate; trusted only when
/// [`SignatureCheck::signer_trusted`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerFacts {
    pub common_name: String,
    /// RFC 4514.
    pub subject: String,
    pub certificate_sha256: Sha256,
}

/// What one signature of a PDF proves. The default proves nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureCheck {
    pub field_name: String,
    pub sub_filter: String,
    /// `None` when the /ByteRange is malformed.
    pub byte_range: Option<[usize; 4]>,
    /// SHA-256 of the revision this signature signed (the file's first bytes up to the end
    /// of its second range, /Contents included): a delivered PDF's hash when kyso made it.
    pub signed_revision_sha256: Option<Sha256>,
    /// Known when the CMS verified.
    pub signer: Option<SignerFacts>,
    /// The signing-time attribute (claimed by the signer), unix seconds.
    pub signing_time_unix: Option<i64>,
    /// genTime of the signature-time-stamp token whose imprint covers this signature.
    pub timestamp_unix: Option<i64>,
    /// The time stamp's authority chains to a trust anchor at genTime.
    pub timestamp_trusted: bool,
    /// The signer's chain is valid against a trust anchor at the time stamp's time, or
    /// at the claimed signing time when there is no time stamp.
    pub signer_trusted: bool,
    /// The signed revision is the whole file.
    pub covers_whole_file: bool,
    /// Bytes follow this signature's revision that no later valid signature covers: the
    /// file was changed after it was signed (another tool's incremental update).
    pub changed_after_signature: bool,
    /// The CMS verifies over the two ranges with the embedded signer certificate.
    pub cryptographically_valid: bool,
    /// Why it is not valid; `None` when it is.
    pub defect: Option<SignatureDefect>,
}

/// Every signature field with a value, ordered by where its signed revision ends (the
/// order they were made in); malformed ones last, in the order the form lists them.
pub fn read_signatures(pdf: &[u8]) -> Result<Vec<SignatureField>, PdfError> {
    if pdf.len() > PDF_SIZE_BYTES_MAX {
        return Err(PdfError::TooLarge { what: "pdf in bytes", size: pdf.len() as u64, limit: PDF_SIZE_BYTES_MAX as u64 });
    }
    if super::ScanFormat::sniff(pdf) != Some(super::ScanFormat::Pdf) {
        return Err(PdfError::Unparseable("no %PDF- header in its first 1024 bytes".into()));
    }
    let document = load(pdf)?;
    let values = signature_values(&document)?;
    let mut fields: Vec<SignatureField> = values
        .into_iter()
        .map(|(field_name, value)| SignatureField {
            field_name,
            sub_filter: value.get(b"SubFilter").and_then(Object::as_name).map(bounded_text).unwrap_or_default(),
            signed: signed_ranges(pdf, &value),
        })
        .collect();
    fields.sort_by_key(|field| field.signed.as_ref().map_or(usize::MAX, SignedRanges::revision_end));
    Ok(fields)
}

/// The two byte ranges that the signature whose /Contents holds exactly `cms_der`
/// covers (what verify checks a token-signed certification's CMS over, in its delivered
/// PDF); `None` when `pdf` is unreadable or holds no such well-formed signature.
pub fn signature_ranges<'a>(pdf: &'a [u8], cms_der: &[u8]) -> Option<[&'a [u8]; 2]> {
    read_signatures(pdf)
        .ok()?
        .into_iter()
        .find_map(|field| field.signed.ok().filter(|signed| signed.cms_der == cms_der))
        .map(|signed| signed.parts(pdf))
}

/// [`read_signatures`], then each signature verified and judged against `anchors` (see
/// the module documentation). The caller MUST treat a signer as identified only when
/// `signer_trusted` is true.
pub fn check_signatures(pdf: &[u8], anchors: &TrustAnchors) -> Result<Vec<SignatureCheck>, PdfError> {
    let fields = read_signatures(pdf)?;
    let revision_hashes = revision_hashes(pdf, &fields);
    let mut checks: Vec<SignatureCheck> =
        fields.into_iter().zip(revision_hashes).map(|(field, revision)| check_one(pdf, field, revision, anchors)).collect();
    mark_changes_after(&mut checks, pdf.len());
    Ok(checks)
}

/// The (name, /V dictionary) of every signature field, walking /AcroForm /Fields and
/// /Kids with bounded depth and count; a /V shared by two fields counts once.
fn signature_values(document: &Document) -> Result<Vec<(String, Dictionary)>, PdfError> {
    let Some(fields) = form_fields(document) else {
        return Ok(Vec::new());
    };
    let mut pending: Vec<(Object, String, bool, usize)> = fields.into_iter().rev().map(|field| (field, String::new(), false, 0)).collect();
    let mut visited: Vec<ObjectId> = Vec::new();
    let mut values_seen: Vec<ObjectId> = Vec::new();
    let mut found = Vec::new();
    let mut count = 0usize;
    while let Some((field, parent_name, inherited_signature, depth)) = pending.pop() {
        count += 1;
        if count > FORM_FIELDS_VISITED_MAX {
            return Err(PdfError::TooLarge { what: "number of form fields", size: count as u64, limit: FORM_FIELDS_VISITED_MAX as u64 });
        }
        if depth > FORM_FIELD_DEPTH_MAX {
            return Err(PdfError::Unparseable(format!("the form's field tree is deeper than {FORM_FIELD_DEPTH_MAX} levels")));
        }
        if let Object::Reference(id) = field {
            if visited.contains(&id) {
                continue;
            }
            visited.push(id);
        }
        let Some(dictionary) = resolve(document, &field).and_then(|object| object.as_dict().ok()) else {
            continue;
        };
        let name = match dictionary.get(b"T").and_then(Object::as_str) {
            Ok(partial) if parent_name.is_empty() => text_string(partial),
            Ok(partial) => format!("{parent_name}.{}", text_string(partial)),
            Err(_) => parent_name.clone(),
        };
        let is_signature = match dictionary.get(b"FT").and_then(Object::as_name) {
            Ok(kind) => kind == b"Sig",
            Err(_) => inherited_signature,
        };
        if is_signature {
            if let Some(value) = signature_value(document, dictionary, &mut values_seen) {
                if found.len() == PDF_SIGNATURES_COUNT_MAX {
                    return Err(PdfError::TooLarge { what: "number of signatures", size: found.len() as u64 + 1, limit: PDF_SIGNATURES_COUNT_MAX as u64 });
                }
                found.push((name.clone(), value));
            }
        }
        if let Some(kids) = dictionary.get(b"Kids").ok().and_then(|kids| resolve(document, kids)).and_then(|kids| kids.as_array().ok()) {
            for kid in kids.iter().rev() {
                pending.push((kid.clone(), name.clone(), is_signature, depth + 1));
            }
        }
    }
    Ok(found)
}

/// The catalog's /AcroForm /Fields array, when the file has a form.
fn form_fields(document: &Document) -> Option<Vec<Object>> {
    let root = document.trailer.get(b"Root").ok()?;
    let catalog = resolve(document, root)?.as_dict().ok()?;
    let form = resolve(document, catalog.get(b"AcroForm").ok()?)?.as_dict().ok()?;
    let fields = resolve(document, form.get(b"Fields").ok()?)?.as_array().ok()?;
    Some(fields.clone())
}

/// A signature field's /V dictionary, unless it has none or it was seen already.
fn signature_value(document: &Document, field: &Dictionary, values_seen: &mut Vec<ObjectId>) -> Option<Dictionary> {
    let value = field.get(b"V").ok()?;
    if let Object::Reference(id) = value {
        if values_seen.contains(id) {
            return None;
        }
        values_seen.push(*id);
    }
    resolve(document, value)?.as_dict().ok().cloned()
}

/// Follows one reference; `None` when it names nothing.
fn resolve<'a>(document: &'a Document, object: &'a Object) -> Option<&'a Object> {
    match object {
        Object::Reference(id) => document.get_object(*id).ok(),
        direct => Some(direct),
    }
}

/// A PDF text string (UTF-16BE with its byte order mark, else PDFDocEncoding read as
/// Latin-1), cut to [`NAME_CHARS_MAX`] characters and escaped for display.
fn text_string(bytes: &[u8]) -> String {
    let decoded = match bytes.strip_prefix(b"\xFE\xFF") {
        Some(utf16) => {
            let units: Vec<u16> = utf16.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        None => bytes.iter().map(|&byte| char::from(byte)).collect(),
    };
    bounded_text(decoded.as_bytes())
}

fn bounded_text(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes).chars().take(NAME_CHARS_MAX).collect();
    crate::text::for_terminal(&text).into_owned()
}

/// Checks /ByteRange against the raw bytes and takes the CMS out of its gap.
fn signed_ranges(pdf: &[u8], value: &Dictionary) -> Result<SignedRanges, SignatureDefect> {
    let byte_range = byte_range(pdf.len(), value)?;
    let [_, gap_start, gap_end, _] = byte_range;
    let gap = &pdf[gap_start..gap_end];
    let hex_digits = gap
        .strip_prefix(b"<")
        .and_then(|gap| gap.strip_suffix(b">"))
        .ok_or_else(|| SignatureDefect::ByteRange("the gap is not a hex string <…>".into()))?;
    if hex_digits.len() > 2 * CMS_SIZE_BYTES_MAX {
        return Err(SignatureDefect::Contents(format!("it is {} bytes, more than the limit of {CMS_SIZE_BYTES_MAX}", hex_digits.len() / 2)));
    }
    let contents = hex::decode(hex_digits).map_err(|error| SignatureDefect::ByteRange(format!("the gap is not this signature's /Contents: {error}")))?;
    let declared = value.get(b"Contents").and_then(Object::as_str).map_err(|_| SignatureDefect::Contents("it is missing or not a string".into()))?;
    if declared != contents.as_slice() {
        return Err(SignatureDefect::ByteRange("the gap is not this signature's /Contents".into()));
    }
    let cms_der = der_prefix(&contents).ok_or_else(|| SignatureDefect::Contents("it does not start with a DER value".into()))?.to_vec();
    Ok(SignedRanges { byte_range, cms_der })
}

/// /ByteRange as four offsets [0, a, b, c] with a < b and b + c within the file.
fn byte_range(file_len: usize, value: &Dictionary) -> Result<[usize; 4], SignatureDefect> {
    let bad = |reason: &str| SignatureDefect::ByteRange(reason.to_string());
    let array = value.get(b"ByteRange").and_then(Object::as_array).map_err(|_| bad("it is missing or not an array"))?;
    let numbers: Vec<usize> = array
        .iter()
        .map(|number| number.as_i64().ok().and_then(|number| usize::try_from(number).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad("it holds something other than non-negative integers"))?;
    let [first_start, first_len, second_start, second_len] = numbers.as_slice() else {
        return Err(bad(&format!("it has {} numbers, not 4 (one gap)", numbers.len())));
    };
    if *first_start != 0 {
        return Err(bad("the first range does not start at the beginning of the file"));
    }
    if second_start <= first_len {
        return Err(bad("the second range does not start after the first"));
    }
    let end = second_start.checked_add(*second_len).filter(|end| *end <= file_len).ok_or_else(|| bad("the second range ends past the end of the file"))?;
    debug_assert!(end <= file_len);
    Ok([0, *first_len, *second_start, *second_len])
}

/// The first complete DER value of `bytes` (a signer pads /Contents with zeros after it).
fn der_prefix(bytes: &[u8]) -> Option<&[u8]> {
    use der::{Decode, Reader};
    let mut reader = der::SliceReader::new(bytes).ok()?;
    der::asn1::AnyRef::decode(&mut reader).ok()?;
    let length = usize::try_from(u32::from(reader.position())).ok()?;
    bytes.get(..length)
}

/// SHA-256 of each field's signed revision, hashing the file once in order of revision
/// ends (fields arrive sorted so).
fn revision_hashes(pdf: &[u8], fields: &[SignatureField]) -> Vec<Option<Sha256>> {
    let mut context = digest::Context::new(&digest::SHA256);
    let mut hashed = 0usize;
    fields
        .iter()
        .map(|field| {
            let end = field.signed.as_ref().ok()?.revision_end();
            if end < hashed {
                // Sorted by end, so only an equal end comes back; never reached otherwise.
                return Some(Sha256::digest(&pdf[..end]));
            }
            context.update(&pdf[hashed..end]);
            hashed = end;
            Sha256::from_slice(context.clone().finish().as_ref())
        })
        .collect()
}

fn check_one(pdf: &[u8], field: SignatureField, revision: Option<Sha256>, anchors: &TrustAnchors) -> SignatureCheck {
    let mut check = SignatureCheck { field_name: field.field_name, sub_filter: field.sub_filter, signed_revision_sha256: revision, ..SignatureCheck::default() };
    let signed = match field.signed {
        Ok(signed) => signed,
        Err(defect) => {
            check.defect = Some(defect);
            return check;
        }
    };
    check.byte_range = Some(signed.byte_range);
    check.covers_whole_file = signed.revision_end() == pdf.len();
    if check.sub_filter == DOCUMENT_TIMESTAMP_SUB_FILTER {
        return check_document_timestamp(pdf, check, &signed, anchors);
    }
    if !DETACHED_CMS_SUB_FILTERS.contains(&check.sub_filter.as_str()) {
        check.defect = Some(SignatureDefect::UnsupportedSubFilter(check.sub_filter.clone()));
        return check;
    }
    let verified = match cms::verify_detached_parts(&signed.cms_der, &signed.parts(pdf)) {
        Ok(verified) => verified,
        Err(cms::CmsError::DigestMismatch) => return with_defect(check, SignatureDefect::DigestMismatch),
        Err(error) => return with_defect(check, SignatureDefect::Cms(error.to_string())),
    };
    check.cryptographically_valid = true;
    check.signing_time_unix = Some(verified.signing_time_unix);
    check.timestamp_unix = verified.timestamp_unix;
    check.signer = subject_names(&verified.signer_cert_der).ok().map(|(subject, common_name)| SignerFacts {
        common_name,
        subject,
        certificate_sha256: Sha256::digest(&verified.signer_cert_der),
    });
    let trusted_time = verified.timestamp_unix.unwrap_or(verified.signing_time_unix);
    check.signer_trusted = validate_chain(&verified.chain_der(), anchors, trusted_time).is_ok();
    // The token's imprint and signature were checked by `verify_detached_parts`.
    check.timestamp_trusted = verified.timestamp_unix.is_some_and(|gen_time| validate_chain(&verified.timestamp_chain_der, anchors, gen_time).is_ok());
    check
}

/// A document time stamp: the token's signature, its TSA certificate and its imprint over
/// the ranges. Its "signer" is the authority, trusted when its chain reaches `anchors` at
/// genTime; it has a time stamp and no signing time of its own.
fn check_document_timestamp(pdf: &[u8], mut check: SignatureCheck, signed: &SignedRanges, anchors: &TrustAnchors) -> SignatureCheck {
    let (gen_time_unix, verified) = match crate::crypto::tsa::check_token_over(&signed.cms_der, &signed.parts(pdf)) {
        Ok(checked) => checked,
        Err(crate::crypto::tsa::TsaError::ImprintMismatch) => return with_defect(check, SignatureDefect::DigestMismatch),
        Err(error) => return with_defect(check, SignatureDefect::Cms(error.to_string())),
    };
    check.cryptographically_valid = true;
    check.timestamp_unix = Some(gen_time_unix);
    check.signer = subject_names(&verified.tsa_cert_der).ok().map(|(subject, common_name)| SignerFacts {
        common_name,
        subject,
        certificate_sha256: Sha256::digest(&verified.tsa_cert_der),
    });
    check.timestamp_trusted = validate_chain(&verified.into_chain_der(), anchors, gen_time_unix).is_ok();
    check.signer_trusted = check.timestamp_trusted;
    check
}

fn with_defect(mut check: SignatureCheck, defect: SignatureDefect) -> SignatureCheck {
    check.defect = Some(defect);
    check
}

/// A signature is changed after when the file goes on past both its own revision and
/// every later valid signature's: those bytes nobody signed after it. An invalid later
/// signature vouches for nothing.
fn mark_changes_after(checks: &mut [SignatureCheck], file_len: usize) {
    let mut covered_by_later_valid = 0usize;
    for check in checks.iter_mut().rev() {
        let Some([_, _, start, len]) = check.byte_range else { continue };
        let end = start + len;
        check.changed_after_signature = end.max(covered_by_later_valid) < file_len;
        if check.cryptographically_valid {
            covered_by_later_valid = covered_by_later_valid.max(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dictionary(byte_range: &[i64], contents: &[u8]) -> Dictionary {
        let mut value = Dictionary::new();
        value.set("ByteRange", Object::Array(byte_range.iter().map(|&number| Object::Integer(number)).collect()));
        value.set("Contents", Object::String(contents.to_vec(), lopdf::StringFormat::Hexadecimal));
        value
    }

    #[test]
    fn a_byte_range_must_leave_exactly_the_contents_string_as_its_gap() {
        // "%PDF-1.7 <3003020101> tail": the gap is the hex string at offsets 9..21.
        let pdf = b"%PDF-1.7 <300302010100> tail";
        let contents = [0x30, 0x03, 0x02, 0x01, 0x01, 0x00];
        let good = signed_ranges(pdf, &dictionary(&[0, 9, 23, 5], &contents)).expect("well formed");
        assert_eq!(good.cms_der, [0x30, 0x03, 0x02, 0x01, 0x01], "the zero padding after the DER value is dropped");
        assert_eq!(good.revision_end(), pdf.len());
        for (range, expected) in [
            (&[1, 8, 23, 5][..], "does not start at the beginning"),
            (&[0, 9, 23, 6][..], "past the end of the file"),
            (&[0, 9, 9, 5][..], "does not start after the first"),
            (&[0, 10, 23, 5][..], "not a hex string"),
            (&[0, 9, 23][..], "not 4"),
            (&[0, -9, 23, 5][..], "non-negative"),
            (&[0, 9, 23, i64::MAX][..], "past the end of the file"),
        ] {
            let error = signed_ranges(pdf, &dictionary(range, &contents)).expect_err("malformed");
            assert!(error.to_string().contains(expected), "{range:?}: {error}");
        }
        let other = signed_ranges(pdf, &dictionary(&[0, 9, 23, 5], &[1, 2])).expect_err("another contents");
        assert!(other.to_string().contains("not this signature's /Contents"), "{other}");
    }

    #[test]
    fn only_bytes_no_later_valid_signature_covers_count_as_a_change() {
        let check = |end: usize, valid: bool| SignatureCheck { byte_range: Some([0, 1, 2, end - 2]), cryptographically_valid: valid, ..SignatureCheck::default() };
        let changed = |checks: &[SignatureCheck]| checks.iter().map(|check| check.changed_after_signature).collect::<Vec<_>>();
        let mut delivered = [check(100, true), check(200, true)];
        mark_changes_after(&mut delivered, 200);
        assert_eq!(changed(&delivered), [false, false]);
        let mut appended = [check(100, true), check(200, true)];
        mark_changes_after(&mut appended, 300);
        assert_eq!(changed(&appended), [true, true]);
        let mut broken_last = [check(100, true), check(200, false)];
        mark_changes_after(&mut broken_last, 200);
        assert_eq!(changed(&broken_last), [true, false], "an invalid signature vouches for nothing before it either");
    }

    #[test]
    fn garbage_and_unsigned_files_are_refused_or_empty_never_a_panic() {
        assert!(matches!(read_signatures(b"not a pdf"), Err(PdfError::Unparseable(_))));
        assert!(matches!(read_signatures(b"%PDF-1.7\n garbage"), Err(PdfError::Unparseable(_))));
        let unsigned = crate::cli::dev::sample_pdf("unsigned");
        assert_eq!(read_signatures(&unsigned).expect("a plain pdf"), Vec::new());
        for cut in [10, unsigned.len() / 2, unsigned.len() - 3] {
            let _ = read_signatures(&unsigned[..cut]);
        }
    }
}

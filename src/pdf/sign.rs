//! PAdES signatures as incremental updates, in two steps so that the CMS can be made
//! elsewhere (kyso's key store now, a signer's token later):
//!
//! 1. [`prepare_signature`] appends a revision with an invisible signature field, its
//!    widget on the last page, and a /Sig dictionary (a plain indirect object, SubFilter
//!    ETSI.CAdES.detached) whose /ByteRange has a fixed width and whose /Contents is a
//!    zero-filled hole of the requested size;
//! 2. [`PreparedSignature::complete`] writes the DER CMS into the hole.
//!
//! No DocMDP (certification) signature is made: with P=1 a later signature would break
//! the first; both signatures here are approval signatures, so both stay valid.

use lopdf::{Dictionary, Object};

use super::object::{text_string, write_dictionary};
use super::revision::{Parsed, RevisionWriter};
use super::PdfError;

/// Digits of each /ByteRange number: enough for any file below 10 GB.
const BYTE_RANGE_DIGITS: usize = 10;

/// What the signature dictionary and field say.
#[derive(Debug, Clone)]
pub struct SignatureFields {
    /// The form field's name, unique in the document (e.g. "kyso-performer").
    pub field_name: String,
    /// Who signs, shown by readers (/Name).
    pub signer_name: String,
    /// Why (/Reason), e.g. "Người thực hiện chứng thực".
    pub reason: String,
    /// The signing time (/M), unix seconds; the CMS carries the same time.
    pub signed_at_unix: i64,
    /// Bytes reserved for the DER CMS: the signer's chain, the signature, a future
    /// timestamp token and a margin.
    pub contents_capacity_bytes: usize,
}

/// A PDF whose last revision waits for its CMS.
#[derive(Debug, Clone)]
pub struct PreparedSignature {
    bytes: Vec<u8>,
    /// Offset of the '<' that opens /Contents.
    contents_start: usize,
    /// Offset just after the '>' that closes /Contents.
    contents_end: usize,
}

impl PreparedSignature {
    /// The two signed byte ranges: everything but the /Contents hole.
    pub fn signed_parts(&self) -> [&[u8]; 2] {
        [&self.bytes[..self.contents_start], &self.bytes[self.contents_end..]]
    }

    /// /ByteRange as written.
    pub fn byte_range(&self) -> [usize; 4] {
        [0, self.contents_start, self.contents_end, self.bytes.len() - self.contents_end]
    }

    pub fn capacity_bytes(&self) -> usize {
        (self.contents_end - self.contents_start - 2) / 2
    }

    /// Writes `cms_der` into the hole; the rest of the hole stays zeros (DER ignores
    /// trailing bytes after its outer length, as every PDF verifier expects).
    pub fn complete(mut self, cms_der: &[u8]) -> Result<Vec<u8>, PdfError> {
        let capacity_bytes = self.capacity_bytes();
        if cms_der.len() > capacity_bytes {
            return Err(PdfError::SignatureTooLarge { needed_bytes: cms_der.len(), capacity_bytes });
        }
        let hex = hex::encode_upper(cms_der);
        let start = self.contents_start + 1;
        self.bytes[start..start + hex.len()].copy_from_slice(hex.as_bytes());
        Ok(self.bytes)
    }
}

/// Appends the signature revision to `pdf` (see the module documentation).
pub fn prepare_signature(pdf: Vec<u8>, fields: &SignatureFields) -> Result<PreparedSignature, PdfError> {
    let parsed = Parsed::parse(&pdf)?;
    let pages = parsed.pages()?;
    // `pages` is never empty (Parsed::pages refuses that).
    let last_page = *pages.last().expect("at least one page");
    let catalog = parsed.dictionary(parsed.root)?;
    let mut writer = RevisionWriter::new(&parsed, pdf);
    let signature_id = writer.allocate();
    let widget_id = writer.allocate();

    let (body, byte_range_offset, contents_offset) = signature_dictionary(fields);
    let body_start = writer.write_raw(signature_id, &body);
    let byte_range_at = body_start + byte_range_offset;
    let contents_start = body_start + contents_offset;
    let contents_end = contents_start + 2 + 2 * fields.contents_capacity_bytes;

    let mut widget = Dictionary::new();
    widget.set("Type", Object::Name(b"Annot".to_vec()));
    widget.set("Subtype", Object::Name(b"Widget".to_vec()));
    widget.set("FT", Object::Name(b"Sig".to_vec()));
    widget.set("T", text_string(&fields.field_name));
    widget.set("V", Object::Reference(signature_id));
    // Print + Locked: an invisible widget that nobody moves.
    widget.set("F", Object::Integer(132));
    widget.set("Rect", Object::Array(vec![Object::Integer(0); 4]));
    widget.set("P", Object::Reference(last_page));
    writer.write_dictionary(widget_id, &widget);

    let mut page = parsed.dictionary(last_page)?;
    let mut annotations = match page.get(b"Annots") {
        Ok(annotations) => parsed.resolve(annotations)?.as_array().map(Clone::clone).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    annotations.push(Object::Reference(widget_id));
    page.set("Annots", Object::Array(annotations));
    writer.write_dictionary(last_page, &page);

    write_form(&parsed, &mut writer, catalog, widget_id)?;
    let mut bytes = writer.finish();
    let total = bytes.len();
    let byte_range = format!("[0 {contents_start} {contents_end} {}]", total - contents_end);
    let placeholder_len = byte_range_placeholder().len();
    let padded = format!("{byte_range:<placeholder_len$}");
    bytes[byte_range_at..byte_range_at + placeholder_len].copy_from_slice(padded.as_bytes());
    Ok(PreparedSignature { bytes, contents_start, contents_end })
}

fn byte_range_placeholder() -> String {
    let number = "0".repeat(BYTE_RANGE_DIGITS);
    format!("[0 {number} {number} {number}]")
}

/// The /Sig dictionary's bytes and the offsets (within them) of its /ByteRange array and
/// its /Contents hole.
fn signature_dictionary(fields: &SignatureFields) -> (Vec<u8>, usize, usize) {
    let mut body = b"<</Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached\n/ByteRange ".to_vec();
    let byte_range_offset = body.len();
    body.extend_from_slice(byte_range_placeholder().as_bytes());
    body.extend_from_slice(b"\n/Contents ");
    let contents_offset = body.len();
    body.push(b'<');
    body.extend(std::iter::repeat_n(b'0', 2 * fields.contents_capacity_bytes));
    body.extend_from_slice(b">\n/M ");
    let mut rest = Dictionary::new();
    rest.set("Name", text_string(&fields.signer_name));
    rest.set("Reason", text_string(&fields.reason));
    let mut time = Vec::new();
    super::object::write_object(&mut time, &Object::string_literal(pdf_date(fields.signed_at_unix)));
    body.extend_from_slice(&time);
    let mut tail = Vec::new();
    write_dictionary(&mut tail, &rest);
    // Splice the remaining entries in without their own << >>.
    body.extend_from_slice(&tail[2..tail.len() - 2]);
    body.extend_from_slice(b">>");
    (body, byte_range_offset, contents_offset)
}

/// Adds the widget to the form's /Fields (creating /AcroForm) with /SigFlags 3.
fn write_form(parsed: &Parsed, writer: &mut RevisionWriter<'_>, mut catalog: Dictionary, widget_id: lopdf::ObjectId) -> Result<(), PdfError> {
    let (form_id, mut form) = match catalog.get(b"AcroForm") {
        Ok(Object::Reference(id)) => (Some(*id), parsed.dictionary(*id)?),
        Ok(Object::Dictionary(form)) => (None, form.clone()),
        _ => (None, Dictionary::new()),
    };
    let mut fields = match form.get(b"Fields") {
        Ok(fields) => parsed.resolve(fields)?.as_array().map(Clone::clone).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    fields.push(Object::Reference(widget_id));
    form.set("Fields", Object::Array(fields));
    form.set("SigFlags", Object::Integer(3));
    match form_id {
        Some(id) => writer.write_dictionary(id, &form),
        None => {
            catalog.set("AcroForm", Object::Dictionary(form));
            writer.write_dictionary(parsed.root, &catalog);
        }
    }
    Ok(())
}

/// A PDF date in UTC: "D:YYYYMMDDHHmmSSZ".
fn pdf_date(unix: i64) -> String {
    let (day, month, year) = super::block::vietnam_date(unix - 7 * 3600);
    let seconds = unix.rem_euclid(86_400);
    format!("D:{year:04}{month:02}{day:02}{:02}{:02}{:02}Z", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

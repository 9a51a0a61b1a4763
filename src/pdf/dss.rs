//! The Document Security Store (ISO 32000-2 §12.8.4.3, ETSI EN 319 142-1 PAdES B-LT): the
//! certificates and CRLs a validator needs to check the document's signatures years
//! later, without reaching the issuers' servers, written as an incremental update before
//! the signatures so that both signatures cover it and nothing follows the last one.

use lopdf::{Dictionary, Object};

use super::revision::{Parsed, RevisionWriter};
use super::PdfError;

/// Certificates and CRLs to embed; each DER.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationData {
    pub certificates: Vec<Vec<u8>>,
    pub crls: Vec<Vec<u8>>,
}

impl ValidationData {
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty() && self.crls.is_empty()
    }
}

/// Appends a revision whose catalog's /DSS lists `data` (after any certificates and CRLs
/// a /DSS of the input already lists). Each certificate and CRL is a stream of its DER.
pub fn append_dss(pdf: Vec<u8>, data: &ValidationData) -> Result<Vec<u8>, PdfError> {
    let parsed = Parsed::parse(&pdf)?;
    let mut catalog = parsed.dictionary(parsed.root)?;
    let mut dss = match catalog.get(b"DSS") {
        Ok(existing) => parsed.resolve(existing)?.as_dict().cloned().unwrap_or_default(),
        Err(_) => Dictionary::new(),
    };
    let mut writer = RevisionWriter::new(&parsed, pdf);
    for (key, items) in [(&b"Certs"[..], &data.certificates), (b"CRLs", &data.crls)] {
        let mut references = match dss.get(key) {
            Ok(existing) => parsed.resolve(existing)?.as_array().cloned().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        for der in items {
            let id = writer.allocate();
            let mut body = format!("<</Length {}>>\nstream\n", der.len()).into_bytes();
            body.extend_from_slice(der);
            body.extend_from_slice(b"\nendstream");
            writer.write_raw(id, &body);
            references.push(Object::Reference(id));
        }
        dss.set(key.to_vec(), Object::Array(references));
    }
    dss.set("Type", Object::Name(b"DSS".to_vec()));
    let dss_id = writer.allocate();
    writer.write_dictionary(dss_id, &dss);
    catalog.set("DSS", Object::Reference(dss_id));
    writer.write_dictionary(parsed.root, &catalog);
    Ok(writer.finish())
}

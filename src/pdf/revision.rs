//! Reading a PDF kyso is about to extend, and writing one incremental update after it.
//!
//! The update is written by hand rather than through lopdf's incremental saver, because a
//! signature needs the exact byte offsets of its /Contents placeholder and because every
//! earlier byte must stay as it was. The update's cross-reference section takes the form
//! of the section before it (a table after a table, a stream after a stream), with /Prev
//! pointing at it. Objects are never written into object streams here, so the /Sig
//! dictionary is always a plain indirect object.

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::object::{write_dictionary, write_object};
use super::{PdfError, PDF_OBJECTS_COUNT_MAX, PDF_PAGES_COUNT_MAX};

/// Parents walked up a page tree to find an inherited attribute.
const PAGE_TREE_DEPTH_MAX: usize = 64;
/// Bytes at the end of a file searched for `startxref`.
const TAIL_SEARCH_BYTES: usize = 2048;

/// A parsed PDF and what an update after it must repeat.
pub(crate) struct Parsed {
    pub document: Document,
    /// Offset of the last cross-reference section (the file's `startxref`).
    pub previous_xref_offset: usize,
    /// The last section is a cross-reference stream (PDF 1.5), not a table.
    pub xref_stream: bool,
    pub root: ObjectId,
    /// The trailer's /Size: the first object number an update may use.
    pub size: u32,
}

impl Parsed {
    pub fn parse(bytes: &[u8]) -> Result<Parsed, PdfError> {
        if has_encrypt_in_tail(bytes) {
            return Err(PdfError::Encrypted);
        }
        let previous_xref_offset = startxref(bytes)?;
        let xref_stream = xref_kind(bytes, previous_xref_offset)?;
        let document = load(bytes)?;
        check_offsets(bytes, &document)?;
        let root = document
            .trailer
            .get(b"Root")
            .and_then(Object::as_reference)
            .map_err(|_| PdfError::Unparseable("the trailer names no document catalog".into()))?;
        let size = document
            .trailer
            .get(b"Size")
            .and_then(Object::as_i64)
            .ok()
            .and_then(|size| u32::try_from(size).ok())
            .ok_or_else(|| PdfError::MalformedXref("the trailer has no valid /Size".into()))?;
        let highest = document.objects.keys().map(|(id, _)| *id).max().unwrap_or(0);
        if size <= highest {
            return Err(PdfError::MalformedXref(format!("the trailer's /Size {size} does not exceed object number {highest}")));
        }
        let parsed = Parsed { document, previous_xref_offset, xref_stream, root, size };
        parsed.check_active_content()?;
        Ok(parsed)
    }

    pub fn pages(&self) -> Result<Vec<ObjectId>, PdfError> {
        let pages: Vec<ObjectId> = self.document.get_pages().into_values().collect();
        if pages.is_empty() {
            return Err(PdfError::NoPages);
        }
        if pages.len() > PDF_PAGES_COUNT_MAX {
            return Err(PdfError::TooLarge { what: "number of pages", size: pages.len() as u64, limit: PDF_PAGES_COUNT_MAX as u64 });
        }
        Ok(pages)
    }

    pub fn dictionary(&self, id: ObjectId) -> Result<Dictionary, PdfError> {
        self.document
            .get_dictionary(id)
            .cloned()
            .map_err(|error| PdfError::Unparseable(format!("object {} {}: {error}", id.0, id.1)))
    }

    /// Follows a reference (once) to the object it names.
    pub fn resolve<'a>(&'a self, object: &'a Object) -> Result<&'a Object, PdfError> {
        match object {
            Object::Reference(id) => self
                .document
                .get_object(*id)
                .map_err(|error| PdfError::Unparseable(format!("object {} {}: {error}", id.0, id.1))),
            direct => Ok(direct),
        }
    }

    /// A page attribute, looked up through the page tree when the page inherits it
    /// (MediaBox, Resources, Rotate).
    pub fn inherited(&self, page: &Dictionary, key: &[u8]) -> Result<Option<Object>, PdfError> {
        let mut current = page.clone();
        for _ in 0..PAGE_TREE_DEPTH_MAX {
            if let Ok(value) = current.get(key) {
                return Ok(Some(self.resolve(value)?.clone()));
            }
            let Ok(parent) = current.get(b"Parent").and_then(Object::as_reference) else {
                return Ok(None);
            };
            current = self.dictionary(parent)?;
        }
        Err(PdfError::Unparseable(format!("the page tree is deeper than {PAGE_TREE_DEPTH_MAX} levels")))
    }

    /// Refuses a document that runs code or launches programs: kyso would otherwise sign
    /// something whose appearance or behaviour it cannot vouch for.
    fn check_active_content(&self) -> Result<(), PdfError> {
        for object in self.document.objects.values() {
            let dictionary = match object {
                Object::Dictionary(dictionary) => dictionary,
                Object::Stream(stream) => &stream.dict,
                _ => continue,
            };
            if dictionary.has(b"JS") || dictionary.has(b"JavaScript") {
                return Err(PdfError::ActiveContent("javascript".into()));
            }
            if let Ok(action) = dictionary.get(b"S").and_then(Object::as_name) {
                match action {
                    b"JavaScript" => return Err(PdfError::ActiveContent("javascript".into())),
                    b"Launch" => return Err(PdfError::ActiveContent("a launch action".into())),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// lopdf's parse of `bytes` (every revision, the newest object of each number), refusing
/// an encrypted file and one with more than [`PDF_OBJECTS_COUNT_MAX`] objects.
pub(crate) fn load(bytes: &[u8]) -> Result<Document, PdfError> {
    // A parser bug on hostile input must become a precise refusal, not a failed task:
    // the closure only reads `bytes`, so nothing is left half-changed by an unwind.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Document::load_mem(bytes)))
        .map_err(|_| PdfError::Unparseable("the pdf parser gave up on this file".into()))?;
    let document = loaded.map_err(|error| match error {
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword | lopdf::Error::UnsupportedSecurityHandler(_) => PdfError::Encrypted,
        other => PdfError::Unparseable(other.to_string()),
    })?;
    if document.trailer.has(b"Encrypt") || document.was_encrypted() {
        return Err(PdfError::Encrypted);
    }
    if document.objects.len() > PDF_OBJECTS_COUNT_MAX {
        return Err(PdfError::TooLarge { what: "number of objects", size: document.objects.len() as u64, limit: PDF_OBJECTS_COUNT_MAX as u64 });
    }
    Ok(document)
}

/// An earlier encryption dictionary shows as /Encrypt in a trailer near the end; checked
/// before parsing so that a parser which silently decrypts cannot hide it.
fn has_encrypt_in_tail(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(8).any(|window| window == b"/Encrypt")
}

fn startxref(bytes: &[u8]) -> Result<usize, PdfError> {
    let tail_start = bytes.len().saturating_sub(TAIL_SEARCH_BYTES);
    let tail = &bytes[tail_start..];
    let position = tail
        .windows(9)
        .rposition(|window| window == b"startxref")
        .ok_or_else(|| PdfError::MalformedXref("no startxref at the end of the file".into()))?;
    let digits: String = tail[position + 9..]
        .iter()
        .skip_while(|byte| byte.is_ascii_whitespace())
        .take_while(|byte| byte.is_ascii_digit())
        .map(|&byte| byte as char)
        .collect();
    let offset: usize = digits.parse().map_err(|_| PdfError::MalformedXref("startxref names no offset".into()))?;
    if offset >= bytes.len() {
        return Err(PdfError::MalformedXref(format!("startxref {offset} points past the end of the file")));
    }
    Ok(offset)
}

/// Whether the section at `offset` is a stream; an error when it is neither form.
fn xref_kind(bytes: &[u8], offset: usize) -> Result<bool, PdfError> {
    let at = &bytes[offset..bytes.len().min(offset + 64)];
    if at.starts_with(b"xref") {
        return Ok(false);
    }
    if object_header(at).is_some() {
        return Ok(true);
    }
    Err(PdfError::MalformedXref(format!("startxref {offset} does not point at a cross-reference section")))
}

/// Parses `N G obj` at the start of `bytes`.
fn object_header(bytes: &[u8]) -> Option<(u32, u16)> {
    let text = std::str::from_utf8(&bytes[..bytes.len().min(32)]).ok().or_else(|| {
        let valid = bytes.iter().take(32).take_while(|byte| byte.is_ascii()).count();
        std::str::from_utf8(&bytes[..valid]).ok()
    })?;
    let mut words = text.split_ascii_whitespace();
    let id = words.next()?.parse().ok()?;
    let generation = words.next()?.parse().ok()?;
    let keyword = words.next()?;
    keyword.starts_with("obj").then_some((id, generation))
}

/// Every uncompressed object the cross-reference data names must start where it says: a
/// parser that rebuilt a damaged table would otherwise hide that our /Prev chain points
/// at wrong offsets.
fn check_offsets(bytes: &[u8], document: &Document) -> Result<(), PdfError> {
    for (&id, entry) in &document.reference_table.entries {
        if let lopdf::xref::XrefEntry::Normal { offset, generation } = entry {
            let offset = *offset as usize;
            let found = bytes.get(offset..).and_then(object_header);
            if found != Some((id, *generation)) {
                return Err(PdfError::MalformedXref(format!("object {id} {generation} is not at offset {offset}")));
            }
        }
    }
    Ok(())
}

/// One incremental update being written after `base`.
pub(crate) struct RevisionWriter<'a> {
    parsed: &'a Parsed,
    base: Vec<u8>,
    /// (object number, absolute offset) of every object written.
    offsets: Vec<(u32, usize)>,
    next_id: u32,
}

impl<'a> RevisionWriter<'a> {
    /// Takes the bytes `parsed` was read from; they stay the output's prefix.
    pub fn new(parsed: &'a Parsed, mut base: Vec<u8>) -> Self {
        if !base.ends_with(b"\n") && !base.ends_with(b"\r") {
            base.push(b'\n');
        }
        RevisionWriter { parsed, base, offsets: Vec::new(), next_id: parsed.size }
    }

    pub fn allocate(&mut self) -> ObjectId {
        let id = self.next_id;
        self.next_id += 1;
        (id, 0)
    }

    /// Writes `N G obj … endobj` around `body`; returns the body's absolute offset.
    pub fn write_raw(&mut self, id: ObjectId, body: &[u8]) -> usize {
        self.offsets.push((id.0, self.base.len()));
        self.base.extend_from_slice(format!("{} {} obj\n", id.0, id.1).as_bytes());
        let body_offset = self.base.len();
        self.base.extend_from_slice(body);
        self.base.extend_from_slice(b"\nendobj\n");
        body_offset
    }

    pub fn write_object(&mut self, id: ObjectId, object: &Object) {
        let mut body = Vec::new();
        write_object(&mut body, object);
        self.write_raw(id, &body);
    }

    pub fn write_dictionary(&mut self, id: ObjectId, dictionary: &Dictionary) {
        let mut body = Vec::new();
        write_dictionary(&mut body, dictionary);
        self.write_raw(id, &body);
    }

    /// Writes the objects of a pdf-writer chunk, each under the id pdf-writer gave it
    /// (ids from [`RevisionWriter::allocate`]). One object per chunk, so its offset is
    /// known.
    pub fn write_chunk(&mut self, chunk: &pdf_writer::Chunk) {
        let bytes = chunk.as_bytes();
        let header = object_header(bytes).expect("a pdf-writer chunk starts with an object header");
        assert_eq!(chunk.refs().len(), 1, "one object per chunk, so that its offset is known");
        self.offsets.push((header.0, self.base.len()));
        self.base.extend_from_slice(bytes);
        if !bytes.ends_with(b"\n") {
            self.base.push(b'\n');
        }
    }

    /// Closes the update with its cross-reference section and trailer.
    pub fn finish(mut self) -> Vec<u8> {
        if self.parsed.xref_stream {
            self.finish_with_stream()
        } else {
            self.finish_with_table();
            self.base
        }
    }

    fn trailer_entries(&self, size: u32) -> Dictionary {
        let mut trailer = Dictionary::new();
        trailer.set("Size", Object::Integer(i64::from(size)));
        trailer.set("Root", Object::Reference(self.parsed.root));
        for key in [&b"Info"[..], b"ID"] {
            if let Ok(value) = self.parsed.document.trailer.get(key) {
                trailer.set(key.to_vec(), value.clone());
            }
        }
        trailer.set("Prev", Object::Integer(self.parsed.previous_xref_offset as i64));
        trailer
    }

    fn subsections(offsets: &mut [(u32, usize)]) -> Vec<(u32, Vec<usize>)> {
        offsets.sort_unstable();
        let mut sections: Vec<(u32, Vec<usize>)> = Vec::new();
        for &(id, offset) in offsets.iter() {
            match sections.last_mut() {
                Some((first, entries)) if *first + entries.len() as u32 == id => entries.push(offset),
                _ => sections.push((id, vec![offset])),
            }
        }
        sections
    }

    fn finish_with_table(&mut self) {
        let xref_offset = self.base.len();
        let size = self.next_id;
        let sections = Self::subsections(&mut self.offsets);
        let mut out = b"xref\n".to_vec();
        for (first, entries) in &sections {
            out.extend_from_slice(format!("{first} {}\n", entries.len()).as_bytes());
            for offset in entries {
                out.extend_from_slice(format!("{offset:010} 00000 n\r\n").as_bytes());
            }
        }
        out.extend_from_slice(b"trailer\n");
        write_dictionary(&mut out, &self.trailer_entries(size));
        out.extend_from_slice(format!("\nstartxref\n{xref_offset}\n%%EOF\n").as_bytes());
        self.base.extend_from_slice(&out);
    }

    fn finish_with_stream(mut self) -> Vec<u8> {
        let xref_id = self.allocate();
        let xref_offset = self.base.len();
        self.offsets.push((xref_id.0, xref_offset));
        let size = self.next_id;
        let sections = Self::subsections(&mut self.offsets);
        let mut data = Vec::new();
        let mut index = Vec::new();
        for (first, entries) in &sections {
            index.push(Object::Integer(i64::from(*first)));
            index.push(Object::Integer(entries.len() as i64));
            for &offset in entries {
                data.push(1u8);
                // Offsets are below PDF_SIZE_BYTES_MAX plus one update, far below 2^32.
                data.extend_from_slice(&(offset as u32).to_be_bytes());
                data.extend_from_slice(&0u16.to_be_bytes());
            }
        }
        let mut dictionary = self.trailer_entries(size);
        dictionary.set("Type", Object::Name(b"XRef".to_vec()));
        dictionary.set("W", Object::Array(vec![Object::Integer(1), Object::Integer(4), Object::Integer(2)]));
        dictionary.set("Index", Object::Array(index));
        let stream = Object::Stream(lopdf::Stream::new(dictionary, data));
        self.write_object(xref_id, &stream);
        self.base.extend_from_slice(format!("startxref\n{xref_offset}\n%%EOF\n").as_bytes());
        self.base
    }
}

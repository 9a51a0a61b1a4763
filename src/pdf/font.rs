//! The certification block's font: Noto Sans (SIL Open Font License 1.1, `fonts/OFL.txt`),
//! kept in the repository so that Vietnamese text renders the same in every reader.
//! Only the glyphs a block uses are embedded, as a Type0 font with a CIDFontType2
//! descendant, Identity-H encoding, widths and a ToUnicode map (so text can be copied and
//! searched).
//!
//! Vietnamese needs no shaping: Noto Sans maps every precomposed Vietnamese letter (NFC)
//! to one glyph. Decomposed input (NFD) would show its combining marks as separate glyphs.

use std::collections::BTreeMap;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Chunk, Filter, Finish, Name, Rect, Ref, Str};

use super::PdfError;

pub(crate) const REGULAR: &[u8] = include_bytes!("fonts/NotoSans-Regular.ttf");
pub(crate) const BOLD: &[u8] = include_bytes!("fonts/NotoSans-Bold.ttf");

/// Glyphs used in one block, collected while laying text out.
pub(crate) struct FontUse {
    data: &'static [u8],
    postscript_name: &'static str,
    face: ttf_parser::Face<'static>,
    remapper: subsetter::GlyphRemapper,
    /// Subset glyph id -> (font glyph id, the character it shows).
    used: BTreeMap<u16, (u16, char)>,
}

impl FontUse {
    pub fn new(data: &'static [u8], postscript_name: &'static str) -> Result<FontUse, PdfError> {
        let face = ttf_parser::Face::parse(data, 0).map_err(|error| PdfError::Font(error.to_string()))?;
        Ok(FontUse { data, postscript_name, face, remapper: subsetter::GlyphRemapper::new(), used: BTreeMap::new() })
    }

    fn glyph(&self, character: char) -> u16 {
        self.face
            .glyph_index(character)
            .or_else(|| self.face.glyph_index('?'))
            .map(|glyph| glyph.0)
            .unwrap_or(0)
    }

    /// The width of `text` at `size` points.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let units: u32 = text
            .chars()
            .map(|character| u32::from(self.face.glyph_hor_advance(ttf_parser::GlyphId(self.glyph(character))).unwrap_or(0)))
            .sum();
        units as f32 * size / f32::from(self.face.units_per_em())
    }

    /// The bytes a content stream shows for `text` (two-byte subset glyph ids).
    pub fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for character in text.chars() {
            let glyph = self.glyph(character);
            let subset_glyph = self.remapper.remap(glyph);
            self.used.entry(subset_glyph).or_insert((glyph, character));
            out.extend_from_slice(&subset_glyph.to_be_bytes());
        }
        out
    }

    /// Writes the font's five objects, one chunk each; `type0` is what a page's
    /// resources name. Ids come from `allocate`.
    pub fn write(&self, mut allocate: impl FnMut() -> Ref, type0: Ref) -> Result<Vec<Chunk>, PdfError> {
        let (cid_font, descriptor, font_file, to_unicode) = (allocate(), allocate(), allocate(), allocate());
        let subset = subsetter::subset(self.data, 0, &self.remapper).map_err(|error| PdfError::Font(format!("{error:?}")))?;
        let compressed = compress(&subset);
        let base_font = format!("{}+{}", self.subset_tag(), self.postscript_name);
        let scale = 1000.0 / f32::from(self.face.units_per_em());
        let mut chunks = Vec::new();

        let mut chunk = Chunk::new();
        chunk
            .type0_font(type0)
            .base_font(Name(base_font.as_bytes()))
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid_font)
            .to_unicode(to_unicode);
        chunks.push(chunk);

        let mut chunk = Chunk::new();
        {
            let mut cid = chunk.cid_font(cid_font);
            cid.subtype(CidFontType::Type2)
                .base_font(Name(base_font.as_bytes()))
                .system_info(system_info(b"Identity"))
                .font_descriptor(descriptor)
                .default_width(0.0)
                .cid_to_gid_map_predefined(Name(b"Identity"));
            let mut widths = cid.widths();
            for (&subset_glyph, &(glyph, _)) in &self.used {
                let advance = self.face.glyph_hor_advance(ttf_parser::GlyphId(glyph)).unwrap_or(0);
                widths.consecutive(subset_glyph, [f32::from(advance) * scale]);
            }
            widths.finish();
        }
        chunks.push(chunk);

        let bbox = self.face.global_bounding_box();
        let mut chunk = Chunk::new();
        chunk
            .font_descriptor(descriptor)
            .name(Name(base_font.as_bytes()))
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(
                f32::from(bbox.x_min) * scale,
                f32::from(bbox.y_min) * scale,
                f32::from(bbox.x_max) * scale,
                f32::from(bbox.y_max) * scale,
            ))
            .italic_angle(0.0)
            .ascent(f32::from(self.face.ascender()) * scale)
            .descent(f32::from(self.face.descender()) * scale)
            .cap_height(f32::from(self.face.capital_height().unwrap_or(self.face.ascender())) * scale)
            .stem_v(80.0)
            .font_file2(font_file);
        chunks.push(chunk);

        let mut chunk = Chunk::new();
        chunk.stream(font_file, &compressed).filter(Filter::FlateDecode).pair(Name(b"Length1"), subset.len() as i32);
        chunks.push(chunk);

        let mut cmap = UnicodeCmap::new(Name(b"Kyso-UCS"), system_info(b"UCS"));
        for (&subset_glyph, &(_, character)) in &self.used {
            cmap.pair(subset_glyph, character);
        }
        let cmap = cmap.finish();
        let mut chunk = Chunk::new();
        chunk.cmap(to_unicode, cmap.as_slice()).name(Name(b"Kyso-UCS")).system_info(system_info(b"UCS"));
        chunks.push(chunk);
        Ok(chunks)
    }

    /// Six capital letters derived from the glyph set, as PDF asks of a subset's name.
    fn subset_tag(&self) -> String {
        let mut glyphs = Vec::new();
        for &(glyph, _) in self.used.values() {
            glyphs.extend_from_slice(&glyph.to_be_bytes());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &glyphs);
        digest.as_ref()[..6].iter().map(|byte| char::from(b'A' + byte % 26)).collect()
    }
}

fn system_info(ordering: &'static [u8]) -> SystemInfo<'static> {
    SystemInfo { registry: Str(b"Adobe"), ordering: Str(ordering), supplement: 0 }
}

pub(crate) fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    encoder.write_all(bytes).expect("writing into a Vec");
    encoder.finish().expect("writing into a Vec")
}

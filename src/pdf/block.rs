//! The certification block (lời chứng): its Vietnamese wording, its layout, and the
//! incremental update that places it on the last page or on an appended page.
//!
//! Layout: a white box with a dark-red frame, the QR code of the public page at its left,
//! the text at its right. On a scanned PDF the box sits in the bottom-right corner of the
//! last page, over whatever is there (an agency whose scans carry text to the bottom edge
//! configures the appended page instead); an image scan leaves that corner empty.

use lopdf::{Dictionary, Object, ObjectId};
use pdf_writer::{Chunk, Content, Name, Ref, Str};

use super::font::{FontUse, BOLD, REGULAR};
use super::revision::{Parsed, RevisionWriter};
use super::PdfError;
use crate::domain::CertificationKind;

/// Block size and margins, in points.
const BLOCK_WIDTH_POINTS: f32 = 320.0;
const BLOCK_HEIGHT_POINTS: f32 = 132.0;
const BLOCK_MARGIN_POINTS: f32 = 24.0;
const BLOCK_PADDING_POINTS: f32 = 9.0;
/// Height an image page leaves free at its bottom for the block.
pub(crate) const BLOCK_RESERVED_HEIGHT_POINTS: f32 = BLOCK_HEIGHT_POINTS + 2.0 * BLOCK_MARGIN_POINTS;
const HEADING_SIZE_POINTS: f32 = 9.5;
const TEXT_SIZE_POINTS: f32 = 8.0;
const TEXT_SIZE_POINTS_MIN: f32 = 4.0;
const LINE_HEIGHT_POINTS: f32 = 12.0;
/// A4 in points.
pub(crate) const A4_WIDTH_POINTS: f32 = 595.28;
pub(crate) const A4_HEIGHT_POINTS: f32 = 841.89;
/// Seconds Vietnam time (UTC+7, no daylight saving) is ahead of UTC.
const VIETNAM_OFFSET_SECONDS: i64 = 7 * 3600;
/// Resource names of the block's fonts on a page; unusual enough not to collide.
const FONT_REGULAR: &[u8] = b"KysoNotoSans";
const FONT_BOLD: &[u8] = b"KysoNotoSansBold";
const DARK_RED: (f32, f32, f32) = (0.545, 0.102, 0.102);

/// Where the block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockPlacement {
    /// The bottom-right corner of the last page (Decree 23/2015: the statement goes on the
    /// last page of a multi-page copy).
    #[default]
    LastPage,
    /// A new A4 page after the last one.
    AppendedPage,
}

/// The facts the block states. Everything here is printed; nothing private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockText {
    pub kind: CertificationKind,
    /// The number in the agency's register, e.g. "12".
    pub register_number: String,
    /// The register (quyển số), e.g. "01/2026-SCTĐT/BS".
    pub register_book: String,
    /// When the certification was signed, unix seconds (printed as the date in Vietnam).
    pub signed_at_unix: i64,
    pub performer_name: String,
    pub performer_title: String,
    pub agency_name: String,
    /// The lookup code as printed, e.g. "K7QM-3XPA-9TRC".
    pub lookup_code: String,
    /// The public page, e.g. "https://tra-cuu.example.vn/v/K7QM-3XPA-9TRC".
    pub public_url: String,
}

/// The block and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub text: BlockText,
    pub placement: BlockPlacement,
}

/// One line of the block: bold or not, and its text.
type Line = (bool, String);

impl BlockText {
    /// The lines as the form writes them: for a copy, the statement of Decree 23/2015
    /// with number, register and date; for a result, its own heading.
    pub fn lines(&self) -> Vec<Line> {
        let (day, month, year) = vietnam_date(self.signed_at_unix);
        let date = format!("Ngày {day:02} tháng {month:02} năm {year}");
        let mut lines = match self.kind {
            CertificationKind::CertifiedCopy => vec![
                (true, "Chứng thực bản sao đúng với bản chính".to_string()),
                (false, format!("Số chứng thực: {}", self.register_number)),
                (false, format!("Quyển số: {}", self.register_book)),
                (false, date),
                (false, format!("Người thực hiện chứng thực: {}", self.performer_name)),
            ],
            CertificationKind::Result => vec![
                (true, "Kết quả giải quyết thủ tục hành chính".to_string()),
                (false, format!("Số vào sổ: {}", self.register_number)),
                (false, format!("Sổ: {}", self.register_book)),
                (false, date),
                (false, format!("Người ký: {}", self.performer_name)),
            ],
        };
        lines.push((false, self.performer_title.clone()));
        lines.push((true, self.agency_name.clone()));
        lines.push((false, format!("Mã tra cứu: {}", self.lookup_code)));
        lines.push((false, "Quét mã QR để kiểm tra bản điện tử".to_string()));
        lines
    }
}

/// (day, month, year) in Vietnam at `unix`.
pub(crate) fn vietnam_date(unix: i64) -> (u32, u32, i64) {
    let (year, month, day) = crate::domain::civil_from_days((unix + VIETNAM_OFFSET_SECONDS).div_euclid(86_400));
    (day, month, year)
}

/// Adds the block to `base` as one incremental update.
pub(crate) fn stamp(base: Vec<u8>, block: &Block) -> Result<Vec<u8>, PdfError> {
    let parsed = Parsed::parse(&base)?;
    let pages = parsed.pages()?;
    // `pages` is never empty (Parsed::pages refuses that).
    let last_page = *pages.last().expect("at least one page");
    let mut writer = RevisionWriter::new(&parsed, base);
    let mut regular = FontUse::new(REGULAR, "NotoSans-Regular")?;
    let mut bold = FontUse::new(BOLD, "NotoSans-Bold")?;
    match block.placement {
        BlockPlacement::LastPage => {
            let page = parsed.dictionary(last_page)?;
            let media_box = media_box(&parsed, &page)?;
            let origin = (media_box[2] - BLOCK_MARGIN_POINTS - BLOCK_WIDTH_POINTS, media_box[1] + BLOCK_MARGIN_POINTS);
            let content = block_content(&block.text, origin, &mut regular, &mut bold)?;
            let fonts = write_fonts(&mut writer, &regular, &bold)?;
            let opening = write_stream(&mut writer, b"q\n");
            let mut closing = b"Q\n".to_vec();
            closing.extend_from_slice(&content);
            let closing = write_stream(&mut writer, &closing);
            let mut contents = vec![Object::Reference(opening)];
            contents.extend(page_contents(&parsed, &page)?);
            contents.push(Object::Reference(closing));
            let mut new_page = page.clone();
            new_page.set("Contents", Object::Array(contents));
            new_page.set("Resources", Object::Dictionary(resources_with_fonts(&parsed, &page, fonts)?));
            writer.write_dictionary(last_page, &new_page);
        }
        BlockPlacement::AppendedPage => {
            let origin = (BLOCK_MARGIN_POINTS * 2.0, A4_HEIGHT_POINTS - BLOCK_MARGIN_POINTS * 2.0 - BLOCK_HEIGHT_POINTS);
            let content = block_content(&block.text, origin, &mut regular, &mut bold)?;
            let fonts = write_fonts(&mut writer, &regular, &bold)?;
            let content = write_stream(&mut writer, &content);
            append_page(&parsed, &mut writer, last_page, content, fonts)?;
        }
    }
    Ok(writer.finish())
}

/// The page's MediaBox as [x0, y0, x1, y1] (normalised), A4 when absent.
fn media_box(parsed: &Parsed, page: &Dictionary) -> Result<[f32; 4], PdfError> {
    let Some(Object::Array(values)) = parsed.inherited(page, b"MediaBox")? else {
        return Ok([0.0, 0.0, A4_WIDTH_POINTS, A4_HEIGHT_POINTS]);
    };
    let numbers: Vec<f32> = values
        .iter()
        .map(|value| parsed.resolve(value).and_then(|value| value.as_float().map_err(|error| PdfError::Unparseable(format!("mediabox: {error}")))))
        .collect::<Result<_, _>>()?;
    let [a, b, c, d] = numbers[..] else {
        return Err(PdfError::Unparseable("a page's mediabox does not have four numbers".into()));
    };
    Ok([a.min(c), b.min(d), a.max(c), b.max(d)])
}

/// The page's content streams as references, in order.
fn page_contents(parsed: &Parsed, page: &Dictionary) -> Result<Vec<Object>, PdfError> {
    let Ok(contents) = page.get(b"Contents") else {
        return Ok(Vec::new());
    };
    match contents {
        Object::Reference(_) => match parsed.resolve(contents)? {
            Object::Array(items) => Ok(items.clone()),
            _ => Ok(vec![contents.clone()]),
        },
        Object::Array(items) => Ok(items.clone()),
        _ => Err(PdfError::Unparseable("a page's /Contents is neither a stream nor an array".into())),
    }
}

/// The page's effective resources (inherited ones included), written inline, with the
/// block's two fonts added to /Font.
fn resources_with_fonts(parsed: &Parsed, page: &Dictionary, fonts: (Ref, Ref)) -> Result<Dictionary, PdfError> {
    let mut resources = match parsed.inherited(page, b"Resources")? {
        Some(Object::Dictionary(dictionary)) => dictionary,
        _ => Dictionary::new(),
    };
    let mut font_dictionary = match resources.get(b"Font") {
        Ok(font) => match parsed.resolve(font)? {
            Object::Dictionary(dictionary) => dictionary.clone(),
            _ => Dictionary::new(),
        },
        Err(_) => Dictionary::new(),
    };
    font_dictionary.set(FONT_REGULAR, Object::Reference(object_id(fonts.0)));
    font_dictionary.set(FONT_BOLD, Object::Reference(object_id(fonts.1)));
    resources.set("Font", Object::Dictionary(font_dictionary));
    Ok(resources)
}

/// A new A4 page after `last_page`, in the same /Kids array; every ancestor's /Count
/// grows by one.
fn append_page(parsed: &Parsed, writer: &mut RevisionWriter<'_>, last_page: ObjectId, content: ObjectId, fonts: (Ref, Ref)) -> Result<(), PdfError> {
    let page = parsed.dictionary(last_page)?;
    let parent_id = page
        .get(b"Parent")
        .and_then(Object::as_reference)
        .map_err(|_| PdfError::Unparseable("the last page has no parent in the page tree".into()))?;
    let new_page_id = writer.allocate();
    let mut fonts_dictionary = Dictionary::new();
    fonts_dictionary.set(FONT_REGULAR, Object::Reference(object_id(fonts.0)));
    fonts_dictionary.set(FONT_BOLD, Object::Reference(object_id(fonts.1)));
    let mut resources = Dictionary::new();
    resources.set("Font", Object::Dictionary(fonts_dictionary));
    let mut new_page = Dictionary::new();
    new_page.set("Type", Object::Name(b"Page".to_vec()));
    new_page.set("Parent", Object::Reference(parent_id));
    new_page.set(
        "MediaBox",
        Object::Array(vec![Object::Integer(0), Object::Integer(0), Object::Real(A4_WIDTH_POINTS), Object::Real(A4_HEIGHT_POINTS)]),
    );
    new_page.set("Resources", Object::Dictionary(resources));
    new_page.set("Contents", Object::Reference(content));
    writer.write_dictionary(new_page_id, &new_page);

    let mut parent = parsed.dictionary(parent_id)?;
    let mut kids = match parent.get(b"Kids") {
        Ok(kids) => parsed.resolve(kids)?.as_array().map_err(|error| PdfError::Unparseable(format!("/Kids: {error}")))?.clone(),
        Err(_) => Vec::new(),
    };
    let position = kids.iter().position(|kid| kid.as_reference().ok() == Some(last_page)).map_or(kids.len(), |index| index + 1);
    kids.insert(position, Object::Reference(new_page_id));
    parent.set("Kids", Object::Array(kids));
    let mut ancestor = Some((parent_id, parent));
    for _ in 0..64 {
        let Some((id, mut dictionary)) = ancestor.take() else { break };
        let count = dictionary.get(b"Count").and_then(Object::as_i64).unwrap_or(0);
        dictionary.set("Count", Object::Integer(count + 1));
        let next = dictionary.get(b"Parent").and_then(Object::as_reference).ok();
        writer.write_dictionary(id, &dictionary);
        if let Some(next) = next {
            ancestor = Some((next, parsed.dictionary(next)?));
        }
    }
    Ok(())
}

fn object_id(reference: Ref) -> ObjectId {
    // Refs come from RevisionWriter::allocate, whose numbers are positive u32 values.
    (reference.get() as u32, 0)
}

fn write_stream(writer: &mut RevisionWriter<'_>, data: &[u8]) -> ObjectId {
    let id = writer.allocate();
    let mut chunk = Chunk::new();
    chunk.stream(Ref::new(id.0 as i32), data);
    writer.write_chunk(&chunk);
    id
}

/// Writes both fonts; returns their Type0 references (regular, bold).
fn write_fonts(writer: &mut RevisionWriter<'_>, regular: &FontUse, bold: &FontUse) -> Result<(Ref, Ref), PdfError> {
    let mut references = Vec::new();
    for font in [regular, bold] {
        let type0 = Ref::new(writer.allocate().0 as i32);
        let mut allocate = || Ref::new(writer.allocate().0 as i32);
        let chunks = font.write(&mut allocate, type0)?;
        for chunk in &chunks {
            writer.write_chunk(chunk);
        }
        references.push(type0);
    }
    Ok((references[0], references[1]))
}

/// The drawing operators of the block with its lower-left corner at `origin`.
fn block_content(text: &BlockText, origin: (f32, f32), regular: &mut FontUse, bold: &mut FontUse) -> Result<Vec<u8>, PdfError> {
    let (x, y) = origin;
    let mut content = Content::new();
    content.save_state();
    content.set_fill_rgb(1.0, 1.0, 1.0);
    content.set_stroke_rgb(DARK_RED.0, DARK_RED.1, DARK_RED.2);
    content.set_line_width(1.0);
    content.rect(x, y, BLOCK_WIDTH_POINTS, BLOCK_HEIGHT_POINTS);
    content.fill_nonzero_and_stroke();

    let qr_side = BLOCK_HEIGHT_POINTS - 2.0 * BLOCK_PADDING_POINTS;
    draw_qr(&mut content, &text.public_url, (x + BLOCK_PADDING_POINTS, y + BLOCK_PADDING_POINTS), qr_side)?;

    let text_x = x + 2.0 * BLOCK_PADDING_POINTS + qr_side;
    let column = x + BLOCK_WIDTH_POINTS - BLOCK_PADDING_POINTS - text_x;
    let mut baseline = y + BLOCK_HEIGHT_POINTS - BLOCK_PADDING_POINTS - HEADING_SIZE_POINTS;
    for (is_bold, line) in text.lines() {
        let (font, name, size) = if is_bold { (&mut *bold, FONT_BOLD, HEADING_SIZE_POINTS) } else { (&mut *regular, FONT_REGULAR, TEXT_SIZE_POINTS) };
        let width = font.width(&line, size);
        let size = if width > column { (size * column / width).max(TEXT_SIZE_POINTS_MIN) } else { size };
        let color = if is_bold { DARK_RED } else { (0.0, 0.0, 0.0) };
        content.set_fill_rgb(color.0, color.1, color.2);
        content.begin_text();
        content.set_font(Name(name), size);
        content.set_text_matrix([1.0, 0.0, 0.0, 1.0, text_x, baseline]);
        content.show(Str(&font.encode(&line)));
        content.end_text();
        baseline -= LINE_HEIGHT_POINTS;
    }
    content.restore_state();
    Ok(content.finish().into_vec())
}

/// The QR code of `url` as filled squares, quiet zone included in `side`.
fn draw_qr(content: &mut Content, url: &str, origin: (f32, f32), side: f32) -> Result<(), PdfError> {
    const QUIET_ZONE_MODULES: usize = 2;
    let code = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|error| PdfError::Font(format!("the public page address cannot be put in a qr code: {error}")))?;
    let width = code.width();
    let module = side / (width + 2 * QUIET_ZONE_MODULES) as f32;
    content.set_fill_rgb(0.0, 0.0, 0.0);
    let colors = code.to_colors();
    for (index, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (column, row) = (index % width, index / width);
            let left = origin.0 + (column + QUIET_ZONE_MODULES) as f32 * module;
            let top = origin.1 + side - (row + QUIET_ZONE_MODULES) as f32 * module;
            content.rect(left, top - module, module, module);
        }
    }
    content.fill_nonzero();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_in_vietnam_time() {
        // 2026-12-05 17:30 UTC is 2026-12-06 00:30 in Hanoi.
        assert_eq!(vietnam_date(1_796_491_800), (6, 12, 2026));
        assert_eq!(vietnam_date(0), (1, 1, 1970));
        // 2024-02-29 12:00 UTC.
        assert_eq!(vietnam_date(1_709_208_000), (29, 2, 2024));
    }
}

//! An image scan as a one-page A4 PDF: a JPEG embedded as it is (DCTDecode, never
//! re-encoded), a PNG's compressed image data embedded as it is (FlateDecode with the PNG
//! predictor), scaled to fit above the space the certification block needs.

use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref};

use super::block::{A4_HEIGHT_POINTS, A4_WIDTH_POINTS};
use super::{PdfError, ScanFormat, IMAGE_PIXELS_MAX};

const PAGE_MARGIN_POINTS: f32 = 28.0;
/// PNG chunks read before giving up: a PNG of many tiny IDAT chunks is still bounded.
const PNG_CHUNKS_MAX: usize = 1_000_000;

/// What the PDF image dictionary needs.
struct ImageInfo {
    width: u32,
    height: u32,
    /// 1 gray, 3 RGB, 4 CMYK; for an indexed PNG, the palette.
    color: ColorModel,
    bits_per_component: u8,
    /// The bytes of the stream (the whole JPEG, or a PNG's concatenated IDAT data).
    data: Vec<u8>,
    filter: Filter,
    png_colors: Option<i32>,
}

enum ColorModel {
    Gray,
    Rgb,
    Cmyk,
    Indexed(Vec<u8>),
}

pub(crate) fn image_page_pdf(bytes: &[u8], format: ScanFormat, reserved_bottom_points: f32) -> Result<Vec<u8>, PdfError> {
    let info = match format {
        ScanFormat::Jpeg => jpeg_info(bytes)?,
        ScanFormat::Png => png_info(bytes)?,
        ScanFormat::Pdf => unreachable!("a pdf scan is not an image"),
    };
    let pixels = u64::from(info.width) * u64::from(info.height);
    if info.width == 0 || info.height == 0 || pixels > IMAGE_PIXELS_MAX {
        return Err(PdfError::TooLarge { what: "image in pixels", size: pixels, limit: IMAGE_PIXELS_MAX });
    }
    let (catalog, pages, page, image, content) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    {
        let mut page_writer = pdf.page(page);
        page_writer.parent(pages).media_box(Rect::new(0.0, 0.0, A4_WIDTH_POINTS, A4_HEIGHT_POINTS)).contents(content);
        page_writer.resources().x_objects().pair(Name(b"Scan"), image);
        page_writer.finish();
    }
    {
        let mut image_writer = pdf.image_xobject(image, &info.data);
        image_writer.filter(info.filter);
        if let Some(colors) = info.png_colors {
            image_writer
                .decode_parms()
                .predictor(pdf_writer::types::Predictor::PngOptimum)
                .colors(colors)
                .bits_per_component(i32::from(info.bits_per_component))
                .columns(info.width as i32);
        }
        image_writer.width(info.width as i32).height(info.height as i32).bits_per_component(i32::from(info.bits_per_component));
        match &info.color {
            ColorModel::Gray => image_writer.color_space().device_gray(),
            ColorModel::Rgb => image_writer.color_space().device_rgb(),
            ColorModel::Cmyk => image_writer.color_space().device_cmyk(),
            ColorModel::Indexed(palette) => {
                image_writer.color_space().indexed(Name(b"DeviceRGB"), (palette.len() / 3) as i32 - 1, palette)
            }
        }
    }
    let available_width = A4_WIDTH_POINTS - 2.0 * PAGE_MARGIN_POINTS;
    let available_height = A4_HEIGHT_POINTS - PAGE_MARGIN_POINTS - reserved_bottom_points;
    let scale = (available_width / info.width as f32).min(available_height / info.height as f32);
    let (width, height) = (info.width as f32 * scale, info.height as f32 * scale);
    let x = (A4_WIDTH_POINTS - width) / 2.0;
    let y = A4_HEIGHT_POINTS - PAGE_MARGIN_POINTS - height;
    let mut drawing = Content::new();
    drawing.save_state();
    drawing.transform([width, 0.0, 0.0, height, x, y]);
    drawing.x_object(Name(b"Scan"));
    drawing.restore_state();
    pdf.stream(content, &drawing.finish());
    Ok(pdf.finish())
}

/// Reads a JPEG's frame header (SOF0-SOF15 except DHT/JPG/DAC) for size and components.
fn jpeg_info(bytes: &[u8]) -> Result<ImageInfo, PdfError> {
    let mut position = 2;
    while position + 4 <= bytes.len() {
        if bytes[position] != 0xFF {
            return Err(PdfError::Image("the jpeg's markers are damaged".into()));
        }
        let marker = bytes[position + 1];
        if marker == 0xFF {
            position += 1;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[position + 2], bytes[position + 3]]));
        let is_frame = (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker);
        if is_frame {
            let segment = bytes.get(position + 4..position + 2 + length).ok_or_else(|| PdfError::Image("the jpeg is truncated".into()))?;
            if segment.len() < 6 {
                return Err(PdfError::Image("the jpeg's frame header is truncated".into()));
            }
            let height = u32::from(u16::from_be_bytes([segment[1], segment[2]]));
            let width = u32::from(u16::from_be_bytes([segment[3], segment[4]]));
            let color = match segment[5] {
                1 => ColorModel::Gray,
                3 => ColorModel::Rgb,
                4 => ColorModel::Cmyk,
                other => return Err(PdfError::Image(format!("a jpeg with {other} colour components"))),
            };
            return Ok(ImageInfo { width, height, color, bits_per_component: 8, data: bytes.to_vec(), filter: Filter::DctDecode, png_colors: None });
        }
        position += 2 + length;
    }
    Err(PdfError::Image("the jpeg has no frame header".into()))
}

/// Reads a PNG's header, palette and image data. Supported: non-interlaced gray, RGB and
/// palette images of 8 bits or fewer per component, without alpha (the PDF predictor
/// decodes exactly PNG's filtering for those).
fn png_info(bytes: &[u8]) -> Result<ImageInfo, PdfError> {
    let mut position = 8;
    let mut header = None;
    let mut palette = None;
    let mut data = Vec::new();
    for _ in 0..PNG_CHUNKS_MAX {
        let length_bytes = bytes.get(position..position + 4).ok_or_else(|| PdfError::Image("the png is truncated".into()))?;
        let length = u32::from_be_bytes([length_bytes[0], length_bytes[1], length_bytes[2], length_bytes[3]]) as usize;
        let kind = bytes.get(position + 4..position + 8).ok_or_else(|| PdfError::Image("the png is truncated".into()))?;
        let body = bytes.get(position + 8..position + 8 + length).ok_or_else(|| PdfError::Image("the png is truncated".into()))?;
        match kind {
            b"IHDR" if body.len() == 13 => header = Some(body.to_vec()),
            b"PLTE" => palette = Some(body.to_vec()),
            b"IDAT" => data.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        position += 12 + length;
    }
    let header = header.ok_or_else(|| PdfError::Image("the png has no header".into()))?;
    let width = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let height = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let (bits, color_type, interlace) = (header[8], header[9], header[12]);
    if interlace != 0 {
        return Err(PdfError::Image("an interlaced png".into()));
    }
    if bits > 8 {
        return Err(PdfError::Image(format!("a png of {bits} bits per component")));
    }
    let (color, colors) = match color_type {
        0 => (ColorModel::Gray, 1),
        2 => (ColorModel::Rgb, 3),
        3 => (ColorModel::Indexed(palette.ok_or_else(|| PdfError::Image("a palette png without its palette".into()))?), 1),
        _ => return Err(PdfError::Image("a png with an alpha channel; save it without transparency".into())),
    };
    if data.is_empty() {
        return Err(PdfError::Image("the png has no image data".into()));
    }
    Ok(ImageInfo { width, height, color, bits_per_component: bits, data, filter: Filter::FlateDecode, png_colors: Some(colors) })
}

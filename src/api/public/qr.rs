//! QR codes for the public page's URL, and the printable stamp an office places on a
//! certified copy: the QR code, the lookup code and a short Vietnamese text. Both are SVG
//! built from the QR module matrix, sized in millimetres so a stamp prints at its real
//! size. Everything drawn comes from public facts only (kind, agency name, code, URL).

use maud::{html, Markup};
use qrcode::{Color, EcLevel, QrCode};

use super::i18n::Lang;
use crate::domain::CertificationKind;
use crate::lookup::LookupCode;

/// Light modules around the code, as the QR specification requires.
const QUIET_ZONE_MODULES: usize = 4;
/// Size of the stamp, in millimetres.
const STAMP_WIDTH_MM: f64 = 86.0;
const STAMP_HEIGHT_MM: f64 = 34.0;
/// Side of the QR code on the stamp, in millimetres (quiet zone included).
const STAMP_QR_SIDE_MM: f64 = 30.0;
/// Where the text column of the stamp starts and how wide it may be, in millimetres.
const STAMP_TEXT_X_MM: f64 = 33.0;
const STAMP_TEXT_WIDTH_MM: f64 = 50.0;
const DARK_RED: &str = "#8b1a1a";

#[derive(Debug, thiserror::Error)]
#[error("cannot encode a QR code: {0}")]
pub struct QrError(String);

/// The public page of a certification: `{base}/v/{code}` with the code in groups.
pub fn page_url(base_url: &str, code: &LookupCode) -> String {
    format!("{}/v/{code}", base_url.trim_end_matches('/'))
}

/// The base URL as people type it: without the scheme and the trailing slash.
pub fn display_base(base_url: &str) -> &str {
    let without_scheme = base_url.strip_prefix("https://").or_else(|| base_url.strip_prefix("http://")).unwrap_or(base_url);
    without_scheme.trim_end_matches('/')
}

/// The square matrix of a QR code, quiet zone excluded.
struct Matrix {
    width: usize,
    dark: Vec<bool>,
}

impl Matrix {
    fn encode(text: &str) -> Result<Matrix, QrError> {
        // Level M recovers from 15 % damage: enough for a stamp that gets folded or smudged.
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|error| QrError(error.to_string()))?;
        let dark = code.to_colors().into_iter().map(|color| color == Color::Dark).collect();
        Ok(Matrix { width: code.width(), dark })
    }

    fn side_with_quiet_zone(&self) -> usize {
        self.width + 2 * QUIET_ZONE_MODULES
    }

    /// One SVG path drawing every dark module, row by row, each run as one rectangle.
    fn path_data(&self) -> String {
        let mut data = String::new();
        for row in 0..self.width {
            let mut column = 0;
            while column < self.width {
                if !self.dark[row * self.width + column] {
                    column += 1;
                    continue;
                }
                let start = column;
                while column < self.width && self.dark[row * self.width + column] {
                    column += 1;
                }
                let run = column - start;
                data.push_str(&format!(
                    "M{} {}h{run}v1h-{run}z",
                    start + QUIET_ZONE_MODULES,
                    row + QUIET_ZONE_MODULES
                ));
            }
        }
        data
    }

    /// The code as an `<svg>` element placed at (x, y) with the given side, in the
    /// parent's units.
    fn svg_element(&self, x: f64, y: f64, side: f64) -> Markup {
        let modules = self.side_with_quiet_zone();
        html! {
            svg x=(x) y=(y) width=(side) height=(side) viewBox=(format!("0 0 {modules} {modules}")) shape-rendering="crispEdges" {
                rect width=(modules) height=(modules) fill="#ffffff" {}
                path d=(self.path_data()) fill="#000000" {}
            }
        }
    }
}

fn svg_document(body: Markup) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}", body.into_string())
}

/// A QR code of `url` as a standalone SVG document, 8 px per module by default.
pub fn qr_svg(url: &str) -> Result<String, QrError> {
    let matrix = Matrix::encode(url)?;
    let side = matrix.side_with_quiet_zone();
    let inner = matrix.svg_element(0.0, 0.0, side as f64);
    Ok(svg_document(html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(side * 8) height=(side * 8) viewBox=(format!("0 0 {side} {side}")) {
            title { (url) }
            (inner)
        }
    }))
}

/// Text of a stamp line, squeezed to `width_mm` when it would not fit.
fn stamp_text(y_mm: f64, size_mm: f64, weight: &str, fill: &str, family: &str, text: &str) -> Markup {
    // A rough width of a sans-serif glyph; only decides whether to squeeze.
    let estimated_width_mm = text.chars().count() as f64 * size_mm * 0.6;
    let squeeze = estimated_width_mm > STAMP_TEXT_WIDTH_MM;
    html! {
        text x=(STAMP_TEXT_X_MM) y=(y_mm) font-size=(size_mm) font-weight=(weight) fill=(fill) font-family=(family)
            textLength=[squeeze.then_some(STAMP_TEXT_WIDTH_MM)] lengthAdjust=[squeeze.then_some("spacingAndGlyphs")] {
            (text)
        }
    }
}

/// The printable stamp for one certification: QR code, kind, agency, lookup code and
/// where to check it. Always in Vietnamese: it is printed on Vietnamese documents.
pub fn stamp_svg(kind: CertificationKind, agency_name: &str, code: &LookupCode, base_url: &str) -> Result<String, QrError> {
    let texts = Lang::Vi.texts();
    let matrix = Matrix::encode(&page_url(base_url, code))?;
    let sans = "Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif";
    let mono = "'DejaVu Sans Mono', 'Liberation Mono', 'Courier New', monospace";
    let kind_title = match kind {
        CertificationKind::Result => texts.stamp_kind_result,
        CertificationKind::CertifiedCopy => texts.stamp_kind_certified_copy,
    };
    let code_text = code.to_string();
    let qr = matrix.svg_element(2.0, 2.0, STAMP_QR_SIDE_MM);
    Ok(svg_document(html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(format!("{STAMP_WIDTH_MM}mm")) height=(format!("{STAMP_HEIGHT_MM}mm"))
            viewBox=(format!("0 0 {STAMP_WIDTH_MM} {STAMP_HEIGHT_MM}")) {
            title { (kind_title) " — " (texts.lookup_code) " " (code_text) }
            rect x="0.4" y="0.4" width=(STAMP_WIDTH_MM - 0.8) height=(STAMP_HEIGHT_MM - 0.8) rx="1.5" fill="#ffffff" stroke=(DARK_RED) stroke-width="0.6" {}
            (qr)
            (stamp_text(7.0, 3.1, "bold", DARK_RED, sans, kind_title))
            (stamp_text(11.6, 2.6, "normal", "#111111", sans, agency_name))
            (stamp_text(17.0, 2.3, "normal", "#333333", sans, &format!("{}:", texts.lookup_code)))
            (stamp_text(21.6, 3.6, "bold", "#000000", mono, &code_text))
            (stamp_text(27.0, 2.3, "normal", "#333333", sans, &format!("{} {}", texts.stamp_scan, texts.stamp_or_visit)))
            (stamp_text(31.0, 2.7, "bold", "#111111", sans, display_base(base_url)))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a matrix with an independent QR decoder (rqrr), 4 pixels per module.
    fn decode(matrix: &Matrix) -> String {
        const SCALE: usize = 4;
        let side = matrix.side_with_quiet_zone() * SCALE;
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            let (column, row) = (x / SCALE, y / SCALE);
            let inside = |value: usize| (QUIET_ZONE_MODULES..QUIET_ZONE_MODULES + matrix.width).contains(&value);
            if inside(column) && inside(row) && matrix.dark[(row - QUIET_ZONE_MODULES) * matrix.width + column - QUIET_ZONE_MODULES] {
                0
            } else {
                255
            }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_qr_code_carries_the_page_url() {
        let code = LookupCode::parse("7K3M-Q9TX-2HRN-B4WD").unwrap();
        let url = page_url("https://tracuu.example.gov.vn/", &code);
        assert_eq!(url, "https://tracuu.example.gov.vn/v/7K3M-Q9TX-2HRN-B4WD");
        assert_eq!(decode(&Matrix::encode(&url).unwrap()), url);
    }

    #[test]
    fn the_svg_path_draws_exactly_the_dark_modules() {
        let matrix = Matrix::encode("https://tracuu.example.gov.vn/v/7K3M-Q9TX-2HRN-B4WD").unwrap();
        let mut drawn = vec![false; matrix.width * matrix.width];
        for rectangle in matrix.path_data().split('M').filter(|part| !part.is_empty()) {
            let (position, rest) = rectangle.split_once('h').unwrap();
            let (x, y) = position.split_once(' ').unwrap();
            let run: usize = rest.split_once('v').unwrap().0.parse().unwrap();
            let (x, y) = (x.parse::<usize>().unwrap() - QUIET_ZONE_MODULES, y.parse::<usize>().unwrap() - QUIET_ZONE_MODULES);
            for column in x..x + run {
                assert!(!drawn[y * matrix.width + column], "module drawn twice");
                drawn[y * matrix.width + column] = true;
            }
        }
        assert_eq!(drawn, matrix.dark);
    }

    #[test]
    fn the_stamp_escapes_the_agency_name_and_shows_code_and_site() {
        let code = LookupCode::parse("7K3M-Q9TX-2HRN-B4WD").unwrap();
        let svg = stamp_svg(CertificationKind::CertifiedCopy, "UBND xã <Demo> & \"Thử\"", &code, "https://tracuu.example.gov.vn").unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        assert!(svg.contains("UBND xã &lt;Demo&gt; &amp; &quot;Thử&quot;"), "{svg}");
        assert!(svg.contains("7K3M-Q9TX-2HRN-B4WD"));
        assert!(svg.contains("tracuu.example.gov.vn"));
        assert!(svg.contains("BẢN SAO CHỨNG THỰC ĐIỆN TỬ"));
        assert!(svg.contains("width=\"86mm\""));
    }
}

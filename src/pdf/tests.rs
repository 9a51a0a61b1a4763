//! End-to-end checks of the certified PDF against independent tools: qpdf (structure),
//! poppler's pdfsig and pyHanko (both signatures valid and trusted, broken by a changed
//! byte), pdftoppm (the block is drawn). A missing tool fails the test, never skips it:
//! scripts/test.sh installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::crypto::devpki::{self, CertSpec, IssuedCert};
use crate::crypto::{self, KeyAlgorithm};
use crate::domain::CertificationKind;

/// 2020-01-01 .. 2045-01-01: holds the real clock, which the tools check validity against.
const NOT_BEFORE_UNIX: i64 = 1_577_836_800;
const NOT_AFTER_UNIX: i64 = 2_366_841_600;
/// 2026-12-05T10:00:00Z.
const SIGNED_AT_UNIX: i64 = 1_796_464_800;
/// Reserved for the signature-time-stamp token in every signature.
const TIMESTAMP_ROOM_BYTES: usize = 8 * 1024;

struct Pki {
    ca: IssuedCert,
    performer: IssuedCert,
    agency: IssuedCert,
    /// Stamps every signature (PAdES B-T), as the service's own TSA does.
    tsa: std::sync::Arc<crypto::tsa::TimeStampAuthority>,
}

fn pki() -> Pki {
    let ca = devpki::self_signed_ca(&CertSpec::certificate_authority("Kyso Dev CA", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX)).expect("ca");
    let performer = devpki::issue(&CertSpec::signer("Nguyễn Văn An", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX), &ca).expect("performer");
    let agency = devpki::issue(
        &CertSpec { organization: Some("UBND xã Demo".into()), ..CertSpec::signer("UBND xã Demo", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX) },
        &ca,
    )
    .expect("agency");
    let tsa = devpki::issue_tsa("Kyso Dev TSA", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX, &ca).expect("tsa");
    let tsa = crypto::tsa::TimeStampAuthority::new(vec![tsa.cert_der.clone(), ca.cert_der.clone()], tsa.signing_key().expect("tsa key"), crypto::tsa::DEFAULT_POLICY_OID, 1, 1)
        .expect("tsa");
    Pki { ca, performer, agency, tsa: std::sync::Arc::new(tsa) }
}

fn block(kind: CertificationKind, placement: BlockPlacement) -> Block {
    Block {
        text: BlockText {
            kind,
            register_number: "12".into(),
            register_book: "01/2026-SCTĐT/BS".into(),
            signed_at_unix: SIGNED_AT_UNIX,
            performer_name: "Nguyễn Văn An".into(),
            performer_title: "Công chức Tư pháp - Hộ tịch".into(),
            agency_name: "Ủy ban nhân dân xã Đông Hưng".into(),
            lookup_code: "K7QM-3XPA-9TRC".into(),
            public_url: "https://tra-cuu.example.vn/v/K7QM-3XPA-9TRC".into(),
        },
        placement,
    }
}

/// Signs `pdf` once, the way the service does: prepare, CMS over the two ranges, complete.
fn sign(pdf: Vec<u8>, signer: &IssuedCert, pki: &Pki, field_name: &str, reason: &str) -> Vec<u8> {
    let chain = vec![signer.cert_der.clone(), pki.ca.cert_der.clone()];
    let capacity = chain.iter().map(Vec::len).sum::<usize>() + TIMESTAMP_ROOM_BYTES + 2048;
    let fields = SignatureFields {
        field_name: field_name.into(),
        signer_name: "Nguyễn Văn An".into(),
        reason: reason.into(),
        signed_at_unix: SIGNED_AT_UNIX,
        contents_capacity_bytes: capacity,
    };
    let prepared = prepare_signature(pdf, &fields).expect("prepare");
    let key = signer.signing_key().expect("key");
    let cms = crypto::sign_detached_parts(&prepared.signed_parts(), SIGNED_AT_UNIX, &chain, &key, crypto::RsaPadding::Pss).expect("cms");
    let issue = crypto::tsa::Issue { gen_time_unix: SIGNED_AT_UNIX + 1, serial_random: u64::from(field_name.len() as u32) };
    let token = pki.tsa.stamp_signature(&crypto::signature_value(&cms).expect("signature value"), issue).expect("token");
    let cms = crypto::add_signature_timestamp(&cms, &token).expect("stamped");
    let verified = crypto::verify_detached_parts(&cms, &prepared.signed_parts()).expect("fresh cms verifies");
    assert_eq!(verified.timestamp_unix, Some(SIGNED_AT_UNIX + 1));
    prepared.complete(&cms).expect("complete")
}

fn certify(scan: &[u8], block: &Block, pki: &Pki) -> Vec<u8> {
    let unsigned = build_unsigned(scan, block).expect("build");
    let once = sign(unsigned, &pki.performer, pki, "kyso-performer", "Người thực hiện chứng thực");
    sign(once, &pki.agency, pki, "kyso-agency", "Cơ quan chứng thực")
}

fn artefacts() -> PathBuf {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts/pdf");
    std::fs::create_dir_all(&directory).expect("artefact directory");
    directory
}

fn tool(program: &str, args: &[&str]) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(error) => panic!("this test needs {program}: {error}; scripts/test.sh installs it (poppler-utils, qpdf, libnss3-tools, pip pyhanko pyhanko-cli)"),
    }
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn qpdf_check(path: &Path) {
    let output = tool("qpdf", &["--check", path.to_str().expect("utf-8 path")]);
    let report = text(&output);
    assert!(output.status.success() && report.contains("No syntax or stream encoding errors"), "qpdf --check {}:\n{report}", path.display());
    assert!(!report.to_lowercase().contains("warning"), "qpdf warns on {}:\n{report}", path.display());
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = artefacts().join(name);
    std::fs::write(&path, bytes).expect("write artefact");
    path
}

/// pdfsig with an NSS database trusting only the dev CA.
fn pdfsig(path: &Path, ca: &IssuedCert) -> String {
    let directory = tempfile::tempdir().expect("nss dir");
    let database = format!("sql:{}", directory.path().display());
    let ca_path = directory.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).expect("ca");
    assert!(tool("certutil", &["-N", "-d", &database, "--empty-password"]).status.success());
    assert!(tool("certutil", &["-A", "-d", &database, "-n", "kyso-dev-ca", "-t", "CT,C,C", "-i", ca_path.to_str().expect("path")]).status.success());
    // Without -no-ocsp: poppler 22.12 answers "Unknown issue with Certificate" for every
    // certificate with it; the dev certificates name no OCSP responder, so none is asked.
    text(&tool("pdfsig", &["-nssdir", &database, path.to_str().expect("path")]))
}

fn pyhanko(path: &Path, ca: &IssuedCert) -> (bool, String) {
    let directory = tempfile::tempdir().expect("dir");
    let ca_path = directory.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).expect("ca");
    let output = tool(
        "pyhanko",
        // The summary form prints FIELD:HASH:INTACT:TRUSTED,... per signature.
        &["sign", "validate", "--trust", ca_path.to_str().expect("path"), "--trust-replace", "--no-revocation-check", path.to_str().expect("path")],
    );
    (output.status.success(), text(&output))
}

fn assert_both_signatures_valid(path: &Path, pki: &Pki) {
    let report = pdfsig(path, &pki.ca);
    assert_eq!(report.matches("Signature is Valid.").count(), 2, "pdfsig:\n{report}");
    assert_eq!(report.matches("Certificate is Trusted.").count(), 2, "pdfsig:\n{report}");
    assert!(report.contains("ETSI.CAdES.detached"), "pdfsig:\n{report}");
    let (ok, report) = pyhanko(path, &pki.ca);
    assert!(ok, "pyhanko:\n{report}");
    assert_eq!(report.matches("INTACT:TRUSTED").count(), 4, "two signatures and their two time stamps; pyhanko:\n{report}");
    assert_eq!(report.matches("TIMESTAMP_TOKEN<INTACT:TRUSTED>").count(), 2, "pyhanko:\n{report}");
}

/// A one-page PDF with a cross-reference table, as many scanners write.
fn scanned_pdf() -> Vec<u8> {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
    let mut pdf = Pdf::new();
    let (catalog, pages, page, font, content) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut page_writer = pdf.page(page);
    page_writer.parent(pages).media_box(Rect::new(0.0, 0.0, 595.0, 842.0)).contents(content);
    page_writer.resources().fonts().pair(Name(b"F1"), font);
    page_writer.finish();
    pdf.type1_font(font).base_font(Name(b"Helvetica"));
    let mut drawing = Content::new();
    drawing.begin_text().set_font(Name(b"F1"), 24.0).next_line(72.0, 720.0).show(Str(b"GIAY KHAI SINH (scan)")).end_text();
    // Leaves the graphics state changed on purpose: the block must not inherit it.
    drawing.transform([0.5, 0.0, 0.0, 0.5, 0.0, 0.0]);
    pdf.stream(content, &drawing.finish());
    pdf.finish()
}

/// A grey-gradient PNG, written by hand (8-bit gray, filter 0 on each row).
fn scanned_png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for row in 0..height {
        raw.push(0u8);
        raw.extend((0..width).map(|column| (128 + (column + row) % 128) as u8));
    }
    let compressed = font::compress(&raw);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], body: &[u8]| {
        png.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(body);
        png.extend_from_slice(kind);
        png.extend_from_slice(body);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(b"IHDR", &header);
    chunk(b"IDAT", &compressed);
    chunk(b"IEND", b"");
    png
}

/// Renders the last page and checks that the block's corner holds dark pixels.
fn render_last_page(path: &Path, name: &str, block_at_bottom_right: bool) -> PathBuf {
    let prefix = artefacts().join(name);
    let pages = text(&tool("pdfinfo", &[path.to_str().expect("path")]));
    let count = pages.lines().find_map(|line| line.strip_prefix("Pages:")).expect("pdfinfo pages").trim().to_string();
    let output = tool("pdftoppm", &["-png", "-r", "100", "-f", &count, "-l", &count, "-singlefile", path.to_str().expect("path"), prefix.to_str().expect("path")]);
    assert!(output.status.success(), "pdftoppm: {}", text(&output));
    let png = prefix.with_extension("png");
    // Decode through pdftoppm's own PGM output to count dark pixels without an image crate.
    let gray_prefix = artefacts().join(format!("{name}-gray"));
    let output = tool("pdftoppm", &["-gray", "-r", "100", "-f", &count, "-l", &count, "-singlefile", path.to_str().expect("path"), gray_prefix.to_str().expect("path")]);
    assert!(output.status.success(), "pdftoppm: {}", text(&output));
    let pgm = std::fs::read(gray_prefix.with_extension("pgm")).expect("pgm");
    let (width, height, pixels) = parse_pgm(&pgm);
    // The block: 320 x 132 points at 24 points from the corner (100 dpi: x 100/72).
    let scale = 100.0 / 72.0;
    let (x0, y0) = if block_at_bottom_right {
        (width - ((24.0 + 320.0) * scale) as usize, height - ((24.0 + 132.0) * scale) as usize)
    } else {
        ((48.0 * scale) as usize, (48.0 * scale) as usize)
    };
    let (x1, y1) = (x0 + (320.0 * scale) as usize, y0 + (132.0 * scale) as usize);
    let dark = (y0..y1.min(height)).flat_map(|y| (x0..x1.min(width)).map(move |x| (x, y))).filter(|(x, y)| pixels[y * width + x] < 100).count();
    let area = (x1 - x0) * (y1 - y0);
    assert!(dark * 10 > area, "the block area of {} is nearly blank: {dark} dark pixels of {area}", png.display());
    png
}

fn parse_pgm(bytes: &[u8]) -> (usize, usize, &[u8]) {
    let mut fields = Vec::new();
    let mut position = 0;
    while fields.len() < 4 {
        while bytes[position].is_ascii_whitespace() {
            position += 1;
        }
        let start = position;
        while !bytes[position].is_ascii_whitespace() {
            position += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..position]).to_string());
    }
    assert_eq!(fields[0], "P5");
    let (width, height) = (fields[1].parse().expect("width"), fields[2].parse().expect("height"));
    (width, height, &bytes[position + 1..])
}

fn flip_byte_in_first_range(pdf: &[u8]) -> Vec<u8> {
    let mut changed = pdf.to_vec();
    // Byte 300 lies in the first revision, inside both signatures' first range.
    changed[300] ^= 0x01;
    changed
}

#[test]
fn certified_copy_of_a_png_scan_carries_two_trusted_signatures() {
    let pki = pki();
    let scan = scanned_png(800, 1100);
    let certified = certify(&scan, &block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage), &pki);
    let path = write("certified-copy-png.pdf", &certified);
    qpdf_check(&path);
    assert_both_signatures_valid(&path, &pki);
    let png = render_last_page(&path, "certified-copy-png-last-page", true);
    println!("rendered last page: {}", png.display());
    let changed = write("certified-copy-png-changed.pdf", &flip_byte_in_first_range(&certified));
    let report = pdfsig(&changed, &pki.ca);
    assert!(!report.contains("Signature is Valid."), "pdfsig after a changed byte:\n{report}");
    let (ok, report) = pyhanko(&changed, &pki.ca);
    assert!(!ok && !report.contains("INTACT:TRUSTED"), "pyhanko after a changed byte:\n{report}");
}

#[test]
fn a_pdf_scan_keeps_its_bytes_and_gets_the_block_on_its_last_page() {
    let pki = pki();
    let scan = scanned_pdf();
    let certified = certify(&scan, &block(CertificationKind::Result, BlockPlacement::LastPage), &pki);
    assert!(certified.starts_with(&scan), "the scan's bytes are the delivered pdf's prefix");
    let path = write("result-pdf.pdf", &certified);
    qpdf_check(&path);
    assert_both_signatures_valid(&path, &pki);
    render_last_page(&path, "result-pdf-last-page", true);
}

#[test]
fn xref_streams_object_streams_and_earlier_updates_work() {
    let pki = pki();
    let plain = write("xref-stream-input-plain.pdf", &scanned_pdf());
    let compressed = artefacts().join("xref-stream-input.pdf");
    let output = tool("qpdf", &["--object-streams=generate", plain.to_str().expect("path"), compressed.to_str().expect("path")]);
    assert!(output.status.success(), "qpdf: {}", text(&output));
    let scan = std::fs::read(&compressed).expect("read");
    // An earlier incremental update: the input already carries an appended revision.
    let updated = block::stamp(scan.clone(), &block(CertificationKind::Result, BlockPlacement::AppendedPage)).expect("earlier update");
    let certified = certify(&updated, &block(CertificationKind::CertifiedCopy, BlockPlacement::AppendedPage), &pki);
    assert!(certified.starts_with(&scan));
    let path = write("xref-stream-appended-page.pdf", &certified);
    qpdf_check(&path);
    assert_both_signatures_valid(&path, &pki);
    render_last_page(&path, "xref-stream-appended-page-last-page", false);
}

#[test]
fn a_jpeg_scan_is_embedded_without_re_encoding() {
    let pki = pki();
    // A real encoder's JPEG: poppler renders a page of the PNG scan to JPEG.
    let page = image::image_page_pdf(&scanned_png(600, 800), ScanFormat::Png, 0.0).expect("page");
    let source = write("jpeg-source.pdf", &page);
    let prefix = artefacts().join("scan");
    let output = tool("pdftoppm", &["-jpeg", "-r", "50", "-singlefile", source.to_str().expect("path"), prefix.to_str().expect("path")]);
    assert!(output.status.success(), "pdftoppm: {}", text(&output));
    let jpeg_path = prefix.with_extension("jpg");
    let jpeg = std::fs::read(&jpeg_path).expect("jpeg");
    let certified = certify(&jpeg, &block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage), &pki);
    assert!(certified.windows(jpeg.len()).any(|window| window == jpeg.as_slice()), "the jpeg's bytes are in the pdf unchanged");
    let path = write("certified-copy-jpeg.pdf", &certified);
    qpdf_check(&path);
    assert_both_signatures_valid(&path, &pki);
}

#[test]
fn hostile_pdfs_get_precise_errors() {
    let plain = write("hostile-plain.pdf", &scanned_pdf());
    let encrypted = artefacts().join("hostile-encrypted.pdf");
    let output = tool("qpdf", &["--encrypt", "user", "owner", "256", "--", plain.to_str().expect("path"), encrypted.to_str().expect("path")]);
    assert!(output.status.success(), "qpdf: {}", text(&output));
    let block = block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage);
    assert_eq!(build_unsigned(&std::fs::read(&encrypted).expect("read"), &block), Err(PdfError::Encrypted));

    let mut scripted = scanned_pdf();
    let text_position = scripted.windows(6).position(|window| window == b"/Pages").expect("catalog");
    scripted.splice(text_position..text_position, b"/OpenAction << /S /JavaScript /JS (app.alert(1)) >> ".iter().copied());
    assert!(matches!(build_unsigned(&scripted, &block), Err(PdfError::ActiveContent(_)) | Err(PdfError::MalformedXref(_))));

    let mut damaged = scanned_pdf();
    let xref = damaged.windows(4).rposition(|window| window == b"xref").expect("xref");
    damaged[xref..xref + 4].copy_from_slice(b"xxxx");
    assert!(matches!(build_unsigned(&damaged, &block), Err(PdfError::MalformedXref(_))), "{:?}", build_unsigned(&damaged, &block));

    let mut shifted = scanned_pdf();
    shifted.splice(20..20, b"\n% an inserted comment shifts every object\n".iter().copied());
    assert!(matches!(build_unsigned(&shifted, &block), Err(PdfError::MalformedXref(_))), "{:?}", build_unsigned(&shifted, &block));

    assert!(matches!(build_unsigned(b"%PDF-1.7\n garbage", &block), Err(PdfError::MalformedXref(_)) | Err(PdfError::Unparseable(_))));
}

#[test]
fn an_rsa_performer_signs_the_pdf_with_rsassa_pss() {
    let pki = pki();
    let key = tool("openssl", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    assert!(key.status.success(), "openssl genpkey: {}", text(&key));
    let key_der = pem::parse(&key.stdout).expect("pem key").into_contents();
    let performer = devpki::issue_with_key(&CertSpec::signer("Lê Văn Cường", KeyAlgorithm::Rsa, NOT_BEFORE_UNIX, NOT_AFTER_UNIX), &key_der, &pki.ca)
        .expect("rsa signer");
    let rsa_pki = Pki { ca: pki.ca.clone(), performer, agency: pki.agency.clone(), tsa: pki.tsa.clone() };
    let certified = certify(&scanned_pdf(), &block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage), &rsa_pki);
    // id-RSASSA-PSS (1.2.840.113549.1.1.10), as the hex of /Contents shows it.
    assert!(certified.windows(22).any(|window| window == b"06092A864886F70D01010A"), "the rsa signature is rsassa-pss");
    let path = write("certified-copy-rsa-pss.pdf", &certified);
    qpdf_check(&path);
    assert_both_signatures_valid(&path, &rsa_pki);
}

/// The signatures of a certified copy as a receiving agency reads them: both valid and
/// trusted with trusted time stamps, the agency's covering the whole file; a changed byte
/// breaks both; bytes appended by anyone leave both valid but changed after signing.
#[test]
fn a_received_certified_copy_reports_each_signature_and_what_it_covers() {
    let pki = pki();
    let certified = certify(&scanned_pdf(), &block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage), &pki);
    let anchors = crypto::TrustAnchors::from_der_list(vec![pki.ca.cert_der.clone()]).expect("anchors");
    // The fuzz seed (fuzz/seeds/pdf_signatures): one signature on the smallest pdf.
    write("received-one-signature.pdf", &sign(crate::cli::dev::sample_pdf("seed"), &pki.performer, &pki, "kyso-performer", "seed"));
    let checks = check_signatures(&certified, &anchors).expect("two signatures");
    assert_eq!(checks.iter().map(|check| check.field_name.as_str()).collect::<Vec<_>>(), ["kyso-performer", "kyso-agency"]);
    for check in &checks {
        assert!(check.cryptographically_valid && check.signer_trusted && check.timestamp_trusted, "{check:?}");
        assert_eq!(check.sub_filter, "ETSI.CAdES.detached");
        assert_eq!(check.signing_time_unix, Some(SIGNED_AT_UNIX));
        assert_eq!(check.timestamp_unix, Some(SIGNED_AT_UNIX + 1));
        assert!(!check.changed_after_signature && check.defect.is_none(), "{check:?}");
    }
    assert_eq!(checks[0].signer.as_ref().map(|signer| signer.common_name.as_str()), Some("Nguyễn Văn An"));
    assert_eq!(checks[1].signer.as_ref().map(|signer| signer.certificate_sha256), Some(crate::domain::Sha256::digest(&pki.agency.cert_der)));
    assert!(!checks[0].covers_whole_file && checks[1].covers_whole_file);
    assert_eq!(checks[1].signed_revision_sha256, Some(crate::domain::Sha256::digest(&certified)));

    let other_ca = devpki::self_signed_ca(&CertSpec::certificate_authority("Another CA", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX)).expect("ca");
    let untrusted = crypto::TrustAnchors::from_der_list(vec![other_ca.cert_der]).expect("another anchor");
    let checks = check_signatures(&certified, &untrusted).expect("two signatures");
    assert!(checks.iter().all(|check| check.cryptographically_valid && !check.signer_trusted && !check.timestamp_trusted));

    let checks = check_signatures(&flip_byte_in_first_range(&certified), &anchors).expect("still parses");
    assert!(checks.iter().all(|check| !check.cryptographically_valid && check.defect == Some(SignatureDefect::DigestMismatch)), "{checks:?}");

    let mut appended = certified.clone();
    appended.extend_from_slice(b"% appended by another tool\n");
    let checks = check_signatures(&appended, &anchors).expect("two signatures");
    assert!(checks.iter().all(|check| check.cryptographically_valid && check.changed_after_signature && !check.covers_whole_file), "{checks:?}");
}

/// What verify reads back for a token-signed certification: the ranges the performer's
/// CMS covers, found in the delivered PDF after the agency signed it too.
#[test]
fn the_ranges_a_completed_signature_covers_are_found_again_by_its_cms() {
    let pki = pki();
    let unsigned = build_unsigned(&scanned_png(200, 280), &block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage)).expect("build");
    let chain = vec![pki.performer.cert_der.clone(), pki.ca.cert_der.clone()];
    let fields = SignatureFields {
        field_name: "kyso-performer".into(),
        signer_name: "Nguyễn Văn An".into(),
        reason: "Người thực hiện chứng thực".into(),
        signed_at_unix: SIGNED_AT_UNIX,
        contents_capacity_bytes: 8 * 1024,
    };
    let prepared = prepare_signature(unsigned, &fields).expect("prepare");
    let key = pki.performer.signing_key().expect("key");
    let cms = crypto::sign_detached_parts(&prepared.signed_parts(), SIGNED_AT_UNIX, &chain, &key, crypto::RsaPadding::Pss).expect("cms");
    let expected: Vec<Vec<u8>> = prepared.signed_parts().iter().map(|part| part.to_vec()).collect();
    let signed = prepared.complete(&cms).expect("complete");
    let sealed = sign(signed, &pki.agency, &pki, "kyso-agency", "Cơ quan chứng thực");
    let found = signature_ranges(&sealed, &cms).expect("the performer's signature is found");
    assert_eq!(found.map(<[u8]>::to_vec).to_vec(), expected);
    crypto::verify_detached_parts(&cms, &found).expect("the cms verifies over the ranges found");
    let foreign = crypto::sign_detached(b"another document", SIGNED_AT_UNIX, &chain, &key).expect("cms");
    assert!(signature_ranges(&sealed, &foreign).is_none(), "a cms that is not in the pdf has no ranges");
}

#[test]
fn a_dss_revision_keeps_an_earlier_dss_and_both_signatures_cover_it() {
    let pki = pki();
    let crl = devpki::issue_crl(&pki.ca, &[], SIGNED_AT_UNIX - 60, 30 * 86_400).expect("crl");
    let compressed = artefacts().join("dss-input.pdf");
    let plain = write("dss-input-plain.pdf", &scanned_pdf());
    let output = tool("qpdf", &["--object-streams=generate", plain.to_str().expect("path"), compressed.to_str().expect("path")]);
    assert!(output.status.success(), "qpdf: {}", text(&output));
    let scan = std::fs::read(&compressed).expect("read");
    let earlier = append_dss(scan.clone(), &ValidationData { certificates: vec![pki.ca.cert_der.clone()], crls: vec![] }).expect("earlier dss");
    let unsigned = build_unsigned(&earlier, &block(CertificationKind::CertifiedCopy, BlockPlacement::LastPage)).expect("build");
    let data = ValidationData { certificates: vec![pki.performer.cert_der.clone(), pki.agency.cert_der.clone()], crls: vec![crl.clone()] };
    let with_dss = append_dss(unsigned, &data).expect("dss");
    let once = sign(with_dss, &pki.performer, &pki, "kyso-performer", "Người thực hiện chứng thực");
    let certified = sign(once, &pki.agency, &pki, "kyso-agency", "Cơ quan chứng thực");
    assert!(certified.starts_with(&scan));
    let path = write("dss-certified.pdf", &certified);
    qpdf_check(&path);
    assert_both_signatures_valid(&path, &pki);

    let parsed = revision::Parsed::parse(&certified).expect("parse");
    let catalog = parsed.dictionary(parsed.root).expect("catalog");
    let dss = parsed.resolve(catalog.get(b"DSS").expect("a /DSS in the last catalog")).expect("dss").as_dict().expect("dict").clone();
    let streams = |key: &[u8]| -> Vec<Vec<u8>> {
        let array = parsed.resolve(dss.get(key).expect("array")).expect("resolve").as_array().expect("array").clone();
        array.iter().map(|item| parsed.resolve(item).expect("stream").as_stream().expect("a stream").content.clone()).collect()
    };
    assert_eq!(streams(b"Certs"), vec![pki.ca.cert_der.clone(), pki.performer.cert_der.clone(), pki.agency.cert_der.clone()], "the earlier dss's certificate first, then the new ones");
    assert_eq!(streams(b"CRLs"), vec![crl]);
}

//! A 50 MB scanned PDF is certified with memory bounded: its own process, so that the peak
//! resident set (VmHWM) measures this certification alone. The figure is printed and
//! held under a limit a node can afford per certification in flight.

use kyso::crypto::devpki::{self, CertSpec};
use kyso::crypto::{self, KeyAlgorithm};
use kyso::domain::CertificationKind;
use kyso::pdf::{build_unsigned, prepare_signature, Block, BlockPlacement, BlockText, SignatureFields};

const SCAN_SIZE_BYTES: usize = 50 * 1024 * 1024;
/// Peak resident memory allowed for the whole process, scan included.
const PEAK_RESIDENT_BYTES_MAX: u64 = 600 * 1024 * 1024;

fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    let kilobytes: u64 = line.split_whitespace().nth(1).expect("value").parse().expect("number");
    kilobytes * 1024
}

/// One page whose image is 50 MB of incompressible bytes (as a high-resolution scan is).
fn large_pdf() -> Vec<u8> {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref};
    let mut pixels = vec![0u8; SCAN_SIZE_BYTES];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for byte in pixels.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let side = ((SCAN_SIZE_BYTES / 3) as f64).sqrt() as i32;
    let mut pdf = Pdf::new();
    let (catalog, pages, page, image, content) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut page_writer = pdf.page(page);
    page_writer.parent(pages).media_box(Rect::new(0.0, 0.0, 595.0, 842.0)).contents(content);
    page_writer.resources().x_objects().pair(Name(b"Im"), image);
    page_writer.finish();
    let used = (side as usize) * (side as usize) * 3;
    let mut image_writer = pdf.image_xobject(image, &pixels[..used]);
    image_writer.width(side).height(side).bits_per_component(8);
    image_writer.color_space().device_rgb();
    image_writer.finish();
    let mut drawing = Content::new();
    drawing.transform([595.0, 0.0, 0.0, 842.0, 0.0, 0.0]).x_object(Name(b"Im"));
    pdf.stream(content, &drawing.finish());
    pdf.finish()
}

#[test]
fn a_50_mb_pdf_is_certified_with_bounded_memory() {
    const NOT_BEFORE_UNIX: i64 = 1_577_836_800;
    const NOT_AFTER_UNIX: i64 = 2_366_841_600;
    const SIGNED_AT_UNIX: i64 = 1_796_464_800;
    let scan = large_pdf();
    assert!(scan.len() >= 49 * 1024 * 1024, "the scan is {} bytes", scan.len());
    let before = peak_resident_bytes();
    let ca = devpki::self_signed_ca(&CertSpec::certificate_authority("Kyso Dev CA", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX)).expect("ca");
    let performer = devpki::issue(&CertSpec::signer("Nguyễn Văn An", KeyAlgorithm::EcdsaP256, NOT_BEFORE_UNIX, NOT_AFTER_UNIX), &ca).expect("signer");
    let block = Block {
        text: BlockText {
            kind: CertificationKind::CertifiedCopy,
            register_number: "1".into(),
            register_book: "01/2026-SCTĐT/BS".into(),
            signed_at_unix: SIGNED_AT_UNIX,
            performer_name: "Nguyễn Văn An".into(),
            performer_title: "Công chức Tư pháp - Hộ tịch".into(),
            agency_name: "UBND xã Demo".into(),
            lookup_code: "K7QM-3XPA-9TRC".into(),
            public_url: "https://tra-cuu.example.vn/v/K7QM-3XPA-9TRC".into(),
        },
        placement: BlockPlacement::LastPage,
    };
    let unsigned = build_unsigned(&scan, &block).expect("build");
    let chain = vec![performer.cert_der.clone(), ca.cert_der.clone()];
    let fields = SignatureFields {
        field_name: "kyso-performer".into(),
        signer_name: "Nguyễn Văn An".into(),
        reason: "Người thực hiện chứng thực".into(),
        signed_at_unix: SIGNED_AT_UNIX,
        contents_capacity_bytes: 16 * 1024,
    };
    let prepared = prepare_signature(unsigned, &fields).expect("prepare");
    let key = performer.signing_key().expect("key");
    let cms = crypto::sign_detached_parts(&prepared.signed_parts(), SIGNED_AT_UNIX, &chain, &key, crypto::RsaPadding::Pss).expect("cms");
    let signed = prepared.complete(&cms).expect("complete");
    assert!(signed.starts_with(&scan));
    let peak = peak_resident_bytes();
    println!(
        "50 MB certification: scan {} bytes, peak resident {} MiB (before building {} MiB)",
        scan.len(),
        peak / (1024 * 1024),
        before / (1024 * 1024)
    );
    assert!(peak <= PEAK_RESIDENT_BYTES_MAX, "peak resident {peak} bytes exceeds {PEAK_RESIDENT_BYTES_MAX}");
}

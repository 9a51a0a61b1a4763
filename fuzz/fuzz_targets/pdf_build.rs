//! PDF parsing and the incremental update: certify builds the certified PDF from an archived
//! scan that a clerk uploaded, so every byte of it is outside input.
#![no_main]

use kyso::domain::CertificationKind;
use kyso::pdf::{build_unsigned, Block, BlockPlacement, BlockText};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let block = Block {
        text: BlockText {
            kind: CertificationKind::CertifiedCopy,
            register_number: "1".into(),
            register_book: "01/2026-SCTĐT/BS".into(),
            signed_at_unix: 1_796_464_800,
            performer_name: "Nguyễn Văn An".into(),
            performer_title: "Công chức".into(),
            agency_name: "UBND xã Demo".into(),
            lookup_code: "K7QM-3XPA-9TRC".into(),
            public_url: "https://tra-cuu.example.vn/v/K7QM-3XPA-9TRC".into(),
        },
        placement: if data.len() % 2 == 0 { BlockPlacement::LastPage } else { BlockPlacement::AppendedPage },
    };
    let _ = build_unsigned(data, &block);
});

//! Language of the public pages (Vietnamese by default, English on request) and the time
//! shown to citizens: Asia/Ho_Chi_Minh, which is UTC+7 all year (Vietnam keeps no daylight
//! saving time), so the offset is added here and no time-zone database is needed.
//!
//! Every word a citizen reads lives in [`Texts`]; templates never hold literal prose.

use crate::domain::CertificationKind;

/// Seconds east of UTC in Vietnam (UTC+7, no daylight saving time).
pub const VIETNAM_OFFSET_SECONDS: i64 = 7 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

impl Lang {
    /// The value of `lang=` and of the HTML `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Vi => Lang::En,
            Lang::En => Lang::Vi,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Vi => &VI,
            Lang::En => &EN,
        }
    }

    /// Picks the language: `lang=vi|en` in the query wins, then the first of vi/en with
    /// the highest weight in `Accept-Language`, then Vietnamese.
    pub fn negotiate(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = query.and_then(lang_from_query) {
            return lang;
        }
        accept_language.and_then(lang_from_accept_language).unwrap_or(Lang::Vi)
    }

    fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("vi") {
            Some(Lang::Vi)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }
}

fn lang_from_query(query: &str) -> Option<Lang> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "lang")
        .and_then(|(_, value)| Lang::from_tag(value))
}

/// Weights are compared in thousandths, as RFC 9110 allows three decimals.
fn lang_from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, u32)> = None;
    for item in header.split(',').take(ACCEPT_LANGUAGE_ITEMS_MAX) {
        let mut parts = item.split(';');
        let Some(lang) = Lang::from_tag(parts.next().unwrap_or("")) else { continue };
        let weight = parts
            .find_map(|parameter| parameter.trim().strip_prefix("q="))
            .map(parse_weight)
            .unwrap_or(1000);
        if weight > 0 && best.is_none_or(|(_, best_weight)| weight > best_weight) {
            best = Some((lang, weight));
        }
    }
    best.map(|(lang, _)| lang)
}

/// Items of `Accept-Language` considered; the rest are ignored.
const ACCEPT_LANGUAGE_ITEMS_MAX: usize = 32;

fn parse_weight(text: &str) -> u32 {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole != "0" && whole != "1" {
        return 0;
    }
    let digits: String = fraction.chars().take(3).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    let thousandths = format!("{digits:0<3}").parse::<u32>().unwrap_or(0);
    (if whole == "1" { 1000 } else { thousandths }).min(1000)
}

/// A wall-clock time in Vietnam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VietnamTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl VietnamTime {
    pub fn from_unix(unix_seconds: i64) -> VietnamTime {
        let local = unix_seconds.saturating_add(VIETNAM_OFFSET_SECONDS);
        let days = local.div_euclid(86_400);
        let second_of_day = local.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        VietnamTime { year, month, day, hour: second_of_day / 3600, minute: second_of_day / 60 % 60, second: second_of_day % 60 }
    }

    /// RFC 3339 with the +07:00 offset, e.g. `2026-11-24T14:30:32+07:00`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+07:00",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Date only, as people write it in the language.
    pub fn date(&self, lang: Lang) -> String {
        match lang {
            Lang::Vi => format!("{:02}/{:02}/{:04}", self.day, self.month, self.year),
            Lang::En => format!("{} {} {}", self.day, MONTHS_EN[(self.month - 1) as usize], self.year),
        }
    }

    /// Date and time with the zone spelled out.
    pub fn date_time(&self, lang: Lang) -> String {
        let clock = format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second);
        match lang {
            Lang::Vi => format!("{clock} ngày {} (giờ Việt Nam, UTC+7)", self.date(lang)),
            Lang::En => format!("{}, {clock} (Vietnam time, UTC+7)", self.date(lang)),
        }
    }
}

use crate::domain::civil_from_days;

const MONTHS_EN: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/// Every text of the public pages in one language.
pub struct Texts {
    pub site_name: &'static str,
    pub site_tagline: &'static str,
    pub switch_language: &'static str,
    pub page_title: &'static str,
    pub lookup_code: &'static str,
    pub status_valid: &'static str,
    pub status_valid_explained: &'static str,
    pub status_revoked: &'static str,
    pub status_revoked_explained: &'static str,
    pub revoked_on: &'static str,
    pub revocation_reason: &'static str,
    pub details_heading: &'static str,
    pub kind: &'static str,
    pub kind_result: &'static str,
    pub kind_certified_copy: &'static str,
    pub agency: &'static str,
    pub signer: &'static str,
    pub signer_title: &'static str,
    pub signed_at: &'static str,
    pub fingerprint: &'static str,
    pub fingerprint_explained: &'static str,
    pub check_heading: &'static str,
    pub check_explained: &'static str,
    pub check_choose_file: &'static str,
    pub check_drop_hint: &'static str,
    pub check_private: &'static str,
    pub check_working: &'static str,
    pub check_match: &'static str,
    pub check_match_revoked: &'static str,
    pub check_mismatch: &'static str,
    pub check_mismatch_explained: &'static str,
    pub check_file_hash: &'static str,
    pub check_unsupported: &'static str,
    pub check_failed: &'static str,
    pub check_without_javascript: &'static str,
    pub privacy_note: &'static str,
    pub machine_readable: &'static str,
    pub search_heading: &'static str,
    pub search_explained: &'static str,
    pub search_label: &'static str,
    pub search_button: &'static str,
    pub not_found_title: &'static str,
    pub not_found_explained: &'static str,
    pub too_many_title: &'static str,
    pub too_many_explained: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable_explained: &'static str,
    pub stamp_kind_result: &'static str,
    pub stamp_kind_certified_copy: &'static str,
    pub stamp_scan: &'static str,
    pub stamp_or_visit: &'static str,
    pub pdf_check_heading: &'static str,
    pub pdf_check_explained: &'static str,
    pub pdf_check_button: &'static str,
    pub pdf_result_title: &'static str,
    pub pdf_no_signature: &'static str,
    pub pdf_signature: &'static str,
    pub pdf_signature_valid: &'static str,
    pub pdf_signature_invalid: &'static str,
    pub pdf_signer_untrusted: &'static str,
    pub pdf_timestamp: &'static str,
    pub pdf_timestamp_none: &'static str,
    pub pdf_timestamp_untrusted: &'static str,
    pub pdf_coverage: &'static str,
    pub pdf_covers_whole_file: &'static str,
    pub pdf_changed_after: &'static str,
    pub pdf_covered_by_later: &'static str,
    pub pdf_certification: &'static str,
    pub pdf_not_pdf_title: &'static str,
    pub pdf_not_pdf_explained: &'static str,
    pub pdf_too_large_title: &'static str,
    pub pdf_too_large_explained: &'static str,
}

impl Texts {
    pub fn kind(&self, kind: CertificationKind) -> &'static str {
        match kind {
            CertificationKind::Result => self.kind_result,
            CertificationKind::CertifiedCopy => self.kind_certified_copy,
        }
    }
}

static VI: Texts = Texts {
    site_name: "Tra cứu văn bản điện tử",
    site_tagline: "Kiểm tra tính xác thực của văn bản đã ký số",
    switch_language: "English",
    page_title: "Kết quả tra cứu",
    lookup_code: "Mã tra cứu",
    status_valid: "Còn hiệu lực",
    status_valid_explained: "Văn bản này đã được ký số và hiện còn hiệu lực.",
    status_revoked: "Đã thu hồi",
    status_revoked_explained: "Văn bản này đã bị thu hồi. Không sử dụng văn bản này.",
    revoked_on: "Ngày thu hồi",
    revocation_reason: "Lý do thu hồi",
    details_heading: "Thông tin văn bản",
    kind: "Loại văn bản",
    kind_result: "Kết quả giải quyết thủ tục hành chính",
    kind_certified_copy: "Bản sao chứng thực điện tử từ bản chính",
    agency: "Cơ quan ban hành",
    signer: "Người ký",
    signer_title: "Chức vụ",
    signed_at: "Thời điểm ký",
    fingerprint: "Mã băm SHA-256",
    fingerprint_explained: "Dấu vân tay của tệp đã ký: chỉ tệp gốc, không sửa đổi, mới có mã này.",
    check_heading: "Kiểm tra tệp bạn đang có",
    check_explained: "Chọn tệp PDF bạn đã nhận. Trình duyệt sẽ tính mã SHA-256 ngay trên thiết bị của bạn và so sánh với mã ở trên.",
    check_choose_file: "Chọn tệp để kiểm tra",
    check_drop_hint: "hoặc kéo thả tệp vào đây",
    check_private: "Tệp không được gửi đi đâu: việc kiểm tra diễn ra hoàn toàn trên thiết bị của bạn.",
    check_working: "Đang kiểm tra tệp…",
    check_match: "Tệp trùng khớp: đây đúng là văn bản đã được ký số.",
    check_match_revoked: "Tệp trùng khớp với văn bản này, nhưng văn bản đã bị thu hồi.",
    check_mismatch: "Tệp KHÔNG trùng khớp với văn bản đã ký số.",
    check_mismatch_explained: "Tệp này khác với văn bản đã được ký. Hãy kiểm tra lại tệp, hoặc liên hệ cơ quan ban hành.",
    check_file_hash: "Mã SHA-256 của tệp bạn chọn",
    check_unsupported: "Trình duyệt này không thể tính mã băm (cần kết nối HTTPS). Hãy so sánh mã SHA-256 ở trên bằng công cụ khác.",
    check_failed: "Không đọc được tệp. Hãy thử chọn lại tệp.",
    check_without_javascript: "Để so sánh tệp ngay trên trang này, hãy bật JavaScript. Bạn cũng có thể tự tính mã SHA-256 của tệp (ví dụ: lệnh sha256sum trên Linux, certutil -hashfile TỆP SHA256 trên Windows) và so sánh với mã ở trên.",
    privacy_note: "Trang này không hiển thị thông tin cá nhân của người nộp hồ sơ và không thu thập tệp của bạn.",
    machine_readable: "Dữ liệu cho máy đọc (JSON)",
    search_heading: "Tra cứu văn bản",
    search_explained: "Nhập mã tra cứu in trên văn bản (16 chữ và số, ví dụ 7K3M-Q9TX-2HRN-B4WD), hoặc quét mã QR trên văn bản.",
    search_label: "Mã tra cứu",
    search_button: "Tra cứu",
    not_found_title: "Không tìm thấy văn bản",
    not_found_explained: "Không có văn bản nào ứng với mã tra cứu này. Hãy kiểm tra lại mã in trên văn bản.",
    too_many_title: "Quá nhiều yêu cầu",
    too_many_explained: "Bạn đã tra cứu quá nhiều lần trong thời gian ngắn. Vui lòng thử lại sau ít phút.",
    unavailable_title: "Tạm thời không tra cứu được",
    unavailable_explained: "Hệ thống đang gặp sự cố. Vui lòng thử lại sau.",
    stamp_kind_result: "KẾT QUẢ GIẢI QUYẾT TTHC",
    stamp_kind_certified_copy: "BẢN SAO CHỨNG THỰC ĐIỆN TỬ",
    stamp_scan: "Quét mã QR để kiểm tra",
    stamp_or_visit: "hoặc nhập mã tại",
    pdf_check_heading: "Kiểm tra chữ ký số của tệp PDF",
    pdf_check_explained: "Tải lên tệp PDF đã ký số bạn nhận được: hệ thống kiểm tra từng chữ ký trong tệp. Tệp không được lưu lại.",
    pdf_check_button: "Kiểm tra tệp",
    pdf_result_title: "Kết quả kiểm tra chữ ký số",
    pdf_no_signature: "Tệp này không có chữ ký số nào.",
    pdf_signature: "Chữ ký",
    pdf_signature_valid: "Chữ ký hợp lệ",
    pdf_signature_invalid: "Chữ ký không hợp lệ",
    pdf_signer_untrusted: "Chứng thư số của người ký không do nơi cấp được tin cậy cấp.",
    pdf_timestamp: "Dấu thời gian",
    pdf_timestamp_none: "Không có dấu thời gian",
    pdf_timestamp_untrusted: "(dấu thời gian không được tin cậy)",
    pdf_coverage: "Phạm vi ký",
    pdf_covers_whole_file: "Toàn bộ tệp được ký",
    pdf_changed_after: "Tệp đã bị thay đổi sau khi ký",
    pdf_covered_by_later: "Ký phiên bản trước của tệp; phần thêm sau đó được các chữ ký sau ký",
    pdf_certification: "Văn bản đã chứng thực",
    pdf_not_pdf_title: "Tệp không phải PDF",
    pdf_not_pdf_explained: "Tệp bạn gửi không phải là tệp PDF đọc được. Hãy chọn đúng tệp PDF đã ký số.",
    pdf_too_large_title: "Tệp quá lớn",
    pdf_too_large_explained: "Tệp vượt quá dung lượng cho phép. Hãy tra cứu bằng mã in trên văn bản.",
};

static EN: Texts = Texts {
    site_name: "Electronic document lookup",
    site_tagline: "Check that a digitally signed document is authentic",
    switch_language: "Tiếng Việt",
    page_title: "Lookup result",
    lookup_code: "Lookup code",
    status_valid: "Valid",
    status_valid_explained: "This document was digitally signed and is currently valid.",
    status_revoked: "Revoked",
    status_revoked_explained: "This document has been revoked. Do not rely on it.",
    revoked_on: "Revoked on",
    revocation_reason: "Reason",
    details_heading: "Document details",
    kind: "Document type",
    kind_result: "Result of an administrative procedure",
    kind_certified_copy: "Electronic copy certified from the original",
    agency: "Issuing agency",
    signer: "Signed by",
    signer_title: "Position",
    signed_at: "Signed at",
    fingerprint: "SHA-256 fingerprint",
    fingerprint_explained: "The fingerprint of the signed file: only the original, unchanged file has it.",
    check_heading: "Check the file you have",
    check_explained: "Choose the PDF you received. Your browser computes its SHA-256 fingerprint on your device and compares it with the one above.",
    check_choose_file: "Choose a file to check",
    check_drop_hint: "or drop it here",
    check_private: "The file is not sent anywhere: the check runs entirely on your device.",
    check_working: "Checking the file…",
    check_match: "The file matches: this is the document that was signed.",
    check_match_revoked: "The file matches this document, but the document has been revoked.",
    check_mismatch: "The file does NOT match the signed document.",
    check_mismatch_explained: "This file differs from the document that was signed. Check the file, or contact the issuing agency.",
    check_file_hash: "SHA-256 of the file you chose",
    check_unsupported: "This browser cannot compute the fingerprint (it needs an HTTPS connection). Compare the SHA-256 above with another tool.",
    check_failed: "The file could not be read. Please choose it again.",
    check_without_javascript: "To compare a file on this page, turn on JavaScript. You can also compute the file's SHA-256 yourself (e.g. sha256sum on Linux, certutil -hashfile FILE SHA256 on Windows) and compare it with the one above.",
    privacy_note: "This page shows no personal data of the applicant and does not collect your file.",
    machine_readable: "Machine-readable data (JSON)",
    search_heading: "Look up a document",
    search_explained: "Enter the lookup code printed on the document (16 letters and digits, e.g. 7K3M-Q9TX-2HRN-B4WD), or scan the QR code on it.",
    search_label: "Lookup code",
    search_button: "Look up",
    not_found_title: "Document not found",
    not_found_explained: "No document has this lookup code. Please check the code printed on the document.",
    too_many_title: "Too many requests",
    too_many_explained: "You made too many lookups in a short time. Please try again in a few minutes.",
    unavailable_title: "Lookup temporarily unavailable",
    unavailable_explained: "The service has a problem. Please try again later.",
    stamp_kind_result: "RESULT OF A PROCEDURE",
    stamp_kind_certified_copy: "CERTIFIED ELECTRONIC COPY",
    stamp_scan: "Scan the QR code to check",
    stamp_or_visit: "or enter the code at",
    pdf_check_heading: "Check the digital signatures of a PDF",
    pdf_check_explained: "Upload a signed PDF you received: each signature in it is checked. The file is not kept.",
    pdf_check_button: "Check the file",
    pdf_result_title: "Signature check result",
    pdf_no_signature: "This file carries no digital signature.",
    pdf_signature: "Signature",
    pdf_signature_valid: "Valid signature",
    pdf_signature_invalid: "Invalid signature",
    pdf_signer_untrusted: "The signer's certificate was not issued by a trusted authority.",
    pdf_timestamp: "Time stamp",
    pdf_timestamp_none: "No time stamp",
    pdf_timestamp_untrusted: "(time stamp not trusted)",
    pdf_coverage: "What it signs",
    pdf_covers_whole_file: "The whole file is signed",
    pdf_changed_after: "The file was changed after signing",
    pdf_covered_by_later: "Signs an earlier version of the file; what was added after it is signed by the later signatures",
    pdf_certification: "Certified document",
    pdf_not_pdf_title: "Not a PDF",
    pdf_not_pdf_explained: "The file you sent is not a readable PDF. Choose the signed PDF file.",
    pdf_too_large_title: "File too large",
    pdf_too_large_explained: "The file is larger than allowed. Look the document up by the code printed on it.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_is_the_default_and_english_is_chosen_on_request() {
        assert_eq!(Lang::negotiate(None, None), Lang::Vi);
        assert_eq!(Lang::negotiate(None, Some("fr-FR,de;q=0.5")), Lang::Vi);
        assert_eq!(Lang::negotiate(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some("vi-VN,vi;q=0.9,en-US;q=0.8")), Lang::Vi);
        assert_eq!(Lang::negotiate(None, Some("fr;q=1, en;q=0.4, vi;q=0.7")), Lang::Vi);
        assert_eq!(Lang::negotiate(None, Some("vi;q=0.2, en;q=0.9")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some("en;q=0")), Lang::Vi);
        assert_eq!(Lang::negotiate(Some("lang=en"), Some("vi")), Lang::En);
        assert_eq!(Lang::negotiate(Some("x=1&lang=vi"), Some("en")), Lang::Vi);
        assert_eq!(Lang::negotiate(Some("lang=xx"), Some("en")), Lang::En);
    }

    #[test]
    fn times_are_shown_in_vietnam_at_utc_plus_seven() {
        // 2026-11-24T07:30:32Z is 14:30:32 in Hanoi.
        let time = VietnamTime::from_unix(1_795_505_432);
        assert_eq!(time.rfc3339(), "2026-11-24T14:30:32+07:00");
        assert_eq!(time.date_time(Lang::Vi), "14:30:32 ngày 24/11/2026 (giờ Việt Nam, UTC+7)");
        assert_eq!(time.date_time(Lang::En), "24 November 2026, 14:30:32 (Vietnam time, UTC+7)");
        // 17:00 UTC on 31 December is already New Year's Day in Vietnam.
        assert_eq!(VietnamTime::from_unix(1_798_736_400).rfc3339(), "2027-01-01T00:00:00+07:00");
        // A leap day, and the epoch itself.
        assert_eq!(VietnamTime::from_unix(1_709_164_800).rfc3339(), "2024-02-29T07:00:00+07:00");
        assert_eq!(VietnamTime::from_unix(0).rfc3339(), "1970-01-01T07:00:00+07:00");
        assert_eq!(VietnamTime::from_unix(-25_200).rfc3339(), "1970-01-01T00:00:00+07:00");
    }

    #[test]
    fn every_unix_day_agrees_with_a_day_by_day_calendar_walk() {
        let (mut year, mut month, mut day) = (1970i64, 1u32, 1u32);
        for days in 0..(200 * 366) {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(month - 1) as usize];
            day += 1;
            if day > month_days {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }
}

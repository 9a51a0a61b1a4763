//! Checks on text a client sends: lengths, characters, shapes. Each failure is an
//! `InvalidArgument` naming the field and what to do.

use super::ServiceError;
use crate::text;

/// Longest request id, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;
/// Longest identifier (agency, procedure code, dossier number), in characters.
pub const IDENTIFIER_CHARS_MAX: usize = 64;
/// Longest file name, in characters.
pub const FILE_NAME_CHARS_MAX: usize = 255;

pub fn request_id(value: &str) -> Result<(), ServiceError> {
    if value.is_empty() || value.len() > REQUEST_ID_BYTES_MAX || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ServiceError::InvalidArgument(format!(
            "request_id must be 1-{REQUEST_ID_BYTES_MAX} printable ASCII characters without spaces (a UUID works)"
        )));
    }
    Ok(())
}

/// An identifier such as an agency id or a procedure code, returned in NFC: 1-64
/// characters of ASCII digits, Latin letters (Vietnamese included) and `.-_/`, never a
/// path (see [`crate::text`]).
pub fn identifier(field: &str, value: &str) -> Result<String, ServiceError> {
    let value = text::nfc(value);
    let length = value.chars().count();
    if length == 0 || length > IDENTIFIER_CHARS_MAX {
        return Err(ServiceError::InvalidArgument(format!("{field} must be 1-{IDENTIFIER_CHARS_MAX} characters, got {length}")));
    }
    text::check_identifier_characters(&value).map_err(|refused| ServiceError::InvalidArgument(format!("{field} {}", refused.0)))?;
    // Never a path, should anything ever use it as one: no "..", ".", empty or leading segment.
    if value.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(ServiceError::InvalidArgument(format!(
            "{field} {value:?} looks like a path; use a plain identifier such as xa-demo or 123/QĐ-UBND"
        )));
    }
    Ok(value)
}

/// Free text shown to people (names, titles, reasons), returned in NFC: no control,
/// format (bidi, zero-width), private-use or unassigned characters.
pub fn text(field: &str, value: &str, chars_max: usize, required: bool) -> Result<String, ServiceError> {
    let value = text::nfc(value);
    let length = value.chars().count();
    if required && value.trim().is_empty() {
        return Err(ServiceError::InvalidArgument(format!("{field} is required")));
    }
    if length > chars_max {
        return Err(ServiceError::InvalidArgument(format!("{field} is {length} characters; the limit is {chars_max}")));
    }
    text::check_human_text(&value).map_err(|refused| ServiceError::InvalidArgument(format!("{field} {}", refused.0)))?;
    Ok(value)
}

/// A file name as shown to clerks, returned in NFC: never a path.
pub fn file_name(value: &str) -> Result<String, ServiceError> {
    let value = text("file name", value, FILE_NAME_CHARS_MAX, true)?;
    if value.contains(['/', '\\']) || value == "." || value == ".." {
        return Err(ServiceError::InvalidArgument(format!(
            "file name {value:?} looks like a path; send the bare file name"
        )));
    }
    Ok(value)
}

/// Refuses `candidate` (a name or identifier already in NFC) when a reader could mistake
/// it for one of `existing` (the same UTS #39 skeleton, a different string), naming the
/// look-alike.
pub fn not_confusable<'a>(field: &str, candidate: &str, existing: impl IntoIterator<Item = &'a str>) -> Result<(), ServiceError> {
    match text::look_alike(candidate, existing) {
        Some(other) => Err(ServiceError::InvalidArgument(format!(
            "{field} {:?} can be mistaken for the existing {:?}; choose one that cannot",
            text::for_terminal(candidate),
            text::for_terminal(other)
        ))),
        None => Ok(()),
    }
}

/// A calendar date "YYYY-MM-DD" with a plausible month and day.
pub fn date(field: &str, value: &str) -> Result<(), ServiceError> {
    let parts: Vec<&str> = value.split('-').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|part| part.parse().ok()).collect();
    let valid = match (parts.as_slice(), numbers.as_deref()) {
        ([y, m, d], Some([year, month, day])) => {
            y.len() == 4 && m.len() == 2 && d.len() == 2 && (1900..=2999).contains(year) && (1..=12).contains(month) && (1..=31).contains(day)
        }
        _ => false,
    };
    if !valid {
        return Err(ServiceError::InvalidArgument(format!("{field} must be a date like 2026-11-24, got {value:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_traversal_in_file_names_is_refused() {
        assert!(file_name("../../etc/passwd").is_err());
        assert!(file_name("a\\b.pdf").is_err());
        assert!(file_name("..").is_err());
        assert!(file_name("giấy khai sinh.pdf").is_ok());
    }

    #[test]
    fn identifiers_are_never_paths() {
        assert!(identifier("agency_id", "../xa").is_err());
        assert!(identifier("agency_id", "/xa").is_err());
        assert!(identifier("agency_id", "xa//b").is_err());
        assert!(identifier("dossier_number", "123/QĐ-UBND").is_ok());
        assert!(identifier("procedure_code", "1.001193").is_ok());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(text("name", "Nguyễn\u{0}Văn", 100, true).is_err());
        assert!(text("name", "Nguyễn\nVăn", 100, true).is_err());
        assert!(text("name", "Nguyễn\u{202E}Văn", 100, true).is_err());
        assert!(text("name", "Nguyễn\u{0085}Văn", 100, true).is_err());
        assert_eq!(text("name", "Nguye\u{0302}\u{0303}n Văn An", 100, true).unwrap(), "Nguyễn Văn An", "NFD arrives as NFC");
    }

    #[test]
    fn identifiers_arrive_in_nfc_and_in_one_script() {
        assert_eq!(identifier("agency_id", "xa\u{0303}-demo").unwrap(), "xã-demo");
        let refused = identifier("agency_id", "UBND-\u{0445}\u{00E3}-demo").unwrap_err().to_string();
        assert!(refused.contains("Cyrillic"), "{refused}");
        let refused = not_confusable("agency_id", "xa-rnoc", ["xa-moc"]).unwrap_err().to_string();
        assert!(refused.contains("\"xa-moc\""), "{refused}");
    }

    #[test]
    fn dates_need_the_iso_shape() {
        assert!(date("d", "2026-11-24").is_ok());
        assert!(date("d", "24/11/2026").is_err());
        assert!(date("d", "2026-13-01").is_err());
    }
}

//! One rule for human text, in and out.
//!
//! In: every name, title, reason and identifier is normalised to NFC (Vietnamese typed on
//! some systems arrives decomposed, NFD), and refused when it carries characters that
//! change how text around them is shown or that nothing can show: control characters (C0
//! and C1), format characters (bidi overrides and isolates, zero-width characters),
//! private-use and unassigned code points. Identifiers (agency ids, codes) take only
//! ASCII digits, Latin letters (Vietnamese included) and `. - _ /`, so an id can never mix
//! in a Cyrillic or Greek look-alike. [`skeleton`] (UTS #39) tells which strings a reader
//! could mistake for one another.
//!
//! Out: text that did not pass this rule (certificate subjects are kept as signed) is
//! shown escaped, through one function per output kind: [`for_terminal`] (terminals,
//! logs, error messages), [`json_for_terminal`] (JSON printed to a terminal) and
//! [`for_html`] (before the template's own HTML escaping).
//!
//! This module knows nothing of gRPC, storage or services.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
use unicode_script::{Script, UnicodeScript as _};

/// Why a string was refused, for a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// `text` in Unicode Normalization Form C.
pub fn nfc(text: &str) -> String {
    text.nfc().collect()
}

/// A character that changes how the text around it is shown, or that nothing shows.
fn is_unsafe(character: char) -> bool {
    matches!(
        character.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

fn describe(character: char) -> String {
    let what = match character.general_category() {
        GeneralCategory::Control => "a control character",
        GeneralCategory::Format if is_bidi_control(character) => "a bidirectional-text control",
        GeneralCategory::Format => "an invisible format character",
        GeneralCategory::Unassigned => "an unassigned code point",
        GeneralCategory::PrivateUse => "a private-use character",
        _ => "a line or paragraph separator",
    };
    format!("{what} (U+{:04X})", u32::from(character))
}

fn is_bidi_control(character: char) -> bool {
    matches!(character, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks human text (already NFC): no unsafe character.
pub fn check_human_text(text: &str) -> Result<(), Refused> {
    match text.chars().find(|character| is_unsafe(*character)) {
        Some(character) => Err(Refused(format!("contains {}; remove it", describe(character)))),
        None => Ok(()),
    }
}

/// Checks an identifier's characters (already NFC): ASCII digits, Latin letters and
/// `. - _ /`.
pub fn check_identifier_characters(text: &str) -> Result<(), Refused> {
    let allowed = |character: char| {
        character.is_ascii_digit()
            || matches!(character, '.' | '-' | '_' | '/')
            || (character.is_alphabetic() && character.script() == Script::Latin)
    };
    match text.chars().find(|character| !allowed(*character)) {
        Some(character) if character.is_alphabetic() => Err(Refused(format!(
            "contains {character:?} (U+{:04X}), a letter of the {} script; identifiers use Latin letters (Vietnamese included), digits and . - _ / only",
            u32::from(character),
            character.script().full_name()
        ))),
        Some(character) if is_unsafe(character) => Err(Refused(format!("contains {}; use letters, digits and . - _ / only", describe(character)))),
        Some(character) => Err(Refused(format!("contains {character:?}; use letters, digits and . - _ / only"))),
        None => Ok(()),
    }
}

/// The UTS #39 skeleton of `text`: two strings with the same skeleton can be mistaken for
/// one another ("UBND-хã" with a Cyrillic х and "UBND-xã").
pub fn skeleton(text: &str) -> String {
    unicode_security::skeleton(text).collect()
}

/// The first of `existing` that `candidate` could be mistaken for, if any: the same
/// skeleton, a different string.
pub fn look_alike<'a>(candidate: &str, existing: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = skeleton(candidate);
    existing.into_iter().find(|other| *other != candidate && skeleton(other) == wanted)
}

/// Text for a terminal, a log line or an error message: every unsafe character becomes a
/// visible `\u{XXXX}`, so nothing can reorder, hide or overwrite what is printed.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    escape(text, |character, out| out.push_str(&format!("\\u{{{:04X}}}", u32::from(character))))
}

/// Several lines of output for a terminal: [`for_terminal`], keeping line breaks.
pub fn for_terminal_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|character| character != '\n' && is_unsafe(character)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(for_terminal).collect::<Vec<_>>().join("\n"))
}

/// A serialised JSON document for a terminal: every unsafe character inside its strings
/// becomes a JSON `\uXXXX` escape (a surrogate pair beyond the BMP), so the JSON means the
/// same to a parser and shows nothing hidden on a screen.
pub fn json_for_terminal(json: &str) -> Cow<'_, str> {
    // A raw line break can only be whitespace between tokens (JSON escapes it in strings).
    escape_except(json, '\n', |character, out| {
        let mut units = [0u16; 2];
        for unit in character.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{:04x}", unit));
        }
    })
}

/// Text for an HTML page, before the template escapes `<`, `&` and quotes: unsafe
/// characters become visible `\u{XXXX}` (a bidi override cannot reorder the page).
pub fn for_html(text: &str) -> Cow<'_, str> {
    for_terminal(text)
}

fn escape(text: &str, replace: impl FnMut(char, &mut String)) -> Cow<'_, str> {
    escape_except(text, '\0', replace)
}

/// Escapes every unsafe character but `kept` (NUL: none).
fn escape_except(text: &str, kept: char, mut replace: impl FnMut(char, &mut String)) -> Cow<'_, str> {
    let unsafe_here = |character: char| character != kept && is_unsafe(character);
    if !text.chars().any(unsafe_here) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        if unsafe_here(character) {
            replace(character, &mut out);
        } else {
            out.push(character);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposed_vietnamese_becomes_composed() {
        let decomposed = "Nguye\u{0302}\u{0303}n Va\u{0306}n A\u{0302}n";
        assert_eq!(nfc(decomposed), "Nguyễn Văn Ân");
        assert!(check_identifier_characters(&nfc("xa\u{0303}-demo")).is_ok(), "NFD ã is a Latin letter once composed");
    }

    #[test]
    fn bidi_controls_c0_c1_format_and_unassigned_characters_are_refused_in_names() {
        for bad in ["An\u{202E}fdp.exe", "An\u{2067}x\u{2069}", "An\u{0085}", "An\u{009B}31m", "A\u{0007}", "A\u{200B}n", "A\u{E000}", "A\u{0378}"] {
            let refused = check_human_text(bad).expect_err(bad);
            assert!(refused.0.contains("U+"), "{refused:?}");
        }
        assert!(check_human_text("Nguyễn Văn An — Chủ tịch UBND xã").is_ok());
    }

    #[test]
    fn identifiers_refuse_letters_of_other_scripts() {
        let cyrillic = "UBND-\u{0445}\u{00E3}-demo";
        let refused = check_identifier_characters(cyrillic).expect_err("Cyrillic х");
        assert!(refused.0.contains("U+0445") && refused.0.contains("Cyrillic"), "{refused:?}");
        assert!(check_identifier_characters("UBND-xã-Đông-Hòa/123").is_ok());
    }

    #[test]
    fn look_alikes_are_found_by_skeleton() {
        assert_eq!(look_alike("UBND-\u{0445}\u{00E3}", ["UBND-xã", "xa-khac"]), Some("UBND-xã"));
        assert_eq!(look_alike("UBND-xã", ["UBND-xã"]), None, "the same string is no look-alike");
        assert_eq!(look_alike("xa-moc", ["xa-rnoc"]), Some("xa-rnoc"));
        assert_eq!(look_alike("xa-an-binh", ["xa-binh-an"]), None);
    }

    #[test]
    fn escaping_makes_every_unsafe_character_visible() {
        assert_eq!(for_terminal("CN=An\u{202E}fdp.exe"), "CN=An\\u{202E}fdp.exe");
        assert_eq!(for_terminal("\u{009B}31m red"), "\\u{009B}31m red");
        assert!(matches!(for_terminal("Nguyễn Văn An"), Cow::Borrowed(_)));
        assert_eq!(for_terminal_lines("a\u{202E}\nb"), "a\\u{202E}\nb", "line breaks stay, the rest is escaped");
        let pretty = serde_json::to_string_pretty(&serde_json::json!({ "a": 1, "b": 2 })).unwrap();
        assert_eq!(json_for_terminal(&pretty), pretty, "line breaks between tokens stay");
        let json = serde_json::json!({ "subject": "An\u{202E}x\u{0085}" }).to_string();
        let escaped = json_for_terminal(&json);
        assert_eq!(escaped, "{\"subject\":\"An\\u202ex\\u0085\"}");
        let parsed: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(parsed["subject"], "An\u{202E}x\u{0085}", "the JSON still means the same");
    }
}

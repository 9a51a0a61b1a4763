//! Serialises parsed objects (lopdf's model) back to PDF syntax, for the few existing
//! objects an incremental update rewrites (a page, the catalog, the form dictionary).
//! New objects are written with pdf-writer instead.

use lopdf::{Dictionary, Object, StringFormat};

/// Appends `object` in PDF syntax. Streams are written with a /Length matching their
/// (unchanged, still encoded) content.
pub(crate) fn write_object(out: &mut Vec<u8>, object: &Object) {
    match object {
        Object::Null => out.extend_from_slice(b"null"),
        Object::Boolean(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        Object::Integer(value) => out.extend_from_slice(value.to_string().as_bytes()),
        Object::Real(value) => write_real(out, *value),
        Object::Name(name) => write_name(out, name),
        Object::String(bytes, StringFormat::Literal) => write_literal_string(out, bytes),
        Object::String(bytes, StringFormat::Hexadecimal) => {
            out.push(b'<');
            out.extend_from_slice(hex::encode(bytes).as_bytes());
            out.push(b'>');
        }
        Object::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b' ');
                }
                write_object(out, item);
            }
            out.push(b']');
        }
        Object::Dictionary(dictionary) => write_dictionary(out, dictionary),
        Object::Stream(stream) => {
            let mut dictionary = stream.dict.clone();
            dictionary.set("Length", Object::Integer(stream.content.len() as i64));
            write_dictionary(out, &dictionary);
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(&stream.content);
            out.extend_from_slice(b"\nendstream");
        }
        Object::Reference((id, generation)) => out.extend_from_slice(format!("{id} {generation} R").as_bytes()),
    }
}

pub(crate) fn write_dictionary(out: &mut Vec<u8>, dictionary: &Dictionary) {
    out.extend_from_slice(b"<<");
    for (key, value) in dictionary.iter() {
        write_name(out, key);
        out.push(b' ');
        write_object(out, value);
        out.push(b'\n');
    }
    out.extend_from_slice(b">>");
}

fn write_real(out: &mut Vec<u8>, value: f32) {
    // PDF reals have no exponent; Display never writes one for f32 and NaN has no PDF form.
    let value = if value.is_finite() { value } else { 0.0 };
    out.extend_from_slice(format!("{value}").as_bytes());
}

fn write_name(out: &mut Vec<u8>, name: &[u8]) {
    out.push(b'/');
    for &byte in name {
        let regular = (0x21..=0x7e).contains(&byte) && !b"#()<>[]{}/%".contains(&byte);
        if regular {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("#{byte:02X}").as_bytes());
        }
    }
}

fn write_literal_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'(');
    for &byte in bytes {
        match byte {
            b'(' | b')' | b'\\' => {
                out.push(b'\\');
                out.push(byte);
            }
            0x20..=0x7e => out.push(byte),
            _ => out.extend_from_slice(format!("\\{byte:03o}").as_bytes()),
        }
    }
    out.push(b')');
}

/// A PDF text string (UTF-16BE with its byte order mark) as a hex string object.
pub(crate) fn text_string(text: &str) -> Object {
    let mut bytes = vec![0xFE, 0xFF];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_be_bytes());
    }
    Object::String(bytes, StringFormat::Hexadecimal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(object: &Object) -> String {
        let mut out = Vec::new();
        write_object(&mut out, object);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn names_and_strings_are_escaped() {
        assert_eq!(written(&Object::Name(b"A B#".to_vec())), "/A#20B#23");
        assert_eq!(written(&Object::string_literal("a(b)\\\n")), "(a\\(b\\)\\\\\\012)");
        assert_eq!(written(&text_string("Đ")), "<feff0110>");
        assert_eq!(written(&Object::Array(vec![Object::Integer(1), Object::Reference((4, 0))])), "[1 4 0 R]");
    }
}

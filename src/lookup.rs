//! Lookup codes (mã tra cứu): 80 random bits written as 16 Crockford base32 characters in
//! four groups, e.g. `7K3M-Q9TX-2HRN-B4WD`. Easy to read aloud and to type: no I, L, O, U;
//! on input those are read as 1, 1, 0 and V is kept, case is ignored, dashes and spaces
//! are skipped.
//!
//! Codes are looked up by the SHA-256 of their canonical form ([`LookupCode::index_key`]),
//! so the time a lookup takes says nothing about which prefixes exist.

use std::fmt;

use serde::{Deserialize, Serialize};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code, without dashes: 16 × 5 bits = 80 bits.
pub const LOOKUP_CODE_CHARS: usize = 16;
/// Longest input accepted by [`LookupCode::parse`] (with separators).
pub const LOOKUP_CODE_INPUT_CHARS_MAX: usize = 40;

/// A canonical lookup code: 16 characters of the Crockford alphabet, no separators.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LookupCode(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupCodeError {
    #[error("lookup code is too long; it has 16 letters and digits, e.g. 7K3M-Q9TX-2HRN-B4WD")]
    TooLong,
    #[error("lookup code contains {0:?}, which is not one of its letters or digits")]
    BadCharacter(char),
    #[error("lookup code has {0} letters and digits; it needs 16, e.g. 7K3M-Q9TX-2HRN-B4WD")]
    WrongLength(usize),
}

impl LookupCode {
    /// Makes a fresh code from 80 bits of the system's secure random source.
    pub fn generate(random: &dyn ring::rand::SecureRandom) -> Result<LookupCode, ring::error::Unspecified> {
        let mut bytes = [0u8; 10];
        random.fill(&mut bytes)?;
        Ok(LookupCode::from_random_bytes(bytes))
    }

    fn from_random_bytes(bytes: [u8; 10]) -> LookupCode {
        let mut bits: u128 = 0;
        for byte in bytes {
            bits = (bits << 8) | u128::from(byte);
        }
        let text = (0..LOOKUP_CODE_CHARS)
            .rev()
            .map(|position| ALPHABET[((bits >> (position * 5)) & 0x1f) as usize] as char)
            .collect();
        LookupCode(text)
    }

    /// Parses what a person typed or a QR code carried.
    pub fn parse(input: &str) -> Result<LookupCode, LookupCodeError> {
        if input.len() > LOOKUP_CODE_INPUT_CHARS_MAX {
            return Err(LookupCodeError::TooLong);
        }
        let mut canonical = String::with_capacity(LOOKUP_CODE_CHARS);
        for character in input.chars() {
            let normalised = match character.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                other if other.is_ascii() && ALPHABET.contains(&(other as u8)) => other,
                _ => return Err(LookupCodeError::BadCharacter(character)),
            };
            canonical.push(normalised);
        }
        if canonical.len() != LOOKUP_CODE_CHARS {
            return Err(LookupCodeError::WrongLength(canonical.len()));
        }
        Ok(LookupCode(canonical))
    }

    /// The canonical 16 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Key under which the code is indexed: SHA-256 of the canonical form.
    pub fn index_key(&self) -> [u8; 32] {
        crate::domain::Sha256::digest(self.0.as_bytes()).0
    }
}

impl fmt::Display for LookupCode {
    /// Groups of four separated by dashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (group, chunk) in self.0.as_bytes().chunks(4).enumerate() {
            if group > 0 {
                f.write_str("-")?;
            }
            // The alphabet is ASCII, so every chunk is valid UTF-8.
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for LookupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupCode({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_round_trip_through_their_printed_form() {
        let random = ring::rand::SystemRandom::new();
        for _ in 0..100 {
            let code = LookupCode::generate(&random).unwrap();
            let printed = code.to_string();
            assert_eq!(printed.len(), 19);
            assert_eq!(LookupCode::parse(&printed).unwrap(), code);
            assert_eq!(LookupCode::parse(&printed.to_lowercase()).unwrap(), code);
        }
    }

    #[test]
    fn every_bit_of_randomness_reaches_the_code() {
        let zero = LookupCode::from_random_bytes([0; 10]);
        assert_eq!(zero.as_str(), "0000000000000000");
        let ones = LookupCode::from_random_bytes([0xff; 10]);
        assert_eq!(ones.as_str(), "ZZZZZZZZZZZZZZZZ");
        let mut last_bit = [0u8; 10];
        last_bit[9] = 1;
        assert_eq!(LookupCode::from_random_bytes(last_bit).as_str(), "0000000000000001");
    }

    #[test]
    fn ambiguous_letters_are_read_as_digits() {
        let code = LookupCode::parse("ILO0-0000-0000-0000").unwrap();
        assert_eq!(code.as_str(), "1100000000000000");
    }

    #[test]
    fn malformed_codes_are_refused_with_a_reason() {
        assert_eq!(LookupCode::parse("ABC"), Err(LookupCodeError::WrongLength(3)));
        assert_eq!(LookupCode::parse("ABCD-EFGH-JKMN-PQR!"), Err(LookupCodeError::BadCharacter('!')));
        assert_eq!(LookupCode::parse("ABCD-EFGH-JKMN-PQRU"), Err(LookupCodeError::BadCharacter('U')));
        assert_eq!(LookupCode::parse(&"A".repeat(100)), Err(LookupCodeError::TooLong));
    }
}

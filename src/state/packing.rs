//! How a record is kept once (issue 16): the stored forms of certifications, log leaves
//! and request outcomes, and the certificates they share.
//!
//! - A certification lives in its log leaf only. The `certifications` table maps its
//!   lookup-code key to a [`CertificationRow`]: the leaf's index and the revocation, the one
//!   part of a certification that changes.
//! - A log leaf is stored packed: every certificate its bytes carry verbatim (the signer's
//!   chain and the time-stamp authority's certificate inside each CMS) is replaced by a
//!   reference to one shared copy, `certificate/<sha256 hex>` in the `security` table.
//!   Unpacking gives back the exact bytes, so every leaf hash, root and proof is unchanged.
//! - A certification leaf of a signer who has certified before is stored as a delta
//!   against that signer's reference leaf (its first certification leaf, stored packed):
//!   runs of bytes found there (the chain, the signer's identifiers, the CMS attributes
//!   that are the same in every signature of that signer) become copies of the reference,
//!   the rest stays literal. `reference-leaf/<signer id>` in `security` names it.
//! - A request's remembered outcome names its certifications by lookup code
//!   ([`Outcome::CertificationsByCode`](super::command::Outcome)) instead of copying them.
//!
//! Every stored form starts with a byte no earlier form starts with, so readers take both
//! (data directories are migrated on open, see `StateStore::migrate_record_layout`).

use serde::{Deserialize, Serialize};

use crate::domain::{Certification, Revocation, Sha256};

/// First byte of a packed leaf (leaves themselves start with their version, 2 or 3).
pub const PACKED_LEAF: u8 = 0xC0;
/// First byte of a leaf stored as a delta against a reference leaf.
pub const DELTA_LEAF: u8 = 0xC2;
/// First byte of a [`CertificationRow`] (full records start with their version, 1 or 2).
pub const CERTIFICATION_ROW: u8 = 0xC1;

const SEGMENT_LITERAL: u8 = 0;
const SEGMENT_CERTIFICATE: u8 = 1;
const SEGMENT_COPY: u8 = 2;

/// Matches shorter than this stay literal (a copy costs 9 bytes).
const COPY_MIN_BYTES: usize = 16;
/// The window by which the reference is indexed.
const WINDOW_BYTES: usize = 8;

/// Certificates shorter than this are left in place (a reference costs 33 bytes).
const CERTIFICATE_PACKED_MIN_BYTES: usize = 128;

/// The `security` table key of a signer's reference leaf (its index, u64 big-endian).
pub fn reference_leaf_key(signer_id: &str) -> String {
    format!("reference-leaf/{signer_id}")
}

/// The `security` table key of a shared certificate.
pub fn certificate_key(hash: &Sha256) -> String {
    format!("certificate/{hash}")
}

/// What `certifications` holds for a certification recorded since the layout of issue 16.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificationRow {
    pub leaf_index: u64,
    pub revocation: Option<Revocation>,
}

impl CertificationRow {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![CERTIFICATION_ROW];
        bytes.extend(postcard::to_stdvec(self).expect("postcard serialisation of owned data into a Vec"));
        bytes
    }
}

/// A `certifications` value: the row of the current layout, or a full record written
/// before it (kept only where no leaf index was known).
pub enum StoredCertification {
    Row(CertificationRow),
    Full(Certification),
}

pub fn decode_certification_value(bytes: &[u8]) -> Result<StoredCertification, String> {
    match bytes.split_first() {
        Some((&CERTIFICATION_ROW, body)) => postcard::from_bytes(body).map(StoredCertification::Row).map_err(|error| error.to_string()),
        Some(_) => postcard::from_bytes(bytes).map(StoredCertification::Full).map_err(|error| error.to_string()),
        None => Err("an empty certification row".into()),
    }
}

/// Packs leaf bytes: each occurrence of one of `certificates` (DER) becomes a reference.
/// Returns the stored form and the certificates it refers to (to store once). Leaves
/// without a certificate worth packing are stored as they are.
pub fn pack_leaf(leaf: &[u8], certificates: &[Vec<u8>]) -> (Vec<u8>, Vec<(Sha256, Vec<u8>)>) {
    // (start, end, certificate index), non-overlapping, in order.
    let mut found: Vec<(usize, usize, usize)> = Vec::new();
    for (index, certificate) in certificates.iter().enumerate() {
        if certificate.len() < CERTIFICATE_PACKED_MIN_BYTES {
            continue;
        }
        for start in memchr::memmem::find_iter(leaf, certificate) {
            let end = start + certificate.len();
            if found.iter().all(|&(other_start, other_end, _)| end <= other_start || start >= other_end) {
                found.push((start, end, index));
            }
        }
    }
    if found.is_empty() {
        return (leaf.to_vec(), Vec::new());
    }
    found.sort_unstable();
    let mut packed = Vec::with_capacity(leaf.len() / 2);
    packed.push(PACKED_LEAF);
    let mut referred: Vec<(Sha256, Vec<u8>)> = Vec::new();
    let mut position = 0;
    for (start, end, index) in found {
        literal(&mut packed, &leaf[position..start]);
        let hash = Sha256::digest(&certificates[index]);
        packed.push(SEGMENT_CERTIFICATE);
        packed.extend_from_slice(&hash.0);
        if !referred.iter().any(|(known, _)| known == &hash) {
            referred.push((hash, certificates[index].clone()));
        }
        position = end;
    }
    literal(&mut packed, &leaf[position..]);
    (packed, referred)
}

fn literal(packed: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    packed.push(SEGMENT_LITERAL);
    packed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    packed.extend_from_slice(bytes);
}

/// `leaf` as a delta against `reference` (the reference leaf's own bytes, at index
/// `reference_index`): a greedy, deterministic match of each position against the first
/// place in the reference where the same [`WINDOW_BYTES`] bytes start.
pub fn delta_leaf(leaf: &[u8], reference_index: u64, reference: &[u8]) -> Vec<u8> {
    let first_at = window_index(reference);
    delta_by(leaf, reference_index, reference, |window_at| first_at.get(&window(window_at)).copied())
}

/// Where each window of a reference first starts: the index behind [`delta_leaf`].
type WindowIndex = std::collections::HashMap<u64, usize, WindowHash>;

/// How many references' indexes a thread keeps ([`window_index`]).
const WINDOW_INDEXES_KEPT: usize = 16;

thread_local! {
    /// The indexes of the references this thread encoded against last, most recent first.
    static WINDOW_INDEXES: std::cell::RefCell<Vec<(Vec<u8>, std::rc::Rc<WindowIndex>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The index of `reference`, built once for the last [`WINDOW_INDEXES_KEPT`] references
/// this thread used (a signer's reference leaf is the same for all its certifications;
/// building the index showed as 5 % of a Raft thread under certify). Kept by the
/// reference's bytes, compared whole on each use, so a reference that differs (one an
/// aborted transaction wrote, say) never meets another's index; and the index only
/// answers where a window first starts, so the output is the same with or without it.
fn window_index(reference: &[u8]) -> std::rc::Rc<WindowIndex> {
    WINDOW_INDEXES.with(|kept| {
        let mut kept = kept.borrow_mut();
        if let Some(position) = kept.iter().position(|(bytes, _)| bytes.as_slice() == reference) {
            let entry = kept.remove(position);
            let index = entry.1.clone();
            kept.insert(0, entry);
            return index;
        }
        let starts = reference.len().saturating_sub(WINDOW_BYTES - 1);
        let mut first_at = WindowIndex::with_capacity_and_hasher(starts, WindowHash);
        for start in 0..starts {
            first_at.entry(window(&reference[start..])).or_insert(start);
        }
        let index = std::rc::Rc::new(first_at);
        kept.truncate(WINDOW_INDEXES_KEPT - 1);
        kept.insert(0, (reference.to_vec(), index.clone()));
        index
    })
}

/// [`delta_leaf`] with `first_at` answering where the window at the start of its argument
/// first starts in `reference`.
fn delta_by(leaf: &[u8], reference_index: u64, reference: &[u8], first_at: impl Fn(&[u8]) -> Option<usize>) -> Vec<u8> {
    let mut delta = Vec::with_capacity(leaf.len() / 2);
    delta.push(DELTA_LEAF);
    delta.extend_from_slice(&reference_index.to_be_bytes());
    let (mut position, mut literal_from) = (0, 0);
    while position + WINDOW_BYTES <= leaf.len() {
        let matched = first_at(&leaf[position..]).map(|at| {
            let length = leaf[position..].iter().zip(&reference[at..]).take_while(|(a, b)| a == b).count();
            (at, length)
        });
        match matched {
            Some((at, length)) if length >= COPY_MIN_BYTES => {
                literal(&mut delta, &leaf[literal_from..position]);
                delta.push(SEGMENT_COPY);
                delta.extend_from_slice(&(at as u32).to_be_bytes());
                delta.extend_from_slice(&(length as u32).to_be_bytes());
                position += length;
                literal_from = position;
            }
            _ => position += 1,
        }
    }
    literal(&mut delta, &leaf[literal_from..]);
    delta
}

/// The [`WINDOW_BYTES`] bytes at the start of `bytes` (which holds at least as many) as one
/// key.
fn window(bytes: &[u8]) -> u64 {
    let mut key = [0; WINDOW_BYTES];
    key.copy_from_slice(&bytes[..WINDOW_BYTES]);
    u64::from_le_bytes(key)
}

/// Hashes a window key with one widening multiplication, folded (as foldhash and
/// rustc-hash do): [`delta_leaf`] indexes every window of the reference on each
/// certification, inside the Raft apply, where SipHash took 6 % of a node's time. Which
/// hash is used never shows in the output: the map only answers "where does this window
/// first start".
#[derive(Clone, Copy, Default)]
struct WindowHash;

impl std::hash::BuildHasher for WindowHash {
    type Hasher = WindowHasher;
    fn build_hasher(&self) -> WindowHasher {
        WindowHasher(0)
    }
}

struct WindowHasher(u64);

impl std::hash::Hasher for WindowHasher {
    fn finish(&self) -> u64 {
        let product = u128::from(self.0) * u128::from(0x9E37_79B9_7F4A_7C15u64);
        (product as u64) ^ ((product >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The leaf's own bytes from its stored form; `certificate` fetches a shared certificate,
/// `reference` the stored form of a reference leaf (never itself a delta).
pub fn unpack_leaf<E>(
    stored: &[u8],
    mut certificate: impl FnMut(&Sha256) -> Result<Option<Vec<u8>>, E>,
    mut reference: impl FnMut(u64) -> Result<Option<Vec<u8>>, E>,
    corrupt: impl Fn(String) -> E,
) -> Result<Vec<u8>, E> {
    unpack(stored, &mut certificate, &mut reference, &corrupt)
}

type FetchCertificate<'a, E> = dyn for<'h> FnMut(&'h Sha256) -> Result<Option<Vec<u8>>, E> + 'a;
type FetchLeaf<'a, E> = dyn FnMut(u64) -> Result<Option<Vec<u8>>, E> + 'a;

/// The leaf a delta-encoded stored leaf copies from, or `None` for any other stored form.
pub fn delta_reference(stored: &[u8]) -> Option<u64> {
    match stored.split_first() {
        Some((&DELTA_LEAF, rest)) => rest.first_chunk::<8>().map(|index| u64::from_be_bytes(*index)),
        _ => None,
    }
}

/// [`unpack_leaf`] of a delta-encoded leaf whose reference the caller already unpacked
/// (`base`, the leaf [`delta_reference`] names).
pub fn unpack_delta<E>(
    stored: &[u8],
    base: &[u8],
    mut certificate: impl FnMut(&Sha256) -> Result<Option<Vec<u8>>, E>,
    corrupt: impl Fn(String) -> E,
) -> Result<Vec<u8>, E> {
    let rest = match stored.split_first() {
        Some((&DELTA_LEAF, rest)) => rest.get(8..).ok_or_else(|| corrupt("a delta leaf ends inside its reference".into()))?,
        _ => return Err(corrupt("not a delta leaf".into())),
    };
    segments(stored.len(), rest, Some(base), &mut certificate, &corrupt)
}

fn unpack<E>(
    stored: &[u8],
    certificate: &mut FetchCertificate<'_, E>,
    reference: &mut FetchLeaf<'_, E>,
    corrupt: &dyn Fn(String) -> E,
) -> Result<Vec<u8>, E> {
    let (base, rest) = match stored.split_first() {
        Some((&PACKED_LEAF, rest)) => (None, rest),
        Some((&DELTA_LEAF, rest)) => {
            let (index, rest) = rest.split_first_chunk::<8>().ok_or_else(|| corrupt("a delta leaf ends inside its reference".into()))?;
            let index = u64::from_be_bytes(*index);
            let stored_reference = reference(index)?.ok_or_else(|| corrupt(format!("a delta leaf refers to leaf {index}, which is missing")))?;
            if stored_reference.first() == Some(&DELTA_LEAF) {
                return Err(corrupt(format!("a delta leaf refers to leaf {index}, itself a delta")));
            }
            let base = unpack(&stored_reference, certificate, &mut |_| Ok(None), corrupt)?;
            (Some(base), rest)
        }
        _ => return Ok(stored.to_vec()),
    };
    segments(stored.len(), rest, base.as_deref(), certificate, corrupt)
}

/// The leaf that the segments after a stored leaf's header spell.
fn segments<E>(
    stored_len: usize,
    mut rest: &[u8],
    base: Option<&[u8]>,
    certificate: &mut FetchCertificate<'_, E>,
    corrupt: &dyn Fn(String) -> E,
) -> Result<Vec<u8>, E> {
    let mut leaf = Vec::with_capacity(stored_len * 2);
    while let Some((&tag, body)) = rest.split_first() {
        match tag {
            SEGMENT_LITERAL => {
                let (length, body) = body.split_first_chunk::<4>().ok_or_else(|| corrupt("a packed leaf ends inside a length".into()))?;
                let length = u32::from_be_bytes(*length) as usize;
                let bytes = body.get(..length).ok_or_else(|| corrupt("a packed leaf ends inside a literal".into()))?;
                leaf.extend_from_slice(bytes);
                rest = &body[length..];
            }
            SEGMENT_CERTIFICATE => {
                let (hash, body) = body.split_first_chunk::<32>().ok_or_else(|| corrupt("a packed leaf ends inside a reference".into()))?;
                let hash = Sha256(*hash);
                let der = certificate(&hash)?.ok_or_else(|| corrupt(format!("a packed leaf refers to certificate {hash}, which is not stored")))?;
                leaf.extend_from_slice(&der);
                rest = body;
            }
            SEGMENT_COPY => {
                let base = base.ok_or_else(|| corrupt("a packed leaf without a reference copies from one".into()))?;
                let (at, body) = body.split_first_chunk::<4>().ok_or_else(|| corrupt("a delta leaf ends inside a copy".into()))?;
                let (length, body) = body.split_first_chunk::<4>().ok_or_else(|| corrupt("a delta leaf ends inside a copy".into()))?;
                let (at, length) = (u32::from_be_bytes(*at) as usize, u32::from_be_bytes(*length) as usize);
                let bytes = base.get(at..at.saturating_add(length)).ok_or_else(|| corrupt("a delta leaf copies beyond its reference".into()))?;
                leaf.extend_from_slice(bytes);
                rest = body;
            }
            other => return Err(corrupt(format!("a packed leaf has segment tag {other}"))),
        }
    }
    Ok(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_of(referred: &[(Sha256, Vec<u8>)]) -> impl FnMut(&Sha256) -> Result<Option<Vec<u8>>, String> + '_ {
        move |hash| Ok(referred.iter().find(|(known, _)| known == hash).map(|(_, der)| der.clone()))
    }

    #[test]
    fn a_packed_leaf_unpacks_to_its_exact_bytes_and_shares_each_certificate_once() {
        let first = vec![0x30; 300];
        let second: Vec<u8> = (0..400u32).map(|i| (i % 251) as u8).collect();
        let mut leaf = vec![0x03, 1, 2, 3];
        leaf.extend(&first);
        leaf.extend([9, 9]);
        leaf.extend(&second);
        leaf.extend(&first);
        leaf.extend([7]);
        let (packed, referred) = pack_leaf(&leaf, &[first.clone(), second.clone(), vec![1, 2]]);
        assert_eq!(packed[0], PACKED_LEAF);
        assert_eq!(referred.len(), 2, "each certificate is stored once");
        assert!(packed.len() < 200, "{} packed bytes for a {}-byte leaf", packed.len(), leaf.len());
        assert_eq!(unpack_leaf(&packed, store_of(&referred), |_| Ok(None), |e| e).unwrap(), leaf);
    }

    #[test]
    fn a_leaf_without_certificates_is_stored_as_it_is_and_a_missing_certificate_is_corruption() {
        let leaf = vec![0x03, 5, 6, 7];
        let (stored, referred) = pack_leaf(&leaf, &[vec![0x30; 200]]);
        assert_eq!(stored, leaf);
        assert!(referred.is_empty());
        assert_eq!(unpack_leaf(&stored, store_of(&[]), |_| Ok(None), |e| e).unwrap(), leaf);

        let mut with = leaf.clone();
        with.extend(vec![0x30; 200]);
        let (packed, _) = pack_leaf(&with, &[vec![0x30; 200]]);
        let error = unpack_leaf(&packed, store_of(&[]), |_| Ok(None), |e| e).unwrap_err();
        assert!(error.contains("not stored"), "{error}");
        let error = unpack_leaf(&packed[..packed.len() - 3], |_| Ok(Some(vec![0x30; 200])), |_| Ok(None), |e: String| e).unwrap_err();
        assert!(error.contains("ends inside"), "{error}");
    }

    /// The stored form is what replicas of different versions must agree on, so the
    /// index behind [`delta_leaf`] may change only if its output does not: each position
    /// is matched against the first start of its window in the reference, which a plain
    /// scan finds here, also when the index was kept from an earlier leaf.
    #[test]
    fn a_delta_leaf_matches_each_window_at_its_first_start_in_the_reference() {
        fn by_scan(leaf: &[u8], reference_index: u64, reference: &[u8]) -> Vec<u8> {
            delta_by(leaf, reference_index, reference, |at: &[u8]| {
                reference.windows(WINDOW_BYTES).position(|candidate| candidate == &at[..WINDOW_BYTES])
            })
        }
        // Repeated windows (first start wins), matches at both ends, short references.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // More references than a thread keeps indexes of, drawn again and again, and now
        // and then one changed in a byte: a kept index must never answer for other bytes.
        let mut references: Vec<(u64, Vec<u8>)> = (0..WINDOW_INDEXES_KEPT as u64 + 8)
            .map(|_| {
                let alphabet = 2 + next() % 6;
                let length = next() % 600;
                (alphabet, (0..length).map(|_| (next() % alphabet) as u8).collect())
            })
            .collect();
        for round in 0..600 {
            let drawn = (next() as usize) % references.len();
            if next() % 8 == 0 && !references[drawn].1.is_empty() {
                let (alphabet, bytes) = &mut references[drawn];
                let at = (next() as usize) % bytes.len();
                bytes[at] = (bytes[at].wrapping_add(1)) % *alphabet as u8;
            }
            let (alphabet, reference) = references[drawn].clone();
            let mut leaf = Vec::new();
            while leaf.len() < 700 {
                if !reference.is_empty() && next() % 2 == 0 {
                    let from = (next() as usize) % reference.len();
                    let to = (from + 1 + (next() as usize) % 80).min(reference.len());
                    leaf.extend_from_slice(&reference[from..to]);
                } else {
                    leaf.push((next() % alphabet) as u8);
                }
            }
            assert_eq!(delta_leaf(&leaf, round, &reference), by_scan(&leaf, round, &reference), "round {round}");
        }
    }

    #[test]
    fn a_delta_leaf_copies_what_its_reference_holds_and_unpacks_to_its_exact_bytes() {
        let certificate = vec![0x30; 300];
        let mut reference = vec![0x03, 1, 2, 3];
        reference.extend(&certificate);
        reference.extend(b"signer 0123456789abcdef0123456789abcdef, agency xa-a; signature AAAA");
        let (stored_reference, referred) = pack_leaf(&reference, &[certificate.clone()]);
        let mut leaf = vec![0x03, 9, 9];
        leaf.extend(&certificate);
        leaf.extend(b"signer 0123456789abcdef0123456789abcdef, agency xa-a; signature BBBB");
        let delta = delta_leaf(&leaf, 7, &reference);
        assert_eq!(delta[0], DELTA_LEAF);
        assert!(delta.len() < 60, "{} bytes for a {}-byte leaf", delta.len(), leaf.len());
        let fetch = |index: u64| Ok(if index == 7 { Some(stored_reference.clone()) } else { None });
        assert_eq!(unpack_leaf(&delta, store_of(&referred), fetch, |e| e).unwrap(), leaf);
        // The same input gives the same bytes (apply is deterministic).
        assert_eq!(delta_leaf(&leaf, 7, &reference), delta);
        // A missing reference, or a reference that is itself a delta, is corruption.
        let error = unpack_leaf(&delta, store_of(&referred), |_| Ok(None), |e| e).unwrap_err();
        assert!(error.contains("missing"), "{error}");
        let error = unpack_leaf(&delta, store_of(&referred), |_| Ok(Some(delta.clone())), |e| e).unwrap_err();
        assert!(error.contains("itself a delta"), "{error}");
        // A copy beyond the reference is refused, not read out of bounds.
        let mut bad = delta.clone();
        let copy = bad.iter().position(|&byte| byte == SEGMENT_COPY).unwrap();
        bad[copy + 5..copy + 9].copy_from_slice(&u32::MAX.to_be_bytes());
        let error = unpack_leaf(&bad, store_of(&referred), fetch, |e| e).unwrap_err();
        assert!(error.contains("beyond") || error.contains("segment tag") || error.contains("ends inside"), "{error}");
    }

    #[test]
    fn rows_and_full_records_are_told_apart_by_their_first_byte() {
        let row = CertificationRow { leaf_index: 42, revocation: None };
        match decode_certification_value(&row.encode()).unwrap() {
            StoredCertification::Row(decoded) => assert_eq!(decoded, row),
            StoredCertification::Full(_) => panic!("a row decoded as a full record"),
        }
    }
}

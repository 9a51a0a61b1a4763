//! Published RFC 6962 / RFC 9162 test vectors.
//!
//! Source: github.com/transparency-dev/merkle, file proof/verify_test.go at
//! commit 9ca563d3ac2bab915317cf153ed4f952f6e74c07 (the variables `leaves`,
//! `roots`, `inclusionProofs` and `consistencyProofs`; later commits moved the
//! same data to testdata/*.json). They are the eight test leaves Certificate
//! Transparency implementations share since google/certificate-transparency.
//! Inclusion vectors there number leaves from 1; the tests subtract one.
//! Leaf and empty-root hashes: rfc6962/rfc6962_test.go in the same repository.

use super::super::merkle::{append, consistency_proof, inclusion_proof, root, MemoryNodeStore};
use super::super::proof::{empty_root, leaf_hash, verify_consistency, verify_inclusion, Hash};
use super::hash_from_hex;

const LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

/// Roots of the trees of the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf number counted from 1, tree size, proof).
const INCLUSION_PROOFS: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY_PROOFS: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn published_tree() -> MemoryNodeStore {
    let mut store = MemoryNodeStore::new();
    for (size_before, data) in (0u64..).zip(LEAVES) {
        append(&mut store, size_before, data).expect("append to a memory store succeeds");
    }
    store
}

fn hashes(hex_hashes: &[&str]) -> Vec<Hash> {
    hex_hashes.iter().map(|text| hash_from_hex(text)).collect()
}

fn published_root(size: u64) -> Hash {
    hash_from_hex(ROOTS[usize::try_from(size - 1).expect("small size")])
}

#[test]
fn hashes_match_published_rfc6962_values() {
    assert_eq!(
        empty_root(),
        hash_from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(
        leaf_hash(b""),
        hash_from_hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    assert_eq!(
        leaf_hash(b"L123456"),
        hash_from_hex("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    );
}

#[test]
fn root_after_each_append_matches_published_root() {
    let mut store = MemoryNodeStore::new();
    assert_eq!(root(&store, 0).expect("empty root"), empty_root());
    for (size_before, data) in (0u64..).zip(LEAVES) {
        append(&mut store, size_before, data).expect("append");
        assert_eq!(
            root(&store, size_before + 1).expect("root"),
            published_root(size_before + 1)
        );
    }
}

#[test]
fn historical_roots_match_published_roots_after_the_tree_grew() {
    let store = published_tree();
    for size in 1..=8 {
        assert_eq!(
            root(&store, size).expect("historical root"),
            published_root(size),
            "size {size}"
        );
    }
}

#[test]
fn inclusion_proofs_match_published_proofs_and_verify() {
    let store = published_tree();
    for (leaf_number, size, expected) in INCLUSION_PROOFS {
        let leaf_index = leaf_number - 1;
        let proof = inclusion_proof(&store, leaf_index, size).expect("proof");
        assert_eq!(proof, hashes(expected), "leaf {leaf_index} size {size}");
        let leaf = leaf_hash(LEAVES[usize::try_from(leaf_index).expect("small index")]);
        verify_inclusion(&leaf, leaf_index, size, &proof, &published_root(size))
            .expect("published proof verifies");
    }
}

#[test]
fn consistency_proofs_match_published_proofs_and_verify() {
    let store = published_tree();
    for (old_size, new_size, expected) in CONSISTENCY_PROOFS {
        let proof = consistency_proof(&store, old_size, new_size).expect("proof");
        assert_eq!(proof, hashes(expected), "{old_size} -> {new_size}");
        verify_consistency(
            old_size,
            new_size,
            &published_root(old_size),
            &published_root(new_size),
            &proof,
        )
        .expect("published proof verifies");
    }
}

//! RFC 9162 section 2.1 written as plainly as the RFC states it, as the
//! oracle the store-backed tree is checked against. MTH, PATH and PROOF are
//! the RFC's recursive definitions over a list of leaf hashes; the only
//! addition is a memo of MTH so that checking every proof of every tree size
//! up to 300 stays fast.

use std::cell::RefCell;
use std::collections::HashMap;

use super::super::proof::{empty_root, leaf_hash, node_hash, Hash};

pub struct Reference {
    leaves: Vec<Hash>,
    subtree_roots: RefCell<HashMap<(usize, usize), Hash>>,
}

/// The largest power of two smaller than `n`, for `n > 1` (the RFC's k).
fn split_point(n: usize) -> usize {
    assert!(n > 1);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl Reference {
    pub fn new(leaf_data: &[Vec<u8>]) -> Self {
        Self {
            leaves: leaf_data.iter().map(|data| leaf_hash(data)).collect(),
            subtree_roots: RefCell::new(HashMap::new()),
        }
    }

    /// MTH(D[start:end]).
    pub fn mth(&self, start: usize, end: usize) -> Hash {
        if let Some(hash) = self.subtree_roots.borrow().get(&(start, end)) {
            return *hash;
        }
        let n = end - start;
        let hash = match n {
            0 => empty_root(),
            1 => self.leaves[start],
            _ => {
                let k = split_point(n);
                node_hash(&self.mth(start, start + k), &self.mth(start + k, end))
            }
        };
        self.subtree_roots.borrow_mut().insert((start, end), hash);
        hash
    }

    /// Root of the tree of the first `size` leaves.
    pub fn root(&self, size: usize) -> Hash {
        self.mth(0, size)
    }

    /// PATH(m, D[0:size]).
    pub fn path(&self, m: usize, size: usize) -> Vec<Hash> {
        self.path_in(m, 0, size)
    }

    /// PATH(m, D[start:end]), with `m` relative to `start`.
    fn path_in(&self, m: usize, start: usize, end: usize) -> Vec<Hash> {
        let n = end - start;
        if n == 1 {
            assert_eq!(m, 0);
            return Vec::new();
        }
        let k = split_point(n);
        if m < k {
            let mut path = self.path_in(m, start, start + k);
            path.push(self.mth(start + k, end));
            path
        } else {
            let mut path = self.path_in(m - k, start + k, end);
            path.push(self.mth(start, start + k));
            path
        }
    }

    /// For each hash of PATH(m, D[0:size]), whether it is the left sibling.
    /// Two (index, size) pairs with the same sides combine a proof the same
    /// way, so an RFC 9162 verifier cannot tell them apart.
    pub fn path_sides(m: usize, size: usize) -> Vec<bool> {
        let n = size;
        if n == 1 {
            return Vec::new();
        }
        let k = split_point(n);
        if m < k {
            let mut sides = Self::path_sides(m, k);
            sides.push(false);
            sides
        } else {
            let mut sides = Self::path_sides(m - k, n - k);
            sides.push(true);
            sides
        }
    }

    /// PROOF(m, D[0:size]) = SUBPROOF(m, D[0:size], true).
    pub fn proof(&self, m: usize, size: usize) -> Vec<Hash> {
        self.subproof(m, 0, size, true)
    }

    /// SUBPROOF(m, D[start:end], b), with `m` relative to `start`.
    fn subproof(&self, m: usize, start: usize, end: usize, b: bool) -> Vec<Hash> {
        let n = end - start;
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![self.mth(start, end)]
            };
        }
        let k = split_point(n);
        if m <= k {
            let mut proof = self.subproof(m, start, start + k, b);
            proof.push(self.mth(start + k, end));
            proof
        } else {
            let mut proof = self.subproof(m - k, start + k, end, false);
            proof.push(self.mth(start, start + k));
            proof
        }
    }
}

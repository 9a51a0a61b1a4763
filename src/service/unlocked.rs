//! Signer keys kept open for a bounded time after a PIN unlock.
//!
//! Opening a PIN-sealed key costs a full PBKDF2 run (600,000 iterations by default, a
//! good fraction of a second of CPU) on purpose: it is what makes guessing PINs offline
//! expensive. Paying it on every certification would cap a node at a few signatures a
//! second, so after a successful unlock the opened key stays in this node's memory for at
//! most `limits.unlocked_key_seconds_max` (absolute, from the unlock; not extended by use).
//!
//! Sole control still holds: every request must carry the PIN. The cache keeps only an
//! HMAC-SHA256 of the PIN under a random key made when the node starts (never stored),
//! compared in constant time; a request with another PIN takes the full, counted unlock.
//! An entry serves only the exact sealed key it was opened from, so changing the PIN or
//! re-sealing the key retires it; a locked signer is refused before the cache is asked.
//!
//! Single flight: a cold node hit by many certifications for one signer at once runs one
//! PBKDF2 for it ([`UnsealGates`]); the other calls wait for that unseal and then find its
//! key here. A call with another PIN still takes its own, counted unlock after it
//! (`tests/security.rs::a_cold_node_unseals_a_signer_key_once_for_64_concurrent_certifications`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::hmac;

use crate::crypto::SigningKey;

/// Open keys held at most; beyond this the oldest unlock is dropped.
pub const UNLOCKED_KEYS_MAX: usize = 1024;

struct Unlocked {
    sealed_sha256: [u8; 32],
    pin_tag: Vec<u8>,
    key: Arc<SigningKey>,
    expires_at: Instant,
}

pub struct UnlockedKeys {
    tag_key: hmac::Key,
    lifetime: Duration,
    entries: Mutex<HashMap<String, Unlocked>>,
}

impl UnlockedKeys {
    /// Keeps keys for `lifetime` after each unlock; a zero lifetime keeps nothing.
    pub fn new(lifetime: Duration, random: &ring::rand::SystemRandom) -> Result<UnlockedKeys, ring::error::Unspecified> {
        Ok(UnlockedKeys { tag_key: hmac::Key::generate(hmac::HMAC_SHA256, random)?, lifetime, entries: Mutex::new(HashMap::new()) })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Unlocked>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key opened from `sealed` for `signer_id`, if it is still held and `pin` is the
    /// PIN that opened it.
    pub fn get(&self, signer_id: &str, sealed: &[u8], pin: &str) -> Option<Arc<SigningKey>> {
        let mut entries = self.entries();
        let entry = entries.get(signer_id)?;
        if entry.expires_at <= Instant::now() || entry.sealed_sha256 != sha256(sealed) {
            entries.remove(signer_id);
            return None;
        }
        hmac::verify(&self.tag_key, pin.as_bytes(), &entry.pin_tag).ok()?;
        Some(entry.key.clone())
    }

    /// Holds `key`, opened from `sealed` with `pin`, for the configured lifetime.
    pub fn insert(&self, signer_id: &str, sealed: &[u8], pin: &str, key: Arc<SigningKey>) {
        if self.lifetime.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|_, entry| entry.expires_at > now);
        if entries.len() >= UNLOCKED_KEYS_MAX && !entries.contains_key(signer_id) {
            if let Some(oldest) = entries.iter().min_by_key(|(_, entry)| entry.expires_at).map(|(id, _)| id.clone()) {
                entries.remove(&oldest);
            }
        }
        let pin_tag = hmac::sign(&self.tag_key, pin.as_bytes()).as_ref().to_vec();
        entries.insert(signer_id.to_string(), Unlocked { sealed_sha256: sha256(sealed), pin_tag, key, expires_at: now + self.lifetime });
    }

    /// Drops the signer's open key (its key was locked, re-sealed or replaced).
    pub fn forget(&self, signer_id: &str) {
        self.entries().remove(signer_id);
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }
}

/// One unseal at a time per signer on this node. Entries live while a call holds or waits
/// for a signer's gate, so the table holds at most one entry per call in flight.
#[derive(Default)]
pub struct UnsealGates {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A call's turn to unseal a signer's key; the next waiting call goes when it drops.
pub struct UnsealTurn<'a> {
    gates: &'a UnsealGates,
    signer_id: String,
    gate: Option<Arc<tokio::sync::Mutex<()>>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl UnsealGates {
    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.gates.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until no other call of this node is unsealing `signer_id`'s key.
    pub async fn turn(&self, signer_id: &str) -> UnsealTurn<'_> {
        let gate = self.gates().entry(signer_id.to_string()).or_default().clone();
        let mut turn = UnsealTurn { gates: self, signer_id: signer_id.to_string(), gate: Some(gate.clone()), held: None };
        turn.held = Some(gate.lock_owned().await);
        turn
    }

    pub fn len(&self) -> usize {
        self.gates().len()
    }
}

impl Drop for UnsealTurn<'_> {
    fn drop(&mut self) {
        self.held.take();
        // Clones are made and dropped under the table's lock: a count of one left in the
        // table means nobody holds or waits for this gate.
        let mut gates = self.gates.gates();
        drop(self.gate.take());
        if gates.get(&self.signer_id).is_some_and(|gate| Arc::strong_count(gate) == 1) {
            gates.remove(&self.signer_id);
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<SigningKey> {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &random).unwrap();
        Arc::new(SigningKey::from_pkcs8_der(pkcs8.as_ref()).unwrap())
    }

    #[test]
    fn a_held_key_needs_the_same_pin_and_the_same_sealed_key() {
        let keys = UnlockedKeys::new(Duration::from_secs(60), &ring::rand::SystemRandom::new()).unwrap();
        keys.insert("s1", b"sealed-a", "123456", key());
        assert!(keys.get("s1", b"sealed-a", "123456").is_some());
        assert!(keys.get("s1", b"sealed-a", "123457").is_none(), "another pin must take the full unlock");
        assert!(keys.get("s2", b"sealed-a", "123456").is_none());
        assert!(keys.get("s1", b"sealed-b", "123456").is_none(), "a re-sealed key retires the entry");
        assert!(keys.get("s1", b"sealed-a", "123456").is_none(), "and the entry is gone");
    }

    #[test]
    fn keys_expire_and_a_zero_lifetime_holds_nothing() {
        let random = ring::rand::SystemRandom::new();
        let keys = UnlockedKeys::new(Duration::ZERO, &random).unwrap();
        keys.insert("s1", b"sealed", "123456", key());
        assert!(keys.get("s1", b"sealed", "123456").is_none());
        let keys = UnlockedKeys::new(Duration::from_millis(1), &random).unwrap();
        keys.insert("s1", b"sealed", "123456", key());
        let deadline = Instant::now() + Duration::from_secs(10);
        while keys.get("s1", b"sealed", "123456").is_some() {
            assert!(Instant::now() < deadline, "entry never expired");
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let keys = UnlockedKeys::new(Duration::from_secs(60), &ring::rand::SystemRandom::new()).unwrap();
        let shared = key();
        for index in 0..UNLOCKED_KEYS_MAX + 10 {
            keys.insert(&format!("s{index}"), b"sealed", "123456", shared.clone());
        }
        assert_eq!(keys.len(), UNLOCKED_KEYS_MAX);
        assert!(keys.get(&format!("s{}", UNLOCKED_KEYS_MAX + 9), b"sealed", "123456").is_some());
    }
}

//! Per-client counters of things in progress (calls in flight, uploads): a client holds at
//! most `limit` at once, and each one is given back when its [`Slot`] is dropped. The
//! table holds an entry only while a client holds a slot, so its size is bounded by what
//! is in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The slots of every client; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct PerClientSlots {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One slot, given back when dropped.
pub struct Slot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
}

impl PerClientSlots {
    /// Takes one of `client`'s slots, or `None` when it holds `limit` already.
    pub fn take(&self, client: String, limit: usize) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(client.clone()).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                held.remove(&client);
            }
            return None;
        }
        *count += 1;
        Some(Slot { held: self.held.clone(), client })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_limit_and_dropped_slots_come_back() {
        let slots = PerClientSlots::default();
        let first = slots.take("a".into(), 2).unwrap();
        let _second = slots.take("a".into(), 2).unwrap();
        assert!(slots.take("a".into(), 2).is_none(), "a third slot is refused");
        assert!(slots.take("b".into(), 2).is_some(), "another client has its own slots");
        drop(first);
        assert!(slots.take("a".into(), 2).is_some(), "a dropped slot is given back");
    }
}

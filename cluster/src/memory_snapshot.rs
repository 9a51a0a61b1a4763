//! Snapshot plumbing for the in-memory test twins of [`crate::StateMachine`]: the state as
//! one byte string, cut into pieces on the way out and gathered in a staging buffer on the
//! way in. Never used by a real state machine (it holds the whole state in memory).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{SnapshotSink, SnapshotSource, StateMachineError};

/// The whole state of a twin at `index`, read out in pieces.
pub(crate) struct BytesSource {
    pub index: u64,
    pub bytes: Bytes,
}

impl SnapshotSource for BytesSource {
    fn index(&self) -> u64 {
        self.index
    }

    fn read(&self, piece_size_bytes: usize, emit: &mut dyn FnMut(Vec<u8>) -> Result<(), StateMachineError>) -> Result<(), StateMachineError> {
        for piece in self.bytes.chunks(piece_size_bytes.max(1)) {
            emit(piece.to_vec())?;
        }
        Ok(())
    }
}

/// (index, bytes so far, finished)
type Staged = Option<(u64, Vec<u8>, bool)>;

/// A twin's staging area: at most one snapshot, complete once its sink finished.
#[derive(Default, Clone)]
pub(crate) struct Staging(Arc<Mutex<Staged>>);

impl Staging {
    pub fn sink(&self, index: u64) -> Box<dyn SnapshotSink> {
        *self.0.lock().unwrap() = Some((index, Vec::new(), false));
        Box::new(BufferSink { staging: self.clone(), index })
    }

    /// The finished snapshot staged at `index`, taken out of the staging area.
    pub fn take(&self, index: u64) -> Option<Vec<u8>> {
        let mut staged = self.0.lock().unwrap();
        match staged.take() {
            Some((staged_index, bytes, true)) if staged_index == index => Some(bytes),
            other => {
                *staged = other;
                None
            }
        }
    }
}

struct BufferSink {
    staging: Staging,
    index: u64,
}

impl SnapshotSink for BufferSink {
    fn write(&mut self, piece: &[u8]) -> Result<(), StateMachineError> {
        match self.staging.0.lock().unwrap().as_mut() {
            Some((index, bytes, false)) if *index == self.index => {
                bytes.extend_from_slice(piece);
                Ok(())
            }
            _ => Err(StateMachineError("another snapshot replaced this one in the staging area".into())),
        }
    }

    fn finish(self: Box<Self>) -> Result<(), StateMachineError> {
        match self.staging.0.lock().unwrap().as_mut() {
            Some((index, _, finished)) if *index == self.index => {
                *finished = true;
                Ok(())
            }
            _ => Err(StateMachineError("another snapshot replaced this one in the staging area".into())),
        }
    }
}

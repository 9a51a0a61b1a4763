//! The history: every client invocation and its outcome, with timestamps, kept in memory
//! for the checker and written to a JSON-lines file.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The node acknowledged the operation.
    Ok,
    /// The node refused it; it was not applied.
    Error,
    /// It may or may not have been applied (timeout, lost connection, leadership change).
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub client: usize,
    pub kind: &'static str,
    pub request_id: String,
    pub node: usize,
    /// Milliseconds since the run started.
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub outcome: Outcome,
    /// Hex document hashes the operation is about.
    pub documents: Vec<String>,
    /// Lookup codes it produced (certify) or named (revoke, verify).
    pub codes: Vec<String>,
    /// For verify: the status seen per code ("valid" / "revoked: ..."), or the error.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    pub at_ms: u64,
    pub description: String,
}

pub struct History {
    start: Instant,
    pub operations: Mutex<Vec<Operation>>,
    pub faults: Mutex<Vec<FaultEvent>>,
}

impl History {
    pub fn new() -> History {
        History { start: Instant::now(), operations: Mutex::new(Vec::new()), faults: Mutex::new(Vec::new()) }
    }

    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn record(&self, operation: Operation) {
        self.operations.lock().unwrap().push(operation);
    }

    pub fn fault(&self, description: String) {
        let event = FaultEvent { at_ms: self.now_ms(), description };
        eprintln!("nemesis @{}ms: {}", event.at_ms, event.description);
        self.faults.lock().unwrap().push(event);
    }

    /// Writes every operation and fault as one JSON object per line.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for fault in self.faults.lock().unwrap().iter() {
            writeln!(file, "{}", serde_json::json!({ "fault": fault }))?;
        }
        for operation in self.operations.lock().unwrap().iter() {
            writeln!(file, "{}", serde_json::json!({ "op": operation }))?;
        }
        file.flush()
    }
}

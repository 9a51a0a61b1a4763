//! The public lookup API (`GET /api/v1/lookup/{code}` on the HTTP port) under load, with a
//! minimal HTTP/1.1 keep-alive client: one connection per benchmark client.
//!
//! The lookup reads only the state store (no blob, no signature check), so the scale test
//! uses it to draw lookup codes uniformly over every loaded record: its working set is the
//! whole store, which is what shows whether latency and memory stay flat as records grow.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::load::{Operation, PickRandom};

/// Largest response accepted (a lookup answer is a few hundred bytes).
pub const RESPONSE_SIZE_BYTES_MAX: usize = 64 * 1024;

pub struct Lookup {
    /// host:port of the node's HTTP port.
    pub address: String,
    /// Codes are drawn by index from this function, uniformly over `0..records`.
    pub code_of: Arc<dyn Fn(u64) -> String + Send + Sync>,
    pub records: u64,
    pub seed: u64,
    connections: Vec<Mutex<Option<TcpStream>>>,
}

impl Lookup {
    pub fn new(address: String, clients: usize, records: u64, seed: u64, code_of: Arc<dyn Fn(u64) -> String + Send + Sync>) -> Self {
        Lookup { address, code_of, records, seed, connections: (0..clients).map(|_| Mutex::new(None)).collect() }
    }
}

impl Operation for Lookup {
    async fn run(&self, client: usize, sequence: u64) -> Result<(), String> {
        let mut random = PickRandom::new(self.seed ^ ((client as u64) << 32) ^ sequence);
        let code = (self.code_of)(random.next_u64() % self.records);
        let mut slot = self.connections[client % self.connections.len()].lock().await;
        if slot.is_none() {
            let stream = TcpStream::connect(&self.address).await.map_err(|_| "connect".to_string())?;
            stream.set_nodelay(true).map_err(|_| "nodelay".to_string())?;
            *slot = Some(stream);
        }
        let stream = slot.as_mut().ok_or("no connection")?;
        let result = get(stream, &self.address, &format!("/api/v1/lookup/{code}")).await;
        if result.is_err() {
            *slot = None;
        }
        match result? {
            200 => Ok(()),
            status => Err(format!("http-{status}")),
        }
    }
}

/// One GET on a keep-alive connection; returns the status code.
async fn get(stream: &mut TcpStream, host: &str, path: &str) -> Result<u16, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|_| "write".to_string())?;
    let mut buffer = Vec::with_capacity(1024);
    let header_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        read_more(stream, &mut buffer).await?;
    };
    let head = std::str::from_utf8(&buffer[..header_end]).map_err(|_| "header-utf8".to_string())?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).ok_or("status-line")?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .ok_or("no-content-length")?;
    if length > RESPONSE_SIZE_BYTES_MAX {
        return Err("response-too-large".into());
    }
    while buffer.len() < header_end + length {
        read_more(stream, &mut buffer).await?;
    }
    Ok(status)
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), String> {
    if buffer.len() > RESPONSE_SIZE_BYTES_MAX {
        return Err("response-too-large".into());
    }
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await.map_err(|_| "read".to_string())?;
    if read == 0 {
        return Err("closed".into());
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

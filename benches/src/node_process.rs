//! A real `kyso node` process for the scale test: written config, start, the time until
//! it listens, its resident memory, and a clean stop. The process id is written to a pid
//! file so that the calling script's trap can end it if this program dies first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a node may take to report its addresses (opening a large store included).
pub const NODE_START_DEADLINE: Duration = Duration::from_secs(300);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const NODE_STOP_DEADLINE: Duration = Duration::from_secs(60);

pub struct NodeProcess {
    child: Option<Child>,
    pub grpc_url: String,
    /// host:port of the public HTTP port.
    pub http_address: String,
    /// From spawn to the "listening" line.
    pub start_seconds: f64,
    pid_file: Option<PathBuf>,
}

/// Writes a node config for `data_dir` trusting `ca_pem`, with ephemeral ports and mutual
/// TLS from development certificates generated under `tls_dir` (`kyso init-keys` makes the
/// same); returns the client TLS of the operator certificate, which holds every role.
///
/// The public API's per-client rate limits (every benchmark client comes from 127.0.0.1
/// and presents one certificate) are lifted: the scale test measures the store behind the
/// lookup API, not the limiters in front of it.
pub fn write_config(config_path: &Path, data_dir: &Path, ca_pem: &Path, tls_dir: &Path) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    let tls = kyso::cli::dev::ensure_dev_tls(tls_dir)?;
    let principals = tls.principals(&[])?;
    let mut config = kyso::config::Config::with_data_dir(data_dir);
    config.trust_anchor_files = vec![ca_pem.to_path_buf()];
    config.grpc_addr = "127.0.0.1:0".parse()?;
    config.http_addr = "127.0.0.1:0".parse()?;
    config.tls = tls.tls_config();
    config.access.principals = principals;
    config.limits.public_requests_per_minute_max = u32::MAX;
    config.limits.public_request_burst_max = 1_000_000;
    config.limits.client_requests_per_second_max = 1_000_000;
    let text = toml::to_string(&config).context("cannot encode the node config")?;
    std::fs::write(config_path, text).with_context(|| format!("cannot write {}", config_path.display()))?;
    let (cert, key) = tls.client("client");
    crate::target_kyso::client_tls(std::fs::read(&tls.ca_pem)?, std::fs::read(cert)?, std::fs::read(key)?)
}

impl NodeProcess {
    pub fn start(kyso_bin: &Path, config_path: &Path, pid_dir: Option<&Path>) -> anyhow::Result<NodeProcess> {
        let began = Instant::now();
        let mut child = Command::new(kyso_bin)
            .args(["node", "--config"])
            .arg(config_path)
            .env("KYSO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", kyso_bin.display()))?;
        let pid_file = match pid_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("kyso-{}.pid", child.id()));
                std::fs::write(&path, child.id().to_string())?;
                Some(path)
            }
            None => None,
        };
        let stdout = child.stdout.take().context("node stdout is not piped")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("kyso node listening") {
                    let _ = sender.send(line);
                }
            }
        });
        let mut node =
            NodeProcess { child: Some(child), grpc_url: String::new(), http_address: String::new(), start_seconds: 0.0, pid_file };
        let line = match receiver.recv_timeout(NODE_START_DEADLINE) {
            Ok(line) => line,
            Err(_) => bail!("node did not report its addresses within {NODE_START_DEADLINE:?}"),
        };
        node.start_seconds = began.elapsed().as_secs_f64();
        let grpc = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("grpc="))
            .with_context(|| format!("no grpc= in {line:?}"))?;
        node.grpc_url = format!("https://{grpc}");
        node.http_address = line
            .split_whitespace()
            .find_map(|part| part.strip_prefix("http="))
            .with_context(|| format!("no http= in {line:?}"))?
            .to_string();
        Ok(node)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident and peak resident memory in bytes, from /proc.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory_of(self.pid().context("node is not running")?)
    }

    /// SIGTERM, then wait; SIGKILL after [`NODE_STOP_DEADLINE`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + NODE_STOP_DEADLINE;
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(path) = self.pid_file.take() {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(path) = self.pid_file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Resident and peak resident memory of process `pid`, from /proc.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("malformed /proc status line")?.parse()?;
        Ok(kib * 1024)
    };
    Ok(Memory { rss_bytes: field("VmRSS:")?, peak_rss_bytes: field("VmHWM:")? })
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// Total size in bytes of the files under `path`.
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::metadata(path) else { return 0 };
    if metadata.is_file() {
        return metadata.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| disk_bytes(&entry.path())).sum())
        .unwrap_or(0)
}

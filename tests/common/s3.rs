//! A real S3-compatible server for integration tests: `s3s-fs` (it checks SigV4 signatures
//! and honours `If-None-Match: *`), started on 127.0.0.1 with an ephemeral port, its own
//! data directory and its own credentials. `./scripts/test.sh` installs the binary into
//! ~/.cache/kyso-tools/bin and puts it on PATH; a test that cannot find it fails.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};

/// How long s3s-fs may take to accept connections.
pub const S3_START_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts at finding a free port for a new server.
const PORT_ATTEMPTS_MAX: usize = 5;

pub const S3_BUCKET: &str = "kyso-test";
pub const S3_REGION: &str = "us-east-1";

/// A running s3s-fs process.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    /// The server's data directory; the bucket is the directory `root/S3_BUCKET`.
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
}

/// The s3s-fs binary on PATH, or a failure that says how to get it.
pub fn s3s_fs_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("s3s-fs")).find(|candidate| candidate.is_file()).unwrap_or_else(|| {
        panic!(
            "s3s-fs is not on PATH; run ./scripts/test.sh (it installs s3s-fs 0.14.1 into ~/.cache/kyso-tools/bin), \
             or: cargo install --root ~/.cache/kyso-tools s3s-fs@0.14.1 --features binary --locked"
        )
    })
}

impl S3Server {
    /// Starts s3s-fs on a free 127.0.0.1 port with a fresh bucket under `root`.
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(S3_BUCKET)).unwrap();
        let mut server = S3Server {
            child: None,
            port: 0,
            root: root.to_path_buf(),
            access_key: "kyso-test-access".into(),
            secret_key: "kyso-test-secret-0123456789".into(),
        };
        for _ in 0..PORT_ATTEMPTS_MAX {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            server.port = port;
            if server.spawn() {
                return server;
            }
        }
        panic!("s3s-fs did not start on any of {PORT_ATTEMPTS_MAX} ports");
    }

    /// Starts the process on `self.port`; false if it exited (port taken) before listening.
    fn spawn(&mut self) -> bool {
        let mut child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.access_key, "--secret-key", &self.secret_key])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start s3s-fs");
        let deadline = Instant::now() + S3_START_DEADLINE;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("s3s-fs did not listen on 127.0.0.1:{} within {S3_START_DEADLINE:?}", self.port);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (the data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + S3_START_DEADLINE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "s3s-fs still accepts connections after it was killed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "s3s-fs could not listen on port {} again", self.port);
    }

    /// The `[storage]` table of a node using this server. With `credentials_file`, the
    /// keys are written there (mode 0600); without, the node must get them from its
    /// environment ([`S3Server::credential_env`]).
    pub fn storage_toml(&self, credentials_file: Option<&Path>) -> String {
        let mut toml = format!(
            "[storage]\nkind = \"s3\"\nendpoint = {:?}\nbucket = {S3_BUCKET:?}\nregion = {S3_REGION:?}\nallow_http = true\n\
             request_timeout_seconds = 20\nretry_timeout_seconds = 3\nretries_max = 2\n",
            self.endpoint()
        );
        if let Some(path) = credentials_file {
            std::fs::write(path, format!("access_key_id = {:?}\nsecret_access_key = {:?}\n", self.access_key, self.secret_key)).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            toml.push_str(&format!("credentials_file = {:?}\n", path.display().to_string()));
        }
        toml
    }

    pub fn credential_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".to_string(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), self.secret_key.clone()),
        ]
    }

    /// A direct S3 client on the bucket, for checks behind kyso's back.
    pub fn client(&self) -> Arc<AmazonS3> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region(S3_REGION)
                .with_bucket_name(S3_BUCKET)
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(&self.secret_key)
                .build()
                .unwrap(),
        )
    }

    /// Where s3s-fs keeps an object's bytes on disk.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.join(S3_BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The object key of a blob (the same derivation as the node's).
pub fn blob_key(sha256: &[u8]) -> String {
    kyso::archive::blob_key(&kyso::domain::Sha256::from_slice(sha256).unwrap()).to_string()
}

/// Peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

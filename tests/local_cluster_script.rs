//! deploy/local/cluster.sh on a chosen port base: three nodes come up on that base's
//! ports, and each client certificate init-keys wrote holds its own role.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kyso_proto::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Stops the script's nodes however the test ends.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = script(&self.0, &["down"]);
    }
}

fn script(run: &Path, args: &[&str]) -> std::process::Output {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/cluster.sh"))
        .args(args)
        .env("KYSO_LOCAL_DIR", run)
        .env("KYSO_BIN", env!("CARGO_BIN_EXE_kyso"))
        .env("KYSO_LOG", "warn")
        .output()
        .unwrap()
}

/// A base whose nine ports (gRPC, HTTP, Raft of nodes 1-3) are free now.
fn free_port_base() -> u16 {
    (0..200u16)
        .map(|step| 21_000 + step * 150)
        .find(|base| {
            [10u16, 90, 110].iter().all(|offset| (1..=3u16).all(|id| std::net::TcpListener::bind(("127.0.0.1", base + offset + id)).is_ok()))
        })
        .expect("a free port base")
}

async fn who_am_i(tls: &Path, name: &str, port: u16) -> Result<pb::Principal, String> {
    let read = |file: String| std::fs::read(tls.join(file)).unwrap();
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem".into())))
        .identity(Identity::from_pem(read(format!("{name}.pem")), read(format!("{name}.key"))));
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(config)
        .map_err(|error| error.to_string())?
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let mut access = pb::access_service_client::AccessServiceClient::new(channel);
    access.who_am_i(pb::WhoAmIRequest {}).await.map(|response| response.into_inner()).map_err(|status| status.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_script_takes_a_port_base_and_grants_each_role_certificate_its_role() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let base = free_port_base();
    let _down = Down(run.clone());
    let up = script(&run, &["--port-base", &base.to_string(), "up", "3"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    assert!(String::from_utf8_lossy(&up.stdout).contains(&format!("127.0.0.1:{}", base + 11)));
    let tls = run.join("shared/tls");
    let expected = [
        ("client", vec!["admin", "clerk", "signer", "verifier"]),
        ("clerk", vec!["clerk"]),
        ("signer", vec!["signer"]),
        ("verifier", vec!["verifier"]),
    ];
    for id in 1..=3u16 {
        let port = base + 10 + id;
        for (name, roles) in &expected {
            let started = Instant::now();
            let principal = loop {
                match who_am_i(&tls, name, port).await {
                    Ok(principal) => break principal,
                    Err(error) => assert!(started.elapsed() < Duration::from_secs(90), "node {id} as {name}: {error}"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(&principal.roles, roles, "node {id} as {name}");
        }
    }
    let clerk = who_am_i(&tls, "clerk", base + 11).await.unwrap();
    assert_eq!(clerk.agency_ids, vec!["xa-demo".to_string()]);
    // All three nodes run the same dev TSA; each token's serial carries its node's id in
    // the high 64 bits, so the cluster never issues a serial twice.
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "tem thời gian").unwrap();
    let query = dir.path().join("query.tsq");
    let tool = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().unwrap_or_else(|error| panic!("{program}: {error}; scripts/test.sh installs it"));
        (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
    };
    let (ok, output) = tool("openssl", &["ts", "-query", "-data", data.to_str().unwrap(), "-sha256", "-cert", "-out", query.to_str().unwrap()]);
    assert!(ok, "{output}");
    for id in 1..=3u16 {
        let reply = dir.path().join(format!("reply-{id}.tsr"));
        let url = format!("http://127.0.0.1:{}/tsa", base + 90 + id);
        let (ok, output) = tool("curl", &["-sS", "-f", "-H", "Content-Type: application/timestamp-query", "--data-binary", &format!("@{}", query.display()), "-o", reply.to_str().unwrap(), &url]);
        assert!(ok, "POST {url}: {output}");
        let ca = run.join("shared/dev-pki/ca.pem");
        let (ok, verified) = tool("openssl", &["ts", "-verify", "-data", data.to_str().unwrap(), "-in", reply.to_str().unwrap(), "-CAfile", ca.to_str().unwrap()]);
        assert!(ok && verified.contains("Verification: OK"), "node {id}: {verified}");
        let (_, text) = tool("openssl", &["ts", "-reply", "-in", reply.to_str().unwrap(), "-text"]);
        let serial = text.lines().find_map(|line| line.strip_prefix("Serial number: 0x")).unwrap_or_else(|| panic!("no serial:\n{text}"));
        let serial = u128::from_str_radix(serial.trim(), 16).unwrap();
        assert_eq!(serial >> 64, u128::from(id), "node {id}'s serial {serial:x} carries its node id");
    }
    let status = script(&run, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("raft 127.0.0.1:{}", base + 111)), "status uses the remembered base");
}

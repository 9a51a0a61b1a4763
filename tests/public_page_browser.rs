//! A real browser against a real node: Debian's chromium, driven headless by
//! playwright-core (`tests/browser/check.mjs`), opens the lookup page of a valid and of a
//! revoked certification, runs the local file check with the right file and with a wrong
//! one, and proves from its request log that no request carried the file. Screenshots at
//! desktop width and at 360 px are kept under `<target>/test-artifacts/public-page/`.
//!
//! Nothing is skipped: without chromium or the node modules the test fails, saying how to
//! install them (`./scripts/test.sh` does).

mod common;
mod public_fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kyso::api::public::i18n::Lang;
use public_fixture::*;

/// How long the whole browser run may take on a slow, shared machine.
const BROWSER_RUN_DEADLINE: Duration = Duration::from_secs(300);

fn chromium() -> PathBuf {
    let found = std::env::var_os("KYSO_CHROMIUM").map(PathBuf::from).or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|path| path.exists())
    });
    found.unwrap_or_else(|| {
        panic!("chromium is required for this test: apt-get install -y chromium (./scripts/test.sh installs it), or set KYSO_CHROMIUM")
    })
}

fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists(),
        "playwright-core is missing: run `npm ci` in {} (./scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// `<target>/test-artifacts/public-page`, emptied.
fn artifacts_dir() -> PathBuf {
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = target_tmp.parent().unwrap_or(target_tmp).join("test-artifacts/public-page");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `node check.mjs CONFIG` and returns (success, stdout, stderr), killing it at the deadline.
fn run_browser_check(browser_dir: &Path, config: &serde_json::Value) -> (bool, String, String) {
    let mut child = Command::new("node")
        .arg("check.mjs")
        .arg(config.to_string())
        .current_dir(browser_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is required for this test (the machine image has it; Debian: apt-get install -y nodejs)");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + BROWSER_RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.is_some(), "the browser run took longer than {BROWSER_RUN_DEADLINE:?}\n{stdout}\n{stderr}");
    (status.is_some_and(|status| status.success()), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_checks_files_in_a_real_browser_and_no_request_carries_them() {
    let chromium = chromium();
    let browser_dir = browser_dir();
    let artifacts = artifacts_dir();
    let dir = tempdir();
    let fixture = start(dir.path(), "").await;

    let files = dir.path().join("citizen");
    std::fs::create_dir_all(&files).unwrap();
    let right_file = files.join("ban-sao-chung-thuc.pdf");
    let revoked_file = files.join("ban-sao-da-thu-hoi.pdf");
    let wrong_file = files.join("ban-sao-bi-sua.pdf");
    let mut altered = fixture.valid_document.clone();
    altered[1000] ^= 0x01;
    std::fs::write(&right_file, &fixture.valid_document).unwrap();
    std::fs::write(&revoked_file, &fixture.revoked_document).unwrap();
    std::fs::write(&wrong_file, &altered).unwrap();

    let texts = Lang::Vi.texts();
    let config = serde_json::json!({
        "chromium": chromium,
        "base_url": fixture.node.http_url,
        "valid_code": fixture.valid_code,
        "revoked_code": fixture.revoked_code,
        "revocation_reason": REVOCATION_REASON,
        "right_file": right_file,
        "revoked_file": revoked_file,
        "wrong_file": wrong_file,
        "valid_sha256": kyso::domain::Sha256::digest(&fixture.valid_document).to_hex(),
        "wrong_sha256": kyso::domain::Sha256::digest(&altered).to_hex(),
        "artifacts_dir": artifacts,
        "texts": {
            "status_valid": texts.status_valid,
            "status_revoked": texts.status_revoked,
            "check_match": texts.check_match,
            "check_match_revoked": texts.check_match_revoked,
            "check_mismatch": texts.check_mismatch,
            "check_without_javascript": texts.check_without_javascript,
            "not_found_title": texts.not_found_title,
        },
    });
    let (success, stdout, stderr) = run_browser_check(&browser_dir, &config);
    println!("{stdout}");
    println!("screenshots kept in {}", artifacts.display());
    assert!(success, "browser check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("browser check passed"), "{stdout}");
    for expected in [
        format!("right file (desktop): \"{}\"", texts.check_match),
        format!("wrong file (360): \"{}\"", texts.check_mismatch),
        format!("revoked page (360): \"{}\"", texts.status_revoked),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} missing from:\n{stdout}");
    }
    for name in ["valid-desktop.png", "valid-360.png", "valid-right-file-360.png", "valid-wrong-file-desktop.png", "revoked-360.png"] {
        let size = std::fs::metadata(artifacts.join(name)).map(|metadata| metadata.len()).unwrap_or(0);
        assert!(size > 10_000, "screenshot {name} is missing or empty ({size} bytes)");
    }
}

//! The deploy files checked by the tools their platforms use: the systemd unit by
//! `systemd-analyze verify` (and its user by `systemd-sysusers`), every Kubernetes manifest
//! by `kubernetes-validate` (PyPI; the Kubernetes OpenAPI schemas it bundles, strict mode,
//! no network), the node configurations inside the ConfigMap by kyso's own config loader,
//! and the container build file by hadolint and BuildKit's parser (PyPI `dockerfile`). The
//! image itself is not built here: CI reaches no image registry. scripts/test.sh installs
//! the tools; a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|error| panic!("cannot run {program} (scripts/test.sh installs it): {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `systemd-analyze verify` on an instance of the unit, its ExecStart pointing at `binary`:
/// (success, what it printed). verify exits 0 on unknown keys but prints them, so both count.
fn verify_unit(unit_text: &str, binary: &Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text.replace("/usr/local/bin/kyso", binary.to_str().unwrap());
    let path = dir.path().join("kyso@node1.service");
    std::fs::write(&path, unit).unwrap();
    let output = run("systemd-analyze", &["verify", path.to_str().unwrap()]);
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    (output.status.success() && printed.trim().is_empty(), printed)
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_with_its_hardening() {
    let unit = std::fs::read_to_string(repository().join("deploy/systemd/kyso@.service")).unwrap();
    let (clean, printed) = verify_unit(&unit, Path::new(env!("CARGO_BIN_EXE_kyso")));
    assert!(clean, "systemd-analyze verify complained:\n{printed}");
    for directive in [
        "User=kyso",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "StateDirectory=kyso/%i",
        "SystemCallFilter=@system-service",
        "ExecStart=/usr/local/bin/kyso node --config /etc/kyso/%i.toml",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    // The check can fail: a misspelt hardening key and a missing binary are both caught.
    let (clean, printed) = verify_unit(&unit.replace("ProtectSystem=", "ProtectSytem="), Path::new(env!("CARGO_BIN_EXE_kyso")));
    assert!(!clean && printed.contains("ProtectSytem"), "a misspelt key went unnoticed: {printed}");
    let (clean, printed) = verify_unit(&unit, Path::new("/nonexistent/kyso"));
    assert!(!clean && printed.contains("/nonexistent/kyso"), "a missing binary went unnoticed: {printed}");
}

#[test]
fn the_sysusers_file_creates_the_dedicated_user_without_a_login() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let file = std::fs::File::open(repository().join("deploy/systemd/kyso.sysusers")).unwrap();
    let output = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg("-")
        .stdin(file)
        .output()
        .expect("cannot run systemd-sysusers (Debian's systemd)");
    assert!(output.status.success(), "systemd-sysusers failed: {}", text(&output.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let kyso = passwd.lines().find(|line| line.starts_with("kyso:")).unwrap_or_else(|| panic!("no kyso user in {passwd}"));
    let fields: Vec<&str> = kyso.split(':').collect();
    assert_ne!(fields[2], "0", "kyso must not be root: {kyso}");
    assert_eq!(fields[5], "/var/lib/kyso");
    assert_eq!(fields[6], "/usr/sbin/nologin");
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repository().join("deploy/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every object of the manifests, as JSON (PyYAML, which kubernetes-validate depends on).
fn manifest_objects() -> Vec<serde_json::Value> {
    let script = "import json, sys, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let mut args = vec!["-c", script];
    let files = manifests();
    args.extend(files.iter().map(|path| path.to_str().unwrap()));
    let output = run("python3", &args);
    assert!(output.status.success(), "cannot read the manifests: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn kubernetes_validate(files: &[&str]) -> Output {
    let mut args = vec!["--strict", "--kubernetes-version", "1.33"];
    args.extend(files);
    run("kubernetes-validate", &args)
}

#[test]
fn every_kubernetes_manifest_validates_against_the_kubernetes_schema() {
    let files = manifests();
    let names: Vec<&str> = files.iter().map(|path| path.to_str().unwrap()).collect();
    let output = kubernetes_validate(&names);
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate refused the manifests:\n{printed}");
    let kinds: Vec<String> = manifest_objects().iter().map(|object| object["kind"].as_str().unwrap().to_string()).collect();
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} among {kinds:?}");
        assert!(printed.contains(&format!("{}/", kind.to_lowercase())), "{kind} was not validated:\n{printed}");
    }
    // The check can fail: a wrongly typed field and an unknown one are both refused.
    let dir = tempfile::tempdir().unwrap();
    let statefulset = std::fs::read_to_string(repository().join("deploy/kubernetes/statefulset.yaml")).unwrap();
    for (broken, what) in [
        (statefulset.replace("replicas: 3", "replicas: three"), "replicas"),
        (statefulset.replace("podManagementPolicy:", "podManagementPolicyy:"), "podManagementPolicyy"),
    ] {
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, broken).unwrap();
        let output = kubernetes_validate(&[path.to_str().unwrap()]);
        let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(!output.status.success() && printed.contains(what), "a broken {what} passed: {printed}");
    }
}

#[test]
fn the_statefulset_has_stable_identities_secret_keys_and_a_quorum_keeping_budget() {
    let objects = manifest_objects();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let statefulset = find("StatefulSet", "kyso");
    let spec = &statefulset["spec"];
    assert_eq!(spec["serviceName"], "kyso-peers");
    assert_eq!(spec["podManagementPolicy"], "Parallel", "the first pod is ready only once a quorum is up");
    let headless = find("Service", "kyso-peers");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(find("PodDisruptionBudget", "kyso")["spec"]["maxUnavailable"], 1);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    let secrets: Vec<&str> = pod["volumes"].as_array().unwrap().iter().filter_map(|volume| volume["secret"]["secretName"].as_str()).collect();
    assert_eq!(secrets, ["kyso-keys", "kyso-node-tls"]);

    // Each pod's configuration (kyso-N.toml) is one kyso accepts, for node N+1.
    let config_map = find("ConfigMap", "kyso-config");
    let replicas = spec["replicas"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for ordinal in 0..replicas {
        let name = format!("kyso-{ordinal}.toml");
        let toml = config_map["data"][&name].as_str().unwrap_or_else(|| panic!("the ConfigMap has no {name}"));
        let path = dir.path().join(&name);
        std::fs::write(&path, toml).unwrap();
        let config = kyso::config::Config::load(&path).unwrap_or_else(|error| panic!("{name}: {error}"));
        config.validate().unwrap_or_else(|error| panic!("{name}: {error}"));
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.node_id, ordinal + 1, "{name}");
        assert_eq!(cluster.members.len() as u64, replicas, "{name}");
        assert_eq!(cluster.advertise_client_addr.as_deref(), Some(format!("kyso-{ordinal}.kyso-peers:7400").as_str()));
        for mounted in [&config.master_key_path(), &config.log_key_path(), config.tls.key_file.as_ref().unwrap()] {
            assert!(mounted.starts_with("/etc/kyso/keys") || mounted.starts_with("/etc/kyso/tls"), "{name}: {} is not on a Secret", mounted.display());
        }
    }
    assert_eq!(container["args"], serde_json::json!(["node", "--config", "/etc/kyso/config/$(POD_NAME).toml"]));
}

/// The Containerfile's instructions through BuildKit's parser: (instruction, arguments,
/// exec form).
fn containerfile_instructions(path: &Path) -> Vec<(String, Vec<String>, bool)> {
    let script = "import dockerfile, json, sys\nprint(json.dumps([[c.cmd, list(c.value), c.json] for c in dockerfile.parse_file(sys.argv[1])]))";
    let output = run("python3", &["-c", script, path.to_str().unwrap()]);
    assert!(output.status.success(), "cannot parse {}: {}", path.display(), text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_container_build_is_multi_stage_non_root_and_needs_no_shell_at_run_time() {
    let path = repository().join("deploy/container/Containerfile");
    let output = run("hadolint", &["--no-color", path.to_str().unwrap()]);
    assert!(output.status.success(), "hadolint:\n{}{}", text(&output.stdout), text(&output.stderr));

    let instructions = containerfile_instructions(&path);
    let stages: Vec<usize> = instructions.iter().enumerate().filter(|(_, (cmd, _, _))| cmd == "FROM").map(|(index, _)| index).collect();
    assert!(stages.len() >= 2, "not multi-stage");
    let last = &instructions[*stages.last().unwrap()..];
    assert!(last[0].1[0].starts_with("gcr.io/distroless/cc-debian12:nonroot"), "the run-time base {:?} is not distroless", last[0].1);
    assert!(last.iter().all(|(cmd, _, _)| cmd != "RUN"), "the final stage runs a shell command");
    assert!(
        last.iter().any(|(cmd, args, _)| cmd == "COPY" && args[0] == "/out/kyso"),
        "the final stage does not copy the built binary"
    );
    let user = last.iter().rev().find(|(cmd, _, _)| cmd == "USER").expect("the final stage sets no USER");
    let uid = user.1[0].split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|uid| uid != 0), "USER {uid} is root or not numeric (runAsNonRoot needs a number)");
    for instruction in ["ENTRYPOINT", "CMD"] {
        let found = last.iter().find(|(cmd, _, _)| cmd == instruction).unwrap_or_else(|| panic!("no {instruction}"));
        assert!(found.2, "{instruction} is in shell form: it would need /bin/sh");
    }

    // The check can fail: hadolint refuses a shell-form CMD run as root.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("Containerfile");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&broken, original.replace("USER 65532:65532", "USER root").replace("CMD [\"node\", \"--config\", \"/etc/kyso/kyso.toml\"]", "CMD kyso node")).unwrap();
    let output = run("hadolint", &["--no-color", broken.to_str().unwrap()]);
    let printed = text(&output.stdout);
    assert!(!output.status.success() && printed.contains("DL3002") && printed.contains("DL3025"), "hadolint let it pass: {printed}");
}

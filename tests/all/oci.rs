//! Components from a real OCI registry (issue #20): Debian's
//! `docker-registry` (the CNCF distribution registry, installed by
//! tests/run.sh) on loopback — plain HTTP marked insecure, or TLS with an
//! openssl-made CA and htpasswd auth. `stephost push` publishes a guest built
//! for wasm32-wasip2; hosts serve it by tag and by digest.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stephost::app::builtin::APPENDER;

use crate::support::{Host, STEPHOST, ce_headers, get, post, wasm_step};
use crate::tls::TestCa;

/// A `docker-registry serve` process with its storage in a temp directory.
pub(crate) struct OciRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl OciRegistry {
    /// Plain HTTP, no auth (hosts name it `--insecure-registry`).
    pub(crate) fn plain() -> OciRegistry {
        Self::start(None)
    }

    /// TLS with `ca`'s server certificate and htpasswd `user`/`password`.
    pub(crate) fn secured(ca: &TestCa, user: &str, password: &str) -> OciRegistry {
        Self::start(Some((ca, user, password)))
    }

    fn start(secured: Option<(&TestCa, &str, &str)>) -> OciRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some((ca, user, password)) = secured {
            let (cert, key) = ca.server_files();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils, installed by tests/run.sh)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stephost-tests\n    path: {}\n",
                file.display()
            ));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).expect("write registry config");
        let mut registry = OciRegistry {
            host,
            dir,
            config: path,
            child: None,
        };
        registry.run();
        registry
    }

    /// Start (again) on the same port and storage.
    pub(crate) fn run(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package, installed by tests/run.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the registry process.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the registry keeps blob `sha256:<hex>` on disk.
    pub(crate) fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `stephost push FILE TARGET ARGS…` with `env`: exit code, stdout, stderr.
pub(crate) fn push(
    file: &Path,
    target: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut command = Command::new(STEPHOST);
    command.arg("push").arg(file).arg(target).args(args);
    command.env_remove("DOCKER_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run stephost push");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn appender() -> PathBuf {
    PathBuf::from(APPENDER)
}

async fn answer(host: &Host, step: &str, id: &str) -> crate::support::Exchange {
    post(
        &format!("{}/steps/{step}", host.url),
        &ce_headers(id, "text/plain"),
        "in",
    )
    .await
}

fn oci_step(name: &str, reference: &str, suffix: &str) -> String {
    wasm_step(name, reference, &[("suffix", suffix)], "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_serve_by_tag_and_by_digest() {
    let registry = OciRegistry::plain();
    let insecure = ["--insecure-registry", registry.host.as_str()];
    let tag = format!("oci://{}/steps/appender:v1", registry.host);
    let (code, pinned, err) = push(&appender(), &tag, &insecure, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        pinned.starts_with(&format!("oci://{}/steps/appender@sha256:", registry.host)),
        "push prints the digest reference: {pinned}"
    );

    let cache = tempfile::tempdir().expect("temp dir");
    let cache_dir = cache.path().join("c");
    let manifest = [
        oci_step("by-tag", &tag, "-tag"),
        oci_step("by-digest", &pinned, "-digest"),
    ]
    .concat();
    let mut args = vec!["--cache-dir", cache_dir.to_str().expect("utf-8")];
    args.extend(insecure);
    let host = Host::start_with_env(&manifest, &args, &[("STEPHOST_ADMIN_TOKEN", "t0k3n")]).await;
    let out = answer(&host, "by-tag", "1").await;
    assert_eq!((out.status, out.text()), (200, "in-tag".to_string()));
    let out = answer(&host, "by-digest", "2").await;
    assert_eq!((out.status, out.text()), (200, "in-digest".to_string()));

    // What runs is the digest the tag resolved to: the admin API and the
    // logs name it; /readyz has it and the configuration digest.
    let steps = crate::support::request(
        "GET",
        &format!("{}/admin/steps", host.url),
        &[("authorization", "Bearer t0k3n")],
        Vec::new(),
    )
    .await
    .json();
    let source = |step: &str| {
        steps["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == step))
            .map(|s| s["versions"][0]["source"].clone())
    };
    assert_eq!(
        source("by-tag").expect("by-tag"),
        pinned.as_str(),
        "{steps}"
    );
    assert_eq!(source("by-digest").expect("by-digest"), pinned.as_str());
    assert!(host.logs().contains(&pinned), "{}", host.logs());
    let ready = get(&format!("{}/readyz", host.url))
        .await
        .expect("readyz")
        .json();
    assert_eq!(
        ready["components"]["by-tag"]["default"],
        pinned.as_str(),
        "{ready}"
    );
    assert!(
        ready["configDigest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_is_refused_and_the_cache_serves_a_restart() {
    let mut registry = OciRegistry::plain();
    let registry_host = registry.host.clone();
    let insecure = ["--insecure-registry", registry_host.as_str()];
    let tag = format!("oci://{}/steps/appender:v1", registry.host);
    let (code, pinned, err) = push(&appender(), &tag, &insecure, &[]);
    assert_eq!(code, Some(0), "{err}");
    let cache = tempfile::tempdir().expect("temp dir");
    let cache_dir = cache.path().join("c");
    let mut args = vec!["--cache-dir", cache_dir.to_str().expect("utf-8")];
    args.extend(insecure);
    let manifest = oci_step("app", &pinned, "-c");

    // Pulled once, then served from the cache with the registry stopped.
    let host = Host::start(&manifest, &args).await;
    assert_eq!(answer(&host, "app", "1").await.text(), "in-c");
    drop(host);
    registry.stop();
    let host = Host::start(&manifest, &args).await;
    assert_eq!(answer(&host, "app", "2").await.text(), "in-c");
    drop(host);

    // The registry serves a damaged layer: refused, naming both digests.
    registry.run();
    let bytes = std::fs::read(appender()).expect("appender");
    let hex = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let blob = registry.blob_file(&hex);
    let mut damaged = std::fs::read(&blob).expect("blob on disk");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&blob, damaged).expect("damage the blob");
    let fresh = cache.path().join("fresh");
    let mut args = vec!["--cache-dir", fresh.to_str().expect("utf-8")];
    args.extend(insecure);
    let (code, text) = refusal(&manifest, &args);
    assert_ne!(code, Some(0), "{text}");
    // oci-client checks the layer as it streams; stephost checks it again.
    assert!(text.contains("cannot pull the component"), "{text}");
    assert!(text.to_lowercase().contains("digest"), "{text}");
    assert!(text.contains(&format!("sha256:{hex}")), "{text}");
}

/// `stephost serve` expected to refuse `manifest` at start: code, stderr.
fn refusal(manifest: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, manifest).expect("write manifest");
    let out = Command::new(STEPHOST)
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--manifest"])
        .arg(&path)
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .stdout(Stdio::null())
        .output()
        .expect("run stephost");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_from_a_docker_config_and_tls_with_an_extra_ca() {
    let ca = TestCa::new("stephost-registry-ca");
    let registry = OciRegistry::secured(&ca, "pusher", "s3cret");
    let tag = format!("oci://{}/private/appender:v1", registry.host);
    let ca_file = ca.ca_path();
    let trust = ["--registry-ca", ca_file.to_str().expect("utf-8")];

    // Without credentials the registry says no, and push says why.
    let (code, _, err) = push(&appender(), &tag, &trust, &[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    // Without the CA the certificate is refused.
    let docker = tempfile::tempdir().expect("temp dir");
    let auth = base64_pair("pusher", "s3cret");
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.host
        ),
    )
    .expect("write config.json");
    let env = [("DOCKER_CONFIG", docker.path().to_str().expect("utf-8"))];
    let (code, _, err) = push(&appender(), &tag, &[], &env);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    // With both, as a pod gets them ($DOCKER_CONFIG / an imagePullSecret).
    let (code, pinned, err) = push(&appender(), &tag, &trust, &env);
    assert_eq!(code, Some(0), "{err}");

    let cache = tempfile::tempdir().expect("temp dir");
    let cache_dir = cache.path().join("c");
    let secret = docker.path().join("config.json");
    let args = [
        "--cache-dir",
        cache_dir.to_str().expect("utf-8"),
        "--registry-ca",
        ca_file.to_str().expect("utf-8"),
        "--registry-auth",
        secret.to_str().expect("utf-8"),
    ];
    let host = Host::start(&oci_step("private", &pinned, "-p"), &args).await;
    assert_eq!(answer(&host, "private", "1").await.text(), "in-p");
}

fn base64_pair(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pull_keeps_the_old_configuration_and_is_retried() {
    let registry = OciRegistry::plain();
    let insecure = ["--insecure-registry", registry.host.as_str()];
    let v1 = format!("oci://{}/steps/appender:v1", registry.host);
    let (code, pinned, err) = push(&appender(), &v1, &insecure, &[]);
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("m.yaml");
    std::fs::write(&manifest, oci_step("app", &pinned, "-one")).expect("write");
    let cache_dir = dir.path().join("c");
    let mut args = vec![
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--cache-dir",
        cache_dir.to_str().expect("utf-8"),
        "--watch-interval",
        "PT0.2S",
    ];
    args.extend(insecure);
    let host = Host::start_args(&args).await;
    assert_eq!(answer(&host, "app", "1").await.text(), "in-one");

    // A tag nobody pushed yet: the pull fails, the old configuration serves.
    let v2 = format!("oci://{}/steps/appender:v2", registry.host);
    std::fs::write(&manifest, oci_step("app", &v2, "-two")).expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let ready = get(&format!("{}/readyz", host.url))
            .await
            .expect("readyz")
            .json();
        if let Some(e) = ready["lastReloadError"].as_str() {
            break e.to_string();
        }
        assert!(Instant::now() < deadline, "no reload error reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        error.contains("cannot pull the component") && error.contains(&v2),
        "{error}"
    );
    assert_eq!(answer(&host, "app", "2").await.text(), "in-one");

    // Pushed now: the next try (no file change) brings it live.
    let (code, _, err) = push(&appender(), &v2, &insecure, &[]);
    assert_eq!(code, Some(0), "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if answer(&host, "app", "3").await.text() == "in-two" {
            break;
        }
        assert!(Instant::now() < deadline, "the pull was not tried again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(&format!("{}/metrics", host.url))
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("stephost_manifest_reloads_total{outcome=\"failed\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_configmap_validates_against_a_real_registry() {
    // manifests/oci/configmap.yaml as documented: the sentiment step's v2
    // pushed, the file pointed at this registry, `stephost validate` pulls,
    // compiles and smoke-checks it like a pod would.
    let registry = OciRegistry::plain();
    let target = format!("oci://{}/bookstore/sentiment:v2", registry.host);
    let sentiment = PathBuf::from(stephost::app::builtin::SENTIMENT);
    let insecure = ["--insecure-registry", registry.host.as_str()];
    let (code, _, err) = push(&sentiment, &target, &insecure, &[]);
    assert_eq!(code, Some(0), "{err}");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/oci/configmap.yaml"
    );
    let text = std::fs::read_to_string(example).expect("example");
    assert!(text.contains("oci://registry.example.com/bookstore/sentiment:v2"));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("configmap.yaml");
    std::fs::write(&file, text.replace("registry.example.com", &registry.host)).expect("write");
    // The default compile cache (warmed by tests/run.sh) holds the
    // reference guests already: validate does not run Cranelift on them.
    let out = Command::new(STEPHOST)
        .arg("validate")
        .arg(&file)
        .args(insecure)
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 WasmStep(s)"), "{stdout}");
}

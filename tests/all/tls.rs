//! `https` hops (issue #21 item 1): remote steps, replies and `K_SINK` over
//! real TLS on loopback, with test CAs made by the real `openssl` command;
//! trust from a Destination's `CACerts`, Knative's trust bundles,
//! `SSL_CERT_FILE` and `K_CA_CERTS`; unknown issuers refused; bogus
//! `CACerts` and OIDC `audience` refused at load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::*;

/// A CA and one server certificate it signed for 127.0.0.1 and localhost,
/// made by `openssl` in a temporary directory.
pub(crate) struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let subject = format!("/CN={name}");
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &subject,
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestCa { dir }
    }

    pub(crate) fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub(crate) fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_path()).expect("read ca.pem")
    }

    /// The CA-signed server certificate and its key (PEM files).
    pub(crate) fn server_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// A rustls acceptor serving the CA-signed server certificate.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let certs = CertificateDer::pem_file_iter(self.dir.path().join("server.pem"))
            .expect("server.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = PrivateKeyDer::from_pem_file(self.dir.path().join("server.key")).expect("key");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// `CACerts: |` with the PEM indented under a Destination at `indent`.
fn ca_field(pem: &str, indent: &str) -> String {
    let body: String = pem.lines().map(|l| format!("{indent}  {l}\n")).collect();
    format!("{indent}CACerts: |\n{body}")
}

/// One remote step at `step` (trusting `step_ca`, if any) replying to
/// `reply` (trusting `reply_ca`, if any).
fn https_sequence(
    name: &str,
    step: &str,
    step_ca: Option<&str>,
    reply: Option<(&str, Option<&str>)>,
) -> String {
    let mut doc = format!(
        "---\napiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: {name}\n\
         spec:\n  steps:\n    - uri: {step}\n"
    );
    if let Some(pem) = step_ca {
        doc.push_str(&ca_field(pem, "      "));
    }
    if let Some((url, ca)) = reply {
        doc.push_str(&format!("  reply:\n    uri: {url}\n"));
        if let Some(pem) = ca {
            doc.push_str(&ca_field(pem, "    "));
        }
    }
    doc
}

async fn send_one(host: &Host, sequence: &str, id: &str) -> Exchange {
    post(
        &format!("{}/sequences/{sequence}", host.url),
        &ce_headers(id, "text/plain"),
        "hello",
    )
    .await
}

#[tokio::test]
async fn https_hops_trust_their_cacerts_and_refuse_unknown_issuers() {
    let ca = TestCa::new("stephost-test-ca");
    let step = Sink::tls(echo_appending("-step1"), ca.acceptor()).await;
    let reply = Sink::tls(echo_appending(""), ca.acceptor()).await;
    let pem = ca.ca_pem();
    let manifest = [
        https_sequence(
            "trusted",
            &step.url,
            Some(&pem),
            Some((&reply.url, Some(&pem))),
        ),
        https_sequence("untrusted", &step.url, None, None),
    ]
    .concat();
    let host = Host::start(&manifest, &[]).await;

    let ok = send_one(&host, "trusted", "tls-1").await;
    assert_eq!(ok.status, 202, "{}", ok.text());
    let got = reply.received();
    assert_eq!(got.len(), 1, "the reply received the event over TLS");
    assert_eq!(&got[0].body[..], b"hello-step1");
    assert_eq!(got[0].header("ce-id"), "tls-1");

    // The same step without CACerts: its issuer is no root of this host.
    let before = step.received().len();
    let refused = send_one(&host, "untrusted", "tls-2").await;
    assert!(
        refused.status >= 500,
        "{} {}",
        refused.status,
        refused.text()
    );
    assert_eq!(
        step.received().len(),
        before,
        "no request passed the handshake"
    );
    let logs = host.logs();
    assert!(
        logs.contains("UnknownIssuer") || logs.contains("invalid peer certificate"),
        "the failure names the certificate: {logs}"
    );
}

#[tokio::test]
async fn trust_bundles_ssl_cert_file_and_k_ca_certs_extend_the_roots() {
    let ca = TestCa::new("stephost-bundle-ca");
    let step = Sink::tls(echo_appending("-b"), ca.acceptor()).await;
    let manifest = https_sequence("bundled", &step.url, None, None);

    // As Knative mounts a trust-bundle ConfigMap: <dir>/<configmap>/<key>.pem,
    // beside the `..data` links of a ConfigMap volume.
    let bundles = tempfile::tempdir().expect("temp dir");
    let cm = bundles.path().join("my-bundle");
    std::fs::create_dir_all(cm.join("..2026_12_05")).expect("mkdir");
    std::fs::copy(ca.ca_path(), cm.join("ca.pem")).expect("copy");
    let dir = bundles.path().to_str().expect("utf-8");
    let host = Host::start(&manifest, &["--trust-bundle", dir]).await;
    let ok = send_one(&host, "bundled", "b-1").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text(), "hello-b");
    drop(host);

    // The system roots as OpenSSL-based tools find them.
    let ca_file = ca.ca_path();
    let env = [("SSL_CERT_FILE", ca_file.to_str().expect("utf-8"))];
    let host = Host::start_with_env(&manifest, &[], &env).await;
    let ok = send_one(&host, "bundled", "b-2").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    drop(host);

    // SinkBinding: K_SINK over https with its CACerts in K_CA_CERTS.
    let sink = Sink::tls(echo_appending(""), ca.acceptor()).await;
    let pem = ca.ca_pem();
    let plain = Sink::with(echo_appending("-p")).await;
    let manifest = https_sequence("to-k-sink", &plain.url, None, None);
    let env = [("K_SINK", sink.url.as_str()), ("K_CA_CERTS", pem.as_str())];
    let host = Host::start_with_env(&manifest, &[], &env).await;
    let ok = send_one(&host, "to-k-sink", "k-1").await;
    assert_eq!(ok.status, 202, "{}", ok.text());
    assert_eq!(&sink.received()[0].body[..], b"hello-p");
}

fn validate(manifest: &str, dir: &Path) -> (Option<i32>, String) {
    let path = dir.join("m.yaml");
    std::fs::write(&path, manifest).expect("write");
    let (code, out, err) = run_to_end(&["validate", path.to_str().expect("utf-8")]);
    (code, format!("{out}{err}"))
}

#[tokio::test]
async fn bogus_cacerts_and_oidc_audiences_are_refused_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bogus = https_sequence(
        "bogus",
        "https://127.0.0.1:9/",
        Some("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----"),
        None,
    );
    let (code, text) = validate(&bogus, dir.path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("spec.steps[0].CACerts"), "{text}");
    assert!(text.contains("not a usable CA certificate"), "{text}");

    let not_pem = https_sequence("no-pem", "https://127.0.0.1:9/", Some("hello"), None);
    let (code, text) = validate(&not_pem, dir.path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("no PEM CERTIFICATE block"), "{text}");

    let audience = "---\napiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: oidc\n\
                    spec:\n  steps:\n    - uri: https://127.0.0.1:9/\n      audience: my-step\n";
    let (code, text) = validate(audience, dir.path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("spec.steps[0].audience"), "{text}");
    assert!(text.contains("sends no OIDC tokens"), "{text}");
    // `serve` refuses it the same way, before listening.
    let (code, text) = serve_expect_refusal(audience, dir.path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("sends no OIDC tokens"), "{text}");
}

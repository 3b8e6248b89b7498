//! Destination resolution as Knative's addressable resolver does it.

use super::*;
use crate::manifest::KReference;

fn dest(kind: &str, api: &str, name: &str, uri: Option<&str>) -> Destination {
    Destination {
        reference: Some(KReference {
            kind: kind.into(),
            name: name.into(),
            api_version: Some(api.into()),
            ..KReference::default()
        }),
        uri: uri.map(str::to_string),
        ..Destination::default()
    }
}

fn url(d: &Destination, resolver: &Resolver) -> String {
    resolve(d, "ns1", resolver, "test", "f", &BTreeMap::new())
        .expect("resolves")
        .to_string()
}

#[test]
fn refs_resolve_as_knative_resolves_them() {
    let r = Resolver::default();
    let svc = dest(
        "Service",
        "serving.knative.dev/v1",
        "stephost",
        Some("/steps/content-filter"),
    );
    assert_eq!(
        url(&svc, &r),
        "http://stephost.ns1.svc.cluster.local/steps/content-filter"
    );
    let relative = dest("Service", "v1", "x", Some("foo"));
    assert_eq!(url(&relative, &r), "http://x.ns1.svc.cluster.local/foo");
    let broker = dest("Broker", "eventing.knative.dev/v1", "default", None);
    assert_eq!(
        url(&broker, &r),
        "http://broker-ingress.knative-eventing.svc.cluster.local/ns1/default"
    );
    let local = Resolver {
        broker_ingress: Some(Url::parse("http://127.0.0.1:9/").expect("url")),
        ..Resolver::default()
    };
    assert_eq!(url(&broker, &local), "http://127.0.0.1:9/ns1/default");
    let other = dest("Function", "x.dev/v1", "f", None);
    assert!(resolve(&other, "ns1", &r, "t", "f", &BTreeMap::new()).is_err());
}

#[test]
fn refs_with_cacerts_resolve_to_https_and_carry_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        ])
        .args(["-subj", "/CN=resolve-test"])
        .current_dir(dir.path())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca.pem");
    let mut svc = dest("Service", "serving.knative.dev/v1", "s", Some("/steps/x"));
    svc.ca_certs = Some(pem.clone());
    let r = Resolver::default();
    let address = resolve(&svc, "ns1", &r, "t", "f", &BTreeMap::new()).expect("resolves");
    assert_eq!(
        address.url.as_str(),
        "https://s.ns1.svc.cluster.local/steps/x"
    );
    let ca = address.ca_certs.expect("CACerts carried");
    assert_eq!(ca.certificates().len(), 1);
    // A uri keeps its own scheme; CACerts still travel with it.
    let uri = Destination {
        uri: Some("http://plain.example/".into()),
        ca_certs: Some(pem),
        ..Destination::default()
    };
    let address = resolve(&uri, "ns1", &r, "t", "f", &BTreeMap::new()).expect("resolves");
    assert_eq!(address.url.as_str(), "http://plain.example/");
}

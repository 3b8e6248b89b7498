//! The HTTP(S) clients of remote hops: one pooled client trusting the host's
//! roots (system + Knative trust bundles), and one per distinct `CACerts`
//! set, as Knative's dispatcher keeps one client per addressable's CAs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};

use crate::registry::Address;
use crate::tls::{BaseTrust, CaCerts, TlsError};

/// One pooled client, http and https.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Most clients kept for distinct `CACerts`; past it the cache starts over
/// (a manifest names a handful; only reloads that keep changing them grow it).
const MAX_CA_CLIENTS: usize = 64;

/// The clients of one host; see the module doc.
pub struct Transport {
    /// System roots + trust bundles.
    base: BaseTrust,
    /// The client of every address without `CACerts`.
    shared: HttpClient,
    /// Clients of addresses with `CACerts`, by their certificates.
    by_ca: Mutex<HashMap<Arc<CaCerts>, HttpClient>>,
}

impl Transport {
    /// Clients trusting `base`, plus each address's own `CACerts`.
    pub fn new(base: BaseTrust) -> Result<Self, TlsError> {
        let shared = client((*base.roots).clone())?;
        Ok(Self {
            base,
            shared,
            by_ca: Mutex::default(),
        })
    }

    /// The client that trusts what `address` needs.
    pub fn client(&self, address: &Address) -> Result<HttpClient, TlsError> {
        let Some(ca) = &address.ca_certs else {
            return Ok(self.shared.clone());
        };
        let mut clients = self.by_ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = clients.get(ca) {
            return Ok(found.clone());
        }
        if clients.len() >= MAX_CA_CLIENTS {
            clients.clear();
        }
        let made = client(self.base.with(ca))?;
        clients.insert(Arc::clone(ca), made.clone());
        Ok(made)
    }
}

/// A keep-alive client for http and https trusting `roots`.
fn client(roots: RootCertStore) -> Result<HttpClient, TlsError> {
    // ring, not aws-lc-rs: no C library build on every clean CI run. Its only
    // gap (deprecated since rustls 0.23.48) is post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

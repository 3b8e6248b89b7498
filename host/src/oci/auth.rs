//! Registry credentials as Kubernetes gives them to pods: a Docker
//! `config.json` (`$DOCKER_CONFIG/config.json`, or the `.dockerconfigjson`
//! key of an imagePullSecret mounted as a volume), anonymous otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::OciError;

/// The `auths` of a Docker config, by registry host.
#[derive(Debug, Default, Clone)]
pub struct DockerAuth {
    /// `host[:port]` → (user, password).
    by_host: BTreeMap<String, (String, String)>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    /// base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerAuth {
    /// Read `file` (a `config.json` or `.dockerconfigjson`); `None` = the
    /// Docker default, `$DOCKER_CONFIG/config.json`, when that exists.
    pub fn load(file: Option<&Path>) -> Result<Self, OciError> {
        let path = match file {
            Some(path) => path.to_path_buf(),
            None => match std::env::var_os("DOCKER_CONFIG") {
                Some(dir) => PathBuf::from(dir).join("config.json"),
                None => return Ok(Self::default()),
            },
        };
        if file.is_none() && !path.exists() {
            return Ok(Self::default());
        }
        let fail = |message: String| OciError::Auth {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let config: ConfigFile =
            serde_json::from_str(&text).map_err(|e| fail(format!("not a Docker config: {e}")))?;
        let mut by_host = BTreeMap::new();
        for (key, entry) in config.auths {
            let pair = match (&entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| fail(format!("auths.{key:?}.auth is not base64: {e}")))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|_| fail(format!("auths.{key:?}.auth is not UTF-8")))?;
                    let (user, password) = text.split_once(':').ok_or_else(|| {
                        fail(format!("auths.{key:?}.auth is not `user:password`"))
                    })?;
                    (user.to_string(), password.to_string())
                }
                (None, Some(user), Some(password)) => (user, password),
                _ => continue,
            };
            by_host.insert(host_of(&key), pair);
        }
        Ok(Self { by_host })
    }

    /// The credentials for `registry` (`host[:port]`), else anonymous.
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.by_host.get(registry) {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// `https://index.docker.io/v1/` or `host:port` → `host:port`.
fn host_of(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    key.split('/').next().unwrap_or(key).to_string()
}

//! Kubernetes clients per cluster: endpoint and CA from the [`Directory`], a bearer token from the
//! [`Signer`], re-signed every 10 minutes. Separate from the directory so that a 401 drops only the token
//! and a connection, TLS or not-found error drops the cluster's directory entry too.

use crate::adapters::aws::{ClusterInfo, Directory, EksError};
use crate::adapters::token::{RESIGN_AFTER, Signer, TokenError};
use kube::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(transparent)]
    Eks(#[from] EksError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
}

/// Builds a client for a cluster without TLS or a token (an in-process API server of a simulation).
pub type Connect = Arc<dyn Fn(&str, &ClusterInfo) -> Client + Send + Sync>;

/// How a cluster's client is made.
enum Make {
    /// Over HTTPS to the cluster's endpoint, checked against its CA, with a token the signer signs.
    Signed(Signer),
    /// By a function (the simulation test's in-process API servers).
    Given(Connect),
}

pub struct KubeClients {
    directory: Arc<Directory>,
    make: Make,
    /// Per cluster: the client, when its token was signed, and the endpoint it was built for.
    clients: Mutex<HashMap<String, (Client, SystemTime, String)>>,
}

impl KubeClients {
    pub fn new(directory: Arc<Directory>, signer: Signer) -> Self {
        KubeClients {
            directory,
            make: Make::Signed(signer),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Clients made by `connect` for the endpoint the directory gives (no TLS, no token).
    pub fn connecting(directory: Arc<Directory>, connect: Connect) -> Self {
        KubeClients {
            directory,
            make: Make::Given(connect),
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub async fn client(&self, cluster: &str) -> Result<Client, KubeError> {
        // The directory answers from its cache; a client built for another endpoint (the directory was
        // described afresh and the cluster moved) is not reused.
        let info = self.directory.get(cluster).await?;
        if let Some((client, signed_at, endpoint)) = self.lock().get(cluster)
            && signed_at.elapsed().is_ok_and(|age| age < RESIGN_AFTER)
            && *endpoint == info.endpoint
        {
            return Ok(client.clone());
        }
        let (client, signed_at) = match &self.make {
            Make::Signed(signer) => {
                let (token, signed_at) = signer.sign(cluster).await?;
                (
                    build_client(&info, token).map_err(KubeError::Client)?,
                    signed_at,
                )
            }
            Make::Given(connect) => (connect(cluster, &info), SystemTime::now()),
        };
        self.lock().insert(
            cluster.to_string(),
            (client.clone(), signed_at, info.endpoint.clone()),
        );
        Ok(client)
    }

    /// Forgets the cluster's client (and with it the token); with `endpoint`, its directory entry too.
    pub fn invalidate(&self, cluster: &str, endpoint: bool) {
        self.lock().remove(cluster);
        if endpoint {
            self.directory.forget(cluster);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Client, SystemTime, String)>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A kube client for `info` that authenticates with `token` (no kubeconfig).
pub fn build_client(info: &ClusterInfo, token: String) -> Result<Client, String> {
    let uri: http::Uri = info
        .endpoint
        .parse()
        .map_err(|e| format!("endpoint {:?} is not a URL: {e}", info.endpoint))?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = "kube-system".into();
    config.root_cert = Some(info.ca_der.clone());
    config.auth_info.token = Some(secrecy::SecretString::from(token));
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(|e| e.to_string())
}

//! AWS adapters: IAM (who is an admin) and EKS (where a cluster is, through a directory that expires).
//! Clients are built once in `main` and reused across warm invocations.

use crate::core::grants::{Principal, PrincipalKind};
use crate::core::ports::{Account, IamError, IamSource};
use aws_sdk_eks::error::DisplayErrorContext;
use aws_sdk_iam::types::EntityType;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// IAM pages `GetAccountAuthorizationDetails` at up to 1000 items; ask for the maximum.
pub const IAM_PAGE_SIZE: i32 = 1000;
/// A safety stop for a paginator that never ends (1000 pages of 1000 users is over IAM's user quota).
const MAX_PAGES: usize = 1000;

/// The roots of Amazon Trust Services (Amazon Root CA 1-4 and Starfield Services Root CA G2), which every
/// AWS service endpoint's certificate chains to.
const AMAZON_TRUST_SERVICES: &str = include_str!("certs/amazon-trust-services.pem");

/// Which certificates the AWS SDK's HTTPS client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsTrust {
    /// Only Amazon Trust Services' roots: the function talks to AWS endpoints (IAM, EKS) and nothing else
    /// through the SDK, and five roots load in a fraction of the time the system's ~140 take.
    AmazonRoots,
    /// The platform's store, as `SSL_CERT_FILE` / `SSL_CERT_DIR` say (for a TLS-inspecting proxy).
    System,
}

impl AwsTrust {
    /// `System` when the operator pointed `SSL_CERT_FILE` or `SSL_CERT_DIR` somewhere, else `AmazonRoots`.
    pub fn from_env(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        if get("SSL_CERT_FILE").is_some() || get("SSL_CERT_DIR").is_some() {
            AwsTrust::System
        } else {
            AwsTrust::AmazonRoots
        }
    }

    /// The HTTPS client for the SDK; `None` means the SDK's default (the platform's store).
    pub fn https_client(
        self,
    ) -> Result<Option<aws_smithy_runtime_api::client::http::SharedHttpClient>, String> {
        use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider};
        if self == AwsTrust::System {
            return Ok(None);
        }
        let context = TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::rustls(rustls_provider::CryptoMode::AwsLc))
                .tls_context(context)
                .build_https(),
        ))
    }
}

/// How long a DescribeCluster answer is trusted (it is also dropped on connection, TLS or not-found errors).
pub const DIRECTORY_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum EksError {
    #[error("EKS DescribeCluster {cluster:?} failed: {message}")]
    Describe { cluster: String, message: String },
    #[error("EKS cluster {cluster:?}: {reason}")]
    ClusterInfo { cluster: String, reason: String },
}

#[derive(Clone, Debug)]
pub struct Iam {
    client: aws_sdk_iam::Client,
}

impl Iam {
    pub fn new(conf: &aws_config::SdkConfig) -> Self {
        Iam {
            client: aws_sdk_iam::Client::new(conf),
        }
    }
}

fn tags(t: &[aws_sdk_iam::types::Tag]) -> Vec<(String, String)> {
    t.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn not_found<E: aws_sdk_iam::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("NoSuchEntity")
}

impl Iam {
    /// A user's groups (`ListGroupsForUser`, paged).
    async fn groups_of(&self, name: &str) -> Result<Vec<String>, IamError> {
        let op = "ListGroupsForUser";
        let mut groups = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .list_groups_for_user()
                .user_name(name)
                .max_items(IAM_PAGE_SIZE)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| IamError {
                    op,
                    message: format!("{name:?}: {}", DisplayErrorContext(&e)),
                })?;
            groups.extend(out.groups().iter().map(|g| g.group_name().to_string()));
            if !out.is_truncated() {
                return Ok(groups);
            }
            marker = Some(out.marker().map(str::to_string).ok_or_else(|| IamError {
                op,
                message: "IsTruncated without Marker".into(),
            })?);
        }
        Err(IamError {
            op,
            message: format!("more than {MAX_PAGES} pages; refusing to go on"),
        })
    }

    /// One page of `GetAccountAuthorizationDetails` (users and roles, and groups when asked), appended to
    /// `out`; the next marker.
    async fn details_page(
        &self,
        page: usize,
        marker: Option<String>,
        groups: bool,
        out: &mut Account,
    ) -> Result<Option<String>, IamError> {
        let op = "GetAccountAuthorizationDetails";
        let mut filters = vec![EntityType::User, EntityType::Role];
        if groups {
            filters.push(EntityType::Group);
        }
        let resp = self
            .client
            .get_account_authorization_details()
            .set_filter(Some(filters))
            .max_items(IAM_PAGE_SIZE)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| IamError {
                op,
                message: format!("page {}: {}", page + 1, DisplayErrorContext(&e)),
            })?;
        let missing = |what: &str| IamError {
            op,
            message: format!("a {what} in the response has no name or ARN"),
        };
        for g in resp.group_detail_list() {
            let Some(name) = g.group_name() else {
                return Err(missing("group"));
            };
            out.groups.push(name.to_string());
        }
        for u in resp.user_detail_list() {
            let (Some(name), Some(arn)) = (u.user_name(), u.arn()) else {
                return Err(missing("user"));
            };
            out.principals.push(Principal {
                kind: PrincipalKind::User,
                name: name.to_string(),
                arn: arn.to_string(),
                id: u.user_id().map(str::to_string),
                tags: tags(u.tags()),
                groups: u.group_list().to_vec(),
            });
        }
        for r in resp.role_detail_list() {
            let (Some(name), Some(arn)) = (r.role_name(), r.arn()) else {
                return Err(missing("role"));
            };
            out.principals.push(Principal {
                kind: PrincipalKind::Role,
                name: name.to_string(),
                arn: arn.to_string(),
                id: r.role_id().map(str::to_string),
                tags: tags(r.tags()),
                groups: Vec::new(),
            });
        }
        if !resp.is_truncated() {
            return Ok(None);
        }
        resp.marker()
            .map(|m| Some(m.to_string()))
            .ok_or_else(|| IamError {
                op,
                message: "IsTruncated without Marker".into(),
            })
    }
}

impl IamSource for Iam {
    async fn get_user(&self, name: &str, groups: bool) -> Result<Option<Principal>, IamError> {
        let u = match self.client.get_user().user_name(name).send().await {
            Ok(out) => out.user.ok_or_else(|| IamError {
                op: "GetUser",
                message: format!("response for {name:?} has no user"),
            })?,
            // Only IAM's own "no such user" means the user is gone; throttling, access denied, a network
            // error or anything else is a failed read, and nothing may be removed on it.
            Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(None),
            Err(e) => {
                return Err(IamError {
                    op: "GetUser",
                    message: format!("{name:?}: {}", DisplayErrorContext(&e)),
                });
            }
        };
        let groups = if groups {
            self.groups_of(name).await?
        } else {
            Vec::new()
        };
        Ok(Some(Principal {
            kind: PrincipalKind::User,
            name: u.user_name().to_string(),
            arn: u.arn().to_string(),
            id: Some(u.user_id().to_string()).filter(|i| !i.is_empty()),
            tags: tags(u.tags()),
            groups,
        }))
    }

    async fn get_role(&self, name: &str) -> Result<Option<Principal>, IamError> {
        match self.client.get_role().role_name(name).send().await {
            Ok(out) => {
                let r = out.role().ok_or_else(|| IamError {
                    op: "GetRole",
                    message: format!("response for {name:?} has no role"),
                })?;
                Ok(Some(Principal {
                    kind: PrincipalKind::Role,
                    name: r.role_name().to_string(),
                    arn: r.arn().to_string(),
                    id: Some(r.role_id().to_string()).filter(|i| !i.is_empty()),
                    tags: tags(r.tags()),
                    groups: Vec::new(),
                }))
            }
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(None),
            Err(e) => Err(IamError {
                op: "GetRole",
                message: format!("{name:?}: {}", DisplayErrorContext(&e)),
            }),
        }
    }

    async fn list_principals(&self, groups: bool) -> Result<Account, IamError> {
        let mut account = Account::default();
        let mut marker: Option<String> = None;
        for page in 0..MAX_PAGES {
            marker = self
                .details_page(page, marker, groups, &mut account)
                .await?;
            if marker.is_none() {
                return Ok(account);
            }
        }
        Err(IamError {
            op: "GetAccountAuthorizationDetails",
            message: format!("more than {MAX_PAGES} pages; refusing to go on"),
        })
    }
}

/// How EKS authenticates IAM principals on a cluster (`accessConfig.authenticationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `aws-auth` only.
    ConfigMap,
    /// Access entries first, then `aws-auth`.
    ApiAndConfigMap,
    /// Access entries only.
    Api,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::ConfigMap => "CONFIG_MAP",
            AuthMode::ApiAndConfigMap => "API_AND_CONFIG_MAP",
            AuthMode::Api => "API",
        }
    }
}

/// Where a cluster's API server is, which CA signs its certificate, and how it authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub endpoint: String,
    /// DER certificates from the cluster's CA bundle.
    pub ca_der: Vec<Vec<u8>>,
    pub auth_mode: AuthMode,
}

#[derive(Clone, Debug)]
pub struct Eks {
    client: aws_sdk_eks::Client,
}

impl Eks {
    pub fn new(conf: &aws_config::SdkConfig) -> Self {
        Eks {
            client: aws_sdk_eks::Client::new(conf),
        }
    }

    /// The SDK client (shared with the access-entries store).
    pub fn client(&self) -> aws_sdk_eks::Client {
        self.client.clone()
    }

    pub async fn describe(&self, cluster: &str) -> Result<ClusterInfo, EksError> {
        let out = self
            .client
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .map_err(|e| EksError::Describe {
                cluster: cluster.into(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        let info = |reason: &str| EksError::ClusterInfo {
            cluster: cluster.into(),
            reason: reason.into(),
        };
        let c = out
            .cluster()
            .ok_or_else(|| info("response has no cluster"))?;
        use aws_sdk_eks::types::AuthenticationMode as M;
        // A cluster made before access entries existed has no accessConfig: it reads aws-auth only.
        let auth_mode = match c.access_config().and_then(|a| a.authentication_mode()) {
            None | Some(M::ConfigMap) => AuthMode::ConfigMap,
            Some(M::ApiAndConfigMap) => AuthMode::ApiAndConfigMap,
            Some(M::Api) => AuthMode::Api,
            Some(other) => {
                return Err(info(&format!(
                    "unknown authentication mode {:?}; nothing is written to a cluster whose mode is not understood",
                    other.as_str()
                )));
            }
        };
        let endpoint = c
            .endpoint()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| info("no endpoint yet (is the cluster still creating?)"))?;
        let ca = c
            .certificate_authority()
            .and_then(|c| c.data())
            .ok_or_else(|| info("no certificateAuthority.data"))?;
        let ca_der = ca_bundle_der(ca).map_err(|r| info(&r))?;
        Ok(ClusterInfo {
            endpoint: endpoint.to_string(),
            ca_der,
            auth_mode,
        })
    }
}

/// Where each cluster is: DescribeCluster answers, kept for [`DIRECTORY_TTL`] and dropped by [`forget`]
/// when the cluster could not be reached with them (a re-created cluster gets a new endpoint and CA).
///
/// [`forget`]: Directory::forget
pub struct Directory {
    eks: Eks,
    ttl: Duration,
    cache: Mutex<HashMap<String, (ClusterInfo, Instant)>>,
}

impl Directory {
    pub fn new(eks: Eks, ttl: Duration) -> Self {
        Directory {
            eks,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(&self, cluster: &str) -> Result<ClusterInfo, EksError> {
        if let Some((info, at)) = self.lock().get(cluster)
            && at.elapsed() < self.ttl
        {
            return Ok(info.clone());
        }
        self.refresh(cluster).await
    }

    /// Describes the cluster now, whatever is cached (a full reconcile picks up a mode change this way).
    pub async fn refresh(&self, cluster: &str) -> Result<ClusterInfo, EksError> {
        // Described outside the lock: a slow DescribeCluster of one cluster must not hold up the others.
        let info = self.eks.describe(cluster).await?;
        self.lock()
            .insert(cluster.to_string(), (info.clone(), Instant::now()));
        Ok(info)
    }

    pub fn forget(&self, cluster: &str) {
        self.lock().remove(cluster);
    }

    /// The authentication mode last described, if the cluster is in the directory.
    pub fn cached_mode(&self, cluster: &str) -> Option<AuthMode> {
        self.lock().get(cluster).map(|(i, _)| i.auth_mode)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ClusterInfo, Instant)>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts/removes).
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `certificateAuthority.data` (base64 of a PEM bundle) → DER certificates.
pub fn ca_bundle_der(data: &str) -> Result<Vec<Vec<u8>>, String> {
    let compact: String = data.split_whitespace().collect();
    let pem = STANDARD
        .decode(compact)
        .map_err(|e| format!("certificateAuthority.data is not base64: {e}"))?;
    let pem = String::from_utf8(pem)
        .map_err(|_| "certificateAuthority.data is not a PEM text".to_string())?;
    let mut out = Vec::new();
    let mut rest = pem.as_str();
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let end = body.find(END).ok_or("unterminated PEM certificate")?;
        let b64: String = body[..end].split_whitespace().collect();
        out.push(
            STANDARD
                .decode(b64)
                .map_err(|e| format!("bad PEM certificate: {e}"))?,
        );
        rest = &body[end + END.len()..];
    }
    if out.is_empty() {
        return Err("certificateAuthority.data holds no PEM certificate".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amazon_roots_are_five_pem_certificates() {
        let n = AMAZON_TRUST_SERVICES
            .matches("-----BEGIN CERTIFICATE-----")
            .count();
        assert_eq!(n, 5);
        assert_eq!(
            ca_bundle_der(&STANDARD.encode(AMAZON_TRUST_SERVICES))
                .unwrap()
                .len(),
            5
        );
        assert!(AwsTrust::AmazonRoots.https_client().unwrap().is_some());
        assert!(AwsTrust::System.https_client().unwrap().is_none());
        let env = |set: &'static str| move |k: &str| (k == set).then(|| "x".into());
        assert_eq!(AwsTrust::from_env(env("SSL_CERT_FILE")), AwsTrust::System);
        assert_eq!(AwsTrust::from_env(env("SSL_CERT_DIR")), AwsTrust::System);
        assert_eq!(AwsTrust::from_env(env("OTHER")), AwsTrust::AmazonRoots);
    }

    #[test]
    fn ca_bundles() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBAU=\n-----END CERTIFICATE-----\n";
        let data = STANDARD.encode(pem);
        assert_eq!(
            ca_bundle_der(&data).unwrap(),
            vec![vec![0, 1, 2, 3], vec![4, 5]]
        );
        for (bad, needle) in [
            ("%%%", "not base64"),
            (
                &STANDARD.encode("random text, not a pem"),
                "no PEM certificate",
            ),
            (
                &STANDARD.encode("-----BEGIN CERTIFICATE-----\nAAEC"),
                "unterminated",
            ),
        ] {
            let e = ca_bundle_der(bad).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}

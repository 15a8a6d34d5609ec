//! The EKS bearer token: a presigned STS `GetCallerIdentity` URL with the cluster name as the signed
//! `x-k8s-aws-id` header, `k8s-aws-v1.` + base64url without padding — what `aws eks get-token` produces.
//!
//! Signing is pure (credentials and time are inputs). The token is a credential: never log it.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningParams, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::{Duration, SystemTime};

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// What `aws eks get-token` and aws-iam-authenticator use.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);
/// The server accepts a token for 15 minutes after signing; clients treat it as expired after 14.
pub const CLIENT_EXPIRY: Duration = Duration::from_secs(14 * 60);
/// A cached token is re-signed once it is this old, well before the 15-minute limit.
pub const RESIGN_AFTER: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("STS endpoint {0:?} is not an absolute http(s) URL with a host")]
    BadEndpoint(String),
    #[error("cannot sign the EKS token: {0}")]
    Signing(String),
    #[error("no AWS credentials to sign the EKS token: {0}")]
    Credentials(String),
}

/// Where tokens are signed for: the URL the API server's authenticator will call, and the signing region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsTarget {
    /// Scheme and authority, e.g. `https://sts.us-west-2.amazonaws.com`.
    pub base: String,
    pub region: String,
}

impl StsTarget {
    /// The regional STS endpoint of `region`, or `endpoint_override` (from `AWS_ENDPOINT_URL_STS` /
    /// `AWS_ENDPOINT_URL`) signed for `region`.
    pub fn new(region: &str, endpoint_override: Option<&str>) -> Result<Self, TokenError> {
        let base = match endpoint_override {
            Some(e) => {
                let u = url::Url::parse(e).map_err(|_| TokenError::BadEndpoint(e.into()))?;
                let host = u
                    .host_str()
                    .ok_or_else(|| TokenError::BadEndpoint(e.into()))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(TokenError::BadEndpoint(e.into()));
                }
                match u.port() {
                    Some(p) => format!("{}://{host}:{p}", u.scheme()),
                    None => format!("{}://{host}", u.scheme()),
                }
            }
            None if region == "aws-global" => "https://sts.amazonaws.com".to_string(),
            None if region.starts_with("cn-") => format!("https://sts.{region}.amazonaws.com.cn"),
            None => format!("https://sts.{region}.amazonaws.com"),
        };
        let region = if region == "aws-global" {
            "us-east-1"
        } else {
            region
        };
        Ok(StsTarget {
            base,
            region: region.to_string(),
        })
    }
}

/// The presigned `GetCallerIdentity` URL for `cluster`, signed at `time`.
pub fn presign_url(
    creds: &Credentials,
    target: &StsTarget,
    cluster: &str,
    time: SystemTime,
) -> Result<String, TokenError> {
    let url = format!(
        "{}/?Action=GetCallerIdentity&Version=2011-06-15",
        target.base
    );
    let identity: Identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params: SigningParams = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        SignableBody::empty(),
    )
    .map_err(|e| TokenError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into_parts();
    let mut out = url;
    for (name, value) in instructions.params() {
        out.push('&');
        out.push_str(name);
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(value, QUERY_VALUE));
    }
    Ok(out)
}

/// Characters SigV4 leaves unescaped in query values: `A-Z a-z 0-9 - _ . ~`.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `k8s-aws-v1.` + base64url (no padding) of the presigned URL.
pub fn token_from_url(url: &str) -> String {
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url))
}

/// Signs a token for `cluster` at `time`.
pub fn sign_token(
    creds: &Credentials,
    target: &StsTarget,
    cluster: &str,
    time: SystemTime,
) -> Result<String, TokenError> {
    presign_url(creds, target, cluster, time).map(|u| token_from_url(&u))
}

/// A kubectl exec-plugin credential (`client.authentication.k8s.io/v1beta1`), as `aws eks get-token` prints.
pub fn exec_credential(token: &str, signed_at: SystemTime) -> Result<String, TokenError> {
    let expiry = jiff::Timestamp::try_from(signed_at + CLIENT_EXPIRY)
        .map_err(|e| TokenError::Signing(e.to_string()))?;
    let v = serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": {
            "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "token": token,
        }
    });
    Ok(v.to_string())
}

/// Signs tokens with the function's own credentials (re-read on every signing; the provider caches).
#[derive(Clone, Debug)]
pub struct Signer {
    credentials: aws_credential_types::provider::SharedCredentialsProvider,
    target: StsTarget,
}

impl Signer {
    pub fn new(
        credentials: aws_credential_types::provider::SharedCredentialsProvider,
        target: StsTarget,
    ) -> Self {
        Signer {
            credentials,
            target,
        }
    }

    /// A fresh token for `cluster` and the time it was signed.
    pub async fn sign(&self, cluster: &str) -> Result<(String, SystemTime), TokenError> {
        use aws_credential_types::provider::ProvideCredentials;
        let creds = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| TokenError::Credentials(e.to_string()))?;
        let now = SystemTime::now();
        Ok((sign_token(&creds, &self.target, cluster, now)?, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn golden_creds() -> Credentials {
        Credentials::new(
            "ASIAR2TG44V6AS3ZZE7C",
            "4KD5cntGcVmLWRdF5wvNRuzNL5Qxmp6OKVY6Fz/Q",
            None,
            None,
            "test",
        )
    }

    fn at(ts: &str) -> SystemTime {
        SystemTime::from(ts.parse::<jiff::Timestamp>().unwrap())
    }

    fn query(url: &str) -> BTreeMap<String, String> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The authenticator's own `TestGetWithSTS` vector (see shared notes): the signature must match exactly.
    #[test]
    fn golden_vector() {
        let target = StsTarget::new("us-west-2", None).unwrap();
        let url = presign_url(
            &golden_creds(),
            &target,
            "test-cluster",
            at("2023-04-28T00:00:00Z"),
        )
        .unwrap();
        let want = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAR2TG44V6AS3ZZE7C%2F20230428%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20230428T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=e211dba77aba9dc44b0b6be38b8eaad092599c5157f6314444c5b9d85747f5ce";
        assert_eq!(query(&url), query(want));
        assert!(url.starts_with("https://sts.us-west-2.amazonaws.com/?"));
        // Byte-for-byte too (same parameter order as the authenticator's expected URL).
        assert_eq!(url, want);
    }

    #[test]
    fn token_shape() {
        let target = StsTarget::new("us-west-2", None).unwrap();
        let t = sign_token(
            &golden_creds(),
            &target,
            "test-cluster",
            at("2023-04-28T00:00:00Z"),
        )
        .unwrap();
        assert!(t.starts_with(TOKEN_PREFIX));
        let body = &t[TOKEN_PREFIX.len()..];
        assert!(!body.contains('=') && !body.contains('+') && !body.contains('/'));
        assert!(t.len() <= 4096);
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert_eq!(query(&url)["X-Amz-SignedHeaders"], "host;x-k8s-aws-id");
    }

    #[test]
    fn other_cluster_other_signature() {
        let target = StsTarget::new("us-west-2", None).unwrap();
        let t = at("2023-04-28T00:00:00Z");
        let a = presign_url(&golden_creds(), &target, "a", t).unwrap();
        let b = presign_url(&golden_creds(), &target, "b", t).unwrap();
        assert_ne!(query(&a)["X-Amz-Signature"], query(&b)["X-Amz-Signature"]);
    }

    #[test]
    fn session_token_is_in_the_query() {
        let creds = Credentials::new(
            "ASIAX",
            "secret",
            Some("FwoG+session/token=".into()),
            None,
            "t",
        );
        let target = StsTarget::new("eu-central-1", None).unwrap();
        let url = presign_url(&creds, &target, "c", at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(query(&url)["X-Amz-Security-Token"], "FwoG+session/token=");
        assert!(url.contains("X-Amz-Security-Token=FwoG%2Bsession%2Ftoken%3D"));
    }

    #[test]
    fn endpoints() {
        type Case<'a> = (&'a str, Option<&'a str>, Result<(&'a str, &'a str), ()>);
        let cases: &[Case] = &[
            (
                "us-west-2",
                None,
                Ok(("https://sts.us-west-2.amazonaws.com", "us-west-2")),
            ),
            (
                "cn-north-1",
                None,
                Ok(("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1")),
            ),
            (
                "aws-global",
                None,
                Ok(("https://sts.amazonaws.com", "us-east-1")),
            ),
            (
                "us-east-1",
                Some("http://127.0.0.1:5000"),
                Ok(("http://127.0.0.1:5000", "us-east-1")),
            ),
            (
                "us-east-1",
                Some("http://127.0.0.1:5000/"),
                Ok(("http://127.0.0.1:5000", "us-east-1")),
            ),
            ("us-east-1", Some("127.0.0.1:5000"), Err(())),
            ("us-east-1", Some("ftp://x"), Err(())),
        ];
        for (region, ov, want) in cases {
            let got = StsTarget::new(region, *ov);
            match (got, want) {
                (Ok(t), Ok((base, r))) => {
                    assert_eq!(t.base, *base);
                    assert_eq!(t.region, *r);
                }
                (Err(_), Err(())) => {}
                (g, w) => panic!("{region} {ov:?}: {g:?} vs {w:?}"),
            }
        }
    }

    #[test]
    fn exec_credential_shape() {
        let s = exec_credential("k8s-aws-v1.abc", at("2026-01-01T00:00:00Z")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["kind"], "ExecCredential");
        assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1beta1");
        assert_eq!(v["status"]["expirationTimestamp"], "2026-01-01T00:14:00Z");
        assert_eq!(v["status"]["token"], "k8s-aws-v1.abc");
    }
}

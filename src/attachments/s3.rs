//! A small S3 client: put, get and delete one object, signed with AWS
//! Signature Version 4 on the node's own reqwest client.
//!
//! Three calls are all attachments need, so this is ~150 lines of SigV4
//! instead of an SDK (or `object_store`) and its build time. It speaks to
//! AWS and to S3-compatible servers (MinIO, Ceph, R2, moto), path-style or
//! virtual-hosted.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use url::Url;

use super::blobs::BlobError;
use crate::config::S3Config;

/// One bucket.
#[derive(Clone, Debug)]
pub struct S3Client {
    config: S3Config,
    http: reqwest::Client,
}

/// How long one request to the object store may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl S3Client {
    pub fn new(config: S3Config) -> Result<Self, BlobError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| BlobError::Unavailable(format!("cannot build the S3 client: {e}")))?;
        Ok(Self { config, http })
    }

    /// The URL of `key` (or of the bucket itself for an empty key).
    fn url(&self, key: &str) -> Result<Url, BlobError> {
        let endpoint = &self.config.endpoint;
        let mut url = if self.config.path_style {
            let mut url = endpoint.clone();
            url.set_path(&format!(
                "{}/{}",
                endpoint.path().trim_end_matches('/'),
                self.config.bucket
            ));
            url
        } else {
            let host = endpoint
                .host_str()
                .ok_or_else(|| BlobError::Unavailable("the S3 endpoint has no host".into()))?;
            let mut url = endpoint.clone();
            url.set_host(Some(&format!("{}.{host}", self.config.bucket)))
                .map_err(|e| BlobError::Unavailable(format!("bucket host: {e}")))?;
            url.set_path(endpoint.path().trim_end_matches('/'));
            url
        };
        if !key.is_empty() {
            let path = format!("{}/{}", url.path().trim_end_matches('/'), encode_key(key));
            url.set_path(&path);
        }
        Ok(url)
    }

    pub async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        let response = self
            .send(reqwest::Method::PUT, key, body, Some(content_type))
            .await?;
        expect_success(response, key).await.map(drop)
    }

    /// The object, or `None` when the bucket has no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        let response = self
            .send(reqwest::Method::GET, key, Bytes::new(), None)
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_success(response, key).await?;
        response
            .bytes()
            .await
            .map(Some)
            .map_err(|e| BlobError::Unavailable(format!("S3 GET {key}: {e}")))
    }

    /// Deletes the object; a missing one is not an error (S3's own rule).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let response = self
            .send(reqwest::Method::DELETE, key, Bytes::new(), None)
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        expect_success(response, key).await.map(drop)
    }

    /// Creates the bucket if it does not exist: for tests and first runs
    /// against a local server.
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        let response = self
            .send(reqwest::Method::PUT, "", Bytes::new(), None)
            .await?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        expect_success(response, "(bucket)").await.map(drop)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        key: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<reqwest::Response, BlobError> {
        let url = self.url(key)?;
        let payload_hash = hex::encode(Sha256::digest(&body));
        let extra: Vec<(&'static str, &str)> = content_type
            .map(|value| ("content-type", value))
            .into_iter()
            .collect();
        let signed = sign(
            &self.config,
            method.as_str(),
            &url,
            &payload_hash,
            &extra,
            Utc::now(),
        );
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("x-amz-date", &signed.amz_date)
            .header("x-amz-content-sha256", &payload_hash)
            .header(reqwest::header::AUTHORIZATION, signed.authorization);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        request
            .body(body)
            .send()
            .await
            .map_err(|e| BlobError::Unavailable(format!("S3 {method} {key}: {e}")))
    }
}

async fn expect_success(
    response: reqwest::Response,
    key: &str,
) -> Result<reqwest::Response, BlobError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let code = text
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("");
    Err(BlobError::Unavailable(format!(
        "S3 answered {status} {code} for {key}"
    )))
}

/// Keys are ours (`org/uuid`), but encoded anyway as SigV4 wants: every
/// byte but unreserved ones and the slashes between segments.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

struct Signed {
    amz_date: String,
    authorization: String,
}

fn hmac(key: &[u8], data: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| crate::auth::crypto::unreachable_hmac());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().into()
}

/// SigV4 for a request without a query string, signing `host`,
/// `x-amz-content-sha256`, `x-amz-date` and the `extra` headers sent
/// (lowercase names).
fn sign(
    config: &S3Config,
    method: &str,
    url: &Url,
    payload_hash: &str,
    extra: &[(&'static str, &str)],
    now: DateTime<Utc>,
) -> Signed {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let mut headers = vec![
        ("host", host),
        ("x-amz-content-sha256", payload_hash.to_owned()),
        ("x-amz-date", amz_date.clone()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, value.trim().to_owned())),
    );
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical_request =
        format!("{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{date}/{}/s3/aws4_request", config.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = format!("AWS4{}", config.secret_access_key.expose_secret());
    let key = hmac(secret.as_bytes(), &date);
    let key = hmac(&key, &config.region);
    let key = hmac(&key, "s3");
    let key = hmac(&key, "aws4_request");
    let signature = hex::encode(hmac(&key, &string_to_sign));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            config.access_key_id
        ),
        amz_date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(path_style: bool) -> S3Config {
        S3Config {
            bucket: "examplebucket".into(),
            endpoint: Url::parse("https://s3.amazonaws.com").unwrap(),
            region: "us-east-1".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            path_style,
        }
    }

    /// AWS's documented example ("Signature Calculations for the
    /// Authorization Header", Example: GET Object): GET /test.txt of
    /// `examplebucket` with `Range: bytes=0-9` on 2013-05-24.
    #[test]
    fn signs_as_aws_documents() {
        let client = S3Client::new(config(false)).unwrap();
        let url = client.url("test.txt").unwrap();
        assert_eq!(
            url.as_str(),
            "https://examplebucket.s3.amazonaws.com/test.txt"
        );
        let now = DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let empty = hex::encode(Sha256::digest(b""));
        let signed = sign(
            &config(false),
            "GET",
            &url,
            &empty,
            &[("range", "bytes=0-9")],
            now,
        );
        assert_eq!(signed.amz_date, "20130524T000000Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn path_style_puts_the_bucket_in_the_path() {
        let mut config = config(true);
        config.endpoint = Url::parse("http://127.0.0.1:9000").unwrap();
        let client = S3Client::new(config).unwrap();
        assert_eq!(
            client.url("org/a b").unwrap().as_str(),
            "http://127.0.0.1:9000/examplebucket/org/a%20b"
        );
        assert_eq!(
            client.url("").unwrap().as_str(),
            "http://127.0.0.1:9000/examplebucket"
        );
    }
}

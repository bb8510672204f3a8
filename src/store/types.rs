//! Typed values shared by records and the API: parsed once at the edge,
//! trusted afterwards.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;
use utoipa::ToSchema;
use uuid::Uuid;

/// The organization a record, member or credential belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct OrgId(pub Uuid);

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A staff role. Admin can do everything in its organization; supervisor
/// reads queues and members; agent answers conversations.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Supervisor,
    Agent,
}

/// A web origin (`https://shop.example.com[:port]`): scheme, host and port
/// only. Deployments list the origins their snippet may run on; the browser's
/// `Origin` header is compared with these exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "https://shop.example.com")]
pub struct Origin(String);

impl Origin {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text)
            .map_err(|_| format!("{text:?} is not an origin like https://example.com"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?} must use http or https"));
        }
        if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?} must name a host and nothing else"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} is an origin only: no path, query or fragment"
            ));
        }
        // Url normalizes case and default ports; the origin form drops the
        // trailing slash, as browsers send it.
        Ok(Self(url.origin().ascii_serialization()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Origin::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JWS algorithm an integration accepts for ID tokens. `none` is not
/// representable; HMAC ones must be listed explicitly by an admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub fn default_allowed() -> Vec<Algorithm> {
        vec![Algorithm::RS256, Algorithm::ES256, Algorithm::PS256]
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub enum DeploymentStatus {
    #[default]
    Active,
    Inactive,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn origins_normalize_and_refuse_paths() {
        assert_eq!(
            Origin::parse("HTTPS://Shop.Example.com").unwrap().as_str(),
            "https://shop.example.com"
        );
        assert_eq!(
            Origin::parse("https://shop.example.com:443")
                .unwrap()
                .as_str(),
            "https://shop.example.com"
        );
        assert_eq!(
            Origin::parse("http://localhost:3000").unwrap().as_str(),
            "http://localhost:3000"
        );
        assert_eq!(
            Origin::parse("https://shop.example.com/").unwrap().as_str(),
            "https://shop.example.com"
        );
        for bad in [
            "shop.example.com",
            "https://shop.example.com/path",
            "https://a@b.com",
            "ftp://x.com",
            "https://x.com?q",
            "*.example.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}

//! The master key checked against the stored data at start.
//!
//! Secrets at rest (integration client secrets, visitors' signing keys) are
//! sealed under the master key. A node started with another key than the
//! one that sealed them would serve, report ready, and then fail every
//! request that opens one: so a start opens a sealed check value first and
//! refuses to run when it does not open.
//!
//! The check value is written by the first start that finds none. A store
//! from before the check may already hold sealed secrets; the visitors'
//! signing keys are opened before the check is written, so the first such
//! start refuses a wrong key as well.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::crypto::Sealer;
use super::{read_setting, setting_put};
use crate::engine::Commit;
use crate::store::{Store, StoreError};

const SETTING: &str = "master-key-check";
const CONTEXT: &str = "setting:master-key-check";
const PLAINTEXT: &str = "switchboard master key check";

#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// The key does not open what is stored.
    #[error("does not open the data already stored ({0})")]
    Mismatch(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckSetting {
    sealed: String,
}

/// Opens the stored check value with `sealer`, or stores one sealed with
/// it when there is none yet.
pub async fn verify(store: &Store, sealer: &Sealer) -> Result<(), KeyCheckError> {
    if let Some(check) = read_setting::<CheckSetting>(store, SETTING).await? {
        return open(sealer, &check);
    }
    let sealed = sealer
        .seal(&SecretString::from(PLAINTEXT), CONTEXT)
        .map_err(|e| KeyCheckError::Mismatch(e.to_string()))?;
    let body = crate::store::encode(&CheckSetting { sealed })?;
    match store
        .commit(Commit::new().put(setting_put(SETTING, body)))
        .await
    {
        Ok(()) => Ok(()),
        // Another node wrote it first: it must open with this key too.
        Err(StoreError::Conflict(_)) => match read_setting::<CheckSetting>(store, SETTING).await? {
            Some(check) => open(sealer, &check),
            None => Err(StoreError::Conflict("the master key check vanished".to_owned()).into()),
        },
        Err(e) => Err(e.into()),
    }
}

fn open(sealer: &Sealer, check: &CheckSetting) -> Result<(), KeyCheckError> {
    sealer
        .open(&check.sealed, CONTEXT)
        .map(|_| ())
        .map_err(|e| KeyCheckError::Mismatch(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MasterKey;
    use crate::engine::{EmbeddedEngine, Engine};

    #[tokio::test]
    async fn the_key_that_wrote_the_check_opens_it_and_another_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let store = Store::new(Engine::Embedded(engine));
        let key = MasterKey::generate();
        verify(&store, &Sealer::new(&key)).await.unwrap();
        verify(&store, &Sealer::new(&key)).await.unwrap();
        let other = MasterKey::generate();
        assert!(matches!(
            verify(&store, &Sealer::new(&other)).await,
            Err(KeyCheckError::Mismatch(_))
        ));
    }
}

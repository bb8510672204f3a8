//! Guest sockets: opening and configuring a session, and waiting for an
//! agent to join.

use std::time::Duration;

use uuid::Uuid;

use super::LoadError;
use super::frames::{self, GuestFrame};
use super::net::{self, Incoming, Target, Ws};

/// How long a configureSession may take to be answered.
const CONFIGURE_WITHIN: Duration = Duration::from_secs(10);

/// A visitor's socket with a configured guest session.
#[derive(Debug)]
pub(super) struct Visitor {
    pub ws: Ws,
    /// Names the guest session.
    pub token: String,
}

/// Where visitors connect: the node, the deployment, the origin presented.
#[derive(Debug)]
pub(super) struct Site<'a> {
    pub target: &'a Target,
    pub deployment: &'a str,
    pub origin: Option<&'a str>,
}

impl Site<'_> {
    /// Opens a socket and configures a new guest session on it.
    pub(super) async fn open(&self) -> Result<Visitor, LoadError> {
        let path = format!(
            "/v1?deploymentId={}&application=switchboard-loadtest",
            self.deployment
        );
        let mut ws = self
            .target
            .connect(&path, self.origin.map(|o| ("origin", o)))
            .await?;
        let token = Uuid::new_v4().to_string();
        net::send(&mut ws, frames::configure_session(&token, self.deployment)).await?;
        let answered = async {
            loop {
                let text = match net::next(&mut ws).await {
                    Incoming::Text(text) => text,
                    Incoming::Closed => {
                        return Err(LoadError::Connect(
                            "the guest socket closed before configureSession was answered"
                                .to_owned(),
                        ));
                    }
                    Incoming::Other => continue,
                };
                let Ok(frame) = serde_json::from_str::<GuestFrame<'_>>(text.as_str()) else {
                    continue;
                };
                if frame.kind != "response" {
                    continue;
                }
                if frame.class == "SessionResponse"
                    && frame.body.object().and_then(|b| b.connected) == Some(true)
                {
                    return Ok(());
                }
                return Err(LoadError::Connect(format!(
                    "configureSession: {} {}",
                    frame.code,
                    frame.body.describe()
                )));
            }
        };
        tokio::time::timeout(CONFIGURE_WITHIN, answered)
            .await
            .map_err(|_| {
                LoadError::Connect("no answer to configureSession in 10 s".to_owned())
            })??;
        Ok(Visitor { ws, token })
    }
}

/// Sends the opening message and reads until an agent joins (bounded by
/// `within`): the steady scenario measures only conversations that have an
/// agent.
pub(super) async fn open_conversation(
    visitor: &mut Visitor,
    within: Duration,
) -> Result<(), LoadError> {
    net::send(&mut visitor.ws, frames::opening_message(&visitor.token)).await?;
    let joined = async {
        loop {
            let text = match net::next(&mut visitor.ws).await {
                Incoming::Text(text) => text,
                Incoming::Closed => {
                    return Err(LoadError::Connect(
                        "the guest socket closed before an agent joined".to_owned(),
                    ));
                }
                Incoming::Other => continue,
            };
            let Ok(frame) = serde_json::from_str::<GuestFrame<'_>>(text.as_str()) else {
                continue;
            };
            if frame.code >= 400 {
                return Err(LoadError::Connect(format!(
                    "the opening message: {} {}",
                    frame.code,
                    frame.body.describe()
                )));
            }
            if frame.body.object().is_some_and(|b| b.agent_joined()) {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(within, joined)
        .await
        .map_err(|_| LoadError::Connect(format!("no agent joined within {} s", within.as_secs())))?
}

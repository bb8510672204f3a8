//! The closed sets the engine spells storage names from: record kinds,
//! ephemeral spaces, collections, unique claims and bus channels. No key,
//! list or channel name is ever spelled from outside input, only from
//! these; each one's stable name is in its `as_str`/`name`, and names
//! already stored never change.

use std::fmt;

use super::Home;

/// Which kind of record a key addresses. A closed set: the engine spells keys
/// from it, so arbitrary strings from outside never become key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Organization,
    OidcIntegration,
    Configuration,
    ConfigurationVersion,
    Deployment,
    Queue,
    Member,
    ApiClient,
    /// Installation-wide settings (the default organization, the bootstrap
    /// token's hash, signing keys).
    Setting,
    /// A guest session: what a visitor's session token is bound to.
    GuestSession,
    /// An authenticated visitor across sessions: their conversations.
    Visitor,
    /// A conversation's routing state (its events live in its log).
    Conversation,
    /// An agent's presence and load.
    AgentState,
    /// One entry of an organization's audit log: an admin change or a
    /// staff sign-in.
    AuditEntry,
    /// A deployment that was deleted, until the retention sweep has
    /// deleted the guest sessions it left.
    DeletedDeployment,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::Organization,
        Kind::OidcIntegration,
        Kind::Configuration,
        Kind::ConfigurationVersion,
        Kind::Deployment,
        Kind::Queue,
        Kind::Member,
        Kind::ApiClient,
        Kind::Setting,
        Kind::GuestSession,
        Kind::Visitor,
        Kind::Conversation,
        Kind::AgentState,
        Kind::AuditEntry,
        Kind::DeletedDeployment,
    ];

    /// The short stable name used in storage keys. Never change one: stored
    /// data is addressed by it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Organization => "org",
            Kind::OidcIntegration => "oidc",
            Kind::Configuration => "cfg",
            Kind::ConfigurationVersion => "cfgver",
            Kind::Deployment => "dep",
            Kind::Queue => "queue",
            Kind::Member => "member",
            Kind::ApiClient => "client",
            Kind::Setting => "setting",
            Kind::GuestSession => "session",
            Kind::Visitor => "visitor",
            Kind::Conversation => "conv",
            Kind::AgentState => "agent",
            Kind::AuditEntry => "audit",
            Kind::DeletedDeployment => "depgone",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Namespaces of ephemeral values. A closed set, like [`Kind`], so storage
/// key names never come from outside. Ids within a space are chosen by
/// switchboard (UUIDs, or digests of tokens), never raw input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// A visitor's backend-owned login: state → nonce, PKCE verifier.
    LoginTransaction,
    /// A staff member's console login in progress.
    StaffLogin,
    /// An ID-token nonce, or an ID token presented directly, already
    /// accepted: kept until the token expires (plus the clock leeway).
    UsedNonce,
    /// A refresh token (by digest) and its state in its family.
    RefreshToken,
    /// A refresh-token family, present once revoked.
    RefreshFamily,
    /// A session JWT id revoked before its expiry.
    RevokedSession,
    /// A staff console session (by digest of the cookie).
    StaffSession,
    /// A rate-limit window counter.
    RateLimit,
    /// An agent's heartbeat: present while one of its sockets lives.
    AgentAlive,
    /// The conversations one client address opened in one deployment that
    /// may still be waiting for an agent: what bounds how many it queues.
    QueuedByAddress,
    /// The lease of a queue's assigner (by queue id): the node that holds it
    /// makes the queue's offers, so nodes do not race for the same agents.
    AssignLease,
    /// A queue has news for its assigner (by queue id): set by whoever
    /// wakes the queue, taken by the lease holder before it reads the
    /// queue, so a wake that raced with the holder's last look is not lost.
    AssignWake,
    /// The lease of the retention sweep (one id): the node holding it
    /// deletes what is past its retention, so nodes do not repeat each
    /// other's work.
    RetentionLease,
    /// A guest session whose deployment sends push notifications, while
    /// one of its sockets is open (refreshed with the socket's pings): a
    /// visitor who is here is not pushed to.
    GuestOnline,
    /// The lease of the push outbox (one id): the node holding it sends
    /// the notifications, so no push goes out twice.
    PushLease,
    /// The guest sessions a visitor signed in to (by visitor id): where an
    /// erasure finds the sessions that have no conversation to lead to
    /// them. A list ([`Engine::remember`]) each sign-in extends.
    VisitorSessions,
    /// The refresh-token families a visitor's exchanges started (by
    /// visitor id, as `deployment/family`): what an erasure revokes.
    VisitorFamilies,
}

impl Space {
    pub const ALL: [Space; 17] = [
        Space::LoginTransaction,
        Space::StaffLogin,
        Space::UsedNonce,
        Space::RefreshToken,
        Space::RefreshFamily,
        Space::RevokedSession,
        Space::StaffSession,
        Space::RateLimit,
        Space::AgentAlive,
        Space::QueuedByAddress,
        Space::AssignLease,
        Space::AssignWake,
        Space::RetentionLease,
        Space::GuestOnline,
        Space::PushLease,
        Space::VisitorSessions,
        Space::VisitorFamilies,
    ];

    /// The short stable name used in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Space::LoginTransaction => "login",
            Space::StaffLogin => "stafflogin",
            Space::UsedNonce => "nonce",
            Space::RefreshToken => "refresh",
            Space::RefreshFamily => "family",
            Space::RevokedSession => "revoked",
            Space::StaffSession => "staff",
            Space::RateLimit => "rate",
            Space::AgentAlive => "alive",
            Space::QueuedByAddress => "queued",
            Space::AssignLease => "assign",
            Space::AssignWake => "assignwake",
            Space::RetentionLease => "retention",
            Space::GuestOnline => "online",
            Space::PushLease => "pushlease",
            Space::VisitorSessions => "vsessions",
            Space::VisitorFamilies => "vfamilies",
        }
    }

    /// Whether losing a change of this space in a crash would matter: a
    /// token replayed, a revocation or sign-out undone, a visitor's
    /// sessions missed by an erasure. On the embedded engine those changes
    /// are committed durably (an fsync each); the others, which a restarted
    /// node rebuilds or can do without (leases, wake marks, presence, the
    /// counters behind abuse bounds), ride on the next durable commit, so a
    /// burst of arrivals does not queue an fsync per counter. Redis keeps
    /// every space as its persistence is configured.
    pub fn outlives_a_crash(self) -> bool {
        match self {
            Space::LoginTransaction
            | Space::StaffLogin
            | Space::UsedNonce
            | Space::RefreshToken
            | Space::RefreshFamily
            | Space::RevokedSession
            | Space::StaffSession
            | Space::VisitorSessions
            | Space::VisitorFamilies => true,
            Space::RateLimit
            | Space::AgentAlive
            | Space::QueuedByAddress
            | Space::AssignLease
            | Space::AssignWake
            | Space::RetentionLease
            | Space::GuestOnline
            | Space::PushLease => false,
        }
    }
}

/// A list of records, paged by the admin API and scanned by routing. Closed,
/// like [`Kind`]: the engine spells its names, so no list is named by a
/// string from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// Every organization.
    Organizations,
    /// One organization's records of one kind: its deployments, say.
    Org { org: uuid::Uuid, kind: Kind },
    /// Installation-wide settings.
    Settings,
    /// The published versions of one configuration.
    ConfigurationVersions {
        org: uuid::Uuid,
        configuration: uuid::Uuid,
    },
    /// The guest sessions of one deployment.
    DeploymentSessions {
        org: uuid::Uuid,
        deployment: uuid::Uuid,
    },
    /// One organization's authenticated visitors.
    Visitors(uuid::Uuid),
    /// The conversations waiting in one queue, by when they began to wait.
    Waiting { org: uuid::Uuid, queue: uuid::Uuid },
    /// One organization's conversations offered to an agent, by deadline:
    /// what the sweeper walks to time offers out.
    Offered(uuid::Uuid),
    /// One organization's conversations an agent is answering.
    Connected(uuid::Uuid),
    /// One organization's ended conversations.
    Ended(uuid::Uuid),
    /// One organization's agents that are not offline: what the sweeper
    /// checks for lost connections.
    OnlineAgents(uuid::Uuid),
    /// One organization's offline agents.
    OfflineAgents(uuid::Uuid),
    /// The push devices registered in one deployment.
    PushDevices {
        org: uuid::Uuid,
        deployment: uuid::Uuid,
    },
    /// One organization's notifications waiting to be sent, by when they
    /// are due.
    PushOutbox(uuid::Uuid),
    /// One organization's audit log, oldest first.
    Audit(uuid::Uuid),
    /// One organization's attachments, oldest first: its storage quota
    /// and the sweep of uploads never sent.
    Attachments(uuid::Uuid),
    /// A list earlier versions kept across organizations, read only by the
    /// migration that moves its entries to their organizations' lists.
    Retired(Retired),
}

/// The cross-organization lists of schema version 1, gone since records
/// live in their organization's [`Home`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Retired {
    Offered,
    OnlineAgents,
    PushOutbox,
}

impl Collection {
    /// The stable name inside the engine. Never change one: stored data is
    /// addressed by it.
    pub fn name(&self) -> String {
        match self {
            Collection::Organizations => "orgs".to_owned(),
            Collection::Org { org, kind } => format!("org/{org}/{}", kind.as_str()),
            Collection::Settings => "settings".to_owned(),
            Collection::ConfigurationVersions { configuration, .. } => {
                format!("cfg/{configuration}/versions")
            }
            Collection::DeploymentSessions { deployment, .. } => {
                format!("route/deployment/{deployment}/sessions")
            }
            Collection::Visitors(org) => format!("route/org/{org}/visitors"),
            Collection::Waiting { queue, .. } => format!("route/queue/{queue}/waiting"),
            Collection::Offered(org) => format!("route/org/{org}/offered"),
            Collection::Connected(org) => format!("route/org/{org}/connected"),
            Collection::Ended(org) => format!("route/org/{org}/ended"),
            Collection::OnlineAgents(org) => format!("route/org/{org}/agents/online"),
            Collection::OfflineAgents(org) => format!("route/org/{org}/agents/offline"),
            Collection::PushDevices { deployment, .. } => format!("push/{deployment}"),
            Collection::PushOutbox(org) => format!("push-outbox/{org}"),
            Collection::Audit(org) => format!("audit/org/{org}"),
            Collection::Attachments(org) => format!("attach/org/{org}"),
            Collection::Retired(Retired::Offered) => "route/offered".to_owned(),
            Collection::Retired(Retired::OnlineAgents) => "route/agents/online".to_owned(),
            Collection::Retired(Retired::PushOutbox) => "push-outbox".to_owned(),
        }
    }

    /// Where the list and the records in it live.
    pub fn home(&self) -> Home {
        match *self {
            Collection::Organizations | Collection::Settings | Collection::Retired(_) => {
                Home::Installation
            }
            Collection::Org { org, .. }
            | Collection::ConfigurationVersions { org, .. }
            | Collection::DeploymentSessions { org, .. }
            | Collection::Visitors(org)
            | Collection::Waiting { org, .. }
            | Collection::Offered(org)
            | Collection::Connected(org)
            | Collection::Ended(org)
            | Collection::OnlineAgents(org)
            | Collection::OfflineAgents(org)
            | Collection::PushDevices { org, .. }
            | Collection::PushOutbox(org)
            | Collection::Audit(org)
            | Collection::Attachments(org) => Home::Org(org),
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A unique claim: something at most one record may hold. Closed, like
/// [`Kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    /// A member's identity at its IdP, within one organization. Kept as a
    /// digest of issuer and subject, so IdP strings never become key names.
    MemberIdentity { org: uuid::Uuid, digest: [u8; 32] },
    /// A member pre-provisioned by email and not yet claimed, within one
    /// organization: a digest of the lowercased address.
    MemberInvite { org: uuid::Uuid, digest: [u8; 32] },
}

impl Claim {
    /// The claim on (organization, issuer, subject).
    pub fn member_identity(org: uuid::Uuid, issuer: &str, subject: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{issuer}\n{subject}").as_bytes());
        Claim::MemberIdentity {
            org,
            digest: digest.into(),
        }
    }

    /// The claim on a pending member's email address in an organization.
    /// Addresses compare without regard to case.
    pub fn member_invite(org: uuid::Uuid, email: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(email.trim().to_lowercase().as_bytes());
        Claim::MemberInvite {
            org,
            digest: digest.into(),
        }
    }

    /// The stable name inside the engine. Never change one: stored claims
    /// are addressed by it.
    pub fn name(&self) -> String {
        match self {
            Claim::MemberIdentity { org, digest } => {
                format!("member/{org}/{}", hex::encode(digest))
            }
            Claim::MemberInvite { org, digest } => {
                format!("member-invite/{org}/{}", hex::encode(digest))
            }
        }
    }

    /// Where the claim lives: with the records that may hold it.
    pub fn home(&self) -> Home {
        match *self {
            Claim::MemberIdentity { org, .. } | Claim::MemberInvite { org, .. } => Home::Org(org),
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A bus channel. Closed, like [`Kind`]: channel names are spelled by the
/// engine from these.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// New events of one conversation's log.
    Conversation(uuid::Uuid),
    /// Offers and assignments for one agent (a member or API client id).
    Agent(uuid::Uuid),
    /// Session-wide notices for one guest session (sign-in elsewhere, close).
    Session(uuid::Uuid),
    /// Notices for every session of one refresh-token family (logout).
    TokenFamily(uuid::Uuid),
    /// Changes to one queue's waiting list or agents (routing wake-ups).
    Queue(uuid::Uuid),
}

impl Channel {
    /// The stable channel name inside the engine (without prefix).
    pub fn name(&self) -> String {
        match self {
            Channel::Conversation(id) => format!("conv:{id}"),
            Channel::Agent(id) => format!("agent:{id}"),
            Channel::Session(id) => format!("session:{id}"),
            Channel::TokenFamily(id) => format!("family:{id}"),
            Channel::Queue(id) => format!("queue:{id}"),
        }
    }
}

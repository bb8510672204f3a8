//! The admin API, one module per resource.

pub mod audit;
pub mod backup;
pub mod clients;
pub mod configurations;
pub mod deployments;
pub mod diagnose;
pub mod erasure;
pub mod integrations;
pub mod members;
pub mod organizations;
pub mod queues;
pub(crate) mod resource;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(organizations::router())
        .merge(audit::router())
        .merge(erasure::router())
        .merge(clients::router())
        .merge(clients::rotate_router())
        .merge(backup::router())
        .merge(integrations::router())
        .merge(diagnose::router())
        .merge(configurations::router())
        .merge(deployments::router())
        .merge(queues::router())
        .merge(members::router())
        .merge(members::me_router())
}

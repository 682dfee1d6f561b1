//! The control plane: what changes the platform (deploys, rollbacks) and the
//! HTTP control API under `/v1/` that the CLI (and later the console) calls.
//!
//! Invariant: every route except `GET /v1/health` requires the admin token
//! (`Authorization: Bearer ...`). Errors are JSON `{"error": "..."}` with a
//! message that says what to do.

mod api;
mod auth;
mod data_api;
mod events_api;
mod platform;
mod users_api;

pub use api::router;
pub use nimbus_identity::Sealer;
pub use platform::{DeployEvent, Platform, PlatformError, PlatformLimits};

//! The control plane: what changes the platform (deploys, rollbacks) and the
//! HTTP control API under `/v1/` that the CLI (and later the console) calls.
//!
//! Invariant: every request passes `auth::authenticate`, and every endpoint
//! is listed in `auth::need` (an API key with a scope on the app, a user
//! token under a data access rule, or nothing for health and the client
//! auth endpoints); anything unlisted needs a platform-wide admin key.
//! Errors are JSON `{"error": "..."}` with a message that says what to do.

mod api;
mod auth;
mod console;
mod ctx;
mod data_api;
mod events_api;
pub mod metrics;
pub mod otlp;
mod platform;
mod replay_api;
mod usage_api;
mod users_api;

pub use api::{client_router, router};
pub use nimbus_identity::Sealer;
pub use platform::{DeployEvent, Platform, PlatformError, PlatformSettings};
pub use usage_api::PriceSheet;

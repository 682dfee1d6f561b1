//! The control plane: what changes the platform (deploys, rollbacks) and the
//! HTTP control API under `/v1/` that the CLI, the web console and app
//! pages (the client-facing endpoints) call.
//!
//! Invariant: every endpoint is one entry of the route table
//! ([`routes`]), which says what a caller needs (an API key with a scope
//! on the app, a user token under a data access rule, or nothing for
//! health and the client auth endpoints); the router is built from the
//! table, and every request to an endpoint passes `auth::authenticate`
//! with its entry's need. A path not in the table is not found.
//! Errors are JSON `{"error": "..."}` with a message that says what to do.

mod api;
mod auth;
mod capability;
mod console;
mod ctx;
mod data_api;
mod events_api;
pub mod metrics;
pub mod otlp;
mod platform;
mod realtime_api;
mod replay_api;
pub mod routes;
mod usage_api;
mod users_api;

pub use nimbus_identity::Sealer;
pub use platform::{DeployEvent, Platform, PlatformError, PlatformSettings};
pub use routes::{client_router, router};
pub use usage_api::PriceSheet;

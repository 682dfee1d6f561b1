//! Plain types shared by every Nimbus crate: the `nimbus.toml` manifest, the
//! resolved [`AppSpec`] a revision stores, per-function [`Limits`], and route
//! pattern checks.
//!
//! Invariant: nothing here does I/O or knows about HTTP servers, wasmtime or
//! SQL. Parsing and validation are pure functions, so the CLI (before upload)
//! and the server (before activation) run exactly the same checks.

pub mod data;
pub mod events;
pub mod manifest;
pub mod names;
pub mod policy;
pub mod realtime;
pub mod record;
pub mod route;
pub mod spec;
pub mod trace;

pub use manifest::{Manifest, ManifestError};
pub use record::{InvocationRecord, LogEntry, OpCounts, OpSpan, Outcome, Service, StoredInput};
pub use spec::{AppSpec, ConcurrencyScope, FunctionSpec, Limits, RouteSpec};

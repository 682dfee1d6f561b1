//! Tenant isolation: tenant B, with its own keys, guests and S3 key,
//! attacks tenant A through every door, each probe in a test of its own,
//! and reaches nothing of A's. One module per door.

mod common;

#[path = "tenants/credentials.rs"]
mod credentials;
#[path = "tenants/deletion.rs"]
mod deletion;
#[path = "tenants/durability.rs"]
mod durability;
#[path = "tenants/egress.rs"]
mod egress;
#[path = "tenants/hosts.rs"]
mod hosts;
#[path = "tenants/limits.rs"]
mod limits;
#[path = "tenants/s3auth.rs"]
mod s3auth;

//! The app life cycle each capability takes part in: what it readies
//! before an app's revision serves, and what it removes after the app is
//! deleted. [`crate::Platform`] runs every capability of [`all`] at each
//! step — deploy, rollback, restore, a cluster resync, delete — instead of
//! each operation listing by hand what it must do (a hand-kept list is how
//! deletion once forgot object storage).
//!
//! What lives in the database is not here: an app's rows, in every table
//! that has an `app` column, go in one transaction
//! (`nimbus_store::Store::delete_app`, which reads the tables from the
//! schema). A capability is here for what the database cannot do alone:
//! indexes, keys, files.

use crate::platform::PlatformError;
use futures::future::BoxFuture;
use nimbus_core::AppSpec;
use nimbus_identity::Users;
use nimbus_store::{BlobFiles, Store};

/// One capability's part in the app life cycle.
pub(crate) trait Lifecycle: Send + Sync {
    /// Its name, in errors.
    fn name(&self) -> &'static str;

    /// Readies what `spec` needs of this capability before the revision
    /// serves. On deploy it runs before the revision is stored, so a
    /// failure changes nothing; it must be idempotent (it runs again on
    /// every rollback, restart and resync).
    fn prepare<'a>(&'a self, _spec: &'a AppSpec) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async { Ok(()) })
    }

    /// After an app's rows were deleted: what lives outside the database.
    /// `files` are the object bodies and upload parts the deletion
    /// returned.
    fn deleted<'a>(&'a self, _app: &'a str, _files: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Document collections: their indexes exist before a revision queries
/// them (`nimbus_data::docs::prepare`).
struct Documents(Store);

impl Lifecycle for Documents {
    fn name(&self) -> &'static str {
        "documents"
    }

    fn prepare<'a>(&'a self, spec: &'a AppSpec) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move { Ok(nimbus_data::docs::prepare(&self.0, spec).await?) })
    }
}

/// User pools: an app with `[auth]` has a signing key before it serves.
struct UserPools(Users);

impl Lifecycle for UserPools {
    fn name(&self) -> &'static str {
        "user pools"
    }

    fn prepare<'a>(&'a self, spec: &'a AppSpec) -> BoxFuture<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            if spec.auth.is_some() {
                self.0
                    .tokens()
                    .ensure(&spec.name)
                    .await
                    .map_err(|e| PlatformError::Internal(format!("signing key: {e}")))?;
            }
            Ok(())
        })
    }
}

/// Object storage: a deleted app's object bodies and upload parts leave the
/// disk once their rows are gone.
struct ObjectBodies(BlobFiles);

impl Lifecycle for ObjectBodies {
    fn name(&self) -> &'static str {
        "object storage"
    }

    fn deleted<'a>(&'a self, _app: &'a str, files: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for file in files {
                self.0.delete(file).await;
            }
        })
    }
}

/// Every capability with a part in the life cycle. (Configuration and
/// secrets are not here: they are computed per function and installed into
/// the active app, see `Platform::apply_config`.)
pub(crate) fn all(store: &Store, users: &Users, blobs: &BlobFiles) -> Vec<Box<dyn Lifecycle>> {
    vec![
        Box::new(Documents(store.clone())),
        Box::new(UserPools(users.clone())),
        Box::new(ObjectBodies(blobs.clone())),
    ]
}

//! S3 access keys of an app: created with the secret shown once, revoked
//! on every node at once.

use super::not_found;
use crate::auth::Principal;
use crate::ctx::{ApiResult, Ctx};
use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use nimbus_api::S3KeyCreated;

/// `DELETE /v1/keys/s3/{access_key}`: revokes an S3 key of an app the
/// caller's key has the data scope on (the scope that creates them). The
/// next request signed with it is refused, on every node: secrets are read
/// from the store for each request.
pub(crate) async fn revoke_s3_key(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(access_key): Path<String>,
) -> ApiResult<StatusCode> {
    let store = &ctx.platform.store;
    let mine = match (&principal, store.s3_key(&access_key).await?) {
        (Principal::Key(k), Some((app, _))) => k.allows(Some(&app), nimbus_identity::Scope::Data),
        _ => false,
    };
    // Another app's key is as unknown as a missing one.
    if !mine || !store.delete_s3_key(&access_key).await? {
        return Err(not_found(format!(
            "no S3 key {access_key:?} that this API key may revoke: see `nimbus keys list`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/apps/{app}/keys/s3`: a new S3 access key for the app's
/// buckets. The secret is shown once, in this answer, and stored sealed.
pub(crate) async fn create_s3_key(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<(StatusCode, Json<S3KeyCreated>)> {
    ctx.platform.store.app(&app).await?;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |alphabet: &[u8], n: usize| -> String {
        (0..n)
            .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
            .collect()
    };
    let access_key = format!("NK{}", pick(UPPER, 18));
    let secret = pick(ANY, 40);
    ctx.platform
        .store
        .insert_s3_key(&access_key, &app, &ctx.platform.sealer.seal(&secret))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(S3KeyCreated {
            app,
            access_key,
            secret_key: secret,
        }),
    ))
}

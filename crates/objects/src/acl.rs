//! Public access, inside the tenant model.
//!
//! An ACL here is one of two states: private (the owning app only) or
//! `public-read` (anyone, unsigned, may read: an object's body and
//! metadata; a bucket's listing). Canned ACLs `private` and `public-read`
//! are taken on bucket creation, puts, copies and multipart uploads, and
//! by Put{Bucket,Object}Acl, as are `AccessControlPolicy` bodies that
//! grant no more than that. Every other grant is refused with a clear
//! error, so no app ever grants another app (or "every signed request",
//! `authenticated-read`) into its buckets. ACL reads answer the owner's
//! full control, plus READ for everyone when public.
//!
//! A bucket's Public Access Block is kept as S3 has it: `BlockPublicAcls`
//! refuses making the bucket or its objects public, `IgnorePublicAcls`
//! keeps every unsigned read out whatever the ACLs say.
//!
//! Unsigned requests are let through [`crate::Access`] for GetObject,
//! HeadObject and the two object listings only, marked [`Anonymous`] (no
//! `AppId`, so every operation that needs an app refuses them); those
//! operations then call [`check_read`] or [`check_list`]. To an unsigned
//! reader of a bucket that is not listable, a missing key is AccessDenied,
//! as a private one is, so keys cannot be probed.

use crate::Objects;
use crate::mapping::{internal, write_err};
use nimbus_store::{BucketAccess, PublicAccessBlock};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

/// Marks a request that was not signed, let through to read public
/// things of the bucket owned by `owner`.
#[derive(Clone)]
pub(crate) struct Anonymous {
    pub owner: String,
}

/// The group S3 names for everyone, signed or not.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

fn refused_grant(what: &str) -> s3s::S3Error {
    s3_error!(
        AccessDenied,
        "{what}: Nimbus offers the ACLs private and public-read only (a bucket and its objects belong to one app, which never grants another app into them); use the canned ACL public-read to let anyone read"
    )
}

/// Whether a canned ACL makes public (`public-read`) or private. The
/// owner-only ones (`bucket-owner-*`: the bucket owner is the writer's own
/// app) are private; ones granting writes or other principals are refused.
pub(crate) fn canned(acl: Option<&str>) -> S3Result<bool> {
    match acl {
        None | Some("private" | "bucket-owner-read" | "bucket-owner-full-control") => Ok(false),
        Some("public-read") => Ok(true),
        Some(other) => Err(refused_grant(&format!(
            "the canned ACL {other:?} is refused"
        ))),
    }
}

/// Refuses `x-amz-grant-*` headers: grants name principals, and an app
/// grants none but the public (through the canned ACL).
pub(crate) fn no_grant_headers(grants: &[&Option<String>]) -> S3Result<()> {
    if grants.iter().any(|g| g.is_some()) {
        return Err(refused_grant("x-amz-grant-* headers are refused"));
    }
    Ok(())
}

/// Whether an `AccessControlPolicy` body makes public: it may grant the
/// owner (the app) anything and everyone READ, nothing else.
fn policy_public(p: &AccessControlPolicy, app: &str) -> S3Result<bool> {
    let mut public = false;
    for g in p.grants.iter().flatten() {
        let perm = g.permission.as_ref().map(|p| p.as_str()).unwrap_or("");
        let Some(grantee) = &g.grantee else {
            return Err(refused_grant("a grant without a grantee"));
        };
        match grantee.type_.as_str() {
            Type::CANONICAL_USER if grantee.id.as_deref() == Some(app) => {}
            Type::GROUP
                if grantee.uri.as_deref() == Some(ALL_USERS) && perm == Permission::READ =>
            {
                public = true;
            }
            _ => {
                return Err(refused_grant(&format!(
                    "the grant of {perm} to {:?} is refused",
                    grantee
                        .id
                        .as_ref()
                        .or(grantee.uri.as_ref())
                        .or(grantee.email_address.as_ref())
                )));
            }
        }
    }
    Ok(public)
}

/// Whether an ACL request (canned, grant headers or a policy body) makes
/// public.
fn requested(
    app: &str,
    canned_acl: Option<&str>,
    policy: Option<&AccessControlPolicy>,
    grants: &[&Option<String>],
) -> S3Result<bool> {
    no_grant_headers(grants)?;
    match (canned_acl, policy) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "give either a canned ACL (x-amz-acl) or an AccessControlPolicy body, not both"
        )),
        (_, Some(p)) => policy_public(p, app),
        (acl, None) => canned(acl),
    }
}

/// Refuses making something public in a bucket whose Public Access Block
/// has `BlockPublicAcls`.
pub(crate) async fn check_may_publish(this: &Objects, bucket: &str, public: bool) -> S3Result<()> {
    if !public {
        return Ok(());
    }
    let access = bucket_access(this, bucket).await?;
    if access.block.is_some_and(|b| b.block_public_acls) {
        return Err(s3_error!(
            AccessDenied,
            "the bucket's Public Access Block has BlockPublicAcls: public ACLs are refused (DeletePublicAccessBlock, or PutPublicAccessBlock without it, first)"
        ));
    }
    Ok(())
}

async fn bucket_access(this: &Objects, bucket: &str) -> S3Result<BucketAccess> {
    this.store
        .bucket_access(bucket)
        .await
        .map_err(internal)?
        .ok_or_else(|| s3_error!(NoSuchBucket))
}

/// The anonymous marker of a request, if it was not signed.
pub(crate) fn anonymous(ext: &http::Extensions) -> Option<&Anonymous> {
    ext.get::<Anonymous>()
}

/// For an unsigned request: may it list the bucket (public-read, and
/// public ACLs not ignored)?
async fn listable(this: &Objects, bucket: &str) -> S3Result<bool> {
    let a = bucket_access(this, bucket).await?;
    Ok(a.public && !a.block.is_some_and(|b| b.ignore_public_acls))
}

/// An unsigned read of an object: allowed when the object is public and
/// the bucket does not ignore public ACLs. `found` is the object as read
/// (or the error reading it): to a reader who may not list the bucket, a
/// missing object is refused as a private one is.
pub(crate) async fn check_read<T>(
    this: &Objects,
    ext: &http::Extensions,
    bucket: &str,
    found: S3Result<T>,
    public: impl Fn(&T) -> bool,
) -> S3Result<T> {
    let Some(anon) = anonymous(ext) else {
        return found;
    };
    let a = bucket_access(this, bucket).await?;
    let ignore = a.block.is_some_and(|b| b.ignore_public_acls);
    if !ignore && (a.public || found.as_ref().is_ok_and(&public)) {
        meter(this, anon);
    }
    let denied = || {
        s3_error!(
            AccessDenied,
            "this object is not public: sign the request with a key of its app"
        )
    };
    match found {
        Ok(o) if public(&o) && !ignore => Ok(o),
        Ok(_) => Err(denied()),
        Err(e) if a.public && !ignore => Err(e),
        Err(_) => Err(denied()),
    }
}

/// An unsigned listing: allowed on a public-read bucket.
pub(crate) async fn check_list(
    this: &Objects,
    ext: &http::Extensions,
    bucket: &str,
) -> S3Result<()> {
    let Some(anon) = anonymous(ext) else {
        return Ok(());
    };
    if !listable(this, bucket).await? {
        return Err(s3_error!(
            AccessDenied,
            "this bucket is not public: sign the request with a key of its app"
        ));
    }
    meter(this, anon);
    Ok(())
}

/// An unsigned request allowed: one object operation of the bucket's app.
fn meter(this: &Objects, anon: &Anonymous) {
    if let Some(m) = &this.meter {
        m.meter(&anon.owner, nimbus_core::Service::Objects, 1);
    }
}

/// The owner's full control, and READ for everyone when public.
fn grants(owner: &Owner, public: bool) -> Vec<Grant> {
    let mut g = vec![Grant {
        grantee: Some(Grantee {
            type_: Type::from_static(Type::CANONICAL_USER),
            id: owner.id.clone(),
            display_name: owner.display_name.clone(),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if public {
        g.push(Grant {
            grantee: Some(Grantee {
                type_: Type::from_static(Type::GROUP),
                uri: Some(ALL_USERS.into()),
                id: None,
                display_name: None,
                email_address: None,
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    g
}

pub(crate) async fn get_bucket(
    this: &Objects,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let owner = crate::listing::owner_of(&req.extensions)?;
    let a = bucket_access(this, &req.input.bucket).await?;
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(grants(&owner, a.public)),
        owner: Some(owner),
    }))
}

pub(crate) async fn put_bucket(
    this: &Objects,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let app = crate::auth::app_of(&req.extensions)?;
    let i = req.input;
    let public = requested(
        &app,
        i.acl.as_ref().map(|a| a.as_str()),
        i.access_control_policy.as_ref(),
        &[
            &i.grant_full_control,
            &i.grant_read,
            &i.grant_read_acp,
            &i.grant_write,
            &i.grant_write_acp,
        ],
    )?;
    check_may_publish(this, &i.bucket, public).await?;
    this.store
        .set_bucket_public(&i.bucket, public)
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub(crate) async fn get_object(
    this: &Objects,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let owner = crate::listing::owner_of(&req.extensions)?;
    let i = req.input;
    let row = this
        .object_row(&i.bucket, &i.key, i.version_id.as_deref())
        .await?;
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(grants(&owner, row.attrs.public)),
        owner: Some(owner),
        ..Default::default()
    }))
}

pub(crate) async fn put_object(
    this: &Objects,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let app = crate::auth::app_of(&req.extensions)?;
    let i = req.input;
    let public = requested(
        &app,
        i.acl.as_ref().map(|a| a.as_str()),
        i.access_control_policy.as_ref(),
        &[
            &i.grant_full_control,
            &i.grant_read,
            &i.grant_read_acp,
            &i.grant_write,
            &i.grant_write_acp,
        ],
    )?;
    check_may_publish(this, &i.bucket, public).await?;
    match this
        .store
        .set_object_public(&i.bucket, &i.key, i.version_id.as_deref(), public)
        .await
        .map_err(internal)?
    {
        Some(_) => Ok(S3Response::new(PutObjectAclOutput::default())),
        None => Err(this
            .missing_version(&i.bucket, &i.key, i.version_id.as_deref())
            .await),
    }
}

pub(crate) async fn get_block(
    this: &Objects,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let Some(b) = bucket_access(this, &req.input.bucket).await?.block else {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
            "the bucket has no Public Access Block",
        );
        e.set_status_code(http::StatusCode::NOT_FOUND);
        return Err(e);
    };
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(b.block_public_acls),
            ignore_public_acls: Some(b.ignore_public_acls),
            block_public_policy: Some(b.block_public_policy),
            restrict_public_buckets: Some(b.restrict_public_buckets),
        }),
    }))
}

pub(crate) async fn put_block(
    this: &Objects,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let c = req.input.public_access_block_configuration;
    let block = PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    this.store
        .set_public_access_block(&req.input.bucket, Some(&block))
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
}

pub(crate) async fn delete_block(
    this: &Objects,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    this.store
        .set_public_access_block(&req.input.bucket, None)
        .await
        .map_err(write_err)?;
    Ok(S3Response::new(DeletePublicAccessBlockOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(type_: &str, id: Option<&str>, uri: Option<&str>, perm: &str) -> Grant {
        Grant {
            grantee: Some(Grantee {
                type_: Type::from(type_.to_string()),
                id: id.map(str::to_string),
                uri: uri.map(str::to_string),
                display_name: None,
                email_address: None,
            }),
            permission: Some(Permission::from(perm.to_string())),
        }
    }

    fn policy(g: Vec<Grant>) -> AccessControlPolicy {
        AccessControlPolicy {
            grants: Some(g),
            owner: None,
        }
    }

    #[test]
    fn only_private_and_public_read_are_granted() {
        assert!(!canned(None).unwrap());
        assert!(!canned(Some("private")).unwrap());
        assert!(!canned(Some("bucket-owner-full-control")).unwrap());
        assert!(canned(Some("public-read")).unwrap());
        for bad in [
            "public-read-write",
            "authenticated-read",
            "aws-exec-read",
            "x",
        ] {
            assert_eq!(
                canned(Some(bad)).unwrap_err().code().as_str(),
                "AccessDenied",
                "{bad}"
            );
        }
        let owner = grant("CanonicalUser", Some("shop"), None, "FULL_CONTROL");
        let everyone = grant("Group", None, Some(ALL_USERS), "READ");
        assert!(!policy_public(&policy(vec![owner.clone()]), "shop").unwrap());
        assert!(policy_public(&policy(vec![owner.clone(), everyone.clone()]), "shop").unwrap());
        // Another app, writes for everyone, other groups: refused.
        for bad in [
            grant("CanonicalUser", Some("rival"), None, "READ"),
            grant("Group", None, Some(ALL_USERS), "WRITE"),
            grant(
                "Group",
                None,
                Some("http://acs.amazonaws.com/groups/global/AuthenticatedUsers"),
                "READ",
            ),
            grant("AmazonCustomerByEmail", None, None, "READ"),
        ] {
            let e = policy_public(&policy(vec![owner.clone(), bad]), "shop").unwrap_err();
            assert_eq!(e.code().as_str(), "AccessDenied");
        }
        let h = Some("id=rival".to_string());
        assert!(no_grant_headers(&[&None, &h]).is_err());
        assert!(no_grant_headers(&[&None]).is_ok());
        let both = requested("shop", Some("private"), Some(&policy(vec![])), &[]);
        assert_eq!(both.unwrap_err().code().as_str(), "InvalidRequest");
    }
}

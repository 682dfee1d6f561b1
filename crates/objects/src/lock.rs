//! S3 Object Lock: a bucket's lock configuration (enabled on creation or
//! on a versioned bucket, with an optional default retention), each
//! version's retention (governance or compliance mode, until a date) and
//! legal hold, as set on a write or later, and answered on reads. What a
//! lock forbids — deleting a kept version, shortening a retention,
//! suspending a locked bucket's versioning — the store refuses itself
//! (`nimbus_store::ObjectAttrs::delete_refusal`), under the object's lock,
//! so no request can race past it.

use crate::Objects;
use crate::mapping::{internal, timestamp, write_err};
use nimbus_store::{LockMode, ObjectAttrs, ObjectLock, Period, Retention, StoreError};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

fn micros(t: &Timestamp) -> i64 {
    (time::OffsetDateTime::from(t.clone()).unix_timestamp_nanos() / 1000)
        .clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

fn mode_of(s: &str) -> S3Result<LockMode> {
    match s {
        ObjectLockMode::GOVERNANCE => Ok(LockMode::Governance),
        ObjectLockMode::COMPLIANCE => Ok(LockMode::Compliance),
        other => Err(s3_error!(
            InvalidArgument,
            "the Object Lock mode is {other:?}: it must be GOVERNANCE or COMPLIANCE"
        )),
    }
}

fn hold_of(s: &str) -> S3Result<bool> {
    match s {
        ObjectLockLegalHoldStatus::ON => Ok(true),
        ObjectLockLegalHoldStatus::OFF => Ok(false),
        other => Err(s3_error!(
            InvalidArgument,
            "the legal hold status is {other:?}: it must be ON or OFF"
        )),
    }
}

fn no_lock() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration: create the bucket with Object Lock enabled (x-amz-bucket-object-lock-enabled: true), or enable it with PutObjectLockConfiguration on a versioned bucket"
    )
}

/// A retention as asked: a mode and a date, both or neither; the date in
/// the future.
fn retention_of(
    mode: Option<&str>,
    until: Option<&Timestamp>,
    now_us: i64,
) -> S3Result<Option<Retention>> {
    match (mode, until) {
        (None, None) => Ok(None),
        (Some(mode), Some(until)) => {
            let until_us = micros(until);
            if until_us <= now_us {
                return Err(s3_error!(
                    InvalidArgument,
                    "the retain-until date must be in the future"
                ));
            }
            Ok(Some(Retention {
                mode: mode_of(mode)?,
                until_us,
            }))
        }
        _ => Err(s3_error!(
            InvalidArgument,
            "an Object Lock retention needs both a mode and a retain-until date"
        )),
    }
}

/// The Object Lock a write (PutObject, CopyObject, CreateMultipartUpload)
/// names for its version: a retention and a legal hold. Naming either in a
/// bucket without Object Lock is refused, before any body is read. A
/// version written without a retention gets its bucket's default one from
/// the store, when it is recorded (`Store::put_object`).
pub(crate) async fn for_write(
    this: &Objects,
    bucket: &str,
    mode: Option<&ObjectLockMode>,
    until: Option<&Timestamp>,
    hold: Option<&ObjectLockLegalHoldStatus>,
) -> S3Result<(Option<Retention>, bool)> {
    if mode.is_none() && until.is_none() && hold.is_none() {
        return Ok((None, false));
    }
    need_lock(this, bucket).await?;
    let asked = retention_of(mode.map(|m| m.as_str()), until, nimbus_store::now_us())?;
    let hold = hold.map(|h| hold_of(h.as_str())).transpose()?;
    Ok((asked, hold.unwrap_or(false)))
}

/// What a read (GetObject, HeadObject) answers of a version's lock: its
/// retention's mode and date (kept after the date passes, as S3 keeps
/// them) and its legal hold.
pub(crate) fn answered(
    a: &ObjectAttrs,
) -> (
    Option<ObjectLockMode>,
    Option<Timestamp>,
    Option<ObjectLockLegalHoldStatus>,
) {
    (
        a.retention
            .map(|r| ObjectLockMode::from_static(r.mode.as_str())),
        a.retention.map(|r| timestamp(r.until_us)),
        a.legal_hold
            .then(|| ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON)),
    )
}

pub(crate) async fn get_configuration(
    this: &Objects,
    req: S3Request<GetObjectLockConfigurationInput>,
) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
    let Some(lock) = this
        .store
        .bucket_object_lock(&req.input.bucket)
        .await
        .map_err(internal)?
    else {
        return Err(s3_error!(
            ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket"
        ));
    };
    let rule = lock.default.map(|(mode, period)| ObjectLockRule {
        default_retention: Some(DefaultRetention {
            mode: Some(ObjectLockRetentionMode::from_static(mode.as_str())),
            days: match period {
                Period::Days(d) => Some(d as i32),
                Period::Years(_) => None,
            },
            years: match period {
                Period::Years(y) => Some(y as i32),
                Period::Days(_) => None,
            },
        }),
    });
    Ok(S3Response::new(GetObjectLockConfigurationOutput {
        object_lock_configuration: Some(ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
            rule,
        }),
    }))
}

/// At most 100 years of default retention: long enough for any rule, and
/// the retain-until dates it makes stay representable.
const MAX_DEFAULT_DAYS: i32 = 36_500;

pub(crate) async fn put_configuration(
    this: &Objects,
    req: S3Request<PutObjectLockConfigurationInput>,
) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
    let input = req.input;
    let conf = input.object_lock_configuration.unwrap_or_default();
    if conf.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
        return Err(s3_error!(
            MalformedXML,
            "ObjectLockEnabled must be Enabled (Object Lock is never turned off once on)"
        ));
    }
    let default = match conf.rule.and_then(|r| r.default_retention) {
        None => None,
        Some(d) => {
            let mode = match &d.mode {
                Some(m) => mode_of(m.as_str())?,
                None => {
                    return Err(s3_error!(
                        MalformedXML,
                        "a DefaultRetention needs a Mode (GOVERNANCE or COMPLIANCE)"
                    ));
                }
            };
            let period = match (d.days, d.years) {
                (Some(n), None) if (1..=MAX_DEFAULT_DAYS).contains(&n) => Period::Days(n as u32),
                (None, Some(n)) if (1..=MAX_DEFAULT_DAYS / 365).contains(&n) => {
                    Period::Years(n as u32)
                }
                (Some(_), Some(_)) | (None, None) => {
                    return Err(s3_error!(
                        MalformedXML,
                        "a DefaultRetention has either Days or Years, not both nor neither"
                    ));
                }
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "the default retention period must be positive and at most 100 years"
                    ));
                }
            };
            Some((mode, period))
        }
    };
    if !this
        .store
        .set_bucket_object_lock(&input.bucket, &ObjectLock { default })
        .await
        .map_err(write_err)?
    {
        return Err(s3_error!(
            InvalidBucketState,
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
        ));
    }
    Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
}

/// Refuses a per-object lock request on a bucket without Object Lock.
async fn need_lock(this: &Objects, bucket: &str) -> S3Result<()> {
    match this
        .store
        .bucket_object_lock(bucket)
        .await
        .map_err(internal)?
    {
        Some(_) => Ok(()),
        None => Err(no_lock()),
    }
}

pub(crate) async fn get_retention(
    this: &Objects,
    req: S3Request<GetObjectRetentionInput>,
) -> S3Result<S3Response<GetObjectRetentionOutput>> {
    let input = req.input;
    need_lock(this, &input.bucket).await?;
    let row = this
        .object_row(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    let Some(r) = row.attrs.retention else {
        return Err(s3_error!(
            NoSuchObjectLockConfiguration,
            "the object version has no retention"
        ));
    };
    Ok(S3Response::new(GetObjectRetentionOutput {
        retention: Some(ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from_static(r.mode.as_str())),
            retain_until_date: Some(timestamp(r.until_us)),
        }),
    }))
}

pub(crate) async fn put_retention(
    this: &Objects,
    req: S3Request<PutObjectRetentionInput>,
) -> S3Result<S3Response<PutObjectRetentionOutput>> {
    let input = req.input;
    need_lock(this, &input.bucket).await?;
    let now = nimbus_store::now_us();
    let r = input.retention.unwrap_or_default();
    let retention = retention_of(
        r.mode.as_ref().map(|m| m.as_str()),
        r.retain_until_date.as_ref(),
        now,
    )?;
    let changed = this
        .store
        .set_object_retention(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            retention,
            now,
            input.bypass_governance_retention.unwrap_or(false),
        )
        .await;
    found(
        this,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        changed,
    )
    .await?;
    Ok(S3Response::new(PutObjectRetentionOutput::default()))
}

pub(crate) async fn get_legal_hold(
    this: &Objects,
    req: S3Request<GetObjectLegalHoldInput>,
) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
    let input = req.input;
    need_lock(this, &input.bucket).await?;
    let row = this
        .object_row(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    let status = if row.attrs.legal_hold {
        ObjectLockLegalHoldStatus::ON
    } else {
        ObjectLockLegalHoldStatus::OFF
    };
    Ok(S3Response::new(GetObjectLegalHoldOutput {
        legal_hold: Some(ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from_static(status)),
        }),
    }))
}

pub(crate) async fn put_legal_hold(
    this: &Objects,
    req: S3Request<PutObjectLegalHoldInput>,
) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
    let input = req.input;
    need_lock(this, &input.bucket).await?;
    let on = match input.legal_hold.and_then(|h| h.status) {
        Some(s) => hold_of(s.as_str())?,
        None => {
            return Err(s3_error!(
                MalformedXML,
                "a LegalHold needs a Status (ON or OFF)"
            ));
        }
    };
    let changed = this
        .store
        .set_object_legal_hold(&input.bucket, &input.key, input.version_id.as_deref(), on)
        .await;
    found(
        this,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        changed,
    )
    .await?;
    Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
}

/// A change of a version's lock: done, refused by the lock
/// (`AccessDenied`, saying why), or of no such version (answered as a read
/// of it is: NoSuchKey, NoSuchVersion, or a delete marker).
async fn found(
    this: &Objects,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    changed: Result<Option<String>, StoreError>,
) -> S3Result<()> {
    match changed {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(this.missing_version(bucket, key, version).await),
        Err(e) => Err(write_err(e)),
    }
}

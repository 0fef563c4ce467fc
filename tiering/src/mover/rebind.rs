//! Before an archived file's local copy is released: its copy must be in
//! the lake its policy names now, verified there not too long ago.
//!
//! A record names the lake its copy was verified in
//! ([`FileRecord::lake`]). A policy whose lake changed (from bucket A to
//! bucket B) must not release a file on the strength of A's copy, since a
//! recall through that policy would look in B; and a copy verified long
//! ago may have been removed since (lifecycle rules, a hand). So:
//!
//! - the record names another lake, or none (archived before strata kept
//!   it): the file is uploaded to the policy's lake and verified there
//!   (an object already there with the same size and SHA-256 is only
//!   verified), and `MarkArchived` binds the record to it before anything
//!   is released. The local bytes stay throughout; a crash before the
//!   commit leaves the record naming the old lake, and the next drain
//!   does it again (the conditional upload finds its object);
//! - the record names the policy's lake but was verified longer ago than
//!   [`MoverOptions::reverify_after`](super::MoverOptions::reverify_after):
//!   the object is looked at again (size and SHA-256). Missing or
//!   different, nothing is released in this drain: the file is uploaded
//!   again, verified, and the fresh verification committed; a later drain
//!   releases on it.

use std::path::Path;
use std::time::Duration;

use crate::catalog::{CatalogClient, CatalogError, FileRecord};
use crate::lake::LakeError;
use crate::metrics::FailureReason;

use super::DrainReport;
use super::clock;
use super::shared::{Inner, PolicyEntry};
use super::step::{Flow, Local, fail, release_step, verify};

/// Releases an archived file of a `move` rule once its copy is known to be
/// in the policy's lake now (see the module's documentation).
pub(crate) async fn release_archived<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    mut rec: FileRecord,
    root: &Path,
    t: &mut DrainReport,
) -> Result<(), CatalogError> {
    if let Flow::Continue = in_policy_lake(inner, entry, &mut rec, root, t).await? {
        release_step(inner, entry, &rec, root, t).await?;
    }
    Ok(())
}

async fn in_policy_lake<C: CatalogClient>(
    inner: &Inner<C>,
    entry: &PolicyEntry,
    rec: &mut FileRecord,
    root: &Path,
    t: &mut DrainReport,
) -> Result<Flow, CatalogError> {
    let lake = entry.lake.location().to_owned();
    let local = Local::new(root, &rec.key.path);
    if rec.lake.as_deref() != Some(lake.as_str()) {
        tracing::info!(
            key = %rec.key,
            recorded = rec.lake.as_deref().unwrap_or("none on record"),
            lake,
            "archived in another lake than its policy's: copying it there before any release"
        );
        return verify(inner, entry, rec, &local, None, false, t).await;
    }
    let age = rec
        .verified_at
        .map_or(Duration::MAX, |v| v.age_at(clock::now()));
    if age <= inner.options.reverify_after {
        return Ok(Flow::Continue);
    }
    match entry
        .lake
        .recheck(&rec.lake_key, rec.size, rec.sha256.0)
        .await
    {
        Ok(_) => {
            entry.set_up(true, &inner.metrics);
            Ok(Flow::Continue)
        }
        Err(e @ (LakeError::NotFound { .. } | LakeError::Mismatch { .. })) => {
            inner
                .metrics
                .upload_failed(entry.name(), FailureReason::Lost);
            tracing::warn!(
                key = %rec.key,
                lake,
                lake_key = rec.lake_key,
                verified_ago = ?age,
                error = %e,
                "archive lost from the lake since it was verified: nothing released; uploading it again"
            );
            // verify() uploads a missing object again and replaces other
            // bytes, then commits the fresh verification.
            verify(inner, entry, rec, &local, None, false, t).await?;
            Ok(Flow::Stop)
        }
        Err(e) => fail(inner, entry, rec, t, e).await,
    }
}

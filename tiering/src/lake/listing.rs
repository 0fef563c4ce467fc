//! Confirming many fresh uploads with a few listings instead of a HEAD each.
//!
//! An object written by one request has an ETag that is the MD5 the server
//! computed over the bytes it stored. A listing (ListObjectsV2) carries each
//! object's size and ETag, so one request confirms the objects of up to a
//! page (1,000 keys) at once: on a one-node Garage a HEAD costs the server
//! ≈ 160 µs, a listing ≈ 200 µs plus ≈ 5.5 µs per key listed.
//!
//! A listing only ever confirms. A key it does not show (a lake whose
//! listings lag behind its writes), shows with another size or ETag, or that
//! lies past the listing budget is left unconfirmed, and the caller verifies
//! it on its own (HEAD, or the content read back), which is also where a
//! missing or different object is acted on.

use std::sync::Arc;

use object_store::list::{PaginatedListOptions, PaginatedListStore};

/// An object just written by one request, as its uploader knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentObject {
    /// The lake key (relative to the lake's prefix).
    pub key: String,
    /// Bytes sent.
    pub size: u64,
    /// MD5 of the bytes sent ([`super::UploadOutcome::Uploaded::sent_md5`]).
    pub md5: [u8; 16],
}

/// Fewer fresh objects than this in one directory are not worth a listing:
/// their HEADs cost the server less than a page of other keys might.
pub const MIN_LISTED: usize = 8;

/// Keys per listing request.
const PAGE_KEYS: usize = 1000;

/// A listing stops after this many keys per key sought (plus one page): in a
/// directory already full of older objects, the fresh ones are left to
/// their HEADs rather than paid for with pages of others.
const KEYS_PER_SOUGHT: usize = 4;

/// Lists directory `dir` of the lake (a path ending in '/') to confirm the
/// objects in `sought`: their full object paths, sorted, with their indices
/// into `sent`. Returns the indices of those the listing shows with their
/// size and MD5.
pub(super) async fn confirm_dir(
    lister: &Arc<dyn PaginatedListStore>,
    dir: &str,
    sought: &[(String, usize)],
    sent: &[SentObject],
) -> Result<Vec<usize>, object_store::Error> {
    let mut confirmed = Vec::with_capacity(sought.len());
    let (Some((first, _)), Some((last, _))) = (sought.first(), sought.last()) else {
        return Ok(confirmed);
    };
    // `start-after` is exclusive: start just before the first key sought,
    // after the first key with one character less (a strict prefix of it).
    let offset = first
        .char_indices()
        .last()
        .map(|(at, _)| first[..at].to_owned())
        .filter(|o| o.len() > dir.len());
    let budget = KEYS_PER_SOUGHT * sought.len() + PAGE_KEYS;
    let mut listed = 0usize;
    let mut page_token = None;
    loop {
        let opts = PaginatedListOptions {
            offset: offset.clone(),
            delimiter: Some("/".into()),
            max_keys: Some(PAGE_KEYS),
            page_token: page_token.take(),
            ..Default::default()
        };
        let page = lister.list_paginated(Some(dir), opts).await?;
        let mut past_last = false;
        for meta in &page.result.objects {
            listed += 1;
            let path = meta.location.as_ref();
            if path > last.as_str() {
                past_last = true;
                continue;
            }
            // The same key may be sought more than once (sorted: side by side).
            let from = sought.partition_point(|(p, _)| p.as_str() < path);
            for (_, i) in sought[from..].iter().take_while(|(p, _)| p == path) {
                let s = &sent[*i];
                let etag = meta.e_tag.as_deref();
                if meta.size == s.size && etag.is_some_and(|e| super::etag_is_md5(e, &s.md5)) {
                    confirmed.push(*i);
                }
            }
        }
        match page.page_token {
            Some(t) if !past_last && listed < budget => page_token = Some(t),
            _ => return Ok(confirmed),
        }
    }
}

/// The directory part of an object path (up to and including its last
/// '/'), or "" for a path at the root.
pub(super) fn dir_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..=i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_of_keeps_the_slash() {
        assert_eq!(dir_of("site/ns/pvc/a/b.jpg"), "site/ns/pvc/a/");
        assert_eq!(dir_of("b.jpg"), "");
    }
}

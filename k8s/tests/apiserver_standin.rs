//! The stand-in API server of tests/support/apiserver.rs, driven by kube-rs
//! only as a client would drive a real one: `Api` calls, `watcher` streams,
//! server-side apply on `/status`, the event recorder. Every wait is on a
//! condition, bounded by `WAIT`.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::ApiServer;
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, Resource, ResourceExt, WatchEvent, WatchParams,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as Note, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use strata_k8s::TieringPolicy;

const WAIT: Duration = Duration::from_secs(10);
const NS: &str = "line-3";

fn policy(name: &str, schedule: &str) -> TieringPolicy {
    serde_json::from_value(json!({
        "apiVersion": "strata.io/v1alpha1",
        "kind": "TieringPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "schedule": schedule,
            "lake": {"url": "s3://plant-lake/line-3"},
            "rules": [{"name": "images", "include": ["**/*.jpg"], "action": "move"}],
        },
    }))
    .unwrap()
}

fn claim(name: &str, app: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "spec": {"storageClassName": "strata", "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap()
}

fn status_apply(status: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "strata.io/v1alpha1", "kind": "TieringPolicy", "status": status})
}

/// The next item of a stream, within `WAIT`.
async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an item within the wait")
        .expect("the stream goes on")
}

/// Waits, within `WAIT`, until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the condition within the wait");
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_list_replace_delete() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    let pp = PostParams::default();

    let a = api.create(&pp, &policy("a", "@hourly")).await.unwrap();
    assert_eq!(a.metadata.generation, Some(1));
    assert_eq!(a.metadata.resource_version.as_deref(), Some("1"));
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    let got = api.get("a").await.unwrap();
    assert_eq!(
        (got.metadata, got.spec),
        (a.metadata.clone(), a.spec.clone())
    );
    assert_eq!(
        api_error(api.create(&pp, &policy("a", "@daily")).await),
        (409, "AlreadyExists".into())
    );
    assert_eq!(api_error(api.get("b").await), (404, "NotFound".into()));

    api.create(&pp, &policy("b", "@daily")).await.unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.metadata.resource_version.as_deref(), Some("2"));
    let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["a", "b"]);
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items[0].name_any(), "b");
    assert_eq!(rest.metadata.continue_, None);
    let everywhere: Api<TieringPolicy> = Api::all(server.client());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    // PUT: a spec change is a new generation; a stale resourceVersion is 409.
    let mut changed = a.clone();
    changed.spec.schedule = Some("@daily".into());
    let replaced = api.replace("a", &pp, &changed).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.metadata.resource_version.as_deref(), Some("3"));
    assert_eq!(
        api_error(api.replace("a", &pp, &changed).await),
        (409, "Conflict".into())
    );

    // A merge patch of the object: spec in, status ignored (subresource).
    let patch = json!({"spec": {"suspend": true}, "status": {"volumes": 9}});
    let merged = api
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(merged.spec.suspend);
    assert_eq!(merged.status, None);
    assert_eq!(merged.metadata.generation, Some(3));

    let deleted = api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "deleted at once: a Status");
    assert_eq!(api_error(api.get("a").await), (404, "NotFound".into()));

    let requests = server.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].path,
        "/apis/strata.io/v1alpha1/namespaces/line-3/tieringpolicies"
    );
    let last = requests.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        (
            "GET",
            "/apis/strata.io/v1alpha1/namespaces/line-3/tieringpolicies/a"
        )
    );
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_status() {
    let server = ApiServer::new().await;
    let gvk = GroupVersionKind::gvk("example.io", "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::all_with(server.client(), &ApiResource::from_gvk(&gvk));
    assert_eq!(
        api_error(widgets.list(&ListParams::default()).await),
        (404, "NotFound".into())
    );
    // A cluster-scoped resource under a namespace is no path either.
    let gvk = GroupVersionKind::gvk("", "v1", "PersistentVolume");
    let pvs: Api<DynamicObject> =
        Api::namespaced_with(server.client(), NS, &ApiResource::from_gvk(&gvk));
    assert_eq!(api_error(pvs.get("pv-1").await), (404, "NotFound".into()));
}

#[tokio::test]
async fn a_watch_sees_added_modified_deleted_on_the_wire() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    server.insert(&policy("a", "@hourly"));

    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Added(a) = next(&mut stream).await.unwrap() else {
        panic!("an existing object first, as ADDED");
    };
    assert_eq!(a.name_any(), "a");

    let patch = json!({"spec": {"schedule": "@daily"}});
    api.patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let WatchEvent::Modified(a) = next(&mut stream).await.unwrap() else {
        panic!("MODIFIED");
    };
    assert_eq!(a.spec.schedule.as_deref(), Some("@daily"));
    assert_eq!(a.metadata.generation, Some(2));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let WatchEvent::Deleted(a) = next(&mut stream).await.unwrap() else {
        panic!("DELETED");
    };
    assert_eq!(
        a.resource_version(),
        Some(server.resource_version().to_string())
    );

    // From a resourceVersion: what came after it, again.
    let mut replay = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next(&mut replay).await.unwrap(),
        WatchEvent::Modified(_)
    ));
    assert!(matches!(
        next(&mut replay).await.unwrap(),
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test]
async fn a_label_selected_watch_sees_objects_leave_and_bookmarks() {
    let server = ApiServer::new().await;
    server.set_bookmark_interval(Duration::from_millis(50));
    let api: Api<PersistentVolumeClaim> = Api::all(server.client());
    server.insert(&claim("data", "vision"));
    server.insert(&claim("logs", "other"));

    let wp = WatchParams::default().labels("app in (vision, sorter)");
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let WatchEvent::Added(data) = next(&mut stream).await.unwrap() else {
        panic!("ADDED");
    };
    assert_eq!(data.name_any(), "data");

    let mut relabelled = data.clone();
    relabelled.labels_mut().insert("app".into(), "other".into());
    server.update(&relabelled);
    let WatchEvent::Deleted(gone) = next(&mut stream).await.unwrap() else {
        panic!("DELETED for this watch when it stops matching");
    };
    assert_eq!(gone.labels()["app"], "other");
    match next(&mut stream).await.unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(
            b.metadata.resource_version,
            server.resource_version().to_string()
        ),
        other => panic!("only a BOOKMARK is due, got {other:?}"),
    }

    let listed = api
        .list(&ListParams::default().fields("metadata.name=logs"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let listed = api
        .list(&ListParams::default().labels("app!=other"))
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

#[tokio::test]
async fn claims_and_volumes_with_status_from_the_test_side() {
    let server = ApiServer::new().await;
    let client = server.client();
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv-1"},
        "spec": {"csi": {"driver": "strata.io", "volumeHandle": "vg/pv-1"}},
    }))
    .unwrap();
    server.insert(&pv);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    assert_eq!(pvs.get("pv-1").await.unwrap().metadata.namespace, None);

    let pvc = server.insert(&claim("data", "vision"));
    let mut bound = pvc.clone();
    bound.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
    bound.status = Some(serde_json::from_value(json!({"phase": "Bound"})).unwrap());
    let bound = server.update(&bound);
    assert_eq!(
        bound.metadata.generation,
        Some(2),
        "spec.volumeName changed"
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, NS);
    let got = pvcs.get("data").await.unwrap();
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Bound"));
    let got: PersistentVolumeClaim = server.get(Some(NS), "data").unwrap();
    assert_eq!(got.spec.unwrap().volume_name.as_deref(), Some("pv-1"));
}

#[tokio::test]
async fn the_watcher_lists_then_watches_and_follows_changes() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    server.insert(&policy("a", "@hourly"));
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();

    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitApply(p) if p.name_any() == "a"));
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitDone));

    let b = server.insert(&policy("b", "@daily"));
    assert!(matches!(next(&mut events).await.unwrap(), Event::Apply(p) if p.name_any() == "b"));
    let mut b2 = b.clone();
    b2.spec.suspend = true;
    server.update(&b2);
    let Event::Apply(p) = next(&mut events).await.unwrap() else {
        panic!("Apply");
    };
    assert!(p.spec.suspend);
    assert_eq!(p.metadata.generation, Some(2));
    server.delete(&b2);
    assert!(matches!(next(&mut events).await.unwrap(), Event::Delete(p) if p.name_any() == "b"));

    // The classic list-then-watch: a LIST with kube's page size, then a
    // WATCH from the list's resourceVersion with bookmarks.
    let requests = server.requests();
    assert!(requests[0].is_list("tieringpolicies"));
    assert_eq!(requests[0].param("limit"), Some("500"));
    assert!(requests[1].is_watch());
    assert_eq!(requests[1].param("resourceVersion"), Some("1"));
    assert_eq!(requests[1].param("allowWatchBookmarks"), Some("true"));
    assert_eq!(requests[1].param("sendInitialEvents"), None);
}

#[tokio::test]
async fn the_streaming_list_watcher_gets_initial_events() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    server.insert(&policy("a", "@hourly"));
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher::watcher(api, config).boxed();
    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitApply(p) if p.name_any() == "a"));
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitDone));
    server.insert(&policy("b", "@daily"));
    assert!(matches!(next(&mut events).await.unwrap(), Event::Apply(p) if p.name_any() == "b"));
    assert_eq!(
        server.requests()[0].param("sendInitialEvents"),
        Some("true")
    );
}

#[tokio::test]
async fn after_compaction_the_watcher_gets_410_and_relists() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    let a = server.insert(&policy("a", "@hourly"));
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        Event::InitApply(_)
    ));
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitDone));

    // The watcher holds resourceVersion 1 and has not watched yet (it
    // does on its next poll); meanwhile history moves on and is compacted.
    server.delete(&a);
    server.insert(&policy("b", "@daily"));
    server.compact();

    match next(&mut events).await {
        Err(watcher::Error::WatchError(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected the 410, got {other:?}"),
    }
    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    let Event::InitApply(p) = next(&mut events).await.unwrap() else {
        panic!("the relist's objects");
    };
    assert_eq!(p.name_any(), "b");
    assert!(matches!(next(&mut events).await.unwrap(), Event::InitDone));

    let lists = server
        .requests()
        .iter()
        .filter(|r| r.is_list("tieringpolicies"))
        .count();
    assert_eq!(lists, 2, "listed again after the 410");
}

#[tokio::test]
async fn status_by_server_side_apply() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    let created = api
        .create(&PostParams::default(), &policy("a", "@hourly"))
        .await
        .unwrap();
    let pp = PatchParams::apply("strata-catalog");

    let full = json!({
        "observedGeneration": 1,
        "catalogPolicy": "line-3.a",
        "volumes": 3,
        "lastRun": {"volume": "pv-1", "finishedAt": "2025-01-01T00:00:00Z", "files": 1, "bytes": 2, "errors": 0},
    });
    let patched = api
        .patch_status("a", &pp, &Patch::Apply(status_apply(full.clone())))
        .await
        .unwrap();
    let s = patched.status.clone().unwrap();
    assert_eq!((s.volumes, s.observed_generation), (3, Some(1)));
    assert_eq!(s.catalog_policy.as_deref(), Some("line-3.a"));
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    assert_eq!(patched.spec, created.spec);
    assert_eq!(patched.metadata.resource_version.as_deref(), Some("2"));
    let managed = &patched.metadata.managed_fields.as_ref().unwrap()[0];
    assert_eq!(managed.manager.as_deref(), Some("strata-catalog"));
    assert_eq!(managed.operation.as_deref(), Some("Apply"));
    assert_eq!(managed.subresource.as_deref(), Some("status"));

    // The same apply again changes nothing: no write.
    let again = api
        .patch_status("a", &pp, &Patch::Apply(status_apply(full)))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version.as_deref(), Some("2"));

    // What the applier no longer sends goes; what it sends is replaced.
    let status = json!({"observedGeneration": 1, "volumes": 4});
    let smaller = api
        .patch_status("a", &pp, &Patch::Apply(status_apply(status)))
        .await
        .unwrap();
    let s = smaller.status.unwrap();
    assert_eq!(s.volumes, 4);
    assert_eq!((s.last_run, s.catalog_policy), (None, None));
    assert_eq!(
        api.get_status("a").await.unwrap().status.unwrap().volumes,
        4
    );

    // A stale resourceVersion in the apply is a conflict; no fieldManager
    // is a bad request.
    let stale = json!({
        "apiVersion": "strata.io/v1alpha1", "kind": "TieringPolicy",
        "metadata": {"name": "a", "resourceVersion": "1"},
        "status": {"volumes": 5},
    });
    assert_eq!(
        api_error(api.patch_status("a", &pp, &Patch::Apply(&stale)).await),
        (409, "Conflict".into())
    );
    let status = json!({"volumes": 5});
    assert_eq!(
        api_error(
            api.patch_status(
                "a",
                &PatchParams::default(),
                &Patch::Apply(status_apply(status))
            )
            .await
        ),
        (400, "BadRequest".into())
    );
    // A spec change bumps the generation and leaves status alone.
    let patch = json!({"spec": {"schedule": "@daily"}});
    let respec = api
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(respec.metadata.generation, Some(2));
    assert_eq!(respec.status.unwrap().volumes, 4);
    assert_eq!(server.status_patches(), 5);
}

#[tokio::test]
async fn status_patch_conflicts_until_retried() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    server.insert(&policy("a", "@hourly"));
    server.conflict_next_status_patches(2);

    let pp = PatchParams::apply("strata-catalog");
    let mut conflicts = 0;
    let patched = loop {
        let patch = Patch::Apply(status_apply(json!({"volumes": 1})));
        match api.patch_status("a", &pp, &patch).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {
                assert_eq!(s.reason, "Conflict");
                conflicts += 1;
                assert!(conflicts <= 2, "only two conflicts were asked for");
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(conflicts, 2);
    assert_eq!(patched.status.unwrap().volumes, 1);
    assert_eq!(server.status_patches(), 3);
}

#[tokio::test]
async fn stop_and_start_on_the_same_port_and_the_watcher_recovers() {
    let server = ApiServer::new().await;
    let port = server.port();
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    server.insert(&policy("a", "@hourly"));

    let (tx, mut rx) = mpsc::unbounded();
    let stream = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff();
    let forward = tokio::spawn(stream.for_each(move |item| {
        let _ = tx.unbounded_send(item);
        async {}
    }));
    while !matches!(next(&mut rx).await, Ok(Event::InitDone)) {}
    until(|| server.open_watches() == 1).await;

    server.stop().await;
    assert!(!server.is_running());
    assert!(api.get("a").await.is_err(), "nobody answers");
    // kube ends the cut watch (an EOF inside a chunk is resumable to it);
    // the watcher's new watch is refused: an error.
    while next(&mut rx).await.is_ok() {}
    server.insert(&policy("b", "@daily")); // while the API server is away

    server.start().await;
    assert_eq!(server.port(), port);
    loop {
        if let Ok(Event::Apply(p)) = next(&mut rx).await
            && p.name_any() == "b"
        {
            break;
        }
    }
    assert_eq!(api.get("a").await.unwrap().name_any(), "a");
    forward.abort();
}

#[tokio::test]
async fn the_event_recorder_creates_then_patches_a_series() {
    let server = ApiServer::new().await;
    let client = server.client();
    let api: Api<TieringPolicy> = Api::namespaced(client.clone(), NS);
    let a = api
        .create(&PostParams::default(), &policy("a", "@hourly"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "strata-catalog".into(),
            instance: None,
        },
    );
    let note = Note {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("in the catalog as line-3.a".into()),
        action: "Sync".into(),
        secondary: None,
    };
    let reference = a.object_ref(&());
    recorder.publish(&note, &reference).await.unwrap();
    recorder.publish(&note, &reference).await.unwrap();

    let events: Vec<k8s_openapi::api::events::v1::Event> = server.list(Some(NS));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason.as_deref(), Some("Synced"));
    assert_eq!(events[0].series.as_ref().map(|s| s.count), Some(2));
    let writes: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/events"))
        .map(|r| (r.method, r.path))
        .collect();
    let path = "/apis/events.k8s.io/v1/namespaces/line-3/events";
    assert_eq!(writes[0], ("POST".into(), path.into()));
    assert_eq!(
        writes[1],
        ("PATCH".into(), format!("{path}/{}", events[0].name_any()))
    );
}

#[tokio::test]
async fn finalizers_hold_a_delete_until_kubes_helper_removes_them() {
    let server = ApiServer::new().await;
    let api: Api<TieringPolicy> = Api::namespaced(server.client(), NS);
    let a = api
        .create(&PostParams::default(), &policy("a", "@hourly"))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reconcile = |event: finalizer::Event<TieringPolicy>| {
        let seen = seen.clone();
        async move {
            let what = match event {
                finalizer::Event::Apply(_) => "apply",
                finalizer::Event::Cleanup(_) => "cleanup",
            };
            seen.lock().unwrap().push(what);
            Ok::<_, Infallible>(Action::await_change())
        }
    };
    const NAME: &str = "strata.io/catalog";

    // kube's helper adds its finalizer with a JSON patch (test, add).
    finalizer(&api, NAME, Arc::new(a), reconcile).await.unwrap();
    let a = api.get("a").await.unwrap();
    assert_eq!(a.finalizers(), [NAME]);
    finalizer(&api, NAME, Arc::new(a), reconcile).await.unwrap();

    let marked = api.delete("a", &DeleteParams::default()).await.unwrap();
    let marked = marked.left().expect("the object, marked for deletion");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(api.get("a").await.is_ok(), "held by the finalizer");

    // Cleanup, then the helper removes the finalizer (test, remove): gone.
    finalizer(&api, NAME, Arc::new(marked), reconcile)
        .await
        .unwrap();
    assert_eq!(api_error(api.get("a").await), (404, "NotFound".into()));
    assert_eq!(*seen.lock().unwrap(), ["apply", "cleanup"]);
    let patches = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(patches, 2);
}

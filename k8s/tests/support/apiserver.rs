//! A stand-in for the Kubernetes API server, for tests only. **It is not
//! Kubernetes**: no etcd, no admission, no schema validation, no RBAC, no
//! discovery. It answers kube-rs's client on the real wire protocol (JSON
//! over plain HTTP/1.1, `Status` bodies for errors, chunked watch streams of
//! JSON lines) so that controller code can be tested against something that
//! behaves like an API server where the controller can tell the difference:
//! resourceVersions, generations, watches that resume, expire (410) and
//! break, server-side apply on `/status`, optimistic-concurrency conflicts.
//!
//! A test binary under `k8s/tests/` includes it with
//!
//! ```ignore
//! #[path = "support/apiserver.rs"]
//! mod apiserver;
//!
//! let server = apiserver::ApiServer::new().await; // serving on 127.0.0.1:<port>
//! let client = server.client(); // kube::Client, default namespace "default"
//! let policies: kube::Api<TieringPolicy> = kube::Api::namespaced(client, "ns");
//! server.insert(&pvc); // the test side changes the world; watches see it
//! server.conflict_next_status_patches(2); // the next two status patches get 409
//! server.stop().await; // connections cut, port closed
//! server.start().await; // same port, same objects, same history
//! ```
//!
//! Objects are `serde_json::Value`s keyed by (`group/version/plural`,
//! namespace, name), for the resources registered ([`ResourceType`]):
//! by default core `persistentvolumeclaims`, `persistentvolumes`, `events`,
//! `events.k8s.io/v1` `events`, `storage.k8s.io/v1` `storageclasses` and
//! `strata.io/v1alpha1` `tieringpolicies`; [`ApiServer::register`] adds more.
//!
//! What it does as the API server does:
//! - Paths `/api/v1/...` and `/apis/{group}/{version}/...`, cluster-wide
//!   (`/{plural}`) and namespaced (`/namespaces/{ns}/{plural}[/{name}[/status]]`);
//!   anything else is 404 with a `Status` body (`/version` answers too).
//! - One resourceVersion counter for everything; each write bumps it and
//!   sets `metadata.resourceVersion`; create sets `uid`,
//!   `creationTimestamp`, `generation: 1`; `generation` goes up when
//!   anything but `metadata` (and `status`, for resources with a status
//!   subresource) changes. Writes that change nothing are not writes (no new
//!   resourceVersion, no watch event). With a status subresource, writes to
//!   the object ignore `status` (and create drops it), writes to `/status`
//!   ignore everything else.
//! - GET, LIST (`resourceVersion` in the list's metadata; `limit` and
//!   `continue`, a continue token older than [`ApiServer::compact`] is 410),
//!   POST (201; 409 `AlreadyExists`; `generateName`), PUT (409 `Conflict`
//!   when `metadata.resourceVersion` differs), DELETE (`Status` Success, or
//!   with finalizers the object with `deletionTimestamp` set; removing the
//!   last finalizer then deletes it; `preconditions` honoured).
//! - PATCH with `application/merge-patch+json` (RFC 7386),
//!   `application/json-patch+json` (RFC 6902, what kube's `finalizer` helper
//!   sends; a failed `test` is 422) and `application/apply-patch+yaml`
//!   (server-side apply; `fieldManager` required, `apiVersion` and `kind`
//!   required and checked). All answer 409 when the body carries (or the
//!   patch leaves) a `metadata.resourceVersion` that is not the current one.
//! - WATCH (`?watch=true`): `{"type":...,"object":...}` lines, chunked.
//!   `resourceVersion` N: the events after N, or a single `ERROR` event with
//!   a 410 `Expired` `Status` ("too old resource version") when N is older
//!   than the last [`ApiServer::compact`]; absent or `0`: ADDED for every
//!   current object first; `sendInitialEvents=true`: the same, then a
//!   BOOKMARK annotated `k8s.io/initial-events-end`. BOOKMARKs every
//!   [`ApiServer::set_bookmark_interval`] (1 s) with `allowWatchBookmarks`;
//!   the stream ends after `timeoutSeconds`. Selectors filter as the API
//!   server does: an object that stops matching is DELETED for that watch.
//! - `labelSelector`: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
//!   `k notin (a,b)`. `fieldSelector`: `path=v`, `path==v`, `path!=v` on any
//!   dotted path of the object (`metadata.name`, `spec.volumeName`...);
//!   the API server accepts only some fields per type, this accepts all.
//!
//! What it does not do: validation (schemas, CEL, required fields), field
//! defaulting, admission, authentication, authorization, discovery (`/api`,
//! `/apis`), protobuf, HTTP/2, TLS, `dryRun` (400), strategic merge patch
//! (415), `deletecollection`, subresources other than `status`,
//! `resourceVersionMatch=Exact` lists (every list is served at the current
//! resourceVersion; continued pages are read at the current state),
//! garbage collection (ownerReferences), graceful deletion periods.
//! Server-side apply is kept at two levels: the applier owns the top-level
//! fields it sends under `status` (or `spec` and the other top-level fields,
//! plus single labels and annotations, when applying to the object): those
//! are replaced whole, and those it owned before and no longer sends are
//! removed unless another applier owns them. `metadata.managedFields`
//! records appliers only (no `Update` entries), and appliers never conflict
//! with each other (`force` is not needed). PUT without
//! `metadata.resourceVersion` is an unconditional update (custom resources
//! on a real API server require it).
//!
//! Test knobs on [`ApiServer`]: `insert`/`update`/`delete` objects from the
//! test side (watch events as for any write; `update` may change `status`),
//! `get`/`list`, `compact` (forget the watch history: older
//! resourceVersions get 410), `conflict_next_status_patches(n)`,
//! `status_patches()`, `requests()` (method, path, query of every request),
//! `open_watches()`, `stop`/`start` (the API server down and back on the
//! same port, objects and history kept).

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::any::TypeId;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State as Shared};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The stand-in API server: serving on `127.0.0.1:<port>` from [`new`]
/// until [`stop`] or drop, again on the same port after [`start`].
///
/// [`new`]: ApiServer::new
/// [`stop`]: ApiServer::stop
/// [`start`]: ApiServer::start
pub struct ApiServer {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A kind of object the stand-in serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version, `v1`.
    pub version: String,
    /// Lower-case plural of the paths, `persistentvolumeclaims`.
    pub plural: String,
    /// Kind, `PersistentVolumeClaim`.
    pub kind: String,
    /// Namespaced, or cluster-scoped.
    pub namespaced: bool,
    /// Has a `/status` subresource (writes to the object ignore `status`).
    pub status_subresource: bool,
}

impl ResourceType {
    /// A resource type by its names.
    pub fn new(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status_subresource: bool,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            status_subresource,
        }
    }

    /// The resource type of a kube/k8s-openapi type.
    pub fn of<K>(status_subresource: bool) -> Self
    where
        K: kube::Resource<DynamicType = ()>,
        K::Scope: 'static,
    {
        Self::new(
            &K::group(&()),
            &K::version(&()),
            &K::plural(&()),
            &K::kind(&()),
            TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
            status_subresource,
        )
    }

    /// `v1`, `strata.io/v1alpha1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.api_version(), self.plural)
    }

    /// `persistentvolumeclaims`, `tieringpolicies.strata.io`: as messages
    /// name it.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

fn default_resources() -> Vec<ResourceType> {
    [
        (
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
        ),
        ("", "persistentvolumes", "PersistentVolume", false, true),
        ("", "events", "Event", true, false),
        ("events.k8s.io", "events", "Event", true, false),
        (
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
            false,
            false,
        ),
    ]
    .into_iter()
    .map(|(group, plural, kind, namespaced, status)| {
        ResourceType::new(group, "v1", plural, kind, namespaced, status)
    })
    .chain([ResourceType::new(
        "strata.io",
        "v1alpha1",
        "tieringpolicies",
        "TieringPolicy",
        true,
        true,
    )])
    .collect()
}

/// One request as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PATCH`...
    pub method: String,
    /// `/apis/strata.io/v1alpha1/namespaces/ns/tieringpolicies/p/status`.
    pub path: String,
    /// The raw query string, `""` when none.
    pub query: String,
    /// The query decoded.
    pub params: Vec<(String, String)>,
}

impl Request {
    /// The value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    /// A `?watch=true` request.
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }

    /// A LIST: a GET of a collection that is not a watch.
    pub fn is_list(&self, plural: &str) -> bool {
        self.method == "GET" && self.path.ends_with(&format!("/{plural}")) && !self.is_watch()
    }
}

impl ApiServer {
    /// Binds `127.0.0.1:0` and serves.
    pub async fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let server = Self {
            state: Arc::new(Mutex::new(State::new())),
            addr,
            running: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port, the same across [`stop`](Self::stop) and
    /// [`start`](Self::start).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kube client of this server (`kube::Config::new`, namespace
    /// `default`).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Serve one more kind of object.
    pub fn register(&self, resource: ResourceType) {
        let mut state = self.lock();
        state.resources.retain(|r| r.key() != resource.key());
        state.resources.push(resource);
    }

    /// The API server goes away: the listener closes (new requests are
    /// refused) and every open connection is cut, watches in the middle of
    /// their chunked stream (kube ends such a stream and watches again,
    /// which is refused). Objects and watch history stay.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            let _ = running.stop.send(());
            let _ = running.task.await;
        }
        self.lock().watchers.clear();
    }

    /// Serves again on the same port (after [`stop`](Self::stop)).
    pub async fn start(&self) {
        if lock(&self.running).is_some() {
            return;
        }
        // Tokio binds with SO_REUSEADDR: the connections cut a moment ago
        // (TIME_WAIT) do not keep the port.
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("bind {} again: {e}", self.addr));
        self.serve(listener);
    }

    /// Serving now.
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    fn serve(&self, listener: TcpListener) {
        let router = Router::new()
            .fallback(handle)
            .with_state(self.state.clone());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, router, stopped));
        *lock(&self.running) = Some(Running { stop, task });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Creates an object from the test side (with its `status`), as a
    /// write: new resourceVersion, uid, ADDED to watches. The resource is
    /// found by `apiVersion` and `kind`; the namespace is
    /// `metadata.namespace` or `default`. Panics if it exists.
    pub fn insert<K: Serialize + DeserializeOwned>(&self, obj: &K) -> K {
        let value = to_value(obj);
        let mut state = self.lock();
        let res = state.resource_of(&value);
        let created = state
            .create(&res, None, value, true)
            .unwrap_or_else(|e| panic!("insert: {}", e.message));
        from_value(created)
    }

    /// Replaces an object from the test side, `status` included, whatever
    /// its resourceVersion (generation as for any write). Panics if it does
    /// not exist.
    pub fn update<K: Serialize + DeserializeOwned>(&self, obj: &K) -> K {
        let value = to_value(obj);
        let mut state = self.lock();
        let (res, ns, name) = state.locate(&value);
        let updated = state
            .write(&res, &ns, &name, value, Scope::Everything, None)
            .unwrap_or_else(|e| panic!("update: {}", e.message));
        from_value(updated)
    }

    /// Deletes an object from the test side, as a DELETE would: gone
    /// (DELETED to watches), or with finalizers marked for deletion.
    /// Returns what the DELETED event carried or the object marked, `None`
    /// if there was none.
    pub fn delete<K: Serialize + DeserializeOwned>(&self, obj: &K) -> Option<K> {
        let mut state = self.lock();
        let (res, ns, name) = state.locate(&to_value(obj));
        match state.delete(&res, &ns, &name, None, None) {
            Ok(Deletion::Gone(obj) | Deletion::Pending(obj)) => Some(from_value(obj)),
            Err(_) => None,
        }
    }

    /// An object as stored (`namespace` `None` for cluster-scoped ones).
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let state = self.lock();
        let key = (
            format!("{}/{}", K::api_version(&()), K::plural(&())),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        state.objects.get(&key).cloned().map(from_value)
    }

    /// The objects of a kind, of one namespace or all, by namespace and name.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let state = self.lock();
        let key = format!("{}/{}", K::api_version(&()), K::plural(&()));
        state
            .objects
            .iter()
            .filter(|((r, ns, _), _)| *r == key && namespace.is_none_or(|n| n == ns))
            .map(|(_, obj)| from_value(obj.clone()))
            .collect()
    }

    /// The current resourceVersion (of the last write).
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Forgets the watch history, as etcd's compaction does: a watch from
    /// a resourceVersion older than the current one gets a 410 `Expired`
    /// ERROR event (kube's watcher relists), a continue token a 410.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted = state.rv;
    }

    /// The next `n` PATCHes of a `/status` answer 409 `Conflict`.
    pub fn conflict_next_status_patches(&self, n: usize) {
        self.lock().conflicts_left = n;
    }

    /// PATCHes of a `/status` received, those answered 409 included.
    pub fn status_patches(&self) -> usize {
        self.lock().status_patches
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Watch streams open now (as far as the server has noticed: a client
    /// that went away counts until the next event or BOOKMARK for it).
    pub fn open_watches(&self) -> usize {
        let mut state = self.lock();
        state.watchers.retain(|w| !w.tx.is_closed());
        state.watchers.len()
    }

    /// How often watches with `allowWatchBookmarks` get a BOOKMARK (1 s);
    /// for watches opened from now on.
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.lock().bookmark_interval = every;
    }
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_value<K: Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).expect("object serializes")
}

fn from_value<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("stored object deserializes")
}

/// Accepts connections until told to stop, then closes the listener and
/// cuts every connection.
async fn accept(listener: TcpListener, router: Router, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

// --- the store --------------------------------------------------------------

/// (`group/version/plural`, namespace or `""`, name).
type ObjKey = (String, String, String);

struct State {
    resources: Vec<ResourceType>,
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    history: VecDeque<Change>,
    /// Watches from before this resourceVersion are 410.
    compacted: u64,
    watchers: Vec<Watcher>,
    requests: Vec<Request>,
    conflicts_left: usize,
    status_patches: usize,
    bookmark_interval: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

struct Change {
    resource: String,
    namespace: String,
    kind: ChangeKind,
    /// Before the change (`None` for a create).
    old: Option<Value>,
    /// After it; for a delete the last state, with the delete's
    /// resourceVersion.
    new: Value,
    rv: u64,
}

struct Watcher {
    resource: String,
    namespace: Option<String>,
    selector: Selector,
    tx: mpsc::UnboundedSender<String>,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The object: not `status` when there is a status subresource.
    Main,
    /// `/status`: only `status`.
    Status,
    /// The test side: all of it.
    Everything,
}

enum Deletion {
    Gone(Value),
    Pending(Value),
}

/// Metadata only the server writes.
const SERVER_FIELDS: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

impl State {
    fn new() -> Self {
        Self {
            resources: default_resources(),
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            watchers: Vec::new(),
            requests: Vec::new(),
            conflicts_left: 0,
            status_patches: 0,
            bookmark_interval: Duration::from_secs(1),
        }
    }

    /// The registered resource of an object, by `apiVersion` and `kind`.
    fn resource_of(&self, obj: &Value) -> ResourceType {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .cloned()
            .unwrap_or_else(|| panic!("{api_version} {kind} is not registered"))
    }

    /// A test-side object's resource, namespace (`default` if it has none)
    /// and name.
    fn locate(&self, obj: &Value) -> (ResourceType, String, String) {
        let res = self.resource_of(obj);
        let ns = match res.namespaced {
            true => meta_str(obj, "namespace").unwrap_or_else(|| "default".into()),
            false => String::new(),
        };
        (res, ns, meta_str(obj, "name").unwrap_or_default())
    }

    fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    fn current(&self, res: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(res.key(), ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// Records a write: the next resourceVersion, the store, the history,
    /// the watches.
    fn commit(
        &mut self,
        res: &ResourceType,
        kind: ChangeKind,
        old: Option<Value>,
        mut new: Value,
    ) -> Value {
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
        let namespace = meta_str(&new, "namespace").unwrap_or_default();
        let name = meta_str(&new, "name").unwrap_or_default();
        let key = (res.key(), namespace.clone(), name);
        if kind == ChangeKind::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, new.clone());
        }
        let change = Change {
            resource: res.key(),
            namespace,
            kind,
            old,
            new: new.clone(),
            rv: self.rv,
        };
        self.watchers.retain(|w| match w.event(&change) {
            Some(line) => w.tx.send(line).is_ok(),
            None => !w.tx.is_closed(),
        });
        self.history.push_back(change);
        new
    }

    /// POST, and the test side's insert (`from_test`: `status` kept,
    /// server-written metadata dropped).
    fn create(
        &mut self,
        res: &ResourceType,
        path_ns: Option<&str>,
        mut obj: Value,
        from_test: bool,
    ) -> Result<Value, ApiError> {
        check_type(res, &mut obj)?;
        let ns = match (res.namespaced, path_ns, meta_str(&obj, "namespace")) {
            (false, ..) => String::new(),
            (true, Some(path), Some(body)) if path != body => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (true, Some(path), _) => path.to_string(),
            (true, None, body) => body.unwrap_or_else(|| "default".into()),
        };
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(name), _) if !name.is_empty() => name,
            (_, Some(prefix)) => format!("{prefix}{:05x}", self.rv + 1),
            _ => {
                return Err(ApiError::invalid(
                    res,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if self
            .objects
            .contains_key(&(res.key(), ns.clone(), name.clone()))
        {
            return Err(ApiError::already_exists(res, &name));
        }
        if from_test {
            for field in SERVER_FIELDS {
                meta_mut(&mut obj).remove(field);
            }
        } else if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if res.status_subresource && !from_test {
            as_object(&mut obj).remove("status");
        }
        let meta = meta_mut(&mut obj);
        meta.insert("name".into(), name.into());
        if res.namespaced {
            meta.insert("namespace".into(), ns.into());
        } else {
            meta.remove("namespace");
        }
        meta.insert(
            "uid".into(),
            format!("00000000-0000-4000-8000-{:012x}", self.rv + 1).into(),
        );
        meta.insert("creationTimestamp".into(), now().into());
        meta.insert("generation".into(), 1.into());
        Ok(self.commit(res, ChangeKind::Added, None, obj))
    }

    /// PUT, `/status` PUT, the test side's update, and where PATCHes end.
    fn write(
        &mut self,
        res: &ResourceType,
        ns: &str,
        name: &str,
        proposed: Value,
        scope: Scope,
        precondition: Option<&str>,
    ) -> Result<Value, ApiError> {
        let current = self.current(res, ns, name)?;
        if precondition
            .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
        {
            return Err(ApiError::conflict(res, name));
        }
        let mut proposed = proposed;
        check_type(res, &mut proposed)?;
        let mut next = match scope {
            Scope::Status => {
                let mut next = current.clone();
                set_or_remove(
                    as_object(&mut next),
                    "status",
                    proposed.get("status").cloned(),
                );
                if let Some(managed) = proposed["metadata"].get("managedFields") {
                    meta_mut(&mut next).insert("managedFields".into(), managed.clone());
                }
                next
            }
            Scope::Main if res.status_subresource => {
                set_or_remove(
                    as_object(&mut proposed),
                    "status",
                    current.get("status").cloned(),
                );
                proposed
            }
            Scope::Main | Scope::Everything => proposed,
        };
        let meta = meta_mut(&mut next);
        for field in SERVER_FIELDS {
            set_or_remove(meta, field, current["metadata"].get(field).cloned());
        }
        if !meta.contains_key("managedFields")
            && let Some(managed) = current["metadata"].get("managedFields")
        {
            meta.insert("managedFields".into(), managed.clone());
        }
        if without_times(&next) == without_times(&current) {
            return Ok(current);
        }
        if spec_changed(res, &current, &next) {
            bump_generation(&mut next);
        }
        let next = self.commit(res, ChangeKind::Modified, Some(current), next);
        if next["metadata"].get("deletionTimestamp").is_some() && finalizers(&next) == 0 {
            return Ok(self.commit(res, ChangeKind::Deleted, Some(next.clone()), next));
        }
        Ok(next)
    }

    fn delete(
        &mut self,
        res: &ResourceType,
        ns: &str,
        name: &str,
        precondition_rv: Option<&str>,
        precondition_uid: Option<&str>,
    ) -> Result<Deletion, ApiError> {
        let current = self.current(res, ns, name)?;
        if precondition_rv
            .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
            || precondition_uid.is_some_and(|uid| Some(uid) != current["metadata"]["uid"].as_str())
        {
            return Err(ApiError::conflict(res, name));
        }
        if finalizers(&current) == 0 {
            let gone = self.commit(res, ChangeKind::Deleted, Some(current.clone()), current);
            return Ok(Deletion::Gone(gone));
        }
        if current["metadata"].get("deletionTimestamp").is_some() {
            return Ok(Deletion::Pending(current));
        }
        let mut next = current.clone();
        let meta = meta_mut(&mut next);
        meta.insert("deletionTimestamp".into(), now().into());
        meta.insert("deletionGracePeriodSeconds".into(), 0.into());
        bump_generation(&mut next);
        let next = self.commit(res, ChangeKind::Modified, Some(current), next);
        Ok(Deletion::Pending(next))
    }

    /// PATCH with a merge or JSON patch (`edit`): as the API server, a
    /// resourceVersion the patched object has that is not the current one
    /// is a conflict.
    fn patch(
        &mut self,
        res: &ResourceType,
        ns: &str,
        name: &str,
        scope: Scope,
        edit: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut proposed = self.current(res, ns, name)?;
        edit(&mut proposed)?;
        let precondition = meta_str(&proposed, "resourceVersion").filter(|rv| !rv.is_empty());
        self.write(res, ns, name, proposed, scope, precondition.as_deref())
    }

    /// PATCH `application/apply-patch+yaml`: server-side apply.
    fn apply(
        &mut self,
        res: &ResourceType,
        ns: &str,
        name: &str,
        applied: &Value,
        manager: &str,
        scope: Scope,
    ) -> Result<Value, ApiError> {
        if applied["apiVersion"].as_str() != Some(&res.api_version())
            || applied["kind"].as_str() != Some(&res.kind)
        {
            return Err(ApiError::bad_request(format!(
                "an apply patch needs apiVersion {} and kind {}",
                res.api_version(),
                res.kind
            )));
        }
        if meta_str(applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(applied, "name").unwrap_or_default()
            )));
        }
        let subresource = (scope == Scope::Status).then_some("status");
        let current = match self.current(res, ns, name) {
            Ok(current) => current,
            Err(not_found) if scope == Scope::Status => return Err(not_found),
            Err(_) => {
                let obj = json!({
                    "apiVersion": res.api_version(),
                    "kind": res.kind,
                    "metadata": {"name": name},
                });
                let obj = applied_onto(obj, applied, manager, res, subresource);
                return self.create(res, res.namespaced.then_some(ns), obj, false);
            }
        };
        let precondition = applied["metadata"]["resourceVersion"].as_str();
        if precondition
            .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
        {
            return Err(ApiError::conflict(res, name));
        }
        let proposed = applied_onto(current, applied, manager, res, subresource);
        self.write(res, ns, name, proposed, scope, None)
    }

    fn list(
        &self,
        res: &ResourceType,
        ns: Option<&str>,
        selector: &Selector,
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> Result<Value, ApiError> {
        let (rv, after) = match cont {
            None | Some("") => (self.rv, None),
            Some(token) => {
                let (rv, key) = token
                    .split_once(':')
                    .and_then(|(rv, key)| Some((rv.parse::<u64>().ok()?, key.split_once('/')?)))
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                if rv < self.compacted {
                    return Err(ApiError::new(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((key.0.to_string(), key.1.to_string())))
            }
        };
        let mut matching = self
            .objects
            .iter()
            .filter(|((r, n, _), obj)| {
                *r == res.key() && ns.is_none_or(|ns| ns == n) && selector.matches(obj)
            })
            .filter(|((_, n, name), _)| {
                after
                    .as_ref()
                    .is_none_or(|(an, aname)| (n, name) > (an, aname))
            })
            .map(|(_, obj)| obj);
        let items: Vec<Value> = match limit {
            Some(limit) if limit > 0 => matching.by_ref().take(limit).cloned().collect(),
            _ => matching.by_ref().cloned().collect(),
        };
        let remaining = matching.count();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if remaining > 0
            && let Some(last) = items.last()
        {
            metadata["continue"] = format!(
                "{rv}:{}/{}",
                meta_str(last, "namespace").unwrap_or_default(),
                meta_str(last, "name").unwrap_or_default()
            )
            .into();
            metadata["remainingItemCount"] = remaining.into();
        }
        Ok(json!({
            "apiVersion": res.api_version(),
            "kind": format!("{}List", res.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Opens a watch: what it sends first, and the channel of what follows.
    fn watch(
        &mut self,
        res: &ResourceType,
        ns: Option<&str>,
        selector: Selector,
        rv: Option<&str>,
        initial_events: bool,
    ) -> Result<(VecDeque<String>, mpsc::UnboundedReceiver<String>), ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = Watcher {
            resource: res.key(),
            namespace: ns.map(str::to_string),
            selector,
            tx,
        };
        let mut first = VecDeque::new();
        let since = match rv {
            Some(rv) if !initial_events && !rv.is_empty() && rv != "0" => {
                Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?)
            }
            _ => None,
        };
        match since {
            Some(since) if since < self.compacted => {
                let status = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {since} ({})", self.compacted),
                )
                .status();
                first.push_back(line("ERROR", &status));
                return Ok((first, rx)); // the sender is dropped: the stream ends
            }
            Some(since) => first.extend(
                self.history
                    .iter()
                    .filter(|c| c.rv > since)
                    .filter_map(|c| watcher.event(c)),
            ),
            None => {
                first.extend(
                    self.objects
                        .iter()
                        .filter(|((r, n, _), obj)| {
                            *r == watcher.resource
                                && watcher.namespace.as_ref().is_none_or(|ns| ns == n)
                                && watcher.selector.matches(obj)
                        })
                        .map(|(_, obj)| line("ADDED", obj)),
                );
                if initial_events {
                    first.push_back(bookmark(res, self.rv, true));
                }
            }
        }
        self.watchers.push(watcher);
        Ok((first, rx))
    }
}

impl Watcher {
    /// The line this watch sends for a change, if any: as the API server,
    /// an object that starts matching the selectors is ADDED, one that
    /// stops matching DELETED.
    fn event(&self, change: &Change) -> Option<String> {
        if change.resource != self.resource
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
        {
            return None;
        }
        let before = change
            .old
            .as_ref()
            .is_some_and(|o| self.selector.matches(o));
        let after = change.kind != ChangeKind::Deleted && self.selector.matches(&change.new);
        let kind = match (before, after) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        };
        Some(line(kind, &change.new))
    }
}

fn line(kind: &str, object: &Value) -> String {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    line
}

fn bookmark(res: &ResourceType, rv: u64, initial_end: bool) -> String {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": metadata}),
    )
}

/// A watch's response body: what it had first, then the changes as they
/// come, BOOKMARKs between; ends at its timeout or when the server stops.
struct WatchFeed {
    state: Arc<Mutex<State>>,
    res: ResourceType,
    pending: VecDeque<String>,
    rx: mpsc::UnboundedReceiver<String>,
    bookmarks: Option<Interval>,
    deadline: Instant,
}

impl WatchFeed {
    async fn next(mut self) -> Option<(Result<String, Infallible>, Self)> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some((Ok(line), self));
            }
            tokio::select! {
                line = self.rx.recv() => return line.map(|line| (Ok(line), self)),
                () = tokio::time::sleep_until(self.deadline) => return None,
                () = tick(&mut self.bookmarks) => {
                    // Under the lock every change up to its resourceVersion
                    // is in the channel: the BOOKMARK goes after them.
                    let state = lock(&self.state);
                    while let Ok(line) = self.rx.try_recv() {
                        self.pending.push_back(line);
                    }
                    self.pending.push_back(bookmark(&self.res, state.rv, false));
                }
            }
        }
    }
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

// --- HTTP -------------------------------------------------------------------

/// Where a request goes: a resource, maybe a namespace, maybe an object,
/// maybe its `/status`.
struct Target {
    res: ResourceType,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
}

fn route(state: &State, path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_such_path()),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(*sub)),
        _ => return Err(ApiError::no_such_path()),
    };
    let res = state
        .find(group, version, plural)
        .ok_or_else(ApiError::no_such_path)?;
    let status = match sub {
        None => false,
        Some("status") if res.status_subresource => true,
        Some(_) => return Err(ApiError::no_such_path()),
    };
    if (ns.is_some() && !res.namespaced) || (res.namespaced && ns.is_none() && name.is_some()) {
        return Err(ApiError::no_such_path());
    }
    Ok(Target {
        res,
        ns,
        name,
        status,
    })
}

enum Reply {
    Json(StatusCode, Value),
    Watch(WatchFeed),
}

async fn handle(
    Shared(state): Shared<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    lock(&state).requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        params: params.clone(),
    });
    let reply = if uri.path() == "/version" && method == Method::GET {
        Ok(Reply::Json(
            StatusCode::OK,
            json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-strata-standin",
                "platform": "linux/amd64",
            }),
        ))
    } else {
        dispatch(&state, &method, uri.path(), &params, &headers, &body)
    };
    match reply {
        Ok(Reply::Json(code, value)) => json_response(code, &value),
        Ok(Reply::Watch(feed)) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(futures::stream::unfold(
                feed,
                WatchFeed::next,
            )))
            .expect("watch response"),
        Err(e) => e.into_response(),
    }
}

fn dispatch(
    shared: &Arc<Mutex<State>>,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let param = |name: &str| param(params, name);
    let mut state = lock(shared);
    let Target {
        res,
        ns,
        name,
        status,
    } = route(&state, path)?;
    let scope = if status { Scope::Status } else { Scope::Main };
    let ns_str = ns.clone().unwrap_or_default();
    if *method != Method::GET && param("dryRun").is_some() {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the stand-in",
        ));
    }
    let ok = |value| Ok(Reply::Json(StatusCode::OK, value));
    match (method.clone(), name) {
        (Method::GET, None) => {
            let selector = Selector::parse(param("labelSelector"), param("fieldSelector"))?;
            if matches!(param("watch"), Some("true" | "1")) {
                let initial_events = param("sendInitialEvents") == Some("true");
                let (pending, rx) = state.watch(
                    &res,
                    ns.as_deref(),
                    selector,
                    param("resourceVersion"),
                    initial_events,
                )?;
                let timeout = param("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1800);
                let bookmarks = (param("allowWatchBookmarks") == Some("true")).then(|| {
                    let every = state.bookmark_interval;
                    let mut interval = tokio::time::interval_at(Instant::now() + every, every);
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    interval
                });
                Ok(Reply::Watch(WatchFeed {
                    state: shared.clone(),
                    res,
                    pending,
                    rx,
                    bookmarks,
                    deadline: Instant::now() + Duration::from_secs(timeout),
                }))
            } else {
                let limit = param("limit")
                    .map(|l| {
                        l.parse()
                            .map_err(|_| ApiError::bad_request("invalid limit"))
                    })
                    .transpose()?;
                ok(state.list(&res, ns.as_deref(), &selector, limit, param("continue"))?)
            }
        }
        (Method::GET, Some(name)) => ok(state.current(&res, &ns_str, &name)?),
        (Method::POST, None) if !status && (ns.is_some() || !res.namespaced) => {
            let obj = parse_json(body)?;
            let created = state.create(&res, ns.as_deref(), obj, false)?;
            Ok(Reply::Json(StatusCode::CREATED, created))
        }
        (Method::PUT, Some(name)) => {
            let obj = parse_json(body)?;
            if meta_str(&obj, "name").is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&obj, "name").unwrap_or_default()
                )));
            }
            let precondition = meta_str(&obj, "resourceVersion").filter(|rv| !rv.is_empty());
            ok(state.write(&res, &ns_str, &name, obj, scope, precondition.as_deref())?)
        }
        (Method::PATCH, Some(name)) => {
            if status {
                state.status_patches += 1;
                if state.conflicts_left > 0 {
                    state.conflicts_left -= 1;
                    return Err(ApiError::conflict(&res, &name));
                }
            }
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            match content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" => {
                    let patch = parse_json(body)?;
                    let merge = |obj: &mut Value| {
                        json_patch::merge(obj, &patch);
                        Ok(())
                    };
                    ok(state.patch(&res, &ns_str, &name, scope, merge)?)
                }
                "application/json-patch+json" => {
                    let ops: json_patch::Patch = serde_json::from_value(parse_json(body)?)
                        .map_err(|e| ApiError::bad_request(format!("not a JSON patch: {e}")))?;
                    ok(state.patch(&res, &ns_str, &name, scope, |obj| json_patch(obj, &ops))?)
                }
                "application/apply-patch+yaml" => {
                    let manager =
                        param("fieldManager")
                            .filter(|m| !m.is_empty())
                            .ok_or_else(|| {
                                ApiError::bad_request(
                                    "PATCH requests with apply content type need fieldManager",
                                )
                            })?;
                    let applied: Value = serde_yaml_ng::from_slice(body).map_err(|e| {
                        ApiError::bad_request(format!("the apply patch is not YAML: {e}"))
                    })?;
                    ok(state.apply(&res, &ns_str, &name, &applied, manager, scope)?)
                }
                other => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the stand-in takes merge, JSON and apply patches, not {other:?}"),
                )),
            }
        }
        (Method::DELETE, Some(name)) if !status => {
            let options: Value = if body.is_empty() {
                Value::Null
            } else {
                parse_json(body)?
            };
            let preconditions = &options["preconditions"];
            match state.delete(
                &res,
                &ns_str,
                &name,
                preconditions["resourceVersion"].as_str(),
                preconditions["uid"].as_str(),
            )? {
                Deletion::Pending(obj) => ok(obj),
                Deletion::Gone(obj) => ok(json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": res.group,
                        "kind": res.plural,
                        "uid": obj["metadata"]["uid"],
                    },
                })),
            }
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
        )),
    }
}

/// RFC 6902 as the API server's Go library has it: a `test` for `null`
/// passes on a missing field (kube's finalizer helper counts on it).
fn json_patch(obj: &mut Value, ops: &json_patch::Patch) -> Result<(), ApiError> {
    for op in &ops.0 {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && obj.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(obj, std::slice::from_ref(op))
            .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
    }
    Ok(())
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .expect("json response")
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
}

/// A failure, answered as the API server does: that HTTP code and a
/// `Status` body.
#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, res: &ResourceType, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": res.group, "kind": res.plural}));
        self
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn no_such_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn not_found(res: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", res.qualified()),
        )
        .about(res, name)
    }

    fn already_exists(res: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", res.qualified()),
        )
        .about(res, name)
    }

    fn conflict(res: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                res.qualified()
            ),
        )
        .about(res, name)
    }

    fn invalid(res: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {why}", res.kind),
        )
        .about(res, name)
    }

    fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.status())
    }
}

// --- objects ----------------------------------------------------------------

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn as_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("an object")
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    as_object(as_object(obj).entry("metadata").or_insert(Value::Null))
}

fn meta_str(obj: &Value, field: &str) -> Option<String> {
    obj["metadata"][field].as_str().map(str::to_string)
}

fn set_or_remove(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(value) => map.insert(key.into(), value),
        None => map.remove(key),
    };
}

/// Fills `apiVersion` and `kind`, refuses others than the resource's.
fn check_type(res: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let api_version = res.api_version();
    let map = as_object(obj);
    for (field, want) in [
        ("apiVersion", api_version.as_str()),
        ("kind", res.kind.as_str()),
    ] {
        match map.get(field).and_then(Value::as_str) {
            Some(got) if got != want => {
                return Err(ApiError::bad_request(format!(
                    "{field} {got:?} in the body, {want:?} in the path"
                )));
            }
            Some(_) => {}
            None => {
                map.insert(field.into(), want.into());
            }
        }
    }
    Ok(())
}

fn finalizers(obj: &Value) -> usize {
    obj["metadata"]["finalizers"].as_array().map_or(0, Vec::len)
}

fn bump_generation(obj: &mut Value) {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    meta_mut(obj).insert("generation".into(), (generation + 1).into());
}

/// What bumps `metadata.generation`: anything but `metadata` (and
/// `status` when it is a subresource).
fn spec_changed(res: &ResourceType, old: &Value, new: &Value) -> bool {
    let strip = |obj: &Value| {
        let mut obj = obj.clone();
        let map = as_object(&mut obj);
        map.remove("metadata");
        if res.status_subresource {
            map.remove("status");
        }
        obj
    };
    strip(old) != strip(new)
}

/// An object without the times of its managedFields: what says whether a
/// write changes anything.
fn without_times(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(managed) = obj["metadata"]["managedFields"].as_array_mut() {
        for entry in managed {
            as_object(entry).remove("time");
        }
    }
    obj
}

// --- server-side apply, kept at two levels ------------------------------------

type FieldPath = Vec<String>;

/// The fields an apply of `applied` sets: under `status` for the status
/// subresource, else under every other top-level field (`spec`...), single
/// labels and annotations, `metadata.finalizers`.
fn applied_paths(applied: &Value, res: &ResourceType, subresource: Option<&str>) -> Vec<FieldPath> {
    let mut paths = Vec::new();
    let Some(top) = applied.as_object() else {
        return paths;
    };
    for (key, value) in top {
        let wanted = match subresource {
            Some(sub) => key == sub,
            None => {
                let not_spec = matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                    || (res.status_subresource && key == "status");
                !not_spec
            }
        };
        if !wanted {
            continue;
        }
        match value.as_object() {
            Some(fields) => paths.extend(fields.keys().map(|f| vec![key.clone(), f.clone()])),
            None => paths.push(vec![key.clone()]),
        }
    }
    if subresource.is_none() {
        for map in ["labels", "annotations"] {
            if let Some(fields) = applied["metadata"][map].as_object() {
                paths.extend(
                    fields
                        .keys()
                        .map(|f| vec!["metadata".into(), map.into(), f.clone()]),
                );
            }
        }
        if applied["metadata"].get("finalizers").is_some() {
            paths.push(vec!["metadata".into(), "finalizers".into()]);
        }
    }
    paths
}

fn fields_v1(paths: &[FieldPath]) -> Value {
    let mut root = Value::Object(Map::new());
    for path in paths {
        let mut node = &mut root;
        for part in path {
            node = as_object(node)
                .entry(format!("f:{part}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

fn paths_of(fields: &Value) -> Vec<FieldPath> {
    fn walk(node: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        match node.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, child) in map {
                    prefix.push(key.trim_start_matches("f:").to_string());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => out.push(prefix.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

fn get_path<'v>(obj: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(obj, |node, part| node.get(part))
}

fn set_path(obj: &mut Value, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a path");
    let node = parents.iter().fold(obj, |node, part| {
        as_object(node).entry(part.clone()).or_insert(Value::Null)
    });
    as_object(node).insert(last.clone(), value);
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let (last, parents) = path.split_last().expect("a path");
    let mut node = obj;
    for part in parents {
        match node.get_mut(part) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// `obj` with the apply of `applied` by `manager`: the fields it sends set,
/// those it owned before and no longer sends removed (unless another
/// applier owns them), its managedFields entry replaced.
fn applied_onto(
    mut obj: Value,
    applied: &Value,
    manager: &str,
    res: &ResourceType,
    subresource: Option<&str>,
) -> Value {
    let paths = applied_paths(applied, res, subresource);
    let managed: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_mine = |entry: &Value| {
        entry["manager"] == manager
            && entry["operation"] == "Apply"
            && entry["subresource"].as_str() == subresource
    };
    let (mine, others): (Vec<Value>, Vec<Value>) = managed.into_iter().partition(is_mine);
    let owned_by_others: HashSet<FieldPath> = others
        .iter()
        .flat_map(|entry| paths_of(&entry["fieldsV1"]))
        .collect();
    for old in mine.iter().flat_map(|entry| paths_of(&entry["fieldsV1"])) {
        if !paths.contains(&old) && !owned_by_others.contains(&old) {
            remove_path(&mut obj, &old);
        }
    }
    for path in &paths {
        if let Some(value) = get_path(applied, path) {
            set_path(&mut obj, path, value.clone());
        }
    }
    let mut managed = others;
    if !paths.is_empty() {
        let mut entry = json!({
            "manager": manager,
            "operation": "Apply",
            "apiVersion": res.api_version(),
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&paths),
        });
        if let Some(sub) = subresource {
            entry["subresource"] = sub.into();
        }
        managed.push(entry);
    }
    meta_mut(&mut obj).insert("managedFields".into(), managed.into());
    obj
}

// --- selectors --------------------------------------------------------------

/// `labelSelector` and `fieldSelector` of a LIST or WATCH.
#[derive(Default)]
struct Selector {
    labels: Vec<LabelRequirement>,
    fields: Vec<(FieldPath, bool, String)>,
}

enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let mut selector = Self::default();
        for term in split_terms(labels.unwrap_or_default()) {
            selector
                .labels
                .push(LabelRequirement::parse(&term).ok_or_else(|| {
                    ApiError::bad_request(format!("unable to parse requirement: {term:?}"))
                })?);
        }
        for term in split_terms(fields.unwrap_or_default()) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {term:?}"
                )));
            };
            let path = path.trim().split('.').map(str::to_string).collect();
            selector
                .fields
                .push((path, equal, value.trim().to_string()));
        }
        Ok(selector)
    }

    fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|(path, equal, want)| {
                let got = match get_path(obj, path) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (got == *want) == *equal
            })
    }
}

/// Splits on the commas outside parentheses.
fn split_terms(selector: &str) -> Vec<String> {
    let (mut terms, mut term, mut depth) = (Vec::new(), String::new(), 0);
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut term));
                continue;
            }
            _ => {}
        }
        term.push(c);
    }
    terms.push(term);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

impl LabelRequirement {
    fn parse(term: &str) -> Option<Self> {
        let set = |values: &str| -> Option<Vec<String>> {
            let inner = values.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let key_ok = |key: &str| !key.is_empty() && !key.contains(char::is_whitespace);
        let requirement = if let Some((key, values)) = term.split_once(" notin ") {
            Self::NotIn(key.trim().into(), set(values)?)
        } else if let Some((key, values)) = term.split_once(" in ") {
            Self::In(key.trim().into(), set(values)?)
        } else if let Some((key, value)) = term.split_once("!=") {
            Self::NotEquals(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Self::Equals(key.trim().into(), value.trim().into())
        } else if let Some(key) = term.strip_prefix('!') {
            Self::DoesNotExist(key.trim().into())
        } else {
            Self::Exists(term.into())
        };
        let key = match &requirement {
            Self::Equals(k, _)
            | Self::NotEquals(k, _)
            | Self::In(k, _)
            | Self::NotIn(k, _)
            | Self::Exists(k)
            | Self::DoesNotExist(k) => k,
        };
        key_ok(key).then_some(requirement)
    }

    fn matches(&self, labels: &Value) -> bool {
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        match self {
            Self::Equals(k, v) => get(k) == Some(v),
            Self::NotEquals(k, v) => get(k) != Some(v),
            Self::In(k, vs) => get(k).is_some_and(|got| vs.iter().any(|v| v == got)),
            Self::NotIn(k, vs) => get(k).is_none_or(|got| vs.iter().all(|v| v != got)),
            Self::Exists(k) => get(k).is_some(),
            Self::DoesNotExist(k) => get(k).is_none(),
        }
    }
}

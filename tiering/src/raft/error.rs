//! Why the Raft catalog could not open, start or stop.

use std::path::PathBuf;
use std::time::Duration;

/// An error of the Raft catalog's lifecycle (open, start, shutdown). Errors
/// of single proposals and reads are [`CatalogError`](crate::catalog::CatalogError)s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftCatalogError {
    /// The RocksDB store could not be opened (missing permissions, another
    /// process holds its lock, a damaged manifest…).
    #[error("catalog store {dir}: cannot open RocksDB: {source}")]
    Open {
        /// The store's directory.
        dir: PathBuf,
        /// What RocksDB said.
        #[source]
        source: rocksdb::Error,
    },
    /// A file system or storage operation on the store failed.
    #[error("catalog store {dir}: {op}: {source}")]
    Io {
        /// The store's directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store holds data this build cannot trust: a snapshot that does not
    /// restore, a record that does not decode, a format from another version.
    #[error("catalog store {dir}: {what}")]
    Corrupt {
        /// The store's directory.
        dir: PathBuf,
        /// What is wrong, naming the record.
        what: String,
    },
    /// The replica's start options contradict each other (an initial
    /// membership that leaves this replica out).
    #[error("catalog replica: {0}")]
    Options(String),
    /// Serving the replica's RPCs failed (its listener, its TLS setup).
    #[error("catalog replica: serving: {0}")]
    Serve(String),
    /// The cluster name or replica id given is not one a replica can have.
    #[error("catalog store {dir}: {what}")]
    Identity {
        /// The store's directory.
        dir: PathBuf,
        /// Which field is wrong and why.
        what: String,
    },
    /// The store belongs to another cluster or another replica: starting on
    /// it would mix two groups' logs.
    #[error(
        "catalog store {dir} belongs to cluster {found_cluster:?} as replica {found_id}, but this \
         replica was started as replica {id} of cluster {cluster:?}: start it with the store's \
         cluster and id, or give it an empty data directory"
    )]
    Foreign {
        /// The store's directory.
        dir: PathBuf,
        /// The cluster the store was created for.
        found_cluster: String,
        /// The replica id the store was created for.
        found_id: u64,
        /// The cluster asked for.
        cluster: String,
        /// The replica id asked for.
        id: u64,
    },
    /// The store is empty, but the group has seen this replica, a voter,
    /// acknowledge its log (this leader, or one before it that recorded so
    /// in the catalog): it lost its data (a new disk, a wiped volume).
    /// Started as the same voter it could vote twice in a term or help elect
    /// a leader that lacks committed writes.
    #[error(
        "catalog store {dir} is empty, but the group (asked through its leader, replica \
         {leader}) has seen replica {id} acknowledge the log{}: this replica lost its data. \
         A voter that forgot its vote and log can make the group lose committed writes. Remove \
         it from the group first (`strata ctl members rm {id}`), then start it again with \
         --join to add it afresh", up_to(*.matched)
    )]
    LostData {
        /// The store's directory.
        dir: PathBuf,
        /// This replica's id.
        id: u64,
        /// The leader that answered.
        leader: u64,
        /// The last log index the leader saw this replica match, when this
        /// leader saw it (else an earlier leader recorded that it held the
        /// log).
        matched: Option<u64>,
    },
    /// The Raft options are inconsistent (e.g. an election timeout not above
    /// the heartbeat interval).
    #[error("catalog raft options: {0}")]
    Config(#[from] openraft::ConfigError),
    /// The Raft node failed while starting, initializing or serving (a storage
    /// error stops the node; the message names the record).
    #[error("catalog node {dir}: {op}: {source}")]
    Raft {
        /// The store's directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The Raft error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The node did not become leader of its group in time (a one-member
    /// group, or a group it has just started).
    #[error("catalog node {dir}: not leader after {waited:?} ({state})")]
    NotLeader {
        /// The store's directory.
        dir: PathBuf,
        /// How long it waited.
        waited: Duration,
        /// The node's last known Raft state.
        state: String,
    },
    /// After shutdown the store stayed open (some task still holds it).
    #[error("catalog node {dir}: the store is still open {waited:?} after shutdown")]
    StillOpen {
        /// The store's directory.
        dir: PathBuf,
        /// How long it waited.
        waited: Duration,
    },
}

/// " up to index N" when the index is known.
fn up_to(matched: Option<u64>) -> String {
    matched.map_or_else(String::new, |i| format!(" up to index {i}"))
}

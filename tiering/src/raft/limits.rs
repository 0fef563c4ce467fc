//! How large a message each end of the catalog's gRPC accepts. tonic
//! refuses a larger one from its length prefix, before reading it, so a
//! peer cannot make a replica buffer more than this per message.

/// A client API request: a proposal (the largest command is a 1 MiB policy
/// document, escaped in JSON), a read or membership request.
pub(crate) const API_REQUEST: usize = 4 << 20;

/// A Raft RPC between replicas: an append batch of entries, a vote, a
/// snapshot chunk (1 MiB).
pub(crate) const RAFT_MESSAGE: usize = 64 << 20;

/// An answer carrying the whole state (a read), as a client accepts it.
pub(crate) const STATE_READ: usize = 1 << 30;

/// A whole snapshot, as a replica installing one gathers it.
pub(crate) const SNAPSHOT: usize = 1 << 30;

/// Whole-state reads a replica encodes at once; more wait their turn.
pub(crate) const READS_AT_ONCE: usize = 2;

//! CSI conformance at the gRPC boundary: a real `strata node` process, a real
//! unix socket, real LVM metadata on a loop device. On the host, activation is
//! disabled (no device-mapper here), which is enough for every controller rule
//! and every validation rule of the node calls; the real-kernel group
//! (`guest_*` tests) covers staging, publishing and expansion.

mod common;
#[path = "common/csi_suite.rs"]
mod csi_suite;

//! Real-kernel group: the CSI conformance suite (tests/common/csi_suite.rs,
//! the same bodies the host group runs) with device-mapper, so every created
//! volume is also activated and wiped as on a real node.

mod common;
#[path = "common/csi_suite.rs"]
mod csi_suite;

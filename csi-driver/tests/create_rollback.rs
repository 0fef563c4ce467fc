//! A CreateVolume from a snapshot or a volume that fails leaves nothing
//! behind (tests/common/rollback_suite.rs), over real LVM metadata on a loop
//! device. On a kernel without device-mapper (the usual development and CI
//! host) LVM cannot make the copy-on-write snapshot a thick clone copies
//! from, one of the failures checked; the real-kernel group runs the same
//! bodies with device-mapper, restores and thin pools
//! (tests/guest_rollback.rs). Needs root.

#[allow(dead_code, unused_macros, unused_imports)] // only the helpers are used here
#[path = "common/lvm_suite.rs"]
mod lvm_suite;
#[allow(dead_code)]
#[path = "common/rollback_suite.rs"]
mod rollback_suite;

#[tokio::test]
async fn thick_clones_and_restores_that_fail_leave_nothing() {
    let env = lvm_suite::SuiteEnv::detect().expect("root");
    rollback_suite::thick(env).await;
}

//! Real-kernel group: a CreateVolume from a snapshot or a volume that fails
//! leaves nothing behind (the bodies the host runs from
//! csi-driver/tests/create_rollback.rs), here with device-mapper: the
//! copies succeed, so the failures are the injected ones, a clone retried
//! after its rollback succeeds, and thin clones are checked too.

#[allow(dead_code, unused_macros, unused_imports)] // the suite runner is unused here
#[path = "../csi-driver/tests/common/lvm_suite.rs"]
mod lvm_suite;
#[path = "../csi-driver/tests/common/rollback_suite.rs"]
mod rollback_suite;

#[tokio::test]
async fn thick_clones_and_restores_that_fail_leave_nothing() {
    let env = lvm_suite::SuiteEnv::with_device_mapper().expect("root");
    rollback_suite::thick(env).await;
}

#[tokio::test]
async fn thin_clones_that_fail_leave_nothing() {
    let env = lvm_suite::SuiteEnv::with_device_mapper().expect("root");
    rollback_suite::thin(env).await;
}

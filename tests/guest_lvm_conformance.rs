//! Real-kernel group: the `Lvm` conformance suite (the same bodies the host
//! runs from csi-driver/tests/lvm_conformance.rs), here with device-mapper:
//! activation, `/dev/VG/LV` nodes, thin pools and thin volumes, wiping of old
//! signatures on reused extents — for both backends.

#[allow(dead_code)] // the host-only constructors are unused here
#[path = "../csi-driver/tests/common/lvm_suite.rs"]
mod lvm_suite;

mod cli {
    use strata_csi::lvm::LvmOptions;
    use strata_csi::lvm::cli::CliRunner;
    use strata_csi::lvm::tool::LvmTool;

    crate::lvm_suite::lvm_conformance_tests!(
        crate::lvm_suite::SuiteEnv::with_device_mapper(),
        |o: &LvmOptions| { LvmTool::new(CliRunner::new(o), o.clone()) }
    );
}

#[cfg(feature = "lvm2cmd")]
mod lvm2cmd {
    use strata_csi::lvm::LvmOptions;
    use strata_csi::lvm::lib2cmd::LibRunner;
    use strata_csi::lvm::tool::LvmTool;

    crate::lvm_suite::lvm_conformance_tests!(
        crate::lvm_suite::SuiteEnv::with_device_mapper(),
        |o: &LvmOptions| {
            LvmTool::new(LibRunner::new().expect("liblvm2cmd initialises"), o.clone())
        }
    );
}

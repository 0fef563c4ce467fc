//! The `Lvm` conformance suite (tests/common/lvm_suite.rs) against every
//! backend, on loop devices. On a kernel without device-mapper (the usual
//! development and CI host) it runs with `global{activation=0}`: real LVM
//! metadata, no activation, no thin pools. Needs root; fails otherwise.

#[path = "common/lvm_suite.rs"]
mod lvm_suite;

mod cli {
    use strata_csi::lvm::LvmOptions;
    use strata_csi::lvm::cli::CliRunner;
    use strata_csi::lvm::tool::LvmTool;

    crate::lvm_suite::lvm_conformance_tests!(
        crate::lvm_suite::SuiteEnv::detect(),
        |o: &LvmOptions| { LvmTool::new(CliRunner::new(o), o.clone()) }
    );
}

#[cfg(feature = "lvm2cmd")]
mod lvm2cmd {
    use strata_csi::lvm::LvmOptions;
    use strata_csi::lvm::lib2cmd::LibRunner;
    use strata_csi::lvm::tool::LvmTool;

    crate::lvm_suite::lvm_conformance_tests!(
        crate::lvm_suite::SuiteEnv::detect(),
        |o: &LvmOptions| {
            LvmTool::new(LibRunner::new().expect("liblvm2cmd initialises"), o.clone())
        }
    );
}

//! Generates Rust declarations for Debian's `lvm2cmd.h` (package liblvm2-dev)
//! and links `liblvm2cmd`.

use std::env;
use std::path::PathBuf;

fn main() {
    // The header can be redirected for cross builds; Debian puts it in /usr/include.
    let header = env::var("LVM2CMD_HEADER").unwrap_or_else(|_| "/usr/include/lvm2cmd.h".to_owned());
    println!("cargo:rerun-if-env-changed=LVM2CMD_HEADER");
    println!("cargo:rerun-if-changed={header}");
    println!("cargo:rustc-link-lib=lvm2cmd");

    let bindings = bindgen::Builder::default()
        .header(&header)
        .allowlist_function("lvm2_.*")
        .allowlist_type("lvm2_.*")
        .allowlist_var("LVM2_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen over {header} failed ({e}); install liblvm2-dev and libclang-dev")
        });
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

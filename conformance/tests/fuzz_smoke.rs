//! Smoke test of the fuzz targets on a stable toolchain: every target's check (the functions in
//! `fuzz/src/checks`, shared with the cargo-fuzz binaries) runs on the committed seeds, the
//! crash inputs kept as regressions, and a few deterministic mutations of each. The fuzz crate
//! itself is outside the workspace; this keeps its checks and regressions under `cargo test`.

// Some re-exports serve only the fuzz crate's seed extractor.
#[allow(unused_imports)]
#[path = "../../fuzz/src/checks/mod.rs"]
mod checks;

use std::path::Path;

use checks::replay::{inputs, mutate, seed_of, Rng};

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");

/// Mutations per committed input (the fuzz crate's own replay test runs more).
const MUTATIONS: usize = 100;

#[test]
fn fuzz_seeds_and_regressions() {
    let mut ran = 0;
    for (name, check) in checks::TARGETS {
        let committed = inputs(Path::new(FUZZ_DIR), name);
        assert!(!committed.is_empty(), "{name}: no seeds");
        let mut rng = Rng::new(seed_of(name));
        for (path, bytes) in committed {
            if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                panic!("{name} fails on {}", path.display());
            }
            for _ in 0..MUTATIONS {
                let m = mutate(&bytes, &mut rng);
                if std::panic::catch_unwind(|| check(&m)).is_err() {
                    panic!(
                        "{name} fails on a mutation of {}: {}",
                        path.display(),
                        hex_of(&m)
                    );
                }
            }
            ran += 1;
        }
    }
    assert!(ran >= checks::TARGETS.len());
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

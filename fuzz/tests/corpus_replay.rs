//! Replays every committed fuzz input through its harness on stable Rust: the minimized
//! corpora (`fuzz/corpus/<target>/`) and the reproducers of fixed bugs
//! (`fuzz/regressions/<target>/`). A failure names the file; rerun it under libFuzzer
//! with `./x fuzz <target> <file>`.

use std::path::Path;

#[test]
fn committed_fuzz_inputs_pass_their_harness() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let mut replayed = 0;
    for &(target, harness) in palaver_fuzzing::TARGETS {
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else { continue };
            let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for file in files.into_iter().filter(|f| f.is_file()) {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| harness(&data));
                assert!(outcome.is_ok(), "{target}: {} fails its harness", file.display());
                replayed += 1;
            }
        }
    }
    println!("replayed {replayed} fuzz inputs");
}

/// Every target has a corpus committed, so the replay above is not vacuous.
#[test]
fn every_target_has_a_committed_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for &(target, _) in palaver_fuzzing::TARGETS {
        let count = std::fs::read_dir(fuzz.join(target)).map_or(0, |d| d.count());
        assert!(count > 0, "no corpus for {target}");
    }
}

//! Stable-Rust companion to the cargo-fuzz targets (no libFuzzer, no nightly).
//!
//! ```text
//! cargo run --example stable -- seeds                      # seed corpus/<target>/
//! cargo run --example stable -- run decode_frame [PATH...] # replay files or directories
//! cargo run --example stable -- run validate artifacts/validate/crash-...
//! ```
//!
//! `run` defaults to `corpus/<target>`; it feeds each file to the same function the
//! fuzz target calls, so a crash found on nightly can be reproduced and debugged here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burrow_protocol::codec::HEADER_BYTES;
use burrow_protocol::fuzzing;

const TARGETS: [&str; 2] = ["decode_frame", "validate"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match args.first().map(String::as_str) {
        Some("seeds") => {
            let frames = fuzzing::seed_frames();
            for target in TARGETS {
                let dir = root.join("corpus").join(target);
                std::fs::create_dir_all(&dir).expect("create corpus dir");
                for (i, frame) in frames.iter().enumerate() {
                    // `validate` takes a frame body, `decode_frame` a whole frame.
                    let bytes = match target {
                        "validate" => &frame[HEADER_BYTES..],
                        _ => &frame[..],
                    };
                    std::fs::write(dir.join(format!("seed-{i:03}")), bytes).expect("write seed");
                }
                println!("{} seeds in {}", frames.len(), dir.display());
            }
            ExitCode::SUCCESS
        }
        Some("run") if args.len() >= 2 && TARGETS.contains(&args[1].as_str()) => {
            let target = args[1].as_str();
            let mut paths: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
            if paths.is_empty() {
                paths.push(root.join("corpus").join(target));
            }
            let mut files = Vec::new();
            for p in &paths {
                collect(p, &mut files);
            }
            for file in &files {
                let data = std::fs::read(file).expect("read input");
                eprintln!("{}", file.display());
                match target {
                    "decode_frame" => fuzzing::decode_frame_target(&data),
                    _ => fuzzing::validate_target(&data),
                }
            }
            println!("{target}: {} inputs, no failure", files.len());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: stable seeds | stable run <decode_frame|validate> [PATH...]");
            ExitCode::from(2)
        }
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("read dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out);
        }
    } else {
        out.push(path.to_owned());
    }
}

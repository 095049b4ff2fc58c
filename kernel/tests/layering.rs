//! The kernel's layering, checked on its source: the modules below the adapters (the
//! service layer, the session runtime, the store, the registries, the connection, the
//! configuration) never name an adapter (`methods`, `handlers`, `host`, `surface`,
//! `app_actor`) or
//! the server (`root`, `server`, `endpoints`, `cli`). Adapters call services, never the
//! other way round, so the two cannot form an import cycle. Nor do they use the SDK: the
//! kernel and the SDK share `burrow-transport` below both.

use std::path::{Path, PathBuf};

/// The modules at the top: the surfaces' adapters and the server around them.
const ABOVE: &[&str] =
    &["methods", "handlers", "host", "surface", "app_actor", "root", "server", "endpoints", "cli"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`service` for
/// `src/service/sessions.rs`), `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

#[test]
fn nothing_below_the_adapters_names_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "read the kernel's sources ({} files)", files.len());
    let mut found = Vec::new();
    let mut below = 0;
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        if ABOVE.contains(&module.as_str()) {
            continue;
        }
        below += 1;
        let text = std::fs::read_to_string(file).expect("source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains("burrow_sdk") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, code));
            }
            for above in ABOVE {
                if code.contains(&format!("crate::{above}::"))
                    || code.contains(&format!("crate::{above};"))
                {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, code));
                }
            }
        }
    }
    assert!(below > 30, "checked the lower layers ({below} files)");
    assert!(found.is_empty(), "lower layers name an adapter or the server:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_adapter_named_from_below() {
    // The rule's own test: a line as a lower module would write it is caught.
    let line = "use crate::methods::session::dispatch;";
    assert!(ABOVE.iter().any(|a| line.contains(&format!("crate::{a}::"))));
    let src = Path::new("/k/src");
    assert_eq!(module_of(src, Path::new("/k/src/service/sessions.rs")).as_deref(), Some("service"));
    assert_eq!(module_of(src, Path::new("/k/src/kernel.rs")).as_deref(), Some("kernel"));
    assert_eq!(module_of(src, Path::new("/k/src/lib.rs")), None);
}

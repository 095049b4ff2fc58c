//! Who may read which configuration path (PROTOCOL.md §7): an app reads its own subtree
//! `apps.<id>` and the paths its manifest's `config.read` grants (a trailing `*` grants a
//! prefix); anything else is `FORBIDDEN`.

use burrow_protocol::{ErrorCode, ErrorObject};

/// The subtree an app owns.
pub fn own_subtree(app_id: &str) -> String {
    format!("apps.{app_id}")
}

/// Whether `path` is `base` or lies under it.
pub fn is_under(path: &str, base: &str) -> bool {
    base.is_empty()
        || path == base
        || (path.len() > base.len()
            && path.starts_with(base)
            && path.as_bytes()[base.len()] == b'.')
}

/// Checks that `app_id` with the manifest grants `read` may read `path`.
pub fn check(app_id: &str, read: &[String], path: &str) -> Result<(), ErrorObject> {
    let granted = is_under(path, &own_subtree(app_id))
        || read.iter().any(|g| match g.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => is_under(path, g),
        });
    if granted {
        Ok(())
    } else {
        Err(ErrorObject::new(
            ErrorCode::Forbidden,
            format!("app {app_id:?} may not read {path:?}: outside apps.{app_id} and its manifest's config.read"),
        )
        .with_data(serde_json::json!({ "path": path })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_subtree_and_grants() {
        let read = vec!["agents.main.model".to_owned(), "shared.*".to_owned()];
        assert!(check("w", &read, "apps.w").is_ok());
        assert!(check("w", &read, "apps.w.key").is_ok());
        assert!(check("w", &read, "apps.wx").is_err());
        assert!(check("w", &read, "apps").is_err());
        assert!(check("w", &read, "agents.main.model").is_ok());
        assert!(check("w", &read, "agents.main").is_err());
        assert!(check("w", &read, "shared.anything.deep").is_ok());
        assert_eq!(check("w", &read, "ipc").unwrap_err().code, ErrorCode::Forbidden);
        assert!(check("w", &["*".to_owned()], "ipc.max_frame_bytes").is_ok());
    }
}

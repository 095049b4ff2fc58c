//! What an app reads of the configuration (`config.get`, `config.watch`): its own
//! subtree `apps.<id>` and what its manifest's `config.read` grants
//! ([`crate::config::access`]); and what an operator on a host surface reads
//! (`kernel.config`): all of it, secrets redacted ([`crate::config::redact`]).

use burrow_protocol::Value;
use burrow_protocol::methods::config::{ConfigGetParams, ConfigGetResult, ConfigWatchParams};
use burrow_protocol::methods::operator::KernelConfigResult;
use serde_json::json;

use super::{App, Caller, ServiceError};
use crate::config::access;
use crate::kernel::Kernel;

fn readable(app: App<'_>, path: &str) -> Result<(), ServiceError> {
    access::check(app.id, &app.manifest.config.read, path)
        .map_err(|e| ServiceError::Forbidden { message: e.message, data: json!({ "path": path }) })
}

/// `config.get`: the value at a path the app may read (its own subtree when none is
/// given); a missing path is null.
pub fn get(
    kernel: &Kernel,
    app: App<'_>,
    p: ConfigGetParams,
) -> Result<ConfigGetResult, ServiceError> {
    let path = p.path.unwrap_or_else(|| access::own_subtree(app.id));
    readable(app, &path)?;
    let config = kernel.config();
    let origins = p.origin.then(|| config.origins_under(&path));
    Ok(ConfigGetResult { value: config.get(&path).cloned().unwrap_or(Value::Null), origins })
}

/// `kernel.config`: the whole configuration in force, secrets redacted, and its file.
/// For the host surfaces' callers (`host:*`) only: an app reaching it through
/// `host.call` would read past its manifest's `config.read`, so it is `FORBIDDEN`.
pub fn effective(kernel: &Kernel, caller: &Caller) -> Result<KernelConfigResult, ServiceError> {
    if !caller.name().starts_with("host:") {
        return Err(ServiceError::Forbidden {
            message: "kernel.config is for the host surfaces; apps read config.get".into(),
            data: json!({ "reason": "host_only" }),
        });
    }
    let config = kernel.config();
    let (value, redacted) = crate::config::redact::redacted(&config.document);
    let file = config.file.as_ref().map(|f| f.display().to_string());
    Ok(KernelConfigResult { file, config: value, redacted })
}

/// `config.watch`'s paths, each one the app may read (its own subtree when none is
/// given); the changes under them are [`crate::config::watch::changes_under`].
pub fn watched(app: App<'_>, p: ConfigWatchParams) -> Result<Vec<String>, ServiceError> {
    let paths = p.paths.unwrap_or_else(|| vec![access::own_subtree(app.id)]);
    for (i, path) in paths.iter().enumerate() {
        if let Err(ServiceError::Forbidden { message, .. }) = readable(app, path) {
            let data = json!({ "path": path, "field": format!("paths[{i}]") });
            return Err(ServiceError::Forbidden { message, data });
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{connection, fixture, manifest};

    #[tokio::test]
    async fn an_app_reads_its_own_subtree_and_what_it_is_granted_only() {
        let f = fixture().await;
        let conn = connection(1);
        let m = manifest("a", &[], &[], &["agents.*"]);
        let a = App { id: "a", manifest: &m, conn: &conn };
        assert_eq!(
            get(&f.kernel, a, ConfigGetParams { path: None, origin: false }).unwrap().value,
            Value::Null
        );
        assert!(
            get(&f.kernel, a, ConfigGetParams { path: Some("agents.main".into()), origin: false })
                .is_ok()
        );
        let e = get(&f.kernel, a, ConfigGetParams { path: Some("apps.b".into()), origin: false })
            .unwrap_err();
        assert!(
            matches!(&e, ServiceError::Forbidden { data, .. } if data["path"] == "apps.b"),
            "{e:?}"
        );
        assert_eq!(watched(a, ConfigWatchParams { paths: None }).unwrap(), ["apps.a"]);
        let paths = Some(vec!["apps.a.x".to_owned(), "ipc".to_owned()]);
        let e = watched(a, ConfigWatchParams { paths }).unwrap_err();
        assert!(
            matches!(&e, ServiceError::Forbidden { data, .. } if data["field"] == "paths[1]"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn operators_read_it_all_redacted_and_apps_do_not() {
        let f = fixture().await;
        let all = effective(&f.kernel, &Caller::new("host:http")).unwrap();
        assert_eq!(all.config["ipc"], f.kernel.config().document["ipc"]);
        let e = effective(&f.kernel, &Caller::new("a")).unwrap_err();
        assert!(
            matches!(&e, ServiceError::Forbidden { data, .. } if data["reason"] == "host_only")
        );
    }
}

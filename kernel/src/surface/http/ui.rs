//! The dashboard at `/ui`: a page, its scripts and a style sheet (`kernel/ui/`), built into
//! the binary, so that nothing is fetched from the network at run time. The page reads
//! everything through `POST /rpc` (the host methods, operator ones included: see the
//! method table) and follows a session's events through `GET /sessions/{id}/events`, so
//! the router's auth applies to what it reads as to every other route. The files
//! themselves ([`is_asset`]) are served without a token: a kernel that needs one is
//! asked for it by the page, which sends it as `Authorization: Bearer` with every
//! request it makes (it keeps it for the tab's life, in `sessionStorage`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /ui`, `GET /ui/` | `index.html` |
//! | `GET /ui/wire.js` | the calls the pages make (`POST /rpc`, server-sent events), with the token |
//! | `GET /ui/app.js` | the script |
//! | `GET /ui/stats.js` | the Hooks & tools page's script (numbers from `/metrics`) |
//! | `GET /ui/style.css` | the style sheet |
//!
//! Each with `Cache-Control: no-cache` (the browser asks again, so a new kernel's assets
//! are used at once) and a Content-Security-Policy allowing only this origin: no inline
//! script or style, no other host, no framing.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../../ui/index.html");
const WIRE: &str = include_str!("../../../ui/wire.js");
const SCRIPT: &str = include_str!("../../../ui/app.js");
const STATS: &str = include_str!("../../../ui/stats.js");
const STYLE: &str = include_str!("../../../ui/style.css");

/// The policy every asset is served with: this origin only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard: its path, type and text; [`routes`] and [`is_asset`]
/// both read this one list.
const ASSETS: [(&str, &str, &str); 6] = [
    ("/ui", HTML, INDEX),
    ("/ui/", HTML, INDEX),
    ("/ui/wire.js", JS, WIRE),
    ("/ui/app.js", JS, SCRIPT),
    ("/ui/stats.js", JS, STATS),
    ("/ui/style.css", "text/css; charset=utf-8", STYLE),
];

/// The dashboard's routes, for [`super::router_with_limits`] to merge under its layers.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { asset(content_type, body) }))
    })
}

/// Whether `path` is one of the dashboard's files (served to `GET` without a token: they
/// are the same for everyone; what the page reads needs one).
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|(asset, _, _)| *asset == path)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::surface::auth::Auth;
    use crate::surface::fake::FakeHost;

    async fn fetch(router: &Router, uri: &str, host: &str) -> (StatusCode, axum::http::HeaderMap) {
        let request = Request::get(uri).header(header::HOST, host).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        (response.status(), response.headers().clone())
    }

    #[tokio::test]
    async fn assets_are_served_with_their_types_and_policy_under_the_routers_auth() {
        let router = super::super::router(Arc::new(FakeHost::new()), Arc::new(Auth::open()));
        for (uri, kind) in [
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/wire.js", "text/javascript"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/stats.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let (status, headers) = fetch(&router, uri, "127.0.0.1:8080").await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
            assert!(content_type.starts_with(kind), "{uri}: {content_type}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
        }
        assert_eq!(fetch(&router, "/ui/nope.js", "localhost").await.0, StatusCode::NOT_FOUND);
        // The same rules as every route: no loopback name, no page.
        let (status, _) = fetch(&router, "/ui", "evil.example").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains(r#"src="/ui/app.js""#) && INDEX.contains(r#"href="/ui/style.css""#));
        assert!(INDEX.contains(r#"src="/ui/stats.js""#) && INDEX.contains(r#"src="/ui/wire.js""#));
        for asset in [INDEX, WIRE, SCRIPT, STATS, STYLE] {
            assert!(!asset.contains("http://") && !asset.contains("https://"), "no other host");
        }
        // No inline script or handler: the policy would refuse it. Each script is a file.
        assert_eq!(INDEX.matches("<script").count(), INDEX.matches("<script defer src=").count());
        assert!(!INDEX.contains(" onclick=") && !INDEX.contains(" style="));
    }
}

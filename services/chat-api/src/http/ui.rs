//! The log viewer: a static page (`GET /`) and its script and style sheet (`GET /ui/{name}`),
//! compiled into the binary. The page reads chat through the public `/v1.0` routes only, from
//! the same origin, under a Content-Security-Policy that allows nothing else: no inline script or
//! style, no other origin, no plugins, no framing.

use warp::{
    http::{HeaderValue, StatusCode},
    reply::Response,
    Filter,
};

/// The policy of the page and its assets. `img-src data:` is for the empty favicon only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its URL path (under `/ui/`, or `/` for the page), content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/index.html"),
    },
    Asset {
        path: "/ui/viewer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/viewer.js"),
    },
    Asset {
        path: "/ui/viewer.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/viewer.css"),
    },
];

/// The response for an embedded file, with the security headers; `None` for an unknown path.
fn asset_response(path: &str) -> Option<Response> {
    let a = ASSETS.iter().find(|a| a.path == path)?;
    let mut r = Response::new(a.body.into());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(a.content_type));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // Built into the binary: a new release is a new body, so revalidate rather than cache.
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    Some(r)
}

/// `GET /` and `GET /ui/{name}`; other paths fall through (and end as the API's 404).
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync
{
    let page = warp::path::end()
        .and(warp::get())
        .map(|| asset_response("/"));
    let asset = warp::path!("ui" / String)
        .and(warp::get())
        .map(|name: String| asset_response(&format!("/ui/{name}")));
    page.or(asset)
        .unify()
        .and_then(|r: Option<Response>| async move { r.ok_or_else(warp::reject::not_found) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_carry_their_type_and_the_policy() {
        for (path, ty) in [
            ("/", "text/html; charset=utf-8"),
            ("/ui/viewer.js", "text/javascript; charset=utf-8"),
            ("/ui/viewer.css", "text/css; charset=utf-8"),
        ] {
            let r = asset_response(path).expect(path);
            assert_eq!(r.status(), 200, "{path}");
            let h = r.headers();
            assert_eq!(h["content-type"], ty, "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff");
            let csp = h["content-security-policy"].to_str().expect("ascii");
            for d in [
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "object-src 'none'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(d), "{d} missing from {csp}");
            }
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        assert!(asset_response("/ui/nope.js").is_none());
        assert!(asset_response("/ui/../openapi.json").is_none());
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf8");
        assert!(html.contains(r#"<script src="/ui/viewer.js" defer></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="/ui/viewer.css">"#));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "one script, from a file"
        );
        assert!(!html.contains("<style"), "no inline style sheet");
        assert!(!html.contains(" style="), "no inline style attribute");
        let handler = html.split(|c: char| c.is_ascii_whitespace()).any(|w| {
            w.strip_prefix("on").is_some_and(|rest| {
                rest.contains('=') && rest.bytes().take_while(u8::is_ascii_alphabetic).count() > 0
            })
        });
        assert!(!handler, "no inline event handler");
        assert!(!html.contains("http://") && !html.contains("https://"));
        let js = std::str::from_utf8(ASSETS[1].body).expect("utf8");
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(bad), "the script uses {bad}");
        }
    }
}

//! The web dashboard: `GET /` (the page) and `GET /assets/{file}` (its script and style sheet),
//! embedded in the binary from `crates/maestro-http/assets/` so the server needs no files and no
//! Node.js. Each answer carries an `ETag` (a hash of the content; `If-None-Match` gets 304),
//! `Cache-Control: no-cache` (browsers revalidate, so a new server version shows at once), and
//! the security headers: a strict `Content-Security-Policy` (nothing inline, nothing from
//! another origin), `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.
//!
//! The page is public; the API calls it makes carry the user's token (`Authorization` on
//! fetches, the `maestro.bearer.…` subprotocol on WebSockets).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::body::{Body, empty, full};
use crate::error::ApiError;
use crate::service::Req;

/// The policy of every dashboard answer. The DAG's SVG is inlined through the DOM with its
/// `<style>` element removed (the style sheet styles it), so no inline style is needed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    content_type: &'static str,
    bytes: &'static [u8],
    etag: &'static str,
}

/// FNV-1a, 64 bits: enough to tell versions of a file apart (an ETag, not a security check).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"<16 hex digits>"`, quoted as an ETag is.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BYTES: &[u8] = include_bytes!(concat!("../../assets/", $file));
        const TAG: [u8; 18] = etag(BYTES);
        Asset {
            content_type: $content_type,
            bytes: BYTES,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
const APP_CSS: Asset = asset!("app.css", "text/css; charset=utf-8");

/// `GET /`.
pub(super) fn page(req: &Req) -> Result<Response<Body>, ApiError> {
    Ok(serve(&INDEX, &req.headers))
}

/// `GET /assets/{file}`: `app.js` or `app.css`; anything else is 404.
pub(super) fn asset(req: &Req) -> Result<Response<Body>, ApiError> {
    let asset = match req.param("file") {
        "app.js" => &APP_JS,
        "app.css" => &APP_CSS,
        other => {
            return Err(ApiError::not_found(
                "route_not_found",
                format!(
                    "no dashboard asset `{}`",
                    other.chars().take(100).collect::<String>()
                ),
            ));
        }
    };
    Ok(serve(asset, &req.headers))
}

/// Whether `If-None-Match` names this ETag (or is `*`); weak tags match too (RFC 9110 §13.1.2
/// uses the weak comparison for `If-None-Match`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response<Body> {
    let fresh = not_modified(headers, asset.etag);
    let mut res = if fresh {
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        let mut res = Response::new(full(Bytes::from_static(asset.bytes)));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        res
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_follow_the_content() {
        assert_eq!(&etag(b""), b"\"cbf29ce484222325\"");
        assert_ne!(etag(b"a"), etag(b"b"));
        assert!(INDEX.etag.starts_with('"') && INDEX.etag.len() == 18);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&h, "\"abc\""));
        assert!(!not_modified(&h, "\"abd\""));
        assert!(!not_modified(&HeaderMap::new(), "\"abc\""));
    }
}

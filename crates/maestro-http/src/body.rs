//! Request bodies in, JSON responses out: the body limit (enforced while reading), the read
//! timeout, the media-type check, the nesting-depth check and typed decoding, each failing with
//! a 4xx [`ApiError`].

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ProblemItem};

/// The response body type of every route (boxed, so streaming bodies such as SSE fit too).
pub type Body = BoxBody<Bytes, Infallible>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON response with `status`.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut res = Response::new(full(bytes));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => ApiError::internal(format!("response serialization: {e}")).into_response(None),
    }
}

/// A text response with a content type.
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// Reads a whole body, refusing it with 413 as soon as it passes `limit` bytes (a declared
/// `Content-Length` over the limit is refused before reading anything) and with 408 when the
/// client takes longer than `timeout` to send it.
pub(crate) async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("invalid_header", "invalid Content-Length"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "body_read_failed",
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Refuses a non-empty body whose `Content-Type` is present and not JSON (415). A missing
/// `Content-Type` is taken as JSON.
pub(crate) fn check_json_media_type(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    if body.is_empty() {
        return Ok(());
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected application/json, got `{}`",
                essence.chars().take(100).collect::<String>()
            ),
        ))
    }
}

/// The deepest nesting of arrays and objects in JSON text (strings are skipped), stopping early
/// once it passes `limit`. Malformed text is left to the parser.
pub fn json_depth_exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Checks that a body is well-formed JSON no deeper than `max_depth`: 400 `invalid_json` with the
/// line and column of a syntax error, 400 `json_too_deep` past the depth limit.
pub(crate) fn parse_json(body: &[u8], max_depth: usize) -> Result<Value, ApiError> {
    if json_depth_exceeds(body, max_depth) {
        return Err(ApiError::bad_request(
            "json_too_deep",
            format!("the JSON body nests deeper than {max_depth} levels"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
        ApiError::bad_request(
            "invalid_json",
            format!(
                "invalid JSON at line {}, column {}: {msg}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Decodes a JSON value into `T`: 422 `invalid_body` naming the field path of a wrong type or a
/// missing field.
pub(crate) fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        let detail = if path.is_empty() {
            format!("invalid request body: {message}")
        } else {
            format!("invalid request body: field `{path}`: {message}")
        };
        ApiError::unprocessable("invalid_body", detail).with_item(ProblemItem {
            code: "invalid_body".into(),
            message,
            node_id: None,
            nodes: None,
            path: (!path.is_empty()).then_some(path),
        })
    })
}

/// [`parse_json`] then [`decode`]; an empty body decodes as `{}`.
pub(crate) fn decode_body<T: DeserializeOwned>(
    body: &[u8],
    max_depth: usize,
) -> Result<T, ApiError> {
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        parse_json(body, max_depth)?
    };
    decode(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!json_depth_exceeds(br#"{"a": [1, {"b": "[[[[["}]}"#, 3));
        assert!(json_depth_exceeds(br#"[[[[1]]]]"#, 3));
        assert!(!json_depth_exceeds(br#"["\"[[[["]"#, 1));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = parse_json(b"{\n  \"a\": ,\n}", 64).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(e.detail.contains("line 2"), "{}", e.detail);
    }
}

//! What every local wasmflow web server puts in front of its routes
//! (`wasmflow serve`, `wasmflow mcp --listen`): a random token, and the
//! `Host` and `Origin` checks that stop DNS rebinding and cross-site
//! requests (the MCP spec requires them of local HTTP servers).
//!
//! A request passes when its `Host` is one of the bound names, its
//! `Origin` (when it has one) is one of the server's own, and it carries
//! the token: `Authorization: Bearer T`, or (for a browser) the cookie the
//! first `?token=T` page load set, or that query itself.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The cookie a browser keeps the token in is this, then the port (two
/// servers on one host keep theirs apart).
pub const COOKIE: &str = "wasmflow_token_";

/// The checks for one server.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    cookie_name: String,
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// A token from the system's random source: 32 bytes, hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Guard {
    /// The guard of a server bound to `addr`: `Host` may name it by its
    /// address, or as `localhost` when it is a loopback one.
    pub fn new(addr: SocketAddr, token: String) -> Guard {
        let port = addr.port();
        let mut names = vec![match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }];
        if addr.ip().is_loopback() {
            names.extend(["localhost".to_string(), "127.0.0.1".into(), "[::1]".into()]);
        }
        names.dedup();
        Guard {
            token,
            cookie_name: format!("{COOKIE}{port}"),
            hosts: names.iter().map(|n| format!("{n}:{port}")).collect(),
            origins: names.iter().map(|n| format!("http://{n}:{port}")).collect(),
        }
    }

    /// Also accept `Host: name` (and its origin): a name the user chose
    /// to serve under.
    pub fn allow_host(mut self, name: &str) -> Guard {
        self.hosts.push(name.to_string());
        self.origins.push(format!("http://{name}"));
        self
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Why a request does not pass, as a status and a message. A request
    /// that changes state (`post`) without an `Origin` passes only with
    /// the Bearer header: a cookie alone could come from another site.
    pub fn refuse(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        post: bool,
    ) -> Option<(StatusCode, String)> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Some((
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{host}` is not this server's (DNS rebinding guard); use http://{}",
                    self.hosts[0]
                ),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Some((
                    StatusCode::FORBIDDEN,
                    format!(
                        "Origin `{origin}` is not this server's: cross-site requests are refused"
                    ),
                ));
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{}=", self.cookie_name))
                    .map(String::from)
            });
        let in_query = query.and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token=").map(String::from))
        });
        if bearer.is_some_and(|t| same(t, &self.token)) {
            return None;
        }
        let browser = [cookie, in_query];
        if browser.iter().flatten().any(|t| same(t, &self.token)) {
            if post && !headers.contains_key(header::ORIGIN) {
                return Some((
                    StatusCode::FORBIDDEN,
                    "a state-changing request needs an Origin header, or the token as `Authorization: Bearer`".into(),
                ));
            }
            return None;
        }
        Some((
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <token>` (the token the server printed at start)".into(),
        ))
    }

    /// The `Set-Cookie` that keeps the token for a browser.
    pub fn cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name, self.token
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The middleware: `axum::middleware::from_fn_with_state(guard, check)`.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let post =
        request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD;
    if let Some((status, message)) = guard.refuse(request.headers(), request.uri().query(), post) {
        return (status, message).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The status a request with `pairs` gets (`None`: it passes).
    fn status(
        g: &Guard,
        pairs: &[(&str, &str)],
        query: Option<&str>,
        post: bool,
    ) -> Option<StatusCode> {
        g.refuse(&headers(pairs), query, post).map(|(s, _)| s)
    }

    #[test]
    fn host_origin_and_token() {
        let g = Guard::new("127.0.0.1:4000".parse().unwrap(), "t0k".into());
        let (host, bearer) = (("host", "127.0.0.1:4000"), ("authorization", "Bearer t0k"));
        assert_eq!(status(&g, &[host, bearer], None, false), None);
        assert_eq!(status(&g, &[host, bearer], None, true), None);
        let cookie = ("cookie", "a=b; wasmflow_token_4000=t0k");
        assert_eq!(
            status(&g, &[("host", "localhost:4000"), cookie], None, false),
            None
        );
        assert_eq!(status(&g, &[host], Some("x=1&token=t0k"), false), None);
        // Another port's cookie is not this server's.
        let other = ("cookie", "wasmflow_token_4001=t0k");
        assert_eq!(
            status(&g, &[host, other], None, false),
            Some(StatusCode::UNAUTHORIZED)
        );
        // A cookie alone changes nothing without an Origin (CSRF).
        assert_eq!(
            status(&g, &[host, cookie], None, true),
            Some(StatusCode::FORBIDDEN)
        );
        let own = ("origin", "http://localhost:4000");
        assert_eq!(status(&g, &[host, own, cookie], None, true), None);
        let foreign = ("origin", "http://evil.example");
        assert_eq!(
            status(&g, &[host, foreign, bearer], None, true),
            Some(StatusCode::FORBIDDEN)
        );
        let rebinding = ("host", "evil.example:4000");
        assert_eq!(
            status(&g, &[rebinding, bearer], None, false),
            Some(StatusCode::FORBIDDEN)
        );
        let wrong = ("authorization", "Bearer nope");
        assert_eq!(
            status(&g, &[host, wrong], None, false),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(&g, &[host], None, false),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(new_token().unwrap().len(), 64);
    }
}

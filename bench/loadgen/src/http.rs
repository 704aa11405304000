//! A minimal HTTP/1.1 client over `TcpStream`: enough to register, log in and hammer
//! `GET /api/me` with keep-alive, without pulling a full HTTP client into the build.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for one request-response exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an HTTP exchange failed.
#[derive(Debug)]
pub enum HttpError {
    Io(std::io::Error),
    Timeout,
    Malformed(&'static str),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(err) => write!(f, "io: {err}"),
            Self::Timeout => write!(f, "timed out"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

impl From<std::io::Error> for HttpError {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

/// A parsed response: status, raw header lines and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The `name=value` part of the `Set-Cookie` header that sets `cookie_name`.
    pub fn cookie(&self, cookie_name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, value)| value.split(';').next())
            .find(|pair| pair.trim_start().starts_with(&format!("{cookie_name}=")))
            .map(|pair| pair.trim().to_owned())
    }
}

/// `host:port` of an `http://host:port` base URL.
pub fn authority(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

/// One request on a fresh connection (`Connection: close`).
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json_body: Option<&str>,
) -> Result<Response, HttpError> {
    let host = authority(base);
    let mut stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(host))
        .await
        .map_err(|_| HttpError::Timeout)??;
    let head = request_head(host, method, path, cookie, json_body, false);
    let exchange = async {
        stream.write_all(head.as_bytes()).await?;
        read_response(&mut stream, &mut Vec::new()).await
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| HttpError::Timeout)?
}

/// The request line, headers and body of one request.
pub fn request_head(
    host: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json_body: Option<&str>,
    keep_alive: bool,
) -> String {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n");
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    match json_body {
        Some(body) => {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        None => head.push_str("\r\n"),
    }
    head
}

/// Reads one response with a `Content-Length` body (both servers send one for JSON). `buffer`
/// keeps bytes read past the response for the next one on a keep-alive connection.
pub async fn read_response(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<Response, HttpError> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = find(buffer, b"\r\n\r\n") {
            break pos;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(HttpError::Malformed("connection closed before the headers"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(HttpError::Malformed("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(HttpError::Malformed("connection closed inside the body"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Registers `username` (a `409` for an existing user is fine) and logs in; returns the
/// `name=value` session cookie.
pub async fn login(
    base: &str,
    cookie_name: &str,
    username: &str,
    password: &str,
) -> Result<String, String> {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let registered = request(base, "POST", "/api/auth/register", None, Some(&body))
        .await
        .map_err(|err| format!("register {username}: {err}"))?;
    if registered.status != 201 && registered.status != 409 {
        return Err(format!(
            "register {username}: status {} {}",
            registered.status,
            String::from_utf8_lossy(&registered.body)
        ));
    }
    login_existing(base, cookie_name, username, password).await
}

/// Logs an existing user in; returns the `name=value` session cookie.
pub async fn login_existing(
    base: &str,
    cookie_name: &str,
    username: &str,
    password: &str,
) -> Result<String, String> {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let logged_in = request(base, "POST", "/api/auth/login", None, Some(&body))
        .await
        .map_err(|err| format!("login {username}: {err}"))?;
    if logged_in.status != 200 {
        return Err(format!(
            "login {username}: status {} {}",
            logged_in.status,
            String::from_utf8_lossy(&logged_in.body)
        ));
    }
    logged_in
        .cookie(cookie_name)
        .ok_or_else(|| format!("login {username}: no {cookie_name} cookie in the response"))
}

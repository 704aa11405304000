//! The browser app, embedded in the binary at compile time.
//!
//! No build step: the files under `src/web/` are served as they are, so `cargo run` alone
//! serves a working app and the binary needs nothing on disk.

/// One embedded file.
pub struct Asset {
    /// File contents.
    pub body: &'static [u8],
    /// `Content-Type` header value.
    pub content_type: &'static str,
}

/// The page served at `/`.
pub const INDEX: Asset = Asset {
    body: include_bytes!("index.html"),
    content_type: "text/html; charset=utf-8",
};

const ASSETS: &[(&str, Asset)] = &[
    (
        "app.js",
        Asset {
            body: include_bytes!("app.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "room_stream.js",
        Asset {
            body: include_bytes!("room_stream.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "socketio.js",
        Asset {
            body: include_bytes!("socketio.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "app.css",
        Asset {
            body: include_bytes!("app.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
];

/// The asset named `name` under `/assets/`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
}

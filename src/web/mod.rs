//! The browser app, embedded in the binary at compile time.
//!
//! `index.html` and `app.css` are served as they are. The script is one bundle,
//! `dist/app.js`: the modules under `app/`, `room_stream.js` and the official
//! `socket.io-client` (the version pinned in `package.json`), built by `scripts/build-web`
//! and committed, with the licences of the bundled packages in `dist/licenses.txt`. So
//! `cargo build` needs no Node, and the test command rebuilds the bundle and fails when the
//! committed one differs from its sources (docs/web-app.md).

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

/// The operator view, served at `/admin` (see `operator::live_view`).
pub const OPERATOR: Asset = Asset {
    body: include_bytes!("operator.html"),
    content_type: "text/html; charset=utf-8",
};

/// Everything under `/assets/`, by name.
const ASSETS: &[(&str, Asset)] = &[
    (
        "operator.js",
        Asset {
            body: include_bytes!("dist/operator.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "operator.css",
        Asset {
            body: include_bytes!("operator.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
    (
        "app.js",
        Asset {
            body: include_bytes!("dist/app.js"),
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
    (
        // The bundle carries third-party code; its licences ship with it.
        "licenses.txt",
        Asset {
            body: include_bytes!("dist/licenses.txt"),
            content_type: "text/plain; charset=utf-8",
        },
    ),
];

/// The asset named `name` under `/assets/`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundle names the socket.io-client it was built with; it must be the pinned one.
    /// (`scripts/build-web --check` compares every byte; this catches a pin bumped without a
    /// rebuild even where Node is not installed.)
    #[test]
    fn bundle_is_built_with_the_pinned_socket_io_client() {
        let package: serde_json::Value =
            serde_json::from_str(include_str!("package.json")).expect("src/web/package.json");
        let pinned = package["dependencies"]["socket.io-client"]
            .as_str()
            .expect("socket.io-client pinned in src/web/package.json");
        let bundle = std::str::from_utf8(asset("app.js").expect("app.js").body).expect("utf-8");
        let banner = bundle.lines().next().unwrap_or_default();
        assert!(
            banner.contains(&format!("with socket.io-client {pinned}.")),
            "dist/app.js was built with another socket.io-client than {pinned}: {banner}"
        );
        let licences =
            std::str::from_utf8(asset("licenses.txt").expect("licenses").body).expect("utf-8");
        assert!(
            licences.contains(&format!("socket.io-client {pinned} (MIT)")),
            "dist/licenses.txt does not carry the licence of socket.io-client {pinned}"
        );
    }

    #[test]
    fn only_the_bundle_is_served_as_script() {
        assert!(asset("app.js").is_some());
        assert!(asset("socketio.js").is_none());
        assert!(asset("room_stream.js").is_none());
    }
}

# syntax=docker/dockerfile:1
#
# roomcast as a container image: a Rust build stage and a small Debian runtime.
#
#   docker build -t roomcast .
#   docker run --rm -p 3000:3000 roomcast        # embedded mode, SQLite in /app/data
#
# Cluster mode is configured through the environment (see README and docker-compose.yml).

# Any Rust >= 1.85 that builds Cargo.lock works; the runtime stage must be the same Debian
# release as the builder (glibc).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /build

# Dependencies first, in their own layer: build them against placeholder sources so that a
# change under src/ reuses this layer and recompiles only roomcast itself. The registry cache
# mount also keeps downloaded crates between builds.
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/roomcast-* target/release/deps/roomcast-* \
       target/release/deps/libroomcast-* target/release/roomcast*

# The real sources. Static assets (src/web) and migrations are embedded in the binary. The
# image has no git checkout, so the commit `roomcast --version` prints comes in as a build
# argument (docker build --build-arg ROOMCAST_COMMIT=$(git rev-parse --short=12 HEAD) .).
ARG ROOMCAST_COMMIT=unknown
COPY build.rs ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    ROOMCAST_COMMIT="$ROOMCAST_COMMIT" cargo build --release --locked \
    && install -m 0755 target/release/roomcast /usr/local/bin/roomcast

# --- runtime -------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates for rediss:// (TLS) Redis URLs; curl for the HEALTHCHECK below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 roomcast \
    && useradd --system --uid 10001 --gid roomcast --home-dir /app --shell /usr/sbin/nologin roomcast \
    && mkdir -p /app/data \
    && chown -R roomcast:roomcast /app

COPY --from=builder /usr/local/bin/roomcast /usr/local/bin/roomcast

WORKDIR /app
# Numeric ids, so that Kubernetes' runAsNonRoot can verify them.
USER 10001:10001

# Listen on every interface inside the container. In embedded mode the SQLite database is
# ./data/roomcast.db, i.e. /app/data (mount a volume there to keep it); cluster mode needs
# REDIS_URL, DATABASE_URL, SESSION_SECRET and SESSION_ENCRYPTION_KEY on top.
ENV HOST=0.0.0.0 \
    PORT=3000
EXPOSE 3000

# roomcast drains on SIGTERM (readiness 503, sockets told to reconnect elsewhere) and exits 0
# within SHUTDOWN_TIMEOUT_SECS (30 s): give it that long before a SIGKILL
# (`docker stop -t 40`, compose `stop_grace_period: 40s`, Kubernetes
# `terminationGracePeriodSeconds: 45`).
STOPSIGNAL SIGTERM

# Liveness only: readiness (/health/ready) also fails while Redis or the database is down or
# the instance drains, which is the load balancer's business, not a reason to restart.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${PORT}/health/live" || exit 1

ENTRYPOINT ["/usr/local/bin/roomcast"]

# syntax=docker/dockerfile:1
#
# The `blast` image: one binary that runs every role (`up`, `serve`, `worker`, `migrate`, and
# the admin CLI). Build with BuildKit (the default since Docker 23):
#
#   docker build -t blast:local .
#   docker run --rm -p 8080:8080 -v blast-data:/var/lib/blast blast:local   # embedded profile
#
# compose.yaml runs the production profile (PostgreSQL + Redis) from this same image.

# Keep in step with the toolchain the project is developed with (workspace rust-version: 1.94).
ARG RUST_VERSION=1.95

############################################################################################
# Builder
############################################################################################
# The official slim Rust image already carries gcc and libc6-dev, which is all the native code
# needs: SQLite is compiled in (sqlx's `sqlite` feature turns on libsqlite3-sys/bundled, which
# builds from source and never asks pkg-config), ring's C/asm parts need only a C compiler, and
# TLS is rustls with webpki roots, so there is no OpenSSL to link. Hence no apt-get here.
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# 1. Dependencies only, in a layer keyed on the manifests and the lock file, so editing the
#    sources does not recompile the hundreds of crates underneath. Cargo refuses to read a
#    workspace whose members have no targets, and the root manifest declares its benches
#    explicitly, so stub files stand in for every target until the real tree arrives
#    (scripts/check-dockerfile, run by CI, fails when this list falls behind Cargo.toml).
COPY Cargo.toml Cargo.lock ./
COPY jobs/Cargo.toml jobs/
COPY cli/Cargo.toml cli/
COPY testkit/Cargo.toml testkit/
RUN mkdir -p src benches jobs/src cli/src testkit/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs jobs/src/lib.rs cli/src/lib.rs testkit/src/lib.rs \
 && for bench in mailing api production telegram console inbox; do echo 'fn main() {}' > "benches/$bench.rs"; done
# The registry is a cache mount (downloads survive across builds without bloating layers);
# target/ is deliberately *not* one: compiled dependencies live in this layer, so they are
# reused by any builder that has the layer cache (including `--cache-from` in CI), and the
# binary can be copied out of the stage with a plain COPY --from.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked -p blast --bin blast

# 2. The real sources (.dockerignore keeps out target/, .git/, databases, tests/, ...).
#    migrations/ must be here: sqlx::migrate!("./migrations/sqlite") and
#    sqlx::migrate!("./migrations/postgres") embed the SQL at compile time.
COPY . .
# COPY keeps the files' own modification times, which are usually *older* than the stub
# build above; without the touch, cargo would take the stubs' artifacts for up to date and
# ship an empty `fn main() {}` (the --version check below would catch that: the stub prints
# nothing).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    find src jobs/src cli/src testkit/src benches -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p blast --bin blast \
 && ./target/release/blast --version | grep -q '^blast '

############################################################################################
# Runtime
############################################################################################
# debian:bookworm-slim rather than gcr.io/distroless/cc-debian12:nonroot. Both carry the
# glibc/libgcc the binary links against (same Debian release as the builder, so the glibc
# versions match); distroless is ~50 MB smaller, but has no shell. blast runs several roles
# from one image and needs a different health check per role (API on 8080, worker metrics on
# 9091, none for `migrate`), which compose does with bash's /dev/tcp -- no curl, no extra
# package -- and an operator can `docker compose exec api bash` when something is wrong.
FROM debian:bookworm-slim AS runtime

# ca-certificates: reqwest uses rustls with compiled-in webpki roots today, so this is belt and
# braces for any future dependency that reads the system store (or an operator's private CA
# added under /usr/local/share/ca-certificates). chrono-tz compiles the tz database in, so no
# tzdata either.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed, numeric uid/gid outside the range of any distribution user, so volume ownership is
# predictable and `runAsNonRoot` policies can verify it without an /etc/passwd lookup.
RUN groupadd --system --gid 10001 blast \
 && useradd --system --uid 10001 --gid blast --home-dir /var/lib/blast --no-create-home \
        --shell /usr/sbin/nologin blast \
 && install -d -o blast -g blast -m 0750 /var/lib/blast

COPY --from=builder /src/target/release/blast /usr/local/bin/blast

USER 10001:10001
# The working directory is the data directory: relative defaults land here and are writable
# by `blast` -- the embedded profile's `sqlite://blast.db`, the log channel's
# `deliveries.jsonl`, and an optional ./config.toml (mount one at /var/lib/blast/config.toml).
# Mount a volume here to keep an embedded database; the compose (PostgreSQL) setup needs none.
WORKDIR /var/lib/blast

# The built-in default (127.0.0.1:8080) is unreachable from outside a container. Environment
# variables override config.toml, so to listen elsewhere set BLAST_API__LISTEN (or --listen).
ENV BLAST_API__LISTEN=0.0.0.0:8080
EXPOSE 8080

# No HEALTHCHECK: it would apply to every role, and `worker`/`migrate` serve nothing on 8080.
# compose.yaml declares one per service instead. blast handles SIGTERM (graceful stop) itself.
ENTRYPOINT ["blast"]
CMD ["up"]

# znp container image: Debian 12 (bookworm), two stages.
#
#   docker build -t znp .
#   docker run --rm -p 8080:8080 -p 8090:8090 -v znp-data:/var/lib/znp znp
#
# `RUN --mount` needs BuildKit (the default builder on Linux since Docker Engine
# 23.0) or buildah. `--build-arg BUILD_JOBS=N` limits the parallel compile jobs.
# scripts/container-check.sh builds and runs this file with buildah and podman.
#
# The image runs `znp serve --config /etc/znp/znp.yaml` as the unprivileged
# user znp. Without database.dsn (or ZNP_DATABASE_DSN) it starts its embedded
# PostgreSQL cluster under /var/lib/znp/pg; mount a volume there to keep it.
# Mount your own /etc/znp/znp.yaml to change the configuration.

# --- build stage: compilers, -dev packages, the generator, Swagger UI --------
FROM debian:bookworm AS build

# Parallel compile jobs. Empty means one per CPU (`nproc`).
ARG BUILD_JOBS=

WORKDIR /src
# setup.sh installs the build packages (apt-get) and fetches Swagger UI with
# npm pack into third_party/swagger-ui. It runs before the sources are copied,
# so a source change does not repeat this step when the builder caches layers.
# Behind a TLS-inspecting proxy, pass its CA certificates (PEM) as the build
# secret extra_ca (`--secret id=extra_ca,src=FILE`) so that npm trusts them.
# The secret is mounted for this step only and is not stored in any layer.
COPY scripts/setup.sh scripts/setup.sh
RUN --mount=type=secret,id=extra_ca \
    if [ -s /run/secrets/extra_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/extra_ca; fi \
    && scripts/setup.sh \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DZNP_BUILD_TESTS=OFF \
       -DPython3_EXECUTABLE=/usr/bin/python3 \
    && cmake --build build -j "${BUILD_JOBS:-$(nproc)}" \
    && strip build/znp

# --- runtime stage: shared libraries and PostgreSQL only ----------------------
FROM debian:bookworm-slim

# The postgresql package would otherwise create and start a default cluster;
# znp runs its own under the data directory.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/znp.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libh2o-evloop0.13 libgrpc29 libprotobuf-c1 libpq5 libjansson4 libcyaml1 libyaml-0-2 \
       libargon2-1 libcurl4 libssl3 ca-certificates postgresql tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /src/build/znp /usr/local/bin/znp
COPY --from=build /src/third_party/swagger-ui /usr/local/share/znp/swagger-ui

RUN useradd --system --home-dir /var/lib/znp --shell /usr/sbin/nologin znp \
    && mkdir -p /etc/znp /var/lib/znp \
    && chown znp:znp /var/lib/znp \
    && printf '%s\n' \
       '# Container defaults; see docs/configuration.md for every key.' \
       'server:' \
       '  listen: "0.0.0.0:8080"' \
       '  grpc_listen: "0.0.0.0:8090"' \
       '  docs_dir: "/usr/local/share/znp/swagger-ui"' \
       'database:' \
       '  data_dir: "/var/lib/znp"' \
       > /etc/znp/znp.yaml

USER znp
WORKDIR /var/lib/znp
VOLUME ["/var/lib/znp"]
# 8080: HTTP/1.1 and h2c; 8090: gRPC (health for orchestrators' probes).
EXPOSE 8080 8090
STOPSIGNAL SIGTERM
# tini reaps the PostgreSQL processes that end up as children of PID 1.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/znp"]
CMD ["serve", "--config", "/etc/znp/znp.yaml"]

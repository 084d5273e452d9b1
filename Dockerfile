# pgfailover as a container image: built with the same scripts/setup.sh as everywhere else,
# run as an unprivileged user from a slim Debian 12 runtime.
#
#   docker build -t pgfailover .
#   docker run -v $PWD/pgfailover.toml:/etc/pgfailover/pgfailover.toml -p 6432:6432 pgfailover
#
# Give the proxy a listen address other than loopback ("*:6432") inside a container, and a
# state_file under /var/lib/pgfailover (a volume) so that a restart keeps its decisions.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN ./scripts/setup.sh --build-only
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPGFAILOVER_TESTS=OFF \
 && cmake --build /build --target pgfailover \
 && strip /build/proxy/pgfailover

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libpq5 libssl3 libfmt9 \
      libspdlog1.10 libtomlplusplus3 libprometheus-cpp-core1.0 libboost-json1.81.0 \
      libboost-container1.81.0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/pgfailover --create-home --shell /usr/sbin/nologin \
      pgfailover
COPY --from=build /build/proxy/pgfailover /usr/local/bin/pgfailover
COPY conf/pgfailover.toml /etc/pgfailover/pgfailover.toml
USER pgfailover
WORKDIR /var/lib/pgfailover
# 6480 is the admin API. It listens on loopback unless the configuration says otherwise:
# inside the container, `docker exec CONTAINER pgfailover ctl status` reaches it; from
# outside, set [admin] listen = "0.0.0.0:6480" and a token (the proxy refuses one without).
EXPOSE 6432 6480
ENTRYPOINT ["/usr/local/bin/pgfailover"]
CMD ["run", "-c", "/etc/pgfailover/pgfailover.toml"]

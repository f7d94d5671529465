# Courier in a container: `docker build -t courier .` then `docker run -p 8080:8080
# -p 1883:1883 -p 8083:8083 courier` for the all-in-one server (data in /var/lib/courier), or
# see docker-compose.yml for the scaled-out topology.

# --- build: the release binary, linked against Debian 12's FFmpeg 5.1 (what the tests run on);
# npm fetches the web app's libraries (MQTT.js, tus-js-client) at build time ---
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config clang libclang-dev npm \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
      libavfilter-dev libavdevice-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin courier \
 && cp target/release/courier /usr/local/bin/courier

# --- run: the binary, FFmpeg's shared libraries, curl for health checks ---
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
      libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/courier --create-home courier
COPY --from=build /usr/local/bin/courier /usr/local/bin/courier
USER courier
ENV COURIER_DATA_DIR=/var/lib/courier \
    COURIER_HTTP=0.0.0.0:8080 \
    COURIER_MQTT=0.0.0.0:1883 \
    COURIER_MQTT_WS=0.0.0.0:8083
VOLUME /var/lib/courier
EXPOSE 8080 1883 8083
STOPSIGNAL SIGTERM
ENTRYPOINT ["courier"]
CMD ["serve"]

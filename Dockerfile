# One image with every binary; the Helm chart picks the binary per Deployment.
# (Not built in this repository's CI: its machines have no Docker engine.)
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libsasl2-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bins && \
    mkdir /out && for b in tci twitch-sim streamer-listener streamer-ingestion chat-listener chat-ingestor chat-api; do cp target/release/$b /out/; done

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcurl4 libsasl2-2 libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 tci
COPY --from=build /out/ /usr/local/bin/
USER tci

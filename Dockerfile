# The Lanyard service binaries in one image: mock-idp, session-registry, devstack.
# docker-compose.yml runs each service from it (`command: ["mock-idp", …]`).
#
#   docker build -t lanyard-dev .

# rust:1 pinned to its Debian release: a binary linked against a newer glibc than the runtime
# image's would not start.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mock-idp -p session-registry -p devstack

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/lanyard --create-home lanyard
COPY --from=build /src/target/release/mock-idp /usr/local/bin/mock-idp
COPY --from=build /src/target/release/session-registry /usr/local/bin/session-registry
COPY --from=build /src/target/release/devstack /usr/local/bin/devstack
USER lanyard
WORKDIR /var/lib/lanyard
EXPOSE 8700 8701
CMD ["mock-idp", "--bind", "0.0.0.0:8700", "--public-url", "http://127.0.0.1:8700"]

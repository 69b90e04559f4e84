# Herald: one static-ish binary on a distroless base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin herald

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/herald /herald
USER nonroot
EXPOSE 9090 9091 8080
ENTRYPOINT ["/herald"]

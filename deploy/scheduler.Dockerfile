# semantic/scheduler: the static scheduler binary on an empty base image.
# Build with `make images` (it runs `make build` first); nothing is pulled.
# No "# syntax=" line on purpose: machines without a registry cannot fetch
# BuildKit frontends.
FROM scratch
COPY bin/scheduler /scheduler
COPY --chown=65532:65532 deploy/rootfs/data/ /data/
USER 65532:65532
ENV SEMANTIC_LISTEN=:50051 \
    SEMANTIC_HTTP_LISTEN=:8080 \
    SEMANTIC_METRICS_LISTEN=:9090 \
    SEMANTIC_DATA_DIR=/data
EXPOSE 50051 8080 9090
VOLUME ["/data"]
# The binary checks its own health service (the image has no shell).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/scheduler", "healthcheck"]
ENTRYPOINT ["/scheduler"]

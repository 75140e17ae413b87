# semantic/blockpool: the static block-pool binary on an empty base image.
# Build with `make images` (it runs `make build` first); nothing is pulled.
# No "# syntax=" line on purpose: machines without a registry cannot fetch
# BuildKit frontends.
FROM scratch
COPY bin/blockpool /blockpool
COPY --chown=65532:65532 deploy/rootfs/data/ /data/
USER 65532:65532
ENV SEMANTIC_LISTEN=:50061 \
    SEMANTIC_METRICS_LISTEN=:9461 \
    SEMANTIC_DATA_DIR=/data
EXPOSE 50061 9461
VOLUME ["/data"]
# The binary checks its own health service (the image has no shell).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/blockpool", "healthcheck"]
ENTRYPOINT ["/blockpool"]

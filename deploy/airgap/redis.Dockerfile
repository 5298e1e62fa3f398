# For air-gapped builds: Redis from Debian's packages on the local base image (deploy/airgap/build-base.sh),
# a stand-in for redis:7-alpine where no container registry is reachable. Like the official image: runs as
# `redis` in /data, and protected mode is off (the container's network is the boundary, as in the official
# image), so `redis-server --appendonly yes` from compose.yaml works unchanged.
ARG BASE_IMAGE=routerforge-base:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis -m 0750 /data
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint.sh
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint.sh"]
CMD ["redis-server"]

#!/bin/sh
# Container health probe for AutoCrea images, with nothing but curl (no grpc_health_probe needed).
#
#   healthcheck [URL]        URL defaults to $AUTOCREA_HEALTH_URL, else the image's own in
#                            /etc/autocrea-health-url (set it when you change the listen port):
#     http://127.0.0.1:8000/health     → 2xx is healthy (the gateway)
#     grpc://127.0.0.1:50053           → grpc.health.v1.Health/Check for the whole server ("")
#                                        must answer SERVING
#
# The gRPC check speaks HTTP/2 without TLS (h2c) and sends an empty HealthCheckRequest in the gRPC
# framing (5 zero bytes: not compressed, length 0). A SERVING answer is the frame 00 00000002 0801
# (field 1 = 1); anything else, an error status in the trailers, or a timeout, is unhealthy.
set -eu
url=${1:-${AUTOCREA_HEALTH_URL:-$(cat /etc/autocrea-health-url)}}
timeout=${AUTOCREA_HEALTH_TIMEOUT:-3}

case $url in
    http://* | https://*)
        exec curl -fsS -o /dev/null --max-time "$timeout" "$url"
        ;;
    grpc://*)
        target=${url#grpc://}
        answer=$(printf '\000\000\000\000\000' |
            curl -sS --http2-prior-knowledge --max-time "$timeout" -X POST \
                -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
                "http://$target/grpc.health.v1.Health/Check" | od -An -tx1 | tr -d ' \n')
        if [ "$answer" = 00000000020801 ]; then
            exit 0
        fi
        echo "healthcheck: $target is not SERVING (answer: ${answer:-none})" >&2
        exit 1
        ;;
    *)
        echo "healthcheck: unsupported URL $url (http://, https:// or grpc://)" >&2
        exit 2
        ;;
esac

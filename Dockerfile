# syntax=docker/dockerfile:1
# docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#              --build-arg COMMIT=$(git rev-parse HEAD) -t mcp-authz .
# (.git is not sent to the build, so `mcp-authz version` knows the version
# and commit only from these two arguments.)
FROM golang:1.26 AS build
ARG VERSION=devel
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}" \
      -o /out/mcp-authz ./cmd/mcp-authz

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG COMMIT=unknown
LABEL org.opencontainers.image.version="${VERSION}" org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/mcp-authz /mcp-authz
EXPOSE 9191 9192
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=3s CMD ["/mcp-authz", "healthcheck"]
ENTRYPOINT ["/mcp-authz"]
CMD ["serve"]

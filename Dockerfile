# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mcp-authz ./cmd/mcp-authz

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcp-authz /mcp-authz
EXPOSE 9191 9192
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=3s CMD ["/mcp-authz", "healthcheck"]
ENTRYPOINT ["/mcp-authz"]
CMD ["serve"]

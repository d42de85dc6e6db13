// Command mcp-authz is an Envoy external authorization (ext_authz v3) service
// that puts OAuth 2.1 in front of MCP servers.
//
// Usage:
//
//	mcp-authz [serve] [--config FILE]   run the service
//	mcp-authz dev                       run it with an embedded development issuer
//	mcp-authz check [flags] URL         send an Envoy-shaped CheckRequest
//	mcp-authz purge --sha256 H          drop a token's verdicts fleet-wide
//	mcp-authz healthcheck [URL]         probe the side server's /healthz
//	mcp-authz version
//	mcp-authz help [COMMAND]
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/validators"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `mcp-authz: an Envoy ext_authz (gRPC) service that puts OAuth 2.1 in front of MCP servers.

usage:
  mcp-authz [serve] [--config FILE]   run the ext_authz service (configured by FILE and OAUTH_* variables)
  mcp-authz dev                       run it against an embedded development issuer on loopback
  mcp-authz check [flags] URL         send an Envoy-shaped CheckRequest and print the decision
  mcp-authz purge (--token-file F | --sha256 H)   drop a token's cached verdicts fleet-wide (Redis)
  mcp-authz healthcheck [URL]         exit 0 when the local side server answers /healthz (for container probes)
  mcp-authz version                   print the version and commit
  mcp-authz help [COMMAND]            this list, or COMMAND's flags and environment variables

"mcp-authz COMMAND --help" is "mcp-authz help COMMAND".
`

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelpFlag(args[0]) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCmd(args, getenv, stdout, stderr)
	case "dev":
		return devCmd(args, getenv, stdout, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "purge":
		return purgeCmd(args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(args, getenv, stdout, stderr)
	case "version":
		return versionCmd(args, stdout, stderr)
	case "help":
		return helpCmd(args, getenv, stdout, stderr)
	default:
		hint := "mcp-authz --help lists the commands"
		if looksLikeConfigFile(cmd) {
			hint = fmt.Sprintf("did you mean mcp-authz serve --config %s?", cmd)
		}
		fmt.Fprintf(stderr, "mcp-authz: unknown command %q (%s)\n", cmd, hint)
		return 2
	}
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

func looksLikeConfigFile(s string) bool {
	return strings.HasSuffix(s, ".yaml") || strings.HasSuffix(s, ".yml")
}

// helpCmd prints the list of commands, or one command's help.
func helpCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := command{name: "help", usage: "mcp-authz help [COMMAND]",
		about: "Prints the list of commands, or COMMAND's flags and the environment variables it reads (the same as mcp-authz COMMAND --help)."}
	fs := c.flagSet()
	pos, code, done := c.parse(fs, args, 1, stdout, stderr)
	if done {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch pos[0] {
	case "serve", "dev", "check", "purge", "healthcheck", "version":
		return run([]string{pos[0], "--help"}, getenv, stdout, stderr)
	case "help":
		return run([]string{"help", "--help"}, getenv, stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcp-authz help: unknown command %q (mcp-authz --help lists the commands)\n", pos[0])
	return 2
}

// command is what a subcommand's --help says about it.
type command struct {
	name  string
	usage string // the usage line, after "usage: "
	about string // one paragraph
	env   []string
}

func (c command) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports errors itself, on one line
	fs.Usage = func() {}
	return fs
}

// printHelp writes the command's help: usage, paragraph, flags, variables.
func (c command) printHelp(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.usage, wrap(c.about, 78))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fmt.Fprintln(w, "\nEnvironment:")
	if len(c.env) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, e := range c.env {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

// parse parses args into fs, taking flags before and after positional
// arguments, of which at most max are accepted. done is set when the
// command must end with code: 0 after printing its help to stdout, 2
// after one line about bad arguments on stderr.
func (c command) parse(fs *flag.FlagSet, args []string, max int, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printHelp(fs, stdout)
				return nil, 0, true
			}
			fmt.Fprintf(stderr, "mcp-authz %s: %v (mcp-authz %s --help lists the flags)\n", c.name, err, c.name)
			return nil, 2, true
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) > max {
		extra := pos[max]
		switch {
		case fs.Lookup("config") != nil && looksLikeConfigFile(extra):
			fmt.Fprintf(stderr, "mcp-authz %s: unexpected argument %q: did you mean --config %s?\n", c.name, extra, extra)
		case max == 0:
			takes := "no arguments"
			fs.VisitAll(func(*flag.Flag) { takes = "only flags" })
			fmt.Fprintf(stderr, "mcp-authz %s: unexpected argument %q: %s takes %s (mcp-authz %s --help)\n", c.name, extra, c.name, takes, c.name)
		default:
			fmt.Fprintf(stderr, "mcp-authz %s: unexpected argument %q (usage: %s)\n", c.name, extra, c.usage)
		}
		return nil, 2, true
	}
	return pos, 0, false
}

// wrap breaks s into lines of at most width columns.
func wrap(s string, width int) string {
	var b strings.Builder
	col := 0
	for _, w := range strings.Fields(s) {
		if col > 0 && col+1+len(w) > width {
			b.WriteByte('\n')
			col = 0
		} else if col > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}

// envList formats variable names as help lines of at most width columns.
func envList(names []string, width int) []string {
	var lines []string
	line := ""
	for _, n := range names {
		if line != "" && len(line)+2+len(n) > width {
			lines = append(lines, line+",")
			line = ""
		}
		if line != "" {
			line += ", "
		}
		line += n
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// Stamped at build time (the Dockerfile does):
//
//	go build -ldflags "-X main.buildVersion=v1.2.3 -X main.buildCommit=$(git rev-parse HEAD)"
//
// Unstamped, version and commit come from the Go build information.
var buildVersion, buildCommit string

// version describes this build: its version and the commit it was built
// from.
func version() string {
	v, c := buildVersion, buildCommit
	modified := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true" && buildCommit == ""
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if c == "" {
		c = "unknown"
	} else if len(c) > 12 {
		c = c[:12]
	}
	if modified {
		c += "+modified"
	}
	return v + " (commit " + c + ")"
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	c := command{name: "version", usage: "mcp-authz version",
		about: "Prints the version and the commit this binary was built from, and the Go release that built it. Release builds are stamped with -ldflags \"-X main.buildVersion=... -X main.buildCommit=...\" (the Dockerfile's VERSION and COMMIT build arguments); other builds report what the Go build information holds (the module version, the VCS revision and whether the tree was modified), or devel and unknown."}
	if _, code, done := c.parse(c.flagSet(), args, 0, stdout, stderr); done {
		return code
	}
	fmt.Fprintf(stdout, "mcp-authz %s %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

// listenError says which setting to change when a listener cannot be
// bound: the variable, flag or YAML field that gave the address.
func listenError(cfg *config.Config, field string, err error) error {
	name := cfg.FieldName(field)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: %w: another process listens there; stop it, or set %s to a free address", name, err, name)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// serveHelp is serve's --help.
func serveHelp() command {
	return command{name: "serve", usage: "mcp-authz [serve] [--config FILE]",
		about: "Runs the ext_authz service until SIGTERM or SIGINT: Envoy's gRPC Check " +
			"(envoy.service.auth.v3.Authorization and the gRPC health service) on MCP_AUTHZ_GRPC_ADDR " +
			"(default :9191) and the HTTP side server (RFC 9728 metadata, /healthz, /readyz, /metrics) on " +
			"MCP_AUTHZ_HTTP_ADDR (default :9192). The configuration is the YAML file given with --config " +
			"(the full, multi-resource form: see config.example.yaml), with the environment variables " +
			"below overriding it; the OAUTH_* variables configure a single resource. A bad configuration " +
			"stops start-up with one line naming the field or variable (exit status 2); a port in use, " +
			"with exit status 1.",
		env: append(envList(config.EnvironmentVariables(), 76),
			"(README \"Configuration\" and the header of config.example.yaml say what each does)"),
	}
}

// probeResult is what the side server answered a probe.
type probeResult struct {
	StatusCode int
	// TLSServer: the answer is Go's to a plain HTTP request on a TLS
	// listener.
	TLSServer bool
}

// probe asks target once, by deadline.
func probe(target string, deadline time.Time) (probeResult, error) {
	client := &http.Client{Timeout: time.Until(deadline)}
	if u, err := url.Parse(target); err == nil && u.Scheme == "https" && validators.IsLoopbackHost(u.Hostname()) {
		// The probe asks whether this process answers, not who it is; its
		// certificate names the service, not the loopback address.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	resp, err := client.Get(target)
	if err != nil {
		return probeResult{}, err
	}
	defer resp.Body.Close()
	r := probeResult{StatusCode: resp.StatusCode}
	if resp.StatusCode == http.StatusBadRequest {
		// net/http's fixed answer (server.go, "Client sent an HTTP request
		// to an HTTPS server").
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 128))
		r.TLSServer = strings.Contains(string(b), "HTTP request to an HTTPS server")
	}
	return r, nil
}

// healthcheckCmd probes the side server, for container HEALTHCHECKs in
// images without a shell or curl.
func healthcheckCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := command{name: "healthcheck", usage: "mcp-authz healthcheck [URL]",
		about: "Exits 0 when the side server's /healthz answers 200 within 3 seconds, else 1 with one line " +
			"saying why: a probe for container HEALTHCHECKs in images without a shell or curl. URL defaults " +
			"to http://127.0.0.1:9192/healthz, or to /healthz on the port of MCP_AUTHZ_HTTP_ADDR (on 127.0.0.1 " +
			"when it names every interface), https when MCP_AUTHZ_HTTP_TLS_CERT_FILE is set. Over https to a " +
			"loopback address the certificate is not verified (it names the service, not 127.0.0.1), as " +
			"Kubernetes' HTTPS probes do not verify it either. A side server that answers plain HTTP as a TLS listener does " +
			"(TLS set in the configuration file only) is asked again over https.",
		env: []string{"MCP_AUTHZ_HTTP_ADDR            the side server's listen address, for the default URL",
			"MCP_AUTHZ_HTTP_TLS_CERT_FILE   set: the side server speaks TLS, the default URL is https"}}
	pos, code, done := c.parse(c.flagSet(), args, 1, stdout, stderr)
	if done {
		return code
	}
	scheme := "http"
	if getenv("MCP_AUTHZ_HTTP_TLS_CERT_FILE") != "" {
		scheme = "https"
	}
	target := scheme + "://127.0.0.1:9192/healthz"
	if addr := getenv("MCP_AUTHZ_HTTP_ADDR"); addr != "" {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			target = scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
		}
	}
	derived := len(pos) == 0
	if !derived {
		target = pos[0]
		if u, err := url.Parse(target); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			fmt.Fprintf(stderr, "mcp-authz healthcheck: %q is not an http(s) URL\n", target)
			return 2
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	resp, err := probe(target, deadline)
	if err == nil && derived && scheme == "http" && resp.StatusCode == http.StatusBadRequest && resp.TLSServer {
		// TLS set in the configuration file only (http_tls), which the
		// probe does not read: the side server said so, ask it over https.
		target = "https" + strings.TrimPrefix(target, "http")
		resp, err = probe(target, deadline)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz healthcheck: %v\n", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "mcp-authz healthcheck: %s answered %d\n", target, resp.StatusCode)
		return 1
	}
	return 0
}

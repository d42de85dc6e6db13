package validators

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CheckOutboundURL reports whether raw may be fetched by the service: https,
// or http to a loopback host for development and tests. Everything else is
// refused so that a typo cannot send tokens or key fetches in clear text.
func CheckOutboundURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("URL must not carry credentials")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("URL %q must use https (http is allowed only for loopback hosts)", raw)
	default:
		return fmt.Errorf("URL %q must use https", raw)
	}
}

// IsLoopbackHost reports whether host is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

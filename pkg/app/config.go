package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Common holds the flags every semantic binary takes.
type Common struct {
	Listen          string
	DataDir         string
	MetricsListen   string
	LogFormat       string
	LogLevel        string
	NodeID          string
	TLSCert         string
	TLSKey          string
	TLSClientCA     string
	MaxMsgBytes     int
	KeepaliveTime   time.Duration
	ShutdownTimeout time.Duration
}

func (c *Common) register(fs *flag.FlagSet, defaultListen, defaultMetrics string) {
	fs.StringVar(&c.Listen, "listen", defaultListen, "gRPC listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for persistent state")
	fs.StringVar(&c.MetricsListen, "metrics-listen", defaultMetrics, "Prometheus /metrics listen address (empty disables it)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.NodeID, "node-id", "", "stable node id (default: derived from the host name and data dir)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM); TLS is on when both cert and key are set")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "CA certificate file (PEM) that client certificates are verified against (mutual TLS; needs --tls-cert)")
	fs.IntVar(&c.MaxMsgBytes, "max-msg-bytes", 16<<20, "largest gRPC message received or sent, in bytes")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", 30*time.Second, "interval of server keepalive pings on idle connections")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long graceful shutdown waits for in-flight calls before cutting them")
}

// EnvPrefix prefixes the environment variable of every flag: --data-dir is
// also SEMANTIC_DATA_DIR.
const EnvPrefix = "SEMANTIC_"

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, so that command-line flags win over the environment.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return err
}

// secretWords mark flags whose values are never printed: a flag is secret
// when one of its dash-separated words is one of these (tls-key, api-token;
// not block-tokens).
var secretWords = map[string]bool{"key": true, "secret": true, "token": true, "password": true, "credentials": true}

func isSecret(name string) bool {
	for _, w := range strings.Split(name, "-") {
		if secretWords[w] {
			return true
		}
	}
	return false
}

// Effective returns every flag's effective value, secrets masked, sorted by
// name; it is what a binary prints at start.
func Effective(fs *flag.FlagSet) [][2]string {
	var out [][2]string
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if isSecret(f.Name) && v != "" {
			v = "****"
		}
		out = append(out, [2]string{f.Name, v})
	})
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// usage prints the complete help: subcommands, then every flag with its
// environment variable and default.
func usage(w io.Writer, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage:\n  %s [flags]            run the server\n  %s version            print the version\n  %s healthcheck [flags] exit 0 if the local server reports SERVING, 1 otherwise\n\nFlags (each also settable by its environment variable):\n", name, name, name)
	fs.VisitAll(func(f *flag.Flag) {
		typ, help := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n      %s (env %s", line, help, EnvName(f.Name))
		if f.DefValue != "" {
			fmt.Fprintf(w, ", default %q", f.DefValue)
		}
		fmt.Fprintln(w, ")")
	})
}

// lookupEnv is os.LookupEnv, replaceable in tests.
var lookupEnv = os.LookupEnv

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

const usageText = `Usage:
  semantic-auth certs  --out DIR [--pool-hosts pool,localhost,127.0.0.1] [--schedulers scheduler] [--admin admin] [--days 365] [--renew] [--key-mode 0600]
  semantic-auth issue  --ca DIR --name NAME [--group scheduler|admin|none] [--hosts h1,h2] --out DIR [--days 365] [--key-mode 0600]
  semantic-auth key    --file keys.json --name NAME --tenant TENANT [--role user|admin]
  semantic-auth revoke --file keys.json --name NAME
  semantic-auth quota  --file keys.json --tenant TENANT [--max-agents N] [--max-agent-bytes N] [--max-requests N]
  semantic-auth list   --file keys.json
Run a command with --help for its flags; docs/security.md explains them.
`

// run executes one command; the exit code is 0 on success, 2 for a usage
// error and 1 for any other failure.
func run(args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usageText)
		if len(args) == 0 {
			return 2, nil
		}
		return 0, nil
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"certs": certs, "issue": issue, "key": key, "revoke": revoke, "quota": quota, "list": list,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(stderr, usageText)
		return 2, fmt.Errorf("unknown command %q", args[0])
	}
	err := cmd(args[1:], stdout, stderr)
	var ue usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0, nil
	case errors.As(err, &ue):
		return 2, err
	case err != nil:
		return 1, err
	}
	return 0, nil
}

type usageError struct{ error }

func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("semantic-auth "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	for _, r := range required {
		if fs.Lookup(r).Value.String() == "" {
			return usageError{fmt.Errorf("--%s is required", r)}
		}
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// keyMode reads --key-mode: 0600 by default; a container that runs as
// another user than the one that made the files needs 0644 (the compose
// development cluster does; docs/security.md).
func keyMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m&^0o777 != 0 {
		return 0, usageError{fmt.Errorf("--key-mode: %q is not an octal file mode", s)}
	}
	return fs.FileMode(m), nil
}

var groupNames = map[string][]string{"scheduler": {mtls.GroupScheduler}, "admin": {mtls.GroupAdmin}, "none": nil}

func certs(args []string, stdout, stderr io.Writer) error {
	fs := flags("certs", stderr)
	out := fs.String("out", "", "directory for the CA and the certificates (created)")
	poolHosts := fs.String("pool-hosts", "pool,localhost,127.0.0.1", "comma-separated DNS names and IPs the pool certificate is valid for")
	schedulers := fs.String("schedulers", "scheduler", "comma-separated scheduler identities, one client certificate each (NAME.pem)")
	admin := fs.String("admin", "admin", "the admin identity's name (admin certificate admin.pem); empty: none")
	days := fs.Int("days", 365, "validity of the certificates, in days (the CA gets 10 times as long)")
	renew := fs.Bool("renew", false, "issue new leaf certificates even where files exist (the CA is kept)")
	mode := fs.String("key-mode", "0600", "file mode of the private keys (octal)")
	if err := parse(fs, args, "out"); err != nil {
		return err
	}
	km, err := keyMode(*mode)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	validity := time.Duration(*days) * 24 * time.Hour
	ca, made, err := loadOrMakeCA(*out, 10*validity)
	if err != nil {
		return err
	}
	if made {
		fmt.Fprintf(stdout, "CA          %s (key %s: keep it off the nodes)\n", filepath.Join(*out, "ca.pem"), filepath.Join(*out, "ca-key.pem"))
	} else {
		fmt.Fprintf(stdout, "CA          %s (kept)\n", filepath.Join(*out, "ca.pem"))
	}
	type leaf struct {
		file, name string
		groups     []string
		hosts      []string
		what       string
	}
	leaves := []leaf{{"pool", "pool", nil, split(*poolHosts), "pool server"}}
	for _, s := range split(*schedulers) {
		leaves = append(leaves, leaf{s, s, []string{mtls.GroupScheduler}, nil, "scheduler client"})
	}
	if *admin != "" {
		leaves = append(leaves, leaf{*admin, *admin, []string{mtls.GroupAdmin}, nil, "admin client"})
	}
	for _, l := range leaves {
		path := filepath.Join(*out, l.file+".pem")
		if _, err := os.Stat(path); err == nil && !*renew {
			fmt.Fprintf(stdout, "%-11s %s (kept; --renew to reissue)\n", l.what, path)
			continue
		}
		if err := writeLeaf(ca, *out, l.file, l.name, l.groups, l.hosts, validity, km); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-11s %s\n", l.what, path)
	}
	return nil
}

func loadOrMakeCA(dir string, validity time.Duration) (*mtls.CA, bool, error) {
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if _, err := os.Stat(certFile); err == nil {
		ca, err := mtls.LoadCA(certFile, keyFile)
		return ca, false, err
	}
	ca, err := mtls.NewCA("semantic-ca", validity)
	if err != nil {
		return nil, false, err
	}
	_, _, err = ca.WriteFiles(dir, "ca")
	return ca, true, err
}

func writeLeaf(ca *mtls.CA, dir, file, name string, groups, hosts []string, validity time.Duration, km fs.FileMode) error {
	is, err := ca.Issue(name, groups, hosts, validity)
	if err != nil {
		return err
	}
	_, keyFile, err := is.WriteFiles(dir, file)
	if err != nil {
		return err
	}
	return os.Chmod(keyFile, km)
}

func issue(args []string, stdout, stderr io.Writer) error {
	fs := flags("issue", stderr)
	caDir := fs.String("ca", "", "directory holding ca.pem and ca-key.pem")
	name := fs.String("name", "", "the identity (certificate CommonName); also the file name NAME.pem")
	group := fs.String("group", "scheduler", "scheduler, admin or none")
	hosts := fs.String("hosts", "", "comma-separated DNS names and IPs: makes it a server certificate too")
	out := fs.String("out", "", "directory to write NAME.pem and NAME-key.pem to")
	days := fs.Int("days", 365, "validity in days")
	mode := fs.String("key-mode", "0600", "file mode of the private key (octal)")
	if err := parse(fs, args, "ca", "name", "out"); err != nil {
		return err
	}
	groups, ok := groupNames[*group]
	if !ok {
		return usageError{fmt.Errorf("--group must be scheduler, admin or none, got %q", *group)}
	}
	km, err := keyMode(*mode)
	if err != nil {
		return err
	}
	ca, err := mtls.LoadCA(filepath.Join(*caDir, "ca.pem"), filepath.Join(*caDir, "ca-key.pem"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := writeLeaf(ca, *out, *name, *name, groups, split(*hosts), time.Duration(*days)*24*time.Hour, km); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", filepath.Join(*out, *name+".pem"))
	return nil
}

// readKeys reads the keys file, or an empty one when it does not exist yet
// (and create is set).
func readKeys(path string, create bool) (*auth.File, error) {
	f, err := auth.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		return &auth.File{}, nil
	}
	return f, err
}

func key(args []string, stdout, stderr io.Writer) error {
	fs := flags("key", stderr)
	file := fs.String("file", "", "the keys file (--auth-keys of the scheduler); created if missing")
	name := fs.String("name", "", "a name for the key (unique; used to revoke it)")
	tenant := fs.String("tenant", "", "the tenant the key acts for ([a-z0-9][a-z0-9_-]{0,62})")
	role := fs.String("role", "user", "user or admin")
	if err := parse(fs, args, "file", "name", "tenant"); err != nil {
		return err
	}
	f, err := readKeys(*file, true)
	if err != nil {
		return err
	}
	k, err := auth.NewKey()
	if err != nil {
		return err
	}
	f.Keys = append(f.Keys, auth.Key{Name: *name, Tenant: *tenant, Role: auth.Role(*role), SHA256: auth.HashKey(k)})
	if err := f.Write(*file); err != nil {
		return err
	}
	fmt.Fprintln(stdout, k)
	fmt.Fprintf(stderr, "added key %q (tenant %s, role %s) to %s; it is shown only now. Send SIGHUP to running schedulers to load it.\n", *name, *tenant, *role, *file)
	return nil
}

func revoke(args []string, stdout, stderr io.Writer) error {
	fs := flags("revoke", stderr)
	file := fs.String("file", "", "the keys file")
	name := fs.String("name", "", "the key to remove")
	if err := parse(fs, args, "file", "name"); err != nil {
		return err
	}
	f, err := readKeys(*file, false)
	if err != nil {
		return err
	}
	kept := f.Keys[:0]
	for _, k := range f.Keys {
		if k.Name != *name {
			kept = append(kept, k)
		}
	}
	if len(kept) == len(f.Keys) {
		return fmt.Errorf("no key named %q in %s", *name, *file)
	}
	f.Keys = kept
	if err := f.Write(*file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed key %q from %s; send SIGHUP to running schedulers\n", *name, *file)
	return nil
}

func quota(args []string, stdout, stderr io.Writer) error {
	fs := flags("quota", stderr)
	file := fs.String("file", "", "the keys file")
	tenant := fs.String("tenant", "", "the tenant")
	maxAgents := fs.Uint("max-agents", 0, "agent records per pool node (0: no bound)")
	maxBytes := fs.Uint64("max-agent-bytes", 0, "bytes of agent records per pool node (0: no bound)")
	maxReq := fs.Int("max-requests", 0, "Generate requests in flight per scheduler (0: no bound)")
	if err := parse(fs, args, "file", "tenant"); err != nil {
		return err
	}
	f, err := readKeys(*file, true)
	if err != nil {
		return err
	}
	if f.Tenants == nil {
		f.Tenants = map[string]auth.Quota{}
	}
	if *maxReq < 0 || *maxAgents > 1<<32-1 {
		return usageError{errors.New("quotas must be non-negative and --max-agents fit 32 bits")}
	}
	f.Tenants[*tenant] = auth.Quota{MaxAgents: uint32(*maxAgents), MaxAgentBytes: *maxBytes, MaxRequests: *maxReq}
	if err := f.Write(*file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tenant %s: max_agents %d, max_agent_bytes %d, max_requests %d\n", *tenant, *maxAgents, *maxBytes, *maxReq)
	return nil
}

func list(args []string, stdout, stderr io.Writer) error {
	fs := flags("list", stderr)
	file := fs.String("file", "", "the keys file")
	if err := parse(fs, args, "file"); err != nil {
		return err
	}
	f, err := readKeys(*file, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-24s %-20s %-6s %s\n", "NAME", "TENANT", "ROLE", "SHA256")
	for _, k := range f.Keys {
		fmt.Fprintf(stdout, "%-24s %-20s %-6s %s…\n", k.Name, k.Tenant, k.Role, k.SHA256[:12])
	}
	tenants := make([]string, 0, len(f.Tenants))
	for t := range f.Tenants {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	for _, t := range tenants {
		q := f.Tenants[t]
		fmt.Fprintf(stdout, "quota %s: max_agents %d, max_agent_bytes %d, max_requests %d\n", t, q.MaxAgents, q.MaxAgentBytes, q.MaxRequests)
	}
	return nil
}

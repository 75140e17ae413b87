// Command semantic-auth makes the credentials of a semantic cluster, with Go's
// crypto only (no openssl):
//
//	semantic-auth certs --out DIR [--pool-hosts pool,localhost] [--schedulers scheduler] [--admin admin] [--days 365]
//	    a CA (DIR/ca.pem, DIR/ca-key.pem; an existing one is reused), a pool
//	    server certificate (DIR/pool.pem, valid for --pool-hosts), one client
//	    certificate per scheduler (group semantic:scheduler) and an admin
//	    client certificate (group semantic:admin). Existing leaf files are
//	    kept unless --renew (rotation: new certificates from the same CA).
//	semantic-auth issue --ca DIR --name NAME [--group scheduler|admin|none] [--hosts h1,h2] --out DIR
//	    one certificate from an existing CA.
//	semantic-auth key --file keys.json --name NAME --tenant TENANT [--role user|admin]
//	    a new API key: printed once on stdout, its SHA-256 added to the keys
//	    file (created if missing). Send SIGHUP to the scheduler to load it.
//	semantic-auth revoke --file keys.json --name NAME
//	semantic-auth quota --file keys.json --tenant TENANT [--max-agents N] [--max-agent-bytes N] [--max-requests N]
//	semantic-auth list --file keys.json
//
// docs/security.md explains the identities, the keys file and rotation.
package main

import (
	"fmt"
	"os"
)

func main() {
	code, err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "semantic-auth: %v\n", err)
	}
	os.Exit(code)
}

package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

// metricName finds our metrics in a PromQL expression: every name of ours
// starts with semantic_ or vllm: (the compatibility set).
var metricName = regexp.MustCompile(`\b(semantic_[a-z0-9_]+|vllm:[a-z0-9_]+)`)

// eventOnly are metrics a scrape shows only after their first event (an
// OpenTelemetry counter is exported once it has been added to): a run of
// the binaries cannot be expected to produce them, so the test checks
// instead that the source declares them.
var eventOnly = map[string]string{
	"semantic_scheduler_unsaved_turns_total":      "semantic.scheduler.unsaved_turns",
	"semantic_blockpool_checksum_failures_total":  "checksum.failures",
	"semantic_blockpool_leases_exhausted_total":   "leases.exhausted",
	"semantic_blockpool_leases_expired_total":     "leases.expired",
	"semantic_scheduler_commit_conflicts_total":   "semantic.scheduler.commit_conflicts",
	"semantic_scheduler_pool_read_bytes_total":    "semantic.scheduler.pool_read_bytes",
	"semantic_blockpool_bytes_read_total":         "bytes.read",
	"semantic_blockpool_evictions_total":          "evictions",
	"semantic_blockpool_lock_wait_seconds_bucket": "lock.wait",
}

// family strips a histogram series' suffix.
func family(name string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, suf); ok {
			return f
		}
	}
	return name
}

// usedMetrics is every metric the dashboard and the alert rules name.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		for _, m := range metricName.FindAllString(expr, -1) {
			used[m] = append(used[m], where)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join("monitoring", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			add("dashboard: "+p.Title, tg.Expr)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	b, err = os.ReadFile(filepath.Join("monitoring", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			add("alert "+r.Alert, r.Expr)
		}
	}
	if len(used) < 10 {
		t.Fatalf("only %d metrics found in the dashboard and rules", len(used))
	}
	return used
}

// scrape runs a scheduler (embedded pool, builtin:tiny), sends it a few
// requests through the HTTP API, and returns the metric families its
// /metrics exports.
func scrape(t *testing.T) map[string]bool {
	t.Helper()
	bin := filepath.Join(binaries(t), "scheduler")
	p := testproc.Start(t, exec.Command(bin, "--model", "builtin:tiny", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"))
	httpAddr, metricsAddr := p.HTTPAddr, p.MetricsAddr
	if httpAddr == "" || metricsAddr == "" {
		t.Fatalf("addresses not logged:\n%s", p.Logs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 2 { // the second request is warm: cache hits
		body := `{"model":"builtin:tiny","prompt":"hello there, general kenobi","max_tokens":4,"user":"monitoring"}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	families := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		families[name] = true
		families[family(name)] = true
	}
	return families
}

// Every metric the Grafana dashboard and the alert rules query is one the
// binaries export (or, for those that appear only after their first event,
// one the source declares).
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	used := usedMetrics(t)
	exported := scrape(t)
	var missing []string
	for m, where := range used {
		if exported[m] || exported[family(m)] {
			continue
		}
		if src, ok := eventOnly[m]; ok {
			if !sourceDeclares(t, src) {
				missing = append(missing, m+" (event-only, but no instrument "+src+" in the source)")
			}
			continue
		}
		missing = append(missing, m+" used by "+strings.Join(where, ", "))
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not exported: %s", m)
	}
}

// sourceDeclares reports whether an instrument name is declared in the
// services' Go source.
func sourceDeclares(t *testing.T, name string) bool {
	t.Helper()
	found := false
	_ = filepath.WalkDir(filepath.Join(root(t), "services"), func(path string, d os.DirEntry, err error) error {
		if err != nil || found || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), `"`+name+`"`) {
			found = true
		}
		return err
	})
	return found
}

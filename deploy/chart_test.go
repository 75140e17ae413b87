package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

// root is the repository root (this package is deploy).
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// helmBin is the pinned helm of `make tools`; without it the test fails
// when CI=true and skips otherwise.
func helmBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(root(t), ".tools", "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s is missing: run make tools", bin)
		}
		t.Skipf("%s is missing (make tools installs it; with CI=true this is a failure)", bin)
	}
	return bin
}

var (
	binOnce  sync.Once
	binDir   string
	flagSets map[string]map[string]bool
	binErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds the scheduler and the pool once and reads every flag from
// their --help, so that what deploy/ ships is checked against the binaries
// as built. It returns the directory holding them.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "semantic-deploy-")
		if binErr != nil {
			return
		}
		flagSets = map[string]map[string]bool{}
		for name, pkg := range map[string]string{"scheduler": "./services/scheduler", "blockpool": "./services/blockpool"} {
			var bin string
			if bin, binErr = testproc.BuildBinary(binDir, pkg); binErr != nil {
				return
			}
			help, _ := exec.Command(bin, "--help").CombinedOutput()
			set := map[string]bool{}
			re := regexp.MustCompile(`^  --([a-z0-9-]+)`)
			sc := bufio.NewScanner(bytes.NewReader(help))
			for sc.Scan() {
				if m := re.FindStringSubmatch(sc.Text()); m != nil {
					set[m[1]] = true
				}
			}
			if len(set) < 10 {
				binErr = fmt.Errorf("%s --help lists %d flags:\n%s", name, len(set), help)
				return
			}
			flagSets[name] = set
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// binaryFlags is every flag of each binary, by binary name.
func binaryFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	binaries(t)
	return flagSets
}

// rendered is one `helm template` output, decoded.
type rendered struct {
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
}

// render runs helm template with the values and decodes every document
// strictly: an unknown field (a typo, a field at the wrong level) fails.
func render(t *testing.T, set ...string) *rendered {
	t.Helper()
	args := append([]string{"template", "rel", filepath.Join(root(t), "deploy", "helm", "semantic"), "--namespace", "ns"}, set...)
	out, err := exec.Command(helmBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	r := &rendered{}
	for _, doc := range strings.Split(string(out), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		var obj any
		switch head.APIVersion + "/" + head.Kind {
		case "apps/v1/StatefulSet":
			o := &appsv1.StatefulSet{}
			r.statefulSets, obj = append(r.statefulSets, o), o
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			r.deployments, obj = append(r.deployments, o), o
		case "v1/Service":
			o := &corev1.Service{}
			r.services, obj = append(r.services, o), o
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			r.pdbs, obj = append(r.pdbs, o), o
		default:
			t.Fatalf("unexpected manifest %s %s", head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %v\n%s", head.Kind, err, doc)
		}
	}
	return r
}

// args reads a container's --name=value arguments.
func args(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, a := range c.Args {
		name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		m[name] = val
	}
	return m
}

func port(t *testing.T, listen string) int32 {
	t.Helper()
	i := strings.LastIndex(listen, ":")
	p, err := strconv.Atoi(listen[i+1:])
	if err != nil {
		t.Fatalf("listen address %q", listen)
	}
	return int32(p)
}

// checkPod checks what every pod template must get right: flags the binary
// has, container ports equal to the listen flags, probes on declared ports,
// mounts of declared volumes, non-root.
func checkPod(t *testing.T, errorf func(string, ...any), what string, spec corev1.PodSpec, flags map[string]bool, claims []string, listenFlags map[string]string) {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", what, len(spec.Containers))
	}
	c := spec.Containers[0]
	a := args(c)
	for name := range a {
		if !flags[name] {
			errorf("%s: --%s is not a flag of the binary", what, name)
		}
	}
	for _, e := range c.Env {
		if name, ok := strings.CutPrefix(e.Name, "SEMANTIC_"); ok && !flags[strings.ReplaceAll(strings.ToLower(name), "_", "-")] {
			errorf("%s: env %s sets no flag of the binary", what, e.Name)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for portName, flag := range listenFlags {
		if v, ok := a[flag]; !ok || port(t, v) != ports[portName] {
			errorf("%s: port %s is %d, --%s=%q", what, portName, ports[portName], flag, v)
		}
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil {
			errorf("%s: no %s probe", what, name)
			continue
		}
		switch {
		case p.GRPC != nil:
			if p.GRPC.Port != ports["grpc"] {
				errorf("%s: %s probe on port %d, gRPC listens on %d", what, name, p.GRPC.Port, ports["grpc"])
			}
		case p.Exec != nil:
			if len(p.Exec.Command) < 2 || p.Exec.Command[1] != "healthcheck" {
				errorf("%s: %s probe runs %v", what, name, p.Exec.Command)
			}
		default:
			errorf("%s: %s probe is neither gRPC nor the healthcheck command", what, name)
		}
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, cl := range claims {
		vols[cl] = corev1.Volume{Name: cl}
	}
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			errorf("%s: mount %s has no volume", what, m.Name)
		}
		mounted[m.MountPath] = m.Name
	}
	// Every file a flag names lies in a mounted secret's items.
	for name, val := range a {
		if !strings.HasPrefix(val, "/") || name == "pool" {
			continue
		}
		dir, file := filepath.Split(val)
		v, ok := vols[mounted[filepath.Clean(dir)]]
		if !ok || v.Secret == nil {
			errorf("%s: --%s=%s is not in a mounted secret", what, name, val)
			continue
		}
		found := false
		for _, it := range v.Secret.Items {
			found = found || it.Path == file
		}
		if !found {
			errorf("%s: --%s=%s: secret %s has no item %s", what, name, val, v.Secret.SecretName, file)
		}
	}
	if mounted["/data"] == "" {
		errorf("%s: /data is not mounted (the image's root is read-only)", what)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		errorf("%s: pods must run as non-root", what)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		errorf("%s: container security context must be read-only, without privilege escalation", what)
	}
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestChart(t *testing.T) {
	flags := binaryFlags(t)
	for name, set := range map[string][]string{
		"default": nil,
		"secure":  {"--set", "tls.enabled=true", "--set", "auth.enabled=true"},
		"scaled":  {"--set", "pool.replicas=5", "--set", "scheduler.replicas=4", "--set", "pool.storage.storageClassName=fast"},
	} {
		t.Run(name, func(t *testing.T) {
			r := render(t, set...)
			if len(r.statefulSets) != 1 || len(r.deployments) != 1 || len(r.services) != 2 || len(r.pdbs) != 2 {
				t.Fatalf("rendered %d statefulsets, %d deployments, %d services, %d PDBs", len(r.statefulSets), len(r.deployments), len(r.services), len(r.pdbs))
			}
			pool, sched := r.statefulSets[0], r.deployments[0]
			checkPod(t, t.Errorf, "pool", pool.Spec.Template.Spec, flags["blockpool"], []string{"data"},
				map[string]string{"grpc": "listen", "metrics": "metrics-listen"})
			checkPod(t, t.Errorf, "scheduler", sched.Spec.Template.Spec, flags["scheduler"], nil,
				map[string]string{"grpc": "listen", "http": "http-listen", "metrics": "metrics-listen"})

			// The pool's node id is its pod name: stable across rescheduling.
			var nodeID *corev1.EnvVar
			for i, e := range pool.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "SEMANTIC_NODE_ID" {
					nodeID = &pool.Spec.Template.Spec.Containers[0].Env[i]
				}
			}
			if nodeID == nil || nodeID.ValueFrom == nil || nodeID.ValueFrom.FieldRef == nil || nodeID.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Error("pool: SEMANTIC_NODE_ID must come from the pod name")
			}
			if len(pool.Spec.VolumeClaimTemplates) != 1 {
				t.Error("pool: one PVC per node")
			}

			// The schedulers resolve the headless service of the pool nodes.
			var headless *corev1.Service
			for _, s := range r.services {
				if s.Spec.ClusterIP == corev1.ClusterIPNone {
					headless = s
				}
				labels := sched.Spec.Template.Labels
				if s.Spec.ClusterIP == corev1.ClusterIPNone {
					labels = pool.Spec.Template.Labels
				}
				if !selects(s.Spec.Selector, labels) {
					t.Errorf("service %s selects no pod", s.Name)
				}
			}
			if headless == nil || pool.Spec.ServiceName != headless.Name {
				t.Fatalf("pool's serviceName %q is not the headless service", pool.Spec.ServiceName)
			}
			want := fmt.Sprintf("dns:///%s.ns.svc.cluster.local:%d", headless.Name, pool.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort)
			if got := args(sched.Spec.Template.Spec.Containers[0])["pool"]; got != want {
				t.Errorf("scheduler --pool=%s, want %s", got, want)
			}
			for _, p := range r.pdbs {
				if !selects(p.Spec.Selector.MatchLabels, pool.Spec.Template.Labels) && !selects(p.Spec.Selector.MatchLabels, sched.Spec.Template.Labels) {
					t.Errorf("PDB %s selects no pod", p.Name)
				}
			}
			b, _ := json.Marshal(pool.Spec.Replicas)
			t.Logf("%s: pool replicas %s, scheduler args %v", name, b, sched.Spec.Template.Spec.Containers[0].Args)
		})
	}
}

// The checks catch what they are for: a flag the binary lacks, a port that
// disagrees with its listen flag, a file outside the mounted secrets.
func TestChartChecksCatchMistakes(t *testing.T) {
	flags := binaryFlags(t)
	r := render(t, "--set", "scheduler.extraArgs={--no-such-flag=1,--tls-cert=/elsewhere/cert.pem}", "--set", "scheduler.ports.http=8081",
		"--set-string", "scheduler.extraEnv[0].name=SEMANTIC_NO_SUCH_FLAG", "--set-string", "scheduler.extraEnv[0].value=1")
	var found []string
	collect := func(format string, args ...any) { found = append(found, fmt.Sprintf(format, args...)) }
	spec := r.deployments[0].Spec.Template.Spec
	// The http port follows the value, but the flag must too: break the flag.
	for i, a := range spec.Containers[0].Args {
		if strings.HasPrefix(a, "--http-listen=") {
			spec.Containers[0].Args[i] = "--http-listen=:8080"
		}
	}
	checkPod(t, collect, "scheduler", spec, flags["scheduler"], nil, map[string]string{"grpc": "listen", "http": "http-listen", "metrics": "metrics-listen"})
	for _, want := range []string{"--no-such-flag", "SEMANTIC_NO_SUCH_FLAG", "port http", "/elsewhere/cert.pem"} {
		hit := false
		for _, f := range found {
			hit = hit || strings.Contains(f, want)
		}
		if !hit {
			t.Errorf("no finding about %s in %q", want, found)
		}
	}
}

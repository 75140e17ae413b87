// Package deploy holds the tests of what deploy/ ships: the Kubernetes chart
// in helm/semantic (every manifest `helm template` renders is decoded
// strictly into the k8s.io/api types, and its ports, flags, probes and
// volumes are checked against the binaries' own flags; no cluster is
// needed, docs/kubernetes.md), and the monitoring in monitoring/ (the
// Grafana dashboard and the alert rules only name metrics the binaries
// export).
package deploy

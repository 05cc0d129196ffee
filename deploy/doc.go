// Package deploy holds the checks of setrelay's operations files: the
// Prometheus alerting rules (prometheus/alerts.yaml) and the Grafana
// dashboard (grafana/setrelay.json). It is a module of its own so that the
// Prometheus query parser its tests use does not become a dependency of
// setrelay itself; .ci/run tests it with `cd deploy && go test ./...`.
package deploy

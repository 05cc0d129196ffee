// Package chaos proves setrelay's delivery claims with real processes: a
// 3-node nats-server cluster built from the module's own nats-server version,
// several `setrelay run` workers and a fault-injecting `setrelay receiver`,
// while the test kills nodes and workers. The package holds only tests; see
// chaos_test.go for the run and its flags, and scripts/chaos.sh for the
// full-size run.
package chaos
